"""Masked task losses: missing labels contribute nothing, and a task's loss is the mean over its present labels."""

from __future__ import annotations

from typing import Any, Callable

import keras
from keras import ops

from kmtl.tasks import Task


def present_mask(task: Task, y_true):
    """Boolean tensor, True where a label entry is present (not the task's missing marker)."""
    y_true = ops.convert_to_tensor(y_true)
    if task.missing_is_nan:
        if not keras.backend.is_float_dtype(y_true.dtype):
            return ops.ones_like(y_true, dtype="bool")
        return ops.logical_not(ops.isnan(y_true))
    return ops.not_equal(y_true, ops.cast(task.missing, y_true.dtype))


def label_entries(task: Task, y_true, y_pred, sample_weight=None):
    """Flattens a task's labels and predictions to one row per label entry.

    A label entry is the atomic unit a missing marker applies to: one class id (binary, multiclass) or one
    component (multilabel, regression). Missing entries are filled with a valid value so no loss or metric sees
    the marker.

    Args:
        task: `Task`.
        y_true: tensor of labels, `(batch,)` or `(batch, label_width)`.
        y_pred: tensor of head outputs, `(batch, output_units)`.
        sample_weight: optional tensor `(batch,)` of per-example weights.

    Returns:
        Tuple `(y_true, y_pred, present, weights)`: multiclass `(N,)`, `(N, num_classes)`; other kinds `(N, 1)`,
        `(N, 1)`; `present` `(N,)` float32, 1 where the label is present, 0 where it is missing; `weights` `(N,)`,
        `present` times the example's sample weight.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.convert_to_tensor(y_true)
    if task.kind == "multiclass":
        y_true = ops.reshape(y_true, (-1,))
        y_pred = ops.reshape(y_pred, (-1, task.num_classes))
    else:
        y_true = ops.reshape(y_true, (-1, 1))
        y_pred = ops.reshape(y_pred, (-1, 1))
    present = present_mask(task, y_true)
    y_true = ops.where(present, y_true, ops.zeros_like(y_true))
    if task.kind != "multiclass":
        y_true = ops.cast(y_true, y_pred.dtype)
    present = ops.cast(ops.reshape(present, (-1,)), "float32")
    weights = present
    if sample_weight is not None:
        sample_weight = ops.cast(ops.reshape(sample_weight, (-1, 1)), "float32")
        per_entry = ops.broadcast_to(sample_weight, (ops.shape(sample_weight)[0], task.label_width))
        weights = present * ops.reshape(per_entry, (-1,))
    return y_true, y_pred, present, weights


def resolve_loss(loss: Any) -> Callable:
    """Returns a function `(y_true, y_pred) -> per-entry values` for a loss name, function or `Loss` object."""
    if isinstance(loss, keras.losses.Loss):
        return loss.call
    if isinstance(loss, str):
        fn = keras.losses.get(loss)
        if isinstance(fn, keras.losses.Loss):
            return fn.call
        return fn
    if callable(loss):
        return loss
    raise ValueError(f"Invalid value for `loss`. Expected a name, a function or a keras.losses.Loss. Received: {loss!r}")


def masked_loss(task: Task, loss_fn: Callable, y_true, y_pred, sample_weight=None):
    """Mean of `loss_fn` over the present label entries of one task; 0 (never NaN) when none is present.

    Regression tasks with `target_offset`/`target_scale` are scored on standardised values `(y - offset) / scale`.

    Args:
        task: `Task`.
        loss_fn: function returning one value per entry, as from `resolve_loss`.
        y_true: labels, missing entries marked with `task.missing`.
        y_pred: head outputs.
        sample_weight: optional per-example weights `(batch,)`.

    Returns:
        Scalar float32 tensor.
    """
    y_true, y_pred, present, weights = label_entries(task, y_true, y_pred, sample_weight)
    if task.standardizes_targets:
        # Measure the loss in standardised units (see `Task.target_scale`).
        y_true = (y_true - task.target_offset) / task.target_scale
        y_pred = (y_pred - task.target_offset) / task.target_scale
    values = ops.cast(ops.reshape(loss_fn(y_true, y_pred), (-1,)), "float32")
    # Missing entries hold filled-in labels; `where` keeps their (finite or not) values out of the sum entirely.
    total = ops.sum(ops.where(present > 0, values * weights, ops.zeros_like(values)))
    # Like Keras's "sum_over_batch_size", the mean is over present labels whatever their sample weights.
    return total / ops.maximum(ops.sum(present), 1.0)
