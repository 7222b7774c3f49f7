"""`TaskNaNGuard`: stop training at the first batch whose loss is NaN or infinite, naming the task(s) responsible."""

from __future__ import annotations

import math
import warnings

import keras

ON_NAN = ("stop", "raise")


class TaskNaNGuard(keras.callbacks.Callback):
    """Stops training at the first batch whose loss is not finite and names the task whose loss went first.

    After every training batch the guard reads each task's `<task>_loss` from the batch logs (a `MultiTaskModel`
    logs them; for other models every `*_loss` key but `loss` is read). Keras logs running means over the epoch, so
    a task's logged loss turns NaN (or infinite) at the first batch where its own loss does and stays so; the guard
    acts on that batch, where the other tasks' losses are still finite (one update later the non-finite gradient
    has reached the shared layers and every task's loss is NaN, so the culprit can no longer be told). The
    message names the epoch, the batch and the tasks whose loss is not finite there, in task order (several when
    they went at the same batch). A non-finite total `loss` with finite task losses is reported too (it comes from
    regularisation, a penalty or the weighting strategy). With `steps_per_execution` > 1 Keras logs every k
    steps, and the guard can only name the range of batches.

    Args:
        on_nan: str. `"stop"` sets `model.stop_training` (the current batch's update has been applied, as with
            `keras.callbacks.TerminateOnNaN`) and warns with the message; `"raise"` raises `FloatingPointError`
            with it, ending `fit` at once.

    Attributes:
        message: str or None. What the guard reported.
        nan_tasks: list of str. The tasks whose loss was not finite at the reported batch.
        epoch, batch: int or None. Where it happened (0-based).

    Example:

    >>> guard = TaskNaNGuard()
    >>> guard.message is None
    True

    ```python
    model.fit(train_ds, epochs=5, callbacks=[kmtl.training.TaskNaNGuard(on_nan="raise")])
    # FloatingPointError: Training loss is not finite at epoch 0, batch 3: task 'age' (inf). ...
    ```

    Reference:
        Keras team (2015-). `keras.callbacks.TerminateOnNaN`, which stops on a NaN total loss without naming a task.
    """

    def __init__(self, on_nan: str = "stop"):
        super().__init__()
        if on_nan not in ON_NAN:
            raise ValueError(f"Invalid value for `on_nan`. Expected one of {list(ON_NAN)}. Received: on_nan={on_nan!r}")
        self.on_nan = on_nan
        self.message, self.nan_tasks, self.epoch, self.batch = None, [], None, None

    def on_train_begin(self, logs=None):
        self.message, self.nan_tasks, self.epoch, self.batch = None, [], None, None
        self._task_names = list(getattr(self.model, "task_names", []) or [])
        self._epoch, self._begin = 0, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self._begin = batch

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        names = self._task_names or [k[: -len("_loss")] for k in logs if k.endswith("_loss") and k != "loss"]
        bad = [(name, logs[f"{name}_loss"]) for name in names if not _finite(logs.get(f"{name}_loss"))]
        total_bad = not _finite(logs.get("loss"))
        if not bad and not total_bad:
            return
        self.nan_tasks, self.epoch, self.batch = [name for name, _ in bad], self._epoch, batch
        self.message = _message(self._epoch, self._begin, batch, bad, logs.get("loss"))
        if self.on_nan == "raise":
            raise FloatingPointError(self.message)
        warnings.warn(self.message, RuntimeWarning, stacklevel=2)
        self.model.stop_training = True


def _finite(value) -> bool:
    """True for a finite number, and for a missing entry (nothing to judge)."""
    if value is None:
        return True
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


def _message(epoch, begin, end, bad, total) -> str:
    where = f"batch {end}" if begin == end else f"one of batches {begin}-{end} (steps_per_execution > 1)"
    if bad:
        named = ", ".join(f"'{name}' ({float(value)})" for name, value in bad)
        noun = "task" if len(bad) == 1 else "tasks"
        return (
            f"Training loss is not finite at epoch {epoch}, {where}: {noun} {named}. Look for labels or inputs of "
            f"{'this task' if len(bad) == 1 else 'these tasks'} in that batch that are infinite or out of range, a "
            "loss that takes log(0), or a learning rate too high for the task's head."
        )
    return (
        f"Training loss is not finite ({total}) at epoch {epoch}, {where}, but every task loss is finite: the "
        "regularisation losses, a penalty or the weighting strategy's combination produced it."
    )
