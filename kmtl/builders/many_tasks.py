"""Many tasks on one trunk: the heads of alike tasks stacked into one einsum layer each."""

from __future__ import annotations

from typing import Sequence

from kmtl.layers.stacked_heads import stacked_task_heads
from kmtl.model import MultiTaskModel
from kmtl.tasks import Task, validate_task_list


def stacked_heads_model(
    inputs,
    features,
    tasks: Sequence[Task],
    *,
    name: str = "stacked_heads_model",
) -> MultiTaskModel:
    """Builds a hard-sharing model whose heads are `StackedHeads` layers, for tens to thousands of tasks.

    Like `kmtl.builders.hard_sharing` without hidden head layers, but the output heads of all tasks of one kind,
    width and activation are computed by one `kmtl.layers.StackedHeads` layer (one einsum over a `(T, d, k)`
    kernel), named `stacked_heads` (or `stacked_heads_<i>` for several groups). Building, tracing and stepping the
    model then cost about as much for 128 tasks as for a few. Missing labels work as everywhere in kmtl: a task
    with no label in a batch has loss 0 and its kernel slice gets no gradient from that batch.

    Variable partition: a stacked layer feeds all its tasks, so `model.shared_variables` includes its kernel and
    bias and `model.task_variables[t]` is empty; each task's loss still only reaches its own slice. Prefer
    `hard_sharing` when using gradient-level weighting (PCGrad, MGDA, ...), which treats shared variables as one.

    Args:
        inputs: Keras input tensor(s) of the model.
        features: symbolic tensor `(batch, d)` computed from `inputs` (the shared trunk).
        tasks: list of `kmtl.Task`.
        name: str. Model name.

    Returns:
        `MultiTaskModel` whose outputs are keyed by task name.

    Example:

    >>> import keras
    >>> x = keras.Input((32,), name="fingerprint")
    >>> h = keras.layers.Dense(16, activation="relu", name="trunk")(x)
    >>> tasks = [Task(f"assay_{i}", "binary", metrics=[]) for i in range(128)]
    >>> model = stacked_heads_model(x, h, tasks)
    >>> len(model.output), tuple(model.get_layer("stacked_heads").kernel.shape)
    (128, (128, 16, 1))

    Reference:
        Ramsundar, Kearnes, Riley, Webster, Konerding & Pande (2015). Massively Multitask Networks for Drug
        Discovery. arXiv:1502.02072.
    """
    tasks = validate_task_list(tasks)
    outputs = stacked_task_heads(tasks, features)
    return MultiTaskModel(inputs, outputs, name=name, tasks=tasks)
