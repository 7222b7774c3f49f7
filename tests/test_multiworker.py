"""`tf.distribute.MultiWorkerMirroredStrategy`: two worker processes on 127.0.0.1, configured by TF_CONFIG, train a
tiny MultiTaskModel to the same weights as one process on the same global batches."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kmtl.training.distribute import local_workers, tf_config

WORKER = Path(__file__).parent / "_workers" / "multiworker_train.py"
TIMEOUT = 240  # seconds for both workers; they are killed in `finally` whatever happens
EPOCHS = 2


def _load_worker_module():
    spec = importlib.util.spec_from_file_location("multiworker_train", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_workers(tmp_path, weighting, num_workers=2):
    """Starts the workers, waits for them (bounded), and returns their output files; always reaps them."""
    addresses = local_workers(num_workers)
    processes, logs, outputs = [], [], []
    try:
        for index in range(num_workers):
            env = dict(os.environ, TF_CONFIG=tf_config(addresses, index), TF_CPP_MIN_LOG_LEVEL="3",
                       KERAS_BACKEND="tensorflow")
            outputs.append(tmp_path / f"worker{index}.npz")
            logs.append(open(tmp_path / f"worker{index}.log", "w"))
            processes.append(subprocess.Popen(
                [sys.executable, str(WORKER), str(outputs[-1]), weighting, str(EPOCHS)],
                env=env, stdout=logs[-1], stderr=subprocess.STDOUT,
            ))
        for process in processes:
            process.wait(timeout=TIMEOUT)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        for log in logs:
            log.close()
    texts = [(tmp_path / f"worker{i}.log").read_text()[-3000:] for i in range(num_workers)]
    assert [p.returncode for p in processes] == [0] * num_workers, texts
    return [np.load(path) for path in outputs]


@pytest.mark.slow  # two TensorFlow processes with gRPC collectives: about 30-60 s on 2 shared cores
@pytest.mark.parametrize("weighting", ["uncertainty", "mgda"], ids=["loss-level", "gradient-level"])
def test_two_workers_equal_one_process(tmp_path, weighting):
    worker = _load_worker_module()
    results = _run_workers(tmp_path, weighting)

    # The single-process reference, in this process, on one device with the same global batches.
    model = worker.build_model(weighting)
    history = model.fit(worker.make_dataset(), epochs=EPOCHS, verbose=0, shuffle=False)
    evaluation = model.evaluate(worker.make_dataset(), verbose=0, return_dict=True)
    expected = [np.asarray(v.numpy()) for v in model.weights]

    for result in results:
        assert int(result["replicas"]) == 2
        got = [result[f"w{i}"] for i in range(len(expected))]
        # float32 sums of the two workers' shares in another order (ring all-reduce): 1e-5.
        for variable, a, b in zip(model.weights, expected, got):
            np.testing.assert_allclose(b, a, atol=1e-5, rtol=0, err_msg=variable.path)
        logs = json.loads(str(result["logs"]))
        assert sorted(logs) == sorted(history.history)
        for key, values in history.history.items():  # losses, weights and metrics, per epoch
            np.testing.assert_allclose(logs[key], values, rtol=1e-5, atol=1e-6, err_msg=key)
        # `evaluate` under the strategy too (every metric: masked losses, accuracy, AUC, MAE...).
        worker_evaluation = json.loads(str(result["evaluation"]))
        assert sorted(worker_evaluation) == sorted(evaluation)
        for key, value in evaluation.items():
            np.testing.assert_allclose(worker_evaluation[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
    # Training moved the weights: the comparison is not between two untouched models.
    initial = worker.build_model(weighting).weights
    assert max(np.abs(np.asarray(v.numpy()) - a).max() for v, a in zip(initial, expected)) > 1e-2
