"""What `compile` derives from a model's tasks (loss functions, metrics, per-task trackers) and how a batch updates it."""

from __future__ import annotations

from typing import Mapping

import keras
from keras import ops

from kmtl.losses import label_entries, resolve_loss
from kmtl.metrics import resolve_metrics
from kmtl.metrics.grouped import grouped_metric, has_grouped_form


class Untracked:
    """Holds a value out of Keras's attribute tracking (which would adopt variables found in lists or tuples)."""

    def __init__(self, value=None):
        self.value = value


class TaskState:
    """What `compile` derives from the tasks: loss functions, metric objects and per-task trackers.

    Kept outside Keras's automatic tracking so recompiling replaces it cleanly; `MultiTaskModel.metrics`
    lists its metrics so Keras resets and reports them.

    Alike tasks (`metric_groups`) share one `kmtl.metrics.grouped.GroupedMetric` per metric instead of a metric object
    each, listed per task as `TrackedValue`s under the names the tasks' own metrics have (`<task>_<metric>`).

    Attributes:
        loss_fns: dict `{task: loss function}`.
        metrics: dict `{task: [metrics]}`: the metrics updated task by task (of tasks in no metric group).
        logged: dict `{task: [metrics]}`: every task's metrics as `Model.metrics` lists them, in the task's order.
        metric_groups: list of `(task indices, [GroupedMetric])`.
        loss_groups: list of lists of task indices (see `loss_groups`).
    """

    def __init__(self, tasks, loss_overrides, metric_overrides):
        self.loss_fns = {t.name: resolve_loss(loss_overrides.get(t.name, t.loss), task_name=t.name) for t in tasks}
        self.trackers = TaskTrackers([t.name for t in tasks])
        self.loss_groups = loss_groups(tasks, self.loss_fns)
        self.metric_groups, self.metrics, self.logged = _group_metrics(tasks, metric_overrides)

    def update_loss_trackers(self, losses, weights, batch_size):
        """Records one batch; weighted by its size, as Keras weights its own `loss`, so `loss` = sum of tasks'."""
        self.trackers.update_state(losses, weights, batch_size)

    def all_metrics(self):
        out = list(self.trackers.views)
        for task_metrics in self.logged.values():
            out += task_metrics
        return out


class TaskTrackers(keras.metrics.Metric):
    """Every task's mean loss and mean weight in one metric variable, whatever the number of tasks.

    Keras resets every metric variable, eagerly, before each `train_on_batch` (~70 µs each): one `Mean` per task
    loss and per task weight made that 4T variables; this is one vector `(2T + 1,)` (the loss sums, the weight sums
    and the count), updated by one op and read by one op. It is listed in `MultiTaskModel.metrics` as one
    `TrackedValue` per logged value (`<task>_loss`, `<task>_weight`, in the order they always had), so
    `metrics_names`, `History`, TensorBoard and the progress bar see the same names as with one `Mean` each.

    Args:
        task_names: list of str, in task order.
        name: str. The metric's name.
    """

    def __init__(self, task_names, name="task_trackers", **kwargs):
        super().__init__(name=name, **kwargs)
        self.task_names = list(task_names)
        self.totals = self.add_variable(
            shape=(2 * len(self.task_names) + 1,), initializer="zeros", dtype="float32", name="totals"
        )
        self.keys = [f"{t}_{kind}" for t in self.task_names for kind in ("loss", "weight")]
        # Out of Keras's tracking: a tracked list of metrics would add the first value's variable (see
        # `TrackedValue.variables`) to this metric's own a second time.
        self._views = Untracked(tracked_values(self, self.keys))

    @property
    def views(self):
        """One `TrackedValue` per logged value, in log order."""
        return self._views.value

    def update_state(self, losses, weights, batch_size):
        """Adds one batch: each task's loss and weight weighted by the batch size (as Keras's `Mean` with
        `sample_weight=batch_size`)."""
        size = ops.cast(ops.reshape(batch_size, (1,)), "float32")
        losses = ops.cast(ops.reshape(losses, (-1,)), "float32")
        weights = ops.cast(ops.reshape(weights, (-1,)), "float32")
        self.totals.assign_add(ops.concatenate([losses * size, weights * size, size]))

    def result(self):
        """`{"<task>_loss": mean, "<task>_weight": mean, ...}` in task order, the means formed by one op."""
        num_tasks = len(self.task_names)
        count = self.totals[-1]
        means = ops.divide_no_nan(self.totals[:-1], ops.broadcast_to(count, (2 * num_tasks,)))
        # Interleave (loss_0, weight_0, loss_1, ...) with one transpose, then one unstack for all values.
        values = ops.unstack(ops.reshape(ops.transpose(ops.reshape(means, (2, num_tasks))), (-1,)))
        return dict(zip(self.keys, values))

    def get_config(self):
        return {"task_names": self.task_names, "name": self.name}


