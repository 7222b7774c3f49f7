"""Hard parameter sharing: one shared trunk, one head per task."""

from __future__ import annotations

from typing import Mapping, Sequence

from kmtl.heads import task_head
from kmtl.model import MultiTaskModel
from kmtl.tasks import Task, validate_task_list


def hard_sharing(
    inputs,
    features,
    tasks: Sequence[Task],
    *,
    head_units: Sequence[int] | Mapping[str, Sequence[int]] = (),
    head_activation: str = "relu",
    dropout: float = 0.0,
    name: str = "hard_sharing",
) -> MultiTaskModel:
    """Builds a hard-sharing multi-task model: every task's head reads the same shared features.

    Args:
        inputs: Keras input tensor(s) of the model.
        features: symbolic tensor `(batch, d)` computed from `inputs` by any Keras layers (the shared trunk).
        tasks: list of `kmtl.Task`.
        head_units: hidden widths of every head, or a dict `{task_name: widths}` per task.
        head_activation: str. Activation of the heads' hidden layers.
        dropout: float. Dropout after each hidden head layer.
        name: str. Model name.

    Returns:
        `MultiTaskModel` whose outputs are keyed by task name.

    Example:

    >>> import keras, kmtl
    >>> x = keras.Input((16,), name="features")
    >>> h = keras.layers.Dense(32, activation="relu", name="shared")(x)
    >>> model = kmtl.builders.hard_sharing(x, h, [kmtl.Task("a", "binary"), kmtl.Task("b", "regression")])
    >>> sorted(model.output)
    ['a', 'b']

    Reference:
        Caruana (1997). Multitask Learning. Machine Learning 28.
    """
    tasks = validate_task_list(tasks)
    if isinstance(head_units, Mapping):
        unknown = [k for k in head_units if k not in [t.name for t in tasks]]
        if unknown:
            raise ValueError(f"`head_units` names unknown task(s) {unknown}. Valid: {[t.name for t in tasks]}.")
        units_for = {t.name: tuple(head_units.get(t.name, ())) for t in tasks}
    else:
        units_for = {t.name: tuple(head_units) for t in tasks}
    outputs = {
        t.name: task_head(t, features, units_for[t.name], activation=head_activation, dropout=dropout) for t in tasks
    }
    return MultiTaskModel(inputs, outputs, name=name, tasks=tasks)
