"""`TaskNaNGuard`: stop training at the first batch whose loss is NaN or infinite, naming the task(s) responsible."""

from __future__ import annotations

import math
import time
import warnings
import weakref

import keras
import numpy as np

ON_NAN = ("stop", "raise")


class TaskNaNGuard(keras.callbacks.Callback):
    """Stops training at the first batch whose loss is not finite and names the task whose loss went first.

    After every training batch the guard tests the logged total `loss`, the strategy's combination of the task
    losses, which a non-finite task loss makes non-finite at the same batch; then it reads each task's `<task>_loss`
    from the batch logs (a `MultiTaskModel` logs them; for other models every `*_loss` key but `loss` is read).
    Keras logs running means over the epoch, so a task's logged loss turns NaN (or infinite) at the first batch
    where its own loss does and stays so; the guard acts on that batch, where the other tasks' losses are still
    finite (one update later the non-finite gradient has reached the shared layers and every task's loss is NaN,
    so the culprit can no longer be told). The message names the epoch, the batch and the tasks whose loss is not finite there, in task order (several when
    they went at the same batch). A non-finite total `loss` with finite task losses is reported too (it comes from
    regularisation, a penalty or the weighting strategy). With `steps_per_execution` > 1 Keras logs every k
    steps, and the guard can only name the range of batches. Task losses that a strategy keeps out of the total
    (a weight formed with `where`) are read with the weights check below and at each epoch's end, and reported
    with the range of batches since the last check.

    Non-finite inputs can hide from the losses: oneDNN's ReLU maps NaN to 0, so a NaN feature gives finite losses
    while the gradient turns the first layer's weights NaN, after which the heads output constants. The guard
    therefore also checks that the model's weights are finite, with one compiled reduction over them (each
    variable's sum), every few batches: as often as keeps its cost near 0.4% of the measured step time (every
    batch when steps are slow) and at every epoch's end. Non-finite weights with finite losses are reported like a
    non-finite loss, naming the variables (shared, or whose task) and the batches since the last check, and
    pointing at the inputs.

    At the end of each epoch it also warns, once per task, when a task's epoch loss (or validation loss) is exactly
    0: kmtl's masked loss is exactly 0 in a batch without present labels, so the task had no labels in the whole
    epoch (every label was its missing marker, or every sample weight 0) and did not learn.

    Args:
        on_nan: str. `"stop"` sets `model.stop_training` (the current batch's update has been applied, as with
            `keras.callbacks.TerminateOnNaN`) and warns with the message; `"raise"` raises `FloatingPointError`
            with it, ending `fit` at once.
        check_weights: bool or int. Whether to check the weights for NaN and infinity: `True` as often as the 1%
            budget allows, an int `k` every `k` batches (1 names the exact batch), `False` never.

    Attributes:
        message: str or None. What the guard reported.
        nan_tasks: list of str. The tasks whose loss was not finite at the reported batch.
        nan_variables: list of str. Paths of the variables found not finite (when the losses were finite).
        unlabelled_tasks: list of str. Tasks warned about for having no labels in an epoch (`val_` prefixed for
            validation data).
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

    def __init__(self, on_nan: str = "stop", check_weights: bool | int = True):
        super().__init__()
        if on_nan not in ON_NAN:
            raise ValueError(f"Invalid value for `on_nan`. Expected one of {list(ON_NAN)}. Received: on_nan={on_nan!r}")
        self.on_nan = on_nan
        if isinstance(check_weights, bool) or not isinstance(check_weights, int) or check_weights < 1:
            if not isinstance(check_weights, bool):
                raise ValueError(
                    "Invalid value for `check_weights`. Expected a bool or an int >= 1. "
                    f"Received: check_weights={check_weights!r}"
                )
        self.check_weights = check_weights
        self._reset()

    def _reset(self):
        self.message, self.nan_tasks, self.nan_variables, self.epoch, self.batch = None, [], [], None, None
        self.unlabelled_tasks = []

    def on_train_begin(self, logs=None):
        self._reset()
        self._task_names = list(getattr(self.model, "task_names", []) or [])
        self._epoch, self._begin, self._last_logs = 0, 0, None
        every = None if self.check_weights is True else self.check_weights
        self._weights_check = _WeightsCheck(self.model, every) if self.check_weights else None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self._weights_check is not None:
            self._weights_check.epoch_begins()

    def on_train_batch_begin(self, batch, logs=None):
        self._begin = batch
        if self._weights_check is not None:
            self._weights_check.step_begins()

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        self._last_logs = logs
        # The total is the strategy's combination of the task losses (plus regularisation): a non-finite task loss
        # makes it non-finite at the same batch, so one test per batch suffices and the task losses are read then.
        # A strategy may keep a task's loss out of the total (a weight formed with `where`); those are read with the
        # weights check and at the epoch's end.
        if not _finite(logs.get("loss")):
            self._check_losses(batch, logs, total_bad=True)
        elif self._weights_check is not None and self._weights_check.due(batch):
            if not self._check_losses(batch, logs, total_bad=False):
                self._check_weights(batch)
        elif self._weights_check is None:
            self._check_losses(batch, logs, total_bad=False)

    def _check_losses(self, batch, logs, total_bad) -> bool:
        """Reports the tasks whose logged loss is not finite (or a non-finite total); True when it reported."""
        names = self._task_names or [k[: -len("_loss")] for k in logs if k.endswith("_loss") and k != "loss"]
        bad = [(name, logs[f"{name}_loss"]) for name in names if not _finite(logs.get(f"{name}_loss"))]
        if not bad and not total_bad:
            return False
        self.nan_tasks, self.epoch, self.batch = [name for name, _ in bad], self._epoch, batch
        if total_bad or self._weights_check is None:
            self._report(_message(self._epoch, self._begin, batch, bad, logs.get("loss")))
        else:
            # Found at a scheduled check, the total finite: the loss went at one of the batches since the last one.
            first = min(self._weights_check.first_unchecked, batch)
            self._report(_message(self._epoch, first, batch, bad, logs.get("loss"), why="checked every few batches"))
        return True

    def on_epoch_end(self, epoch, logs=None):
        if self._weights_check is not None and self.message is None and self._weights_check.unchecked():
            last = self._weights_check.last_batch
            if not self._check_losses(last, self._last_logs or {}, total_bad=False):
                self._check_weights(last)
        self._warn_unlabelled(epoch, logs or {})

    def _check_weights(self, batch):
        bad = self._weights_check.non_finite(batch)
        if bad:
            first = self._weights_check.first_unchecked
            self.nan_variables, self.epoch, self.batch = [path for path, _ in bad], self._epoch, batch
            self._report(_weights_message(self._epoch, first, batch, bad))

    def _report(self, message):
        self.message = message
        if self.on_nan == "raise":
            raise FloatingPointError(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        self.model.stop_training = True

    def _warn_unlabelled(self, epoch, logs):
        tasks = {t.name: t for t in getattr(self.model, "tasks", ())}
        for name in self._task_names:
            for prefix, data in (("", "the training data"), ("val_", "validation_data")):
                if logs.get(f"{prefix}{name}_loss") != 0.0 or f"{prefix}{name}" in self.unlabelled_tasks:
                    continue
                self.unlabelled_tasks.append(f"{prefix}{name}")
                marker = f" ({tasks[name].missing})" if name in tasks else ""
                warnings.warn(
                    f"Task '{name}' had no labels in {data} in epoch {epoch}: its loss was exactly 0 at every batch, "
                    f"as when every label is the task's missing marker{marker} or every sample weight is 0, so "
                    + ("it did not learn." if not prefix else "its validation metrics mean nothing.")
                    + " Check that the task's labels reach the data.",
                    UserWarning,
                    stacklevel=2,
                )


class _WeightsCheck:
    """A compiled all-finite test of the model's weights, run every `every` batches, `every` set from timings."""

    BUDGET = 0.004  # fraction of the step time the check may take on average

    def __init__(self, model, every=None):
        self.model, self.fixed = model, every is not None
        self.every, self.checked_at, self.last_batch = every or 1, -1, -1
        self._fn, self._step_start, self._step_time = None, None, None

    @property
    def first_unchecked(self) -> int:
        return self.checked_at + 1

    def epoch_begins(self):
        self.checked_at, self.last_batch = -1, -1

    def step_begins(self):
        self._step_start = time.perf_counter()

    def due(self, batch) -> bool:
        if self._step_start is not None:
            self._step_time = time.perf_counter() - self._step_start
        self.last_batch = batch
        return batch - self.checked_at >= self.every

    def unchecked(self) -> bool:
        return self.last_batch > self.checked_at

    def non_finite(self, batch):
        """`[(variable path, owner)]` of the non-finite weights; empty when all are finite."""
        variables = self._variables()
        start = time.perf_counter()
        finite = bool(self._fn()) if variables else True
        cost = time.perf_counter() - start
        if self._step_time and not self.fixed:
            self.every = max(1, min(1000, math.ceil(cost / (self.BUDGET * self._step_time))))
        if finite:
            self.checked_at = batch
            return []
        owners = _owners(self.model)
        return [
            (v.path, owners.get(id(v), ""))
            for v in variables
            if not np.all(np.isfinite(keras.ops.convert_to_numpy(v)))
        ]

    def _variables(self):
        variables = [v for v in self.model.weights if keras.backend.is_float_dtype(v.dtype)]
        if self._fn is None and variables:
            # One compiled check per model and set of weights, kept across `fit` calls: `fit` adds a new guard each
            # time, and tracing the check anew (~0.1 s, and TensorFlow's retracing warning) cost every short fit.
            key = tuple(id(v) for v in variables)
            cached = _COMPILED_CHECKS.get(self.model)
            if cached is None or cached[0] != key:
                cached = (key, _all_finite_fn(variables))
                _COMPILED_CHECKS[self.model] = cached
            self._fn = cached[1]
        return variables


