"""One metric for many alike tasks: variables with a task axis, one update and one result, reported per task.

At T = 128 binary tasks the default metrics were 256 metric objects, each a few ops per step and each an AUC's lazily
built variables (a second trace of the train step); a `GroupedMetric` serves all tasks of a group with the ops of
one metric. It is made from the tasks' own metric objects (`grouped_metric`), keeps their names as its result's
keys (`<task>_<metric>`), and gives the same values: the weighted mean of the same per-entry values, or the same
confusion counts.
"""

from __future__ import annotations

import keras
from keras import ops


class GroupedMetric(keras.metrics.Metric):
    """Base class: G tasks' copies of one metric, updated from `(batch, G)` label entries in one go.

    A subclass defines `update_state(y_true, y_pred, sample_weight)`, which adds one batch (`y_true` `(batch, G)`
    labels with missing entries filled with a valid value by `stacked_label_entries`, `y_pred` `(batch, G, units)`,
    `sample_weight` float32 `(batch, G)`: 0 for a missing entry, else its sample weight), and `values()`, the G
    results as one `(G,)` tensor; `result()` splits that into `{key: value}`.

    Args:
        keys: list of G str. The tasks' metric names (`<task>_<metric>`), the keys of `result()`.
        name: str. The metric's name.
    """

    def __init__(self, keys, name="grouped_metric", **kwargs):
        super().__init__(name=name, **kwargs)
        self.keys = list(keys)

    @property
    def num_tasks(self) -> int:
        return len(self.keys)

    def result(self):
        """`{key: value}` for the G tasks, in task order, split from one tensor by one op."""
        return dict(zip(self.keys, ops.unstack(self.values())))

    def get_config(self):
        return {"keys": self.keys, "name": self.name}


class GroupedMean(GroupedMetric):
    """The weighted mean of a per-entry function, per task (Keras's `MeanMetricWrapper` and `Mean`, with a task
    axis); `root=True` takes its square root (`RootMeanSquaredError`).

    Args:
        keys: list of G str.
        fn: function `(y_true, y_pred) -> per-entry values`, called with the entries flattened as `label_entries`
            gives them to a task's own metric: labels `(N,)` (multiclass) or `(N, 1)`, predictions `(N, units)`.
        root: bool. Whether the result is the square root of the mean.
    """

    def __init__(self, keys, fn, root=False, name="grouped_mean", **kwargs):
        super().__init__(keys, name=name, **kwargs)
        self.fn = fn
        self.root = root
        self.totals = self.add_variable(shape=(self.num_tasks,), initializer="zeros", name="totals")
        self.counts = self.add_variable(shape=(self.num_tasks,), initializer="zeros", name="counts")

    def update_state(self, y_true, y_pred, sample_weight):
        shape = ops.shape(sample_weight)
        units = y_pred.shape[-1]
        labels = ops.reshape(y_true, (-1,) if len(y_true.shape) == 2 and units > 1 else (-1, 1))
        values = self.fn(labels, ops.reshape(y_pred, (-1, units)))
        values = ops.reshape(ops.cast(values, self.dtype), shape)
        weights = ops.cast(sample_weight, self.dtype)
        self.totals.assign_add(ops.sum(values * weights, axis=0))
        self.counts.assign_add(ops.sum(weights, axis=0))

    def values(self):
        means = ops.divide_no_nan(self.totals, self.counts)
        return ops.sqrt(means) if self.root else means


