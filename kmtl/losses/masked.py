"""Masked task losses: missing labels contribute nothing, and a task's loss is the mean over its present labels.

A per-step task (`Task(per_step=True)`) is scored the same way over its (example, step) label entries, so padded and
unlabelled steps (marked `missing`, or masked by a Keras mask on the predictions) count for nothing.
"""

from __future__ import annotations

from typing import Callable

import keras
from keras import ops

from kmtl._keras_internals import keras_logits, keras_mask, set_keras_logits

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
    component (multilabel, regression), of one example or, for a per-step task, of one (example, step). Missing
    entries are filled with a valid value so no loss or metric sees the marker. Where the predictions carry a Keras
    mask (`Masking`, `mask_zero`), a masked step counts as missing.

    Args:
        task: `Task`.
        y_true: tensor of labels, `(batch,)` or `(batch, label_width)`; per-step tasks `(batch, steps)` or
            `(batch, steps, label_width)`.
        y_pred: tensor of head outputs, `(batch, output_units)`; per-step tasks `(batch, steps, output_units)`.
        sample_weight: optional tensor of weights, `(batch,)` per example or, for a per-step task, `(batch, steps)`
            per step.

    Returns:
        Tuple `(y_true, y_pred, present, weights)`: multiclass `(N,)`, `(N, num_classes)`; other kinds `(N, 1)`,
        `(N, 1)`; `present` `(N,)` float32, 1 where the label is present, 0 where it is missing; `weights` `(N,)`,
        `present` times the example's (or step's) sample weight.

    Example:

    >>> task = Task("t", "binary", per_step=True)
    >>> _, _, present, _ = label_entries(task, [[1, 0, -1]], [[[0.9], [0.2], [0.5]]])
    >>> keras.ops.convert_to_numpy(present).tolist()
    [1.0, 1.0, 0.0]
    """
    mask = keras_mask(y_pred)  # read before any op: new tensors do not carry it
    logits = keras_logits(y_pred)
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.convert_to_tensor(y_true)
    y_pred_rank = len(y_pred.shape)
    units = task.num_classes if task.kind == "multiclass" else 1
    y_true = ops.reshape(y_true, (-1,) if task.kind == "multiclass" else (-1, 1))
    y_pred = ops.reshape(y_pred, (-1, units))
    if logits is not None:
        # A sigmoid's or softmax's logits, kept through the reshape (see `_stack_predictions`).
        set_keras_logits(y_pred, ops.reshape(logits, (-1, units)))
    present = present_mask(task, y_true)
    y_true = ops.where(present, y_true, ops.zeros_like(y_true))
    if task.kind != "multiclass":
        y_true = ops.cast(y_true, y_pred.dtype)
    present = ops.cast(ops.reshape(present, (-1,)), "float32")
    if mask is not None:
        present = present * _mask_entries(task, mask, y_pred_rank)
    weights = present
    if sample_weight is not None:
        # (batch,) or (batch, 1) weights every entry of an example; (batch, steps) every entry of a step.
        sample_weight = ops.cast(ops.convert_to_tensor(sample_weight), "float32")
        rows = ops.shape(sample_weight)[0]
        sample_weight = ops.reshape(sample_weight, (rows, -1, 1))
        weights = ops.reshape(ops.reshape(present, (rows, -1, task.label_width)) * sample_weight, (-1,))
    return y_true, y_pred, present, weights


def _mask_entries(task: Task, mask, y_pred_rank: int):
    """A prediction mask `(batch[, steps])` as one float per label entry, in `label_entries` order."""
    mask = ops.convert_to_tensor(mask)
    if len(mask.shape) != y_pred_rank - 1:
        raise ValueError(
            f"Task '{task.name}': the Keras mask on its predictions has shape {tuple(mask.shape)}; expected one "
            f"value per prediction row (rank {y_pred_rank - 1})."
        )
    mask = ops.cast(ops.reshape(mask, (-1, 1)), "float32")
    return ops.reshape(ops.broadcast_to(mask, (ops.shape(mask)[0], task.label_width)), (-1,))


def masked_loss(task: Task, loss_fn: Callable, y_true, y_pred, sample_weight=None):
    """Mean of `loss_fn` over the present label entries of one task; 0 (never NaN) when none is present.

    Regression tasks with `target_offset`/`target_scale` are scored on standardised values `(y - offset) / scale`.

    Args:
        task: `Task`.
        loss_fn: function returning one value per entry, as from `resolve_loss`.
        y_true: labels, missing entries marked with `task.missing`; per-step tasks carry a time axis after the
            batch axis, padded steps marked missing too.
        y_pred: head outputs; a Keras mask on them (from `Masking` or `mask_zero`) marks masked steps missing.
        sample_weight: optional weights, `(batch,)` per example or, for a per-step task, `(batch, steps)`.

    A loss object with a `token_values(y_true, y_pred, present, task_name)` method (e.g. `kmtl.losses.CRFLoss`)
    scores whole sequences and shares each one's value among its present steps (see `_sequence_loss`).

    A loss object with a `masked_call(y_true, y_pred, present, weights, rows)` method (e.g. `kmtl.losses.DiceLoss`)
    gets the `label_entries` and the number of examples, and returns the task's loss itself.

    Returns:
        Scalar float32 tensor.
    """
    tokens = getattr(getattr(loss_fn, "__self__", loss_fn), "token_values", None)
    if tokens is not None:
        return _sequence_loss(task, tokens, y_true, y_pred, sample_weight)
    grouped = getattr(getattr(loss_fn, "__self__", loss_fn), "masked_call", None)
    if grouped is not None:
        # A loss over groups of entries (Dice: each image's pixels) reduces the present entries itself.
        rows = ops.shape(y_true)[0]
        return grouped(*label_entries(task, y_true, y_pred, sample_weight), rows)
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


def _sequence_loss(task: Task, token_values: Callable, y_true, y_pred, sample_weight=None):
    """A loss over whole sequences (e.g. `kmtl.losses.CRFLoss`), as a mean over the present label entries.

    The loss object's `token_values(y_true, y_pred, present, task_name)` gets the unflattened labels and outputs and
    the present steps `(batch, steps)`, and shares each sequence's value among them; the mean below then weighs and
    counts entries like any per-step task's.
    """
    _, _, present, weights = label_entries(task, y_true, y_pred, sample_weight)
    rows = ops.shape(ops.convert_to_tensor(y_true))[0]
    values = token_values(y_true, y_pred, ops.reshape(present, (rows, -1)), task.name)
    values = ops.cast(ops.reshape(values, (-1,)), "float32")
    total = ops.sum(ops.where(present > 0, values * weights, ops.zeros_like(values)))
    return total / ops.maximum(ops.sum(present), 1.0)


def stacked_label_entries(tasks, y_trues, y_preds, sample_weight=None):
    """The label entries of several alike tasks as matrices with a task axis: `label_entries` for all at once.

    The tasks must have one label entry per example (binary, multiclass, or one-output regression and multilabel),
    neither `per_step` nor `per_pixel`, and the same kind, output width and missing marker. Labels and predictions
    are joined with one op each (no op per task when they already have the `(batch, 1)` and `(batch, units)` shapes
    heads and datasets give them).

    Args:
        tasks: list of G alike `Task`s.
        y_trues: list of G label tensors, `(batch,)` or `(batch, 1)`.
        y_preds: list of G prediction tensors, `(batch, units)`; a Keras mask on one `(batch,)` marks its masked
            examples missing.
        sample_weight: optional weights `(batch,)` shared by the tasks, or a list of G such weights or None.

    Returns:
        Tuple `(y_true, y_pred, present, weights)`: labels `(batch, G)` with missing entries filled with 0 (a
        multiclass task's class ids; the other kinds' labels cast to the predictions' dtype), predictions
        `(batch, G, units)`, and float32 `(batch, G)` matrices: 1 where a label is present, and `present` times the
        sample weight.
    """
    first = tasks[0]
    masks = [keras_mask(y) for y in y_preds]  # read before any op: new tensors do not carry it
    y_trues = [ops.convert_to_tensor(y) for y in y_trues]
    dtypes = {y.dtype for y in y_trues}
    dtype = y_trues[0].dtype if len(dtypes) == 1 else "float32"
    y_trues = [y if y.dtype == dtype else ops.cast(y, dtype) for y in y_trues]
    if all(len(y.shape) == 2 and y.shape[1] == 1 for y in y_trues):
        y_true = ops.concatenate(y_trues, axis=1)  # (batch, G)
    else:
        y_true = ops.stack([ops.reshape(y, (-1,)) for y in y_trues], axis=1)
    y_pred = _stack_predictions(y_preds, first.output_units)  # (batch, G, units)
    present = present_mask(first, y_true)
    y_true = ops.where(present, y_true, ops.zeros_like(y_true))
    if first.kind != "multiclass":
        y_true = ops.cast(y_true, y_pred.dtype)
    present = ops.cast(present, "float32")
    if any(m is not None for m in masks):
        ones = ops.ones_like(present[:, 0])
        present = present * ops.stack([ones if m is None else _as_column(m) for m in masks], axis=1)
    weights = present
    if isinstance(sample_weight, (list, tuple)):
        if any(w is not None for w in sample_weight):
            ones = ops.ones_like(present[:, 0])
            weights = present * ops.stack([ones if w is None else _as_column(w) for w in sample_weight], axis=1)
    elif sample_weight is not None:
        weights = present * ops.reshape(ops.cast(ops.convert_to_tensor(sample_weight), "float32"), (-1, 1))
    return y_true, y_pred, present, weights


def _stack_predictions(y_preds, units: int):
    """G prediction tensors `(batch, units)` (or reshapable to it) as one `(batch, G, units)` tensor.

    Where every one is a sigmoid's or softmax's output that carries its logits (`keras_logits`), the logits are
    stacked too and left on the result the same way, so a Keras crossentropy computes the loss from the logits in one
    fused op, as it does for each output alone (stacking hides the activation from it otherwise: it would take logs of
    clipped probabilities, slower and less exact).
    """
    logits = [keras_logits(y) for y in y_preds]
    y_pred = _stack(y_preds, units)
    if all(x is not None for x in logits):
        set_keras_logits(y_pred, _stack(logits, units))
    return y_pred


def _stack(tensors, units: int):
    tensors = [ops.convert_to_tensor(y) for y in tensors]
    tensors = [y if len(y.shape) == 2 and y.shape[1] == units else ops.reshape(y, (-1, units)) for y in tensors]
    return ops.stack(tensors, axis=1)


def _as_column(values):
    """A `(batch,)` or `(batch, 1)` mask or weight as a float32 `(batch,)` vector."""
    return ops.reshape(ops.cast(ops.convert_to_tensor(values), "float32"), (-1,))


def stacked_masked_losses(tasks, loss_fn: Callable, y_trues, y_preds, sample_weight=None):
    """`masked_loss` of several alike tasks at once, with one op where the tasks take one op each.

    The tasks are alike as for `stacked_label_entries`, and share `loss_fn`, a Keras loss that maps the last axis
    to one value (as every `keras.losses` loss does): their labels become one `(batch, G)` matrix and their
    predictions one `(batch, G, units)` tensor. Each task's value equals its `masked_loss` (to float round-off: sums
    run over a matrix's column instead of a vector).

    Args:
        tasks: list of G alike `Task`s.
        loss_fn: function returning one value per entry, as from `resolve_loss`.
        y_trues: list of G label tensors, `(batch,)` or `(batch, 1)`.
        y_preds: list of G prediction tensors, `(batch, units)`.
        sample_weight: optional weights `(batch,)` shared by the tasks, or a list of G such weights or None.

    Returns:
        Tuple `(losses, counts)`, float32 tensors `(G,)`: each task's masked mean loss and its number of present
        labels.
    """
    y_true, y_pred, present, weights = stacked_label_entries(tasks, y_trues, y_preds, sample_weight)
    if tasks[0].kind != "multiclass":
        y_true = ops.expand_dims(y_true, -1)  # (batch, G, 1)
    if any(t.standardizes_targets for t in tasks):
        offset = ops.convert_to_tensor([[t.target_offset] for t in tasks], dtype=y_pred.dtype)
        scale = ops.convert_to_tensor([[t.target_scale] for t in tasks], dtype=y_pred.dtype)
        y_true = (y_true - offset) / scale
        y_pred = (y_pred - offset) / scale
    values = ops.reshape(ops.cast(loss_fn(y_true, y_pred), "float32"), ops.shape(present))
    total = ops.sum(ops.where(present > 0, values * weights, ops.zeros_like(values)), axis=0)
    counts = ops.sum(present, axis=0)
    return total / ops.maximum(counts, 1.0), counts
