"""Tests for `GradientConflictMonitor` and for task weights reaching history and TensorBoard."""

import glob

import keras
import numpy as np
import pytest
import tensorflow as tf

import kmtl
from kmtl import Task
from kmtl.training.conflict import GradientConflictMonitor

TASKS = [Task("up", "regression"), Task("down", "regression"), Task("other", "regression")]


def make_model():
    keras.utils.set_random_seed(0)
    x = keras.Input((3,), name="x")
    # One shared linear unit; each head is a fixed +1/-1 readout, so the gradients' directions are known.
    h = keras.layers.Dense(1, use_bias=False, name="shared", kernel_initializer="zeros")(x)
    outputs = {}
    for name, sign in (("up", 1.0), ("down", -1.0), ("other", 1.0)):
        head = keras.layers.Dense(1, use_bias=False, name=name, kernel_initializer=keras.initializers.Constant(sign))
        head.trainable = False
        outputs[name] = head(h)
    return kmtl.MultiTaskModel(x, outputs, tasks=TASKS)


def test_cosine_matrix_of_known_gradients():
    """Targets +x0 for 'up' and 'down' read through readouts +1 and -1, 'other' targets x1: with the shared weights
    at 0, the task gradients are -2 E[x y_t] r_t = (-2, 0, 0), (+2, 0, 0), (0, -2, 0) up to scale."""
    model = make_model()
    model.compile(optimizer="sgd")
    x = np.eye(3, dtype="float32")
    y = {"up": x[:, :1], "down": x[:, :1], "other": x[:, 1:2]}
    monitor = GradientConflictMonitor((x, y))
    monitor.set_model(model)
    expected = np.array([[1, -1, 0], [-1, 1, 0], [0, 0, 1]], "float32")
    np.testing.assert_allclose(monitor.cosine_matrix(), expected, atol=1e-6)


def test_logs_history_and_plot(tmp_path):
    model = make_model()
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype("float32")
    y = {"up": x[:, :1], "down": x[:, :1], "other": x[:, 1:2]}
    monitor = GradientConflictMonitor((x[:8], {k: v[:8] for k, v in y.items()}), every=2)
    history = model.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=[monitor])
    assert monitor.epochs == [-1, 1, 3]
    assert len(history.history["gradcos_up_down"]) == 2  # logged on the measured epochs only
    assert history.history["gradcos_up_down"][0] == pytest.approx(monitor.matrices[1][0, 1])
    assert history.history["gradcos_min"][-1] == pytest.approx(monitor.matrices[-1][0, 1])
    pytest.importorskip("matplotlib")
    path = monitor.save_plot(tmp_path / "conflict.png")
    assert path.stat().st_size > 1000
    with pytest.raises(FileExistsError):
        monitor.save_plot(path)


def test_bad_arguments():
    with pytest.raises(ValueError, match="every"):
        GradientConflictMonitor((None, None), every=0)
    with pytest.raises(ValueError, match="Expected `\\(inputs"):
        GradientConflictMonitor(np.zeros(3))


def test_task_weights_reach_history_and_tensorboard(tmp_path):
    x = keras.Input((3,), name="x")
    h = keras.layers.Dense(4, name="shared")(x)
    tasks = [Task("a", "regression"), Task("b", "binary")]
    model = kmtl.builders.hard_sharing(x, h, tasks)
    model.compile(optimizer="adam", weighting=kmtl.weighting.Uncertainty(initial_log_variance=np.log(2.0)))
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(8, 3)).astype("float32"),
            {"a": rng.normal(size=(8, 1)).astype("float32"), "b": rng.integers(0, 2, (8, 1)).astype("float32")})
    history = model.fit(*data, epochs=1, verbose=0, callbacks=[keras.callbacks.TensorBoard(str(tmp_path))])
    # Uncertainty: regression weight 0.5 * exp(-s), classification exp(-s); s starts at log 2.
    assert history.history["a_weight"][0] == pytest.approx(0.25, abs=1e-2)
    assert history.history["b_weight"][0] == pytest.approx(0.5, abs=2e-2)
    tags = set()
    for path in glob.glob(str(tmp_path / "train" / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags |= {value.tag for value in event.summary.value}
    assert {"epoch_a_weight", "epoch_b_weight"} <= tags


def _measured_monitor():
    model = make_model()
    model.compile(optimizer="sgd")
    x = np.eye(3, dtype="float32")
    monitor = GradientConflictMonitor((x, {"up": x[:, :1], "down": x[:, :1], "other": x[:, 1:2]}))
    monitor.set_model(model)
    monitor.on_train_begin()
    return monitor


def test_save_plot_never_writes_to_another_name(tmp_path):
    """A path without `.png` was saved by matplotlib as `<path>.png`, replacing that file unchecked."""
    pytest.importorskip("matplotlib")
    (tmp_path / "conflict.png").write_bytes(b"user's plot")
    path = _measured_monitor().save_plot(tmp_path / "conflict")
    assert path == tmp_path / "conflict" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "conflict.png").read_bytes() == b"user's plot"


def test_a_failed_save_plot_leaves_the_existing_file_whole(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    path = tmp_path / "conflict.png"
    path.write_bytes(b"previous plot")

    def fail_half_way(self, target, **kwargs):
        (target.write if hasattr(target, "write") else open(target, "wb").write)(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", fail_half_way)
    with pytest.raises(OSError, match="disk full"):
        _measured_monitor().save_plot(path, overwrite=True)
    assert path.read_bytes() == b"previous plot"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conflict.png"]  # no temporary file left