class GroupedAUC(GroupedMetric):
    """Each task's ROC AUC from one `keras.metrics.AUC(multi_label=True)`: its confusion counts per task and
    threshold are a single-label AUC's, side by side; the area is summed per task instead of averaged.

    Args:
        keys: list of G str.
        num_thresholds, summation_method, thresholds, from_logits: as for `keras.metrics.AUC` (curve "ROC").
    """

    def __init__(
        self, keys, num_thresholds=200, summation_method="interpolation", thresholds=None, from_logits=False,
        name="grouped_auc", **kwargs,
    ):
        super().__init__(keys, name=name, **kwargs)
        self.auc = keras.metrics.AUC(
            num_thresholds=num_thresholds, curve="ROC", summation_method=summation_method, thresholds=thresholds,
            multi_label=True, num_labels=self.num_tasks, from_logits=from_logits, name=f"{name}_counts",
            dtype=self.dtype,
        )
        self.summation_method = summation_method

    def update_state(self, y_true, y_pred, sample_weight):
        shape = ops.shape(sample_weight)
        self.auc.update_state(y_true, ops.reshape(y_pred, shape), sample_weight=sample_weight)

    def reset_state(self):
        self.auc.reset_state()

    def values(self):
        auc = self.auc
        fp_rate = ops.divide_no_nan(auc.false_positives, auc.false_positives + auc.true_negatives)
        recall = ops.divide_no_nan(auc.true_positives, auc.true_positives + auc.false_negatives)
        low, high = recall[:-1], recall[1:]
        if self.summation_method == "interpolation":
            heights = (low + high) / 2.0
        elif self.summation_method == "minoring":
            heights = ops.minimum(low, high)
        else:
            heights = ops.maximum(low, high)
        return ops.sum((fp_rate[:-1] - fp_rate[1:]) * heights, axis=0)


def grouped_metric(metric, keys):
    """One `GroupedMetric` serving copies of `metric` for G alike tasks, or None when kmtl has no grouped form of it.

    Args:
        metric: `keras.metrics.Metric`. One task's metric; the others' are of its type and configuration.
        keys: list of G str. The tasks' names of the metric (`<task>_<metric>`), the keys of its `result()`.

    Returns:
        A `GroupedMetric`, or None.
    """
    factory = _factory(metric)
    return None if factory is None else factory(list(keys))


def has_grouped_form(metric) -> bool:
    """Whether `grouped_metric` serves copies of `metric`."""
    return _factory(metric) is not None


def _factory(metric):
    """`keys -> GroupedMetric` for copies of `metric`, or None."""
    config = {k: v for k, v in metric.get_config().items() if k not in ("name", "dtype")}
    kind, dtype = type(metric), metric.dtype
    if kind is keras.metrics.AUC:
        if config["curve"] != "ROC" or config["multi_label"] or config["label_weights"] is not None:
            return None
        return lambda keys: GroupedAUC(
            keys, num_thresholds=config["num_thresholds"], summation_method=config["summation_method"],
            thresholds=config.get("thresholds"), from_logits=config["from_logits"], name=f"grouped_{keys[0]}",
            dtype=dtype,
        )
    fn = _mean_functions(kind, config)
    if fn is None:
        return None
    root = kind is keras.metrics.RootMeanSquaredError
    return lambda keys: GroupedMean(keys, fn, root=root, name=f"grouped_{keys[0]}", dtype=dtype)


def _mean_functions(kind, config):
    """The per-entry function of a Keras mean metric of exactly type `kind`, with its configuration, or None."""
    if kind is keras.metrics.BinaryAccuracy:
        return lambda y, p: keras.metrics.binary_accuracy(y, p, threshold=config["threshold"])
    if kind is keras.metrics.SparseCategoricalAccuracy:
        return keras.metrics.sparse_categorical_accuracy
    if kind is keras.metrics.SparseTopKCategoricalAccuracy and set(config) == {"k"}:
        return lambda y, p: keras.metrics.sparse_top_k_categorical_accuracy(y, p, k=config["k"])
    if kind is keras.metrics.SparseCategoricalCrossentropy and config.get("ignore_class") is None:
        return lambda y, p: keras.metrics.sparse_categorical_crossentropy(
            y, p, from_logits=config["from_logits"], axis=config["axis"]
        )
    if kind is keras.metrics.MeanAbsoluteError:
        return keras.metrics.mean_absolute_error
    if kind is keras.metrics.MeanSquaredError:
        return keras.metrics.mean_squared_error
    if kind is keras.metrics.RootMeanSquaredError:
        return lambda y, p: ops.square(ops.cast(p, "float32") - ops.cast(y, "float32"))
    return None
