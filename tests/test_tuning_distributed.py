"""Distributed tuning with keras-tuner's chief/worker mode: a chief oracle and one worker, as subprocesses."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

# Runs in each subprocess: a tiny kmtl hypermodel searched for 2 trials of 1 epoch. The chief only serves the
# oracle (keras-tuner's `search` blocks until the workers are done); the worker trains.
SCRIPT = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    import keras_tuner
    import kmtl
    from kmtl.tuning.hypermodels import BuilderHyperModel

    tasks = [kmtl.Task("a", "binary"), kmtl.Task("b", "regression")]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = {"a": (x[:, 0] > 0).astype("float32"), "b": x[:, 1:2]}
    hypermodel = BuilderHyperModel(
        "hard_sharing", inputs=4, tasks=tasks, weightings=["equal"],
        search_space={"shared_layers": 1, "shared_units": [4, 8], "head_units": 0, "dropout": 0.0},
        compile_kwargs={"run_eagerly": True},
    )
    tuner = keras_tuner.RandomSearch(hypermodel, objective=hypermodel.objective, max_trials=2, seed=0,
                                     directory=sys.argv[1], project_name="dist")
    tuner.search(x, y, validation_data=(x, y), epochs=1, batch_size=16, verbose=0)
    print("finished", os.environ["KERASTUNER_TUNER_ID"], flush=True)
    """
)
TIMEOUT = 240  # seconds per process; the test kills both whatever happens


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(script, directory, tuner_id, port, log):
    env = dict(os.environ, KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP="127.0.0.1",
               KERASTUNER_ORACLE_PORT=str(port), TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    return subprocess.Popen([sys.executable, str(script), str(directory)], env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=os.getcwd())


@pytest.mark.slow  # two TensorFlow processes and a gRPC oracle: about 30-60 s on 2 shared cores
def test_chief_records_the_trials_a_worker_ran(tmp_path):
    script = tmp_path / "search.py"
    script.write_text(SCRIPT)
    port = _free_port()
    chief_dir, worker_dir = tmp_path / "chief", tmp_path / "worker"
    processes = []
    with open(tmp_path / "chief.log", "w") as chief_log, open(tmp_path / "worker.log", "w") as worker_log:
        try:
            processes.append(_start(script, chief_dir, "chief", port, chief_log))
            processes.append(_start(script, worker_dir, "tuner0", port, worker_log))
            for process in reversed(processes):  # the worker ends first, then the chief sees no one left
                process.wait(timeout=TIMEOUT)
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=30)
    logs = {name: (tmp_path / f"{name}.log").read_text() for name in ("chief", "worker")}
    assert [p.returncode for p in processes] == [0, 0], logs
    assert "finished tuner0" in logs["worker"] and "finished chief" in logs["chief"], logs

    # The worker trained both trials: keras-tuner wrote each trial's best-epoch weights in the worker's folder.
    for trial_id in ("0", "1"):
        assert (worker_dir / "dist" / f"trial_{trial_id}" / "checkpoint.weights.h5").is_file()
    # The chief trained nothing but its oracle recorded both trials, scored by the multi-task objective.
    assert not list((chief_dir / "dist").glob("trial_*/checkpoint.weights.h5"))
    # The worker's objective measured each task by its primary metric against its trivial predictor on the script's
    # data (training and validation data are the same 32 rows): the class prior's AUROC (0.5) and the median's MAE.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    b = x[:, 1:2].astype(np.float64)
    trivial_mae = np.mean(np.abs(b - np.median(b)))
    for trial_id in ("0", "1"):
        trial = json.loads((chief_dir / "dist" / f"trial_{trial_id}" / "trial.json").read_text())
        assert trial["status"] == "COMPLETED"
        metrics = {name: m["observations"][-1]["value"][0] for name, m in trial["metrics"]["metrics"].items()}
        skills = (2 * metrics["val_a_auc"] - 1, 1 - metrics["val_b_mae"] / trivial_mae)
        expected = sum(skills) / 2  # the mean skill over the trivial predictors (float32 metrics: 1e-5)
        assert trial["score"] == pytest.approx(expected, abs=1e-5)
        assert metrics["val_mtl_score"] == pytest.approx(trial["score"], abs=1e-9)
    oracle = json.loads((chief_dir / "dist" / "oracle.json").read_text())
    assert sorted(oracle["end_order"]) == ["0", "1"]
