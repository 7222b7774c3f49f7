"""What `compile` derives from a model's tasks (loss functions, metrics, per-task trackers) and how a batch updates it."""

from __future__ import annotations

from typing import Mapping

import keras
from keras import ops

from kmtl.losses import label_entries, resolve_loss
from kmtl.metrics import resolve_metrics


class Untracked:
    """Holds a value out of Keras's attribute tracking (which would adopt variables found in lists or tuples)."""

    def __init__(self, value=None):
        self.value = value


class TaskState:
    """What `compile` derives from the tasks: loss functions, metric objects and per-task trackers.

    Kept outside Keras's automatic tracking so recompiling replaces it cleanly; `MultiTaskModel.metrics`
    lists its metrics so Keras resets and reports them.
    """

    def __init__(self, tasks, loss_overrides, metric_overrides):
        self.loss_fns = {t.name: resolve_loss(loss_overrides.get(t.name, t.loss), task_name=t.name) for t in tasks}
        self.metrics = {t.name: resolve_metrics(t, metric_overrides.get(t.name)) for t in tasks}
        self.loss_trackers = [keras.metrics.Mean(name=f"{t.name}_loss") for t in tasks]
        self.weight_trackers = [keras.metrics.Mean(name=f"{t.name}_weight") for t in tasks]

    def update_loss_trackers(self, losses, weights, batch_size):
        """Records one batch; weighted by its size, as Keras weights its own `loss`, so `loss` = sum of tasks'."""
        for i, (loss_tracker, weight_tracker) in enumerate(zip(self.loss_trackers, self.weight_trackers)):
            loss_tracker.update_state(losses[i], sample_weight=batch_size)
            weight_tracker.update_state(weights[i], sample_weight=batch_size)

    def all_metrics(self):
        out = []
        for loss_tracker, weight_tracker in zip(self.loss_trackers, self.weight_trackers):
            out += [loss_tracker, weight_tracker]
        for task_metrics in self.metrics.values():
            out += task_metrics
        return out


def update_metric(task, metric, y_true, y_pred, sample_weight):
    y_true, y_pred, _, weights = label_entries(task, y_true, y_pred, sample_weight)
    if getattr(metric, "entrywise", True):
        metric.update_state(y_true, y_pred, sample_weight=weights)
        return
    # Whole-vector metrics (e.g. landmark NME) see one row per example (per example and step for a per-step task),
    # and a row only when all of its entries are present.
    per_row = ops.min(ops.reshape(weights, (-1, task.label_width)), axis=-1)
    filled = ops.reshape(y_true, (-1, task.label_width))
    metric.update_state(filled, ops.reshape(y_pred, (-1, task.output_units)), sample_weight=per_row)


def batch_size(y_pred):
    return ops.shape(keras.tree.flatten(y_pred)[0])[0]


def task_sample_weight(sample_weight, name):
    if isinstance(sample_weight, Mapping):
        return sample_weight.get(name)
    return sample_weight