class TrackedValue(keras.metrics.Metric):
    """One value of a metric that holds several (`TaskTrackers`, `GroupedMetric`), listed in a model's `metrics`
    under its own name (e.g. `age_loss`, `smiling_auc`).

    It holds no variable: resetting the first value of a source resets all of them, the others' resets cost nothing;
    `MultiTaskModel.get_metrics_result` reads all values at once from the source, whose `result()` is a dict.

    Args:
        source: the metric holding the values; its `result()` is a dict with a key `name`.
        slot: int. The value's position among the source's values.
        name: str. The value's key in the source's result.
    """

    def __init__(self, source, slot, name):
        super().__init__(name=name)
        self._source = Untracked(source)
        self.slot = slot

    @property
    def source(self):
        return self._source.value

    @property
    def variables(self):
        # The first value carries the source's variables, so `Model.metrics_variables` (what backups save and
        # restore, and what distribution strategies sync) holds them exactly once.
        return list(self.source.variables) if self.slot == 0 else []

    def update_state(self, *args, **kwargs):
        raise RuntimeError(f"`{self.name}` is updated through its {type(self.source).__name__}, all tasks at once.")

    def reset_state(self):
        if self.slot == 0:
            self.source.reset_state()

    def result(self):
        return self.source.result()[self.name]


def tracked_values(source, keys):
    """One `TrackedValue` per key of `source`'s result, in order."""
    return [TrackedValue(source, slot, key) for slot, key in enumerate(keys)]


def loss_groups(tasks, loss_fns):
    """The tasks as groups whose masked losses are computed together: lists of task indices, in task order.

    Tasks with one label entry per example (not per step or pixel), of the same kind, output width and missing
    marker, whose losses are the same Keras loss, form one group (`kmtl.losses.masked.stacked_masked_losses`); every
    other task is a group of its own. At T = 128 alike tasks the loss is a few ops instead of a few per task.
    """
    groups, keyed = [], {}
    for i, task in enumerate(tasks):
        key = _stacking_key(task, loss_fns[task.name])
        if key is None:
            groups.append([i])
        elif key in keyed:
            keyed[key].append(i)
        else:
            keyed[key] = [i]
            groups.append(keyed[key])
    return groups


def _stacking_key(task, loss_fn):
    """What tasks must share to have their losses computed together, or None for a task computed alone."""
    if task.per_step or task.per_pixel or task.label_width != 1:
        return None
    owner = getattr(loss_fn, "__self__", None)
    if owner is not None:
        # A `Loss` object's `call`: alike only when it is the same Keras object (a config need not hold every
        # argument: Keras 3.15's `Huber.get_config()` omits `delta`).
        if not isinstance(owner, keras.losses.Loss) or not type(owner).__module__.startswith("keras."):
            return None
        loss_key = ("object", id(owner))
    elif callable(loss_fn) and getattr(loss_fn, "__module__", "").startswith("keras."):
        loss_key = loss_fn  # a `keras.losses` function: it maps the last axis to one value
    else:
        return None  # a user's function may not broadcast over a task axis
    missing = "nan" if task.missing_is_nan else repr(task.missing)
    return (task.kind, task.output_units, missing, loss_key)


def _group_metrics(tasks, overrides):
    """Resolves the tasks' metrics and groups them: `(metric_groups, per-task metrics, logged metrics)` (see
    `TaskState`).

    Tasks with one label entry per example, of the same kind, output width and missing marker, asking for the same
    metrics (names, or metric objects of one type and configuration) that all have a grouped form, share one
    `GroupedMetric` per metric; so does a single such task (its AUC is then built with the model, not in the first
    trace). A group resolves its metrics once, for its first task, so T alike tasks do not make T metric objects (and
    AUC variables) only to drop them. Every other task updates its own metric objects.
    """
    specs = {t.name: list(t.metrics if overrides.get(t.name) is None else overrides[t.name]) for t in tasks}
    keyed = {}
    for i, task in enumerate(tasks):
        keyed.setdefault(_metric_key(task, specs[task.name]), []).append(i)
    groups, own, logged = [], {}, {}
    for key, indices in keyed.items():
        first = tasks[indices[0]]
        metrics = resolve_metrics(first, specs[first.name])
        if key is None or not all(has_grouped_form(m) for m in metrics):
            for i in indices:
                task = tasks[i]
                own[task.name] = metrics if task is first else resolve_metrics(task, specs[task.name])
                logged[task.name] = list(own[task.name])
            continue
        names = [tasks[i].name for i in indices]
        suffixes = [m.name[len(first.name) + 1:] for m in metrics]  # resolved names are `<task>_<metric>`
        grouped = [grouped_metric(m, [f"{name}_{suffix}" for name in names]) for m, suffix in zip(metrics, suffixes)]
        for name in names:
            own[name], logged[name] = [], []
        for metric in grouped:
            for name, value in zip(names, tracked_values(metric, metric.keys)):
                logged[name].append(value)
        groups.append((indices, grouped))
    order = [t.name for t in tasks]
    return groups, {n: own[n] for n in order}, {n: logged[n] for n in order}


def _metric_key(task, specs):
    """What tasks must share to have their metrics computed together, or None for a task updating its own."""
    if not specs or task.per_step or task.per_pixel or task.label_width != 1:
        return None
    asked = tuple(
        m if isinstance(m, str) else (type(m), repr(sorted((k, v) for k, v in m.get_config().items() if k != "name")))
        for m in specs
    )
    missing = "nan" if task.missing_is_nan else repr(task.missing)
    return (task.kind, task.output_units, missing, asked)


def update_metric(task, metric, y_true, y_pred, sample_weight, entries=None):
    """Updates one of a task's metrics with its present label entries (`entries`: `label_entries`'s result, when
    the caller already has it)."""
    y_true, y_pred, _, weights = entries or label_entries(task, y_true, y_pred, sample_weight)
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
