"""Checks of what `kmtl.evaluate` is given, so that a wrong call says what to pass instead of failing deep in Keras."""

from __future__ import annotations

from typing import Any


def check_evaluate_arguments(model, data: Any, y: Any) -> None:
    """Raises a ValueError naming what `kmtl.evaluate` expects when `model`, `data` or `y` cannot be right.

    Args:
        model: what was passed as the model; must have `tasks` (a `kmtl.MultiTaskModel`).
        data: inputs (with `y`) or a dataset of `(inputs, {task: labels})` batches.
        y: dict `{task: labels}` or None.
    """
    names = getattr(model, "task_names", None)
    if names is None:
        raise ValueError(
            "Invalid value for `model`. Expected a kmtl.MultiTaskModel (a model that knows its tasks). "
            f"Received: model={type(model).__name__}"
        )
    if y is None and isinstance(data, (tuple, list)):
        raise ValueError(
            f"Invalid value for `data`. Expected inputs with labels `y`, or a tf.data.Dataset of (inputs, "
            f"{{task: labels}}) batches. Received: data=a {type(data).__name__} of {len(data)} and no `y`. Pass "
            "inputs and labels as two arguments: kmtl.evaluate(model, x, y), with y a dict keyed by task names "
            f"{list(names)}."
        )
    if y is None:
        return
    if not isinstance(y, dict):
        raise ValueError(
            f"Invalid value for `y`. Expected a dict keyed by task names {list(names)}. "
            f"Received: y={type(y).__name__}"
        )
    unknown = [key for key in y if key not in names]
    if unknown:
        raise ValueError(
            f"Invalid value for `y`. It names unknown task(s) {unknown}. Expected keys among the task names "
            f"{list(names)}."
        )
