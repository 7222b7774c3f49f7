"""The tiny models and data the tests train: one home, so that a test says only what differs from the standard.

`tiny_model()` is a hard-sharing model on a 4-feature input `x` with a 5-unit `tanh` trunk and a 3-unit hidden layer in
every head, compiled with SGD(0.1) and equal weighting; `tiny_data(tasks)` draws matching random features and labels.
Tests whose expected values were derived from these exact draws pass the same sizes and seeds as arguments.
"""

from collections.abc import Callable, Sequence

import keras
import numpy as np

import kmtl
from kmtl import Task


def tiny_tasks() -> list[Task]:
    """The standard three tasks: binary `a`, 2-unit regression `b` and 3-class `c`."""
    return [Task("a", "binary"), Task("b", "regression", units=2), Task("c", "multiclass", num_classes=3)]


def tiny_model(
    weighting="equal",
    *,
    tasks: Sequence[Task] | None = None,
    input_dim: int = 4,
    trunk_units: int | Sequence[int] = 5,
    activation: str | None = "tanh",
    head_units: Sequence[int] = (3,),
    dropout: float = 0.0,
    seed: int | None = 0,
    builder: Callable | None = None,
    optimizer=None,
    compile: bool = True,
    **compile_kwargs,
) -> kmtl.MultiTaskModel:
    """A hard-sharing model on the input `x` of `input_dim` features, compiled with `weighting` unless `compile=False`.

    Args:
        weighting: str or `kmtl.weighting.Weighting`. Passed to `compile`.
        tasks: list of `Task`. Defaults to `tiny_tasks()`.
        input_dim: int. Features of the input `x`.
        trunk_units: int or list of int. Widths of the shared `Dense` layers, named `trunk` (one layer) or
            `trunk_1`, `trunk_2`, ... (several).
        activation: str or None. Activation of the trunk.
        head_units, dropout: passed to `kmtl.builders.hard_sharing`.
        seed: int or None. `keras.utils.set_random_seed(seed)` before building; None leaves the global seed alone.
        builder: `builder(x, tasks) -> MultiTaskModel`, when given, makes the model instead of the trunk and
            `hard_sharing` (the same input and tasks, any builder).
        optimizer: Keras optimizer or name. Defaults to `SGD(learning_rate=0.1)`.
        compile: bool. Whether to compile the model.
        **compile_kwargs: more arguments of `compile` (`jit_compile`, `run_eagerly`, ...).
    """
    if not compile and compile_kwargs:
        raise TypeError(f"compile=False takes no compile arguments. Received: {sorted(compile_kwargs)}")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    tasks = tiny_tasks() if tasks is None else tasks
    x = keras.Input((input_dim,), name="x")
    if builder is None:
        widths = [trunk_units] if isinstance(trunk_units, int) else list(trunk_units)
        h = x
        for i, units in enumerate(widths, start=1):
            name = "trunk" if len(widths) == 1 else f"trunk_{i}"
            h = keras.layers.Dense(units, activation=activation, name=name)(h)
        model = kmtl.builders.hard_sharing(x, h, tasks, head_units=head_units, dropout=dropout)
    else:
        model = builder(x, tasks)
    if compile:
        model.compile(optimizer=optimizer or keras.optimizers.SGD(learning_rate=0.1), weighting=weighting,
                      **compile_kwargs)
    return model


def tiny_data(
    tasks: Sequence[Task] | None = None, n: int = 16, input_dim: int = 4, seed: int = 1, missing: float | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Random features `x` (n, input_dim) and labels for every task, drawn from the task declarations.

    Labels, in task order: class ids `(n,)` int32 for binary and multiclass tasks, 0/1 entries `(n, num_labels)` int32
    for multilabel ones, normal values `(n, units)` float32 for regression ones.

    Args:
        tasks: list of `Task` (not `per_step`). Defaults to `tiny_tasks()`.
        n: int. Number of examples.
        input_dim: int. Features per example.
        seed: int. Seed of the numpy generator; the features are drawn first, then the labels task by task.
        missing: float or None. Fraction of labels (rows; entries of multi-unit labels) set to each task's `missing`
            marker, drawn after every label, so the present labels are those drawn without `missing`.

    Returns:
        `(x, y)`: a float32 array and a dict of label arrays keyed by task name.
    """
    tasks = tiny_tasks() if tasks is None else tasks
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, input_dim)).astype("float32")
    y = {task.name: _labels(task, n, rng) for task in tasks}
    if missing:
        for task in tasks:
            labels = y[task.name]
            if not float(task.missing).is_integer():  # NaN or a fractional marker needs a float array
                labels = y[task.name] = labels.astype("float32")
            labels[rng.random(labels.shape) < missing] = task.missing
    return x, y


def _labels(task: Task, n: int, rng: np.random.Generator) -> np.ndarray:
    if task.per_step:
        raise ValueError(f"tiny_data draws one label per example. Received a per-step task: {task!r}")
    if task.kind == "binary":
        return rng.integers(0, 2, n).astype("int32")
    if task.kind == "multiclass":
        return rng.integers(0, task.num_classes, n).astype("int32")
    if task.kind == "multilabel":
        return rng.integers(0, 2, (n, task.num_labels)).astype("int32")
    return rng.normal(size=(n, task.units)).astype("float32")
