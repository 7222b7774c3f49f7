"""Fault tolerance: how Keras 3.15's BackupAndRestore resumes, and kmtl's `BackupAndResume`, which resumes an
interrupted run at the batch where it stopped with the weights of an uninterrupted run.

In-process tests interrupt `fit` with an exception and resume with a new model and new data built the same way
(what a new process does); tests/_workers/resume_train.py is killed with SIGKILL in the slow subprocess test.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny import tiny_data, tiny_model

import kmtl
from kmtl.training.backup import METADATA, BackupAndResume
from kmtl.weighting.dynamic import RLW

TASKS = [kmtl.Task("a", "regression"), kmtl.Task("b", "binary"), kmtl.Task("c", "multiclass", num_classes=3)]
ROWS, BATCH, EPOCHS = 24, 4, 3
STEPS = ROWS // BATCH  # 6 steps per epoch


class Interrupted(Exception):
    pass


class InterruptAt(keras.callbacks.Callback):
    """Raises after training batch `batch` of epoch `epoch` (the step is trained, then lost)."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at, self.epoch = (epoch, batch), None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise Interrupted()


def make_model(weighting):
    """Dropout in the heads and a random or epoch-stateful strategy: state that a resume must restore."""
    return tiny_model(weighting, tasks=TASKS, input_dim=5, trunk_units=8, head_units=(4,), dropout=0.3,
                      optimizer=keras.optimizers.Adam(0.01))


def make_arrays():
    x, y = tiny_data(TASKS, n=ROWS, input_dim=5, seed=1)
    y["a"][[3, 7]] = np.nan
    return x, y


def fit_numpy(model, callbacks):
    """Numpy arrays shuffled by Keras: a new iterator per epoch, the same permutation every epoch."""
    x, y = make_arrays()
    return model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=True, verbose=0, callbacks=callbacks)


def fit_stream(model, callbacks):
    """A tf.data stream reshuffled every pass, one iterator for the whole run (`steps_per_epoch`)."""
    x, y = make_arrays()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(ROWS, seed=2, reshuffle_each_iteration=True)
    dataset = dataset.repeat().batch(BATCH)
    return model.fit(dataset, steps_per_epoch=STEPS, epochs=EPOCHS, verbose=0, shuffle=False, callbacks=callbacks)


def weights(model):
    return [np.asarray(v.numpy()) for v in model.weights]


def interrupted_then_resumed(fit, weighting, backup, interrupt):
    """Runs until the interrupt, then resumes in a new model; returns (model, history, callback).

    `weighting()` makes each model's strategy (a strategy object serves one model)."""
    keras.utils.set_random_seed(0)
    with pytest.raises(Interrupted):
        fit(make_model(weighting()), [backup, InterruptAt(*interrupt)])
    keras.utils.set_random_seed(0)
    resumed = make_model(weighting())
    backup_again = BackupAndResume(backup.backup_dir, save_freq=backup.save_freq)
    history = fit(resumed, [backup_again])
    return resumed, history, backup_again


def uninterrupted(fit, weighting):
    keras.utils.set_random_seed(0)
    model = make_model(weighting())
    return model, fit(model, [])


# === Keras's BackupAndRestore, as found in Keras 3.15 ===


def test_keras_backup_and_restore_trains_the_interrupted_epoch_again(tmp_path):
    """BackupAndRestore restores the weights and the epoch but not the batch: the resumed run starts the interrupted
    epoch from its first batch, so the batches trained before the last backup are trained twice."""
    backup_dir = str(tmp_path / "keras")
    keras.utils.set_random_seed(0)
    with pytest.raises(Interrupted):
        fit_numpy(make_model("equal"), [keras.callbacks.BackupAndRestore(backup_dir, save_freq=2),
                                        InterruptAt(1, 3)])
    # The last backup was taken after batch 3 of epoch 1 (10 steps), and records that batch.
    with open(os.path.join(backup_dir, "training_metadata.json")) as f:
        assert json.load(f) == {"epoch": 1, "batch": 3}
    keras.utils.set_random_seed(0)
    resumed = make_model("equal")
    history = fit_numpy(resumed, [keras.callbacks.BackupAndRestore(backup_dir, save_freq=2)])
    assert len(history.history["loss"]) == 2  # epochs 1 and 2, each from its first batch
    # 10 steps before the backup + 12 after it: 22 optimizer steps instead of 18.
    assert int(resumed.optimizer.iterations.numpy()) == EPOCHS * STEPS + 4


# === kmtl's BackupAndResume ===


