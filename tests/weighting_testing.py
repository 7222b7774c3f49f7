"""The tiny three-task model and data the weighting tests train strategies on."""

import keras
import numpy as np

import kmtl
from kmtl import Task


def make_model(weighting, optimizer=None, head_units=(3,), seed=0, builder=None, **compile_kwargs):
    """A hard-sharing model with binary `a`, 2-unit regression `b` and 3-class `c`, compiled with `weighting`.

    `builder(x, tasks) -> MultiTaskModel`, when given, makes the model instead (the same tasks, any builder).
    """
    keras.utils.set_random_seed(seed)
    tasks = [Task("a", "binary"), Task("b", "regression", units=2), Task("c", "multiclass", num_classes=3)]
    x = keras.Input((4,), name="x")
    if builder is None:
        h = keras.layers.Dense(5, activation="tanh", name="trunk")(x)
        model = kmtl.builders.hard_sharing(x, h, tasks, head_units=head_units)
    else:
        model = builder(x, tasks)
    model.compile(optimizer=optimizer or keras.optimizers.SGD(learning_rate=0.1), weighting=weighting, **compile_kwargs)
    return model


def make_data(n=16, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = {
        "a": rng.integers(0, 2, n).astype("int32"),
        "b": rng.normal(size=(n, 2)).astype("float32"),
        "c": rng.integers(0, 3, n).astype("int32"),
    }
    return x, y
