"""Writes `saved_strategies_v0_1.keras` and its expected numbers (run from the repository root).

The file was written by kmtl 0.1.0 at commit 45ad1b7, before `kmtl/regularizers.py` and `kmtl/weighting/` were split
into packages; `tests/test_weighting.py::test_model_saved_before_the_package_split_loads` checks that it still loads
with its stateful strategy (GradVac: targets and random-number state) and stateful penalty (TaskRelationshipPrior).
"""

import json

import keras
import numpy as np

import kmtl
from kmtl import Task
from kmtl.regularizers import SoftSharingL2, TaskCovarianceUpdater, TaskRelationshipPrior
from kmtl.weighting import GradVac


def main():
    keras.utils.set_random_seed(0)
    tasks = [Task("a", "binary"), Task("b", "regression"), Task("c", "regression")]
    x = keras.Input((3,), name="x")
    trunk = keras.layers.Dense(4, activation="tanh", name="trunk")(x)
    towers = {t.name: keras.layers.Dense(2, activation="tanh", name=f"tower_{t.name}_1")(trunk) for t in tasks}
    outputs = {t.name: kmtl.heads.task_head(t, towers[t.name]) for t in tasks}
    names = [f"tower_{t.name}_1" for t in tasks]
    penalties = [SoftSharingL2(names, strength=0.1), TaskRelationshipPrior(names, strength=0.05, update_every=1)]
    model = kmtl.MultiTaskModel(inputs=x, outputs=outputs, tasks=tasks, penalties=penalties)
    model.compile(optimizer=keras.optimizers.SGD(0.1), weighting=GradVac(beta=0.5, seed=3))
    rng = np.random.default_rng(0)
    data = rng.normal(size=(8, 3)).astype("float32")
    labels = {"a": rng.integers(0, 2, 8).astype("int32"), "b": rng.normal(size=8).astype("float32"),
              "c": rng.normal(size=8).astype("float32")}
    model.fit(data, labels, batch_size=4, epochs=1, verbose=0, callbacks=[TaskCovarianceUpdater()])
    model.save("tests/data/saved_strategies_v0_1.keras")
    predictions = model.predict(data, verbose=0)
    expected = {
        "inputs": data.tolist(),
        "predictions": {k: np.asarray(v).tolist() for k, v in predictions.items()},
        "targets": model.weighting.targets.numpy().tolist(),
        "seed_state": model.weighting.seed_generator.state.numpy().tolist(),
        "task_covariance": penalties[1].task_covariance.numpy().tolist(),
        "penalties": [float(p.penalty()) for p in penalties],
    }
    with open("tests/data/saved_strategies_v0_1.json", "w") as f:
        json.dump(expected, f, indent=1)


if __name__ == "__main__":
    main()