@pytest.mark.slow  # trains and restores or runs two replicas: several seconds on 2 cores
@pytest.mark.parametrize(
    "fit, weighting, interrupt, save_freq, restored",
    [
        # Per-epoch iterators; RLW draws random weights and dropout random masks: their generators are restored.
        (fit_numpy, lambda: RLW(seed=3), (1, 3), 2, {"epoch": 1, "batch": 2, "step": 8}),
        # One reshuffling stream, replayed to the saved position; DWA's weights depend on earlier epochs' losses.
        (fit_stream, lambda: "dwa", (2, 2), 4, {"epoch": 2, "batch": 0, "step": 12}),
        # Backups at epoch ends, written after kmtl's strategy epoch hook has run (three more fits: slow).
        pytest.param(fit_stream, lambda: "dwa", (2, 4), "epoch", {"epoch": 2, "batch": 0, "step": 12},
                     marks=pytest.mark.slow),
    ],
    ids=["numpy-rlw", "stream-dwa", "stream-dwa-epoch"],
)
def test_resumed_run_ends_with_the_uninterrupted_weights(tmp_path, fit, weighting, interrupt, save_freq, restored):
    model, history = uninterrupted(fit, weighting)
    backup = BackupAndResume(tmp_path / "backup", save_freq=save_freq)
    resumed, resumed_history, callback = interrupted_then_resumed(fit, weighting, backup, interrupt)
    assert callback.restored == restored
    assert int(resumed.optimizer.iterations.numpy()) == EPOCHS * STEPS
    for variable, a, b in zip(model.weights, weights(model), weights(resumed)):
        np.testing.assert_array_equal(b, a, err_msg=variable.path)  # same ops, same order: bit for bit
    # The resumed epochs log what the uninterrupted run logged (the interrupted epoch's metric state is restored).
    first = restored["epoch"]
    for key, values in history.history.items():
        np.testing.assert_allclose(resumed_history.history[key], values[first:], rtol=1e-6, err_msg=key)
    assert not (tmp_path / "backup").exists()  # deleted once `fit` completes


@pytest.mark.slow  # three fits under MirroredStrategy: about 15-30 s on 2 shared cores
def test_resume_under_mirrored_strategy(tmp_path, mirrored_strategy, monkeypatch):
    """Two replicas: mirrored weights, random generators and the replicas' metric state are restored as well."""
    unscoped = make_model

    def scoped(weighting):
        with mirrored_strategy.scope():
            return unscoped(weighting)

    monkeypatch.setattr(sys.modules[__name__], "make_model", scoped)
    model, history = uninterrupted(fit_numpy, lambda: RLW(seed=3))
    backup = BackupAndResume(tmp_path / "backup", save_freq=2)
    resumed, resumed_history, callback = interrupted_then_resumed(fit_numpy, lambda: RLW(seed=3), backup, (1, 3))
    assert callback.restored == {"epoch": 1, "batch": 2, "step": 8}
    for variable, a, b in zip(model.weights, weights(model), weights(resumed)):
        np.testing.assert_array_equal(b, a, err_msg=variable.path)
    for key, values in history.history.items():
        np.testing.assert_allclose(resumed_history.history[key], values[1:], rtol=1e-6, atol=1e-7, err_msg=key)


def test_backup_folder_holds_one_complete_backup(tmp_path):
    backup = BackupAndResume(tmp_path / "backup", save_freq=1)
    keras.utils.set_random_seed(0)
    with pytest.raises(Interrupted):
        fit_numpy(make_model("equal"), [backup, InterruptAt(0, 4)])
    files = sorted(p.name for p in (tmp_path / "backup").iterdir())
    assert files == ["backup.json", "step-4.state.npz", "step-4.weights.h5"]
    metadata = json.loads((tmp_path / "backup" / METADATA).read_text())
    assert (metadata["epoch"], metadata["batch"], metadata["iterator_batches"]) == (0, 4, 4)


def test_keep_the_backup_of_a_finished_run(tmp_path):
    """With delete_checkpoint=False the final state is kept, and fitting again trains no further step."""
    keras.utils.set_random_seed(0)
    model = make_model("equal")
    fit_numpy(model, [BackupAndResume(tmp_path / "backup", delete_checkpoint=False)])
    metadata = json.loads((tmp_path / "backup" / METADATA).read_text())
    assert (metadata["epoch"], metadata["batch"], metadata["step"]) == (EPOCHS, 0, EPOCHS * STEPS)
    again = make_model("equal")
    with pytest.warns(UserWarning, match="finished run"):
        history = fit_numpy(again, [BackupAndResume(tmp_path / "backup", delete_checkpoint=False)])
    assert history.history == {} and int(again.optimizer.iterations.numpy()) == EPOCHS * STEPS
    for a, b in zip(weights(model), weights(again)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"save_freq": 0}, "save_freq=0"), ({"save_freq": "batch"}, "save_freq='batch'"), ({"backup_dir": ""}, "backup_dir")],
)
def test_invalid_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        BackupAndResume(**{"backup_dir": tmp_path, **kwargs})


