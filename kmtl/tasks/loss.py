"""A task's loss as a function of per-entry values: kmtl applies the masked mean itself."""

from __future__ import annotations

from typing import Any, Callable

import keras


# Reductions that mean over entries, as kmtl's masked mean does; any other would be silently replaced by it.
MEAN_REDUCTIONS = ("sum_over_batch_size", "mean")


def resolve_loss(loss: Any, task_name: str | None = None) -> Callable:
    """Returns a function `(y_true, y_pred) -> per-entry values` for a loss name, function or `Loss` object.

    kmtl reduces every task's loss itself (the mean over present label entries), so a `Loss` object must keep a
    mean reduction; `"sum"`, `"mean_with_sample_weight"` or `None` are refused rather than silently ignored.

    Raises:
        ValueError: for something that is not a loss, or a `Loss` with another reduction.
    """
    task = f"Task '{task_name}': " if task_name else ""
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if isinstance(loss, keras.losses.Loss):
        if loss.reduction not in MEAN_REDUCTIONS:
            raise ValueError(
                f"{task}invalid value for `loss`: kmtl takes the mean of a task's loss over its present labels, so a "
                f"Loss object's reduction must be one of {list(MEAN_REDUCTIONS)} (the default). Received: "
                f"{type(loss).__name__}(reduction={loss.reduction!r}). To weigh a task, use `Task.loss_weight` "
                "with weighting='static' or a weighting strategy."
            )
        return loss.call
    if callable(loss):
        return loss
    raise ValueError(
        f"{task}invalid value for `loss`. Expected a name, a function or a keras.losses.Loss. Received: {loss!r}"
    )