_COMPILED_CHECKS = weakref.WeakKeyDictionary()  # model -> (ids of its float weights, compiled all-finite test)


_HALF = ("float16", "bfloat16")  # summed in float32: a half-precision sum overflows long before its entries do


def _all_finite_fn(variables):
    import tensorflow as tf

    @tf.function
    def all_finite():
        # A NaN or infinite entry makes its variable's sum NaN or infinite: one pass over the weights without a
        # boolean copy of them, ~1.6x faster than testing every entry. A sum that overflows with finite entries
        # reads as non-finite, and `non_finite` then tests the entries and finds none.
        sums = [tf.reduce_sum(tf.cast(v, tf.float32) if v.dtype in _HALF else v) for v in variables]
        return tf.reduce_all(tf.stack([tf.math.is_finite(total) for total in sums]))

    return all_finite


def _owners(model):
    """`{id(variable): "shared" or "task 'name'"}` for a MultiTaskModel's trainable variables."""
    owners = {}
    try:
        owners.update({id(v): "shared" for v in model.shared_variables})
        for name, variables in model.task_variables.items():
            owners.update({id(v): f"task '{name}'" for v in variables})
    except AttributeError:  # not a MultiTaskModel
        pass
    return owners


def _weights_message(epoch, first, last, bad) -> str:
    where = f"batch {last}" if first >= last else f"one of batches {first}-{last} (checked every few batches)"
    named = ", ".join(f"'{path}'" + (f" ({owner})" if owner else "") for path, owner in bad[:5])
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    return (
        f"Weights became NaN or infinite at epoch {epoch}, {where}, while every task loss stayed finite: {named}"
        f"{more}. The likely cause is a NaN or infinite value in the inputs of that batch (oneDNN's ReLU maps NaN "
        "to 0, so the losses do not show it and the heads then output constants); check the input features, e.g. "
        "with np.isfinite, and impute or drop the bad values."
    )


def _finite(value) -> bool:
    """True for a finite number, and for a missing entry (nothing to judge)."""
    if value is None:
        return True
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


def _message(epoch, begin, end, bad, total, why="steps_per_execution > 1") -> str:
    where = f"batch {end}" if begin == end else f"one of batches {begin}-{end} ({why})"
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