# === A process killed by SIGKILL ===

WORKER = Path(__file__).parent / "_workers" / "resume_train.py"
TIMEOUT = 240  # seconds per process


def _start(backup_dir, out, pause_after=0):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    return subprocess.Popen([sys.executable, str(WORKER), str(backup_dir), str(out), str(pause_after)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process):
    output = process.communicate(timeout=TIMEOUT)[0]
    assert process.returncode == 0, output[-3000:]
    return output


@pytest.mark.slow  # three TensorFlow processes (two at once): about 30-60 s on 2 shared cores
def test_process_killed_mid_epoch_resumes_to_the_uninterrupted_weights(tmp_path):
    processes = []
    try:
        # The reference and the run to be killed, side by side. The latter trains 9 steps (the backup is taken
        # before step 9, at epoch 1 batch 2 of 6), then waits to be killed: the kill lands mid-epoch, mid-run.
        processes.append(_start(tmp_path / "unused", tmp_path / "reference.npz"))
        victim = _start(tmp_path / "backup", tmp_path / "victim.npz", pause_after=9)
        processes.append(victim)
        paused = tmp_path / "victim.npz.paused"
        deadline = time.monotonic() + TIMEOUT
        while not paused.exists():
            assert victim.poll() is None, victim.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "the worker never reached step 9"
            time.sleep(0.1)
        metadata = json.loads((tmp_path / "backup" / METADATA).read_text())
        assert (metadata["epoch"], metadata["batch"], metadata["step"]) == (1, 2, 8)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        assert victim.returncode == -signal.SIGKILL
        _finish(processes[0])

        resumed = _start(tmp_path / "backup", tmp_path / "resumed.npz")
        processes.append(resumed)
        output = _finish(resumed)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
            if process.stdout is not None:
                process.stdout.close()  # the killed worker's pipe was never read to its end
    assert "restored {'epoch': 1, 'batch': 2, 'step': 8}" in output, output[-3000:]
    reference, result = np.load(tmp_path / "reference.npz"), np.load(tmp_path / "resumed.npz")
    assert sorted(reference.files) == sorted(result.files) and len(reference.files) > 10
    for key in reference.files:
        np.testing.assert_array_equal(result[key], reference[key], err_msg=key)


# === The backup folder is the callback's own: user files, finished runs, other models ===


def test_user_files_in_the_backup_folder_are_never_deleted(tmp_path):
    """A folder holding files the callback did not write is refused, and nothing in it is touched."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "best_model.keras").write_bytes(b"user's model")
    keras.utils.set_random_seed(0)
    with pytest.raises(ValueError, match=r"best_model\.keras.*another folder"):
        fit_numpy(make_model("equal"), [BackupAndResume(folder)])
    assert sorted(p.name for p in folder.iterdir()) == ["best_model.keras"]
    assert (folder / "best_model.keras").read_bytes() == b"user's model"


def test_a_file_added_during_training_survives_the_cleanup(tmp_path):
    """At the end of `fit` only the callback's own files go; the folder stays while it holds anything else."""
    folder = tmp_path / "backup"

    class AddUserFile(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                (folder / "notes.txt").write_text("mine")

    keras.utils.set_random_seed(0)
    fit_numpy(make_model("equal"), [BackupAndResume(folder, save_freq=2), AddUserFile()])
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_backup_of_a_finished_run_warns_how_to_start_fresh(tmp_path):
    keras.utils.set_random_seed(0)
    fit_numpy(make_model("equal"), [BackupAndResume(tmp_path / "backup", delete_checkpoint=False)])
    with pytest.warns(UserWarning, match=r"finished run.*epoch 3 of 3.*trains nothing.*delete"):
        history = fit_numpy(make_model("equal"), [BackupAndResume(tmp_path / "backup", delete_checkpoint=False)])
    assert history.history == {}


def test_backup_of_another_model_raises_how_to_start_fresh(tmp_path):
    keras.utils.set_random_seed(0)
    fit_numpy(make_model("equal"), [BackupAndResume(tmp_path / "backup", delete_checkpoint=False)])
    x = keras.Input((5,), name="x")
    other = kmtl.builders.hard_sharing(x, keras.layers.Dense(3, name="trunk")(x), TASKS, head_units=(2,))
    other.compile(optimizer=keras.optimizers.Adam(0.01))
    with pytest.raises(ValueError, match=r"does not fit this model.*delete .*backup"):
        fit_numpy(other, [BackupAndResume(tmp_path / "backup")])
    assert (tmp_path / "backup" / METADATA).exists()  # the backup is left as it was
