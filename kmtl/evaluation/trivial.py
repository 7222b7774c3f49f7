"""Trivial predictors fitted on a training split: the score any model of a task must clearly beat.

- binary, multiclass, multilabel (per example, step, token or pixel): the class prior of the present training labels,
  predicted for every entry (so the majority class at threshold 0.5 or by argmax; AUROC 0.5);
- regression: the median of the present training targets (per unit) when the task's primary metric is an absolute
  error (`mae`, `nme`), the mean otherwise (`rmse`, `mse`);
- per-step regression (forecasting): also the last present target at an earlier step of the same sequence (the
  constant above before the first one); of the two, the one with the better primary metric on the training split is
  kept.

Missing labels (the task's `missing` marker) are left out when fitting and scoring. A training split that repeats
its examples within an epoch is fitted on its distinct examples (`kmtl.evaluation.references.distinct_examples`).

`trivial_metric_values` scores the same predictors with the Keras metrics a model logs, which is what the tuner's
skill (`kmtl.evaluation.scoring.skill`) is measured against; `logged_primary_metric` says which logged metric
measures a task's primary metric (the one `kmtl.evaluate`'s reference table and `compare` score it by), so the tuner,
`MultiTaskCheckpoint` and the report judge a task by the same measure.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from kmtl.evaluation.arrays import collect_examples
from kmtl.evaluation.deltas import resolve_primary_metrics
from kmtl.evaluation.references import ReferenceScore, better, score_predictions, training_examples
from kmtl.evaluation.scores import present_entries
from kmtl.tasks import Task, validate_task_list

# Primary metrics a median minimises (absolute errors); a mean minimises the squared ones.
_MEDIAN_METRICS = ("mae", "nme", "mad")


def trivial_scores(
    tasks: Sequence[Task],
    train: Any,
    test: Any,
    *,
    primary_metrics: Mapping[str, str | tuple[str, bool]] | None = None,
) -> dict[str, ReferenceScore]:
    """Scores each task's trivial predictor, fitted on `train`, on `test` (see the module docstring).

    Args:
        tasks: list of `kmtl.Task`.
        train: training data: a `tf.data.Dataset` of `(inputs, {task: labels})` batches or a tuple `(x, y_dict)`;
            at most `MAX_FIT_EXAMPLES` examples are read.
        test: test data in the same forms; read whole.
        primary_metrics: dict `{task: metric}` overriding the default primary metrics (which choose between median
            and mean, and between constant and last value).

    Returns:
        dict `{task: ReferenceScore}`: the predictor's name and the scores `kmtl.evaluate` reports for the task.

    Example:

    >>> x, y = np.zeros((4, 1)), {"a": np.array([0, 1, 1, 1])}
    >>> trivial_scores([Task("a", "binary")], (x, y), (x, y))["a"].scores["accuracy"]
    0.75
    """
    tasks = validate_task_list(tasks)
    metrics = resolve_primary_metrics(tasks, primary_metrics)
    train_labels = training_examples(train, tasks).labels
    _, test_labels = collect_examples(test, tasks)
    return {
        t.name: fit_trivial(t, train_labels[t.name], metrics[t.name]).score(t, test_labels[t.name]) for t in tasks
    }


def logged_primary_metric(task: Task) -> str:
    """The name (after `<task>_`) of the logged Keras metric that measures the task's primary metric.

    The primary metric is `kmtl.evaluation.deltas.primary_metric`'s, the one the evaluation report and `compare`
    judge a task by: AUROC for binary tasks (a Keras `AUC` with the ROC curve measures it), macro AUROC for multilabel
    tasks (an `AUC(multi_label=True)`; else a plain `AUC`, which pools the labels: the micro AUROC), accuracy for
    multiclass tasks, MAE (or NME when listed) for regression. When the task logs no metric that measures it, its
    first metric (`Task.metrics[0]`), else `"loss"`. This matters on imbalanced tasks: a rare outcome's accuracy is
    already about 1 for the class prior, so a skill over it stays near 0 however well the task is learned, while its
    AUROC skill (`2 AUROC - 1`) does not.

    Example:

    >>> logged_primary_metric(Task("died", "binary")), logged_primary_metric(Task("age", "regression"))
    ('auc', 'mae')
    >>> logged_primary_metric(Task("died", "binary", metrics=["accuracy"]))  # no AUC logged: the first metric
    'accuracy'
    """
    import keras

    from kmtl.metrics import resolve_metrics

    primary = resolve_primary_metrics([task])[task.name][0]
    specs = [(spec if isinstance(spec, str) else spec.name, spec) for spec in task.metrics]
    if not specs:
        return "loss"

    def measures(spec, macro=False):
        try:
            metric = resolve_metrics(task, [spec])[0]
        except ValueError:
            return False
        if primary in ("auroc", "auroc_macro"):
            roc = isinstance(metric, keras.metrics.AUC) and metric.curve.name == "ROC"
            return roc and (metric.multi_label or not macro)
        return isinstance(metric, _measures().get(primary, ()))

    if primary == "auroc_macro":  # the macro AUROC itself, else the pooled one
        found = [name for name, spec in specs if measures(spec, macro=True)] or [
            name for name, spec in specs if measures(spec)]
    else:
        found = [name for name, spec in specs if measures(spec)]
    return found[0] if found else specs[0][0]


def _measures():
    import keras

    from kmtl.metrics import NormalizedMeanError

    return {
        "accuracy": (keras.metrics.BinaryAccuracy, keras.metrics.SparseCategoricalAccuracy,
                     keras.metrics.CategoricalAccuracy, keras.metrics.Accuracy),
        "mae": (keras.metrics.MeanAbsoluteError,),
        "rmse": (keras.metrics.RootMeanSquaredError,),
        "nme": (NormalizedMeanError,),
    }


# Keras metric names (after `<task>_`) whose trivial predictor is chosen as for these `kmtl.evaluate` names.
_LOGGED_AS_REPORTED = {"mae": "mae", "mse": "rmse", "rmse": "rmse", "nme": "nme"}


def trivial_metric_values(
    tasks: Sequence[Task], metrics: Mapping[str, str], train: Any, validation: Any
) -> dict[str, float]:
    """Each task's trivial predictor, fitted on `train`, scored on `validation` by the Keras metric a model logs.

    The metric is a fresh copy of the task's own (`Task.metrics`, by the name it is logged under after `<task>_`),
    updated as `MultiTaskModel` updates it (missing labels left out), so the value is exactly what the model would
    log as `val_<task>_<metric>` if it predicted like the trivial predictor.

    Args:
        tasks: list of `kmtl.Task`.
        metrics: dict `{task: metric name}` as logged after `<task>_` (`"accuracy"`, `"auc"`, `"mae"`, `"nme"`).
        train: training data (a `tf.data.Dataset` of `(inputs, {task: labels})` batches, or `(x, y_dict)`).
        validation: validation data in the same forms.

    Returns:
        dict `{task: value}`.

    Raises:
        ValueError: naming the task when its metric is neither among `Task.metrics` nor a name the task's kind
            knows.

    Example:

    >>> y = {"a": np.array([0, 1, 1, 1]), "b": np.array([[1.0], [2.0], [3.0], [10.0]])}
    >>> values = trivial_metric_values([Task("a", "binary"), Task("b", "regression")], {"a": "accuracy", "b": "mae"},
    ...                                (np.zeros((4, 1)), y), (np.zeros((4, 1)), y))
    >>> {k: round(v, 4) for k, v in values.items()}  # all ones: 3 of 4 right; the median 2.5 is 2.5 off on average
    {'a': 0.75, 'b': 2.5}
    """
    from kmtl.metrics import resolve_metrics
    from kmtl.model.task_state import update_metric

    by_name = {t.name: t for t in validate_task_list(tasks)}
    unknown = [name for name in metrics if name not in by_name]
    if unknown:
        raise ValueError(f"`metrics` names unknown task(s) {unknown}. Valid task names: {list(by_name)}.")
    chosen = [by_name[name] for name in metrics]
    train_labels = training_examples(train, chosen).labels
    _, val_labels = collect_examples(validation, chosen)
    out = {}
    for task in chosen:
        metric = _logged_metric(task, metrics[task.name], resolve_metrics)
        logged = metrics[task.name]
        primary = resolve_primary_metrics([task])[task.name]
        if task.kind == "regression" and logged in _LOGGED_AS_REPORTED:
            primary = (_LOGGED_AS_REPORTED[logged], True)
        predictor = fit_trivial(task, train_labels[task.name], primary)
        labels = val_labels[task.name]
        lead = labels.shape[: 1 + (1 if task.per_step else 2 if task.per_pixel else 0)]
        predictions = predictor.predict(task, labels).reshape(lead + (task.output_units,)).astype("float32")
        update_metric(task, metric, labels, predictions, None)
        out[task.name] = float(metric.result())
    return out


def _logged_metric(task, name, resolve_metrics):
    """A fresh copy of the task's metric logged as `<task>_<name>`."""
    for spec in task.metrics:
        if (spec if isinstance(spec, str) else spec.name) == name:
            return resolve_metrics(task, [spec])[0]
    try:
        return resolve_metrics(task, [name])[0]
    except ValueError:
        listed = [m if isinstance(m, str) else m.name for m in task.metrics]
        raise ValueError(
            f"Task '{task.name}': cannot score its trivial predictor by {name!r}, which is not among its metrics "
            f"{listed}. Score the task by one of those, or pass `references` (or `scales`) to the objective."
        ) from None


class TrivialPredictor:
    """A fitted trivial predictor of one task: a constant per output unit, or the last earlier target.

    Args:
        name: str. What it predicts (`"class prior"`, `"median"`, `"mean"`, `"last value"`).
        constant: numpy array `(output_units,)`: probabilities or target values.
        last_value: bool. Predict each step's last earlier present target (the constant before the first).
    """

    def __init__(self, name: str, constant: np.ndarray, last_value: bool = False):
        self.name, self.constant, self.last_value = name, np.asarray(constant, np.float64), last_value

    def predict(self, task: Task, labels: np.ndarray) -> np.ndarray:
        """Predictions `(rows, output_units)` for the label entries of `labels` (one row per example or step)."""
        rows = np.asarray(labels).size // task.label_width
        constant = np.broadcast_to(self.constant, (rows, task.output_units))
        if not self.last_value:
            return constant
        return last_values(task, labels, constant)

    def score(self, task: Task, labels: np.ndarray) -> ReferenceScore:
        return ReferenceScore(self.name, score_predictions(task, labels, self.predict(task, labels)))


def fit_trivial(task: Task, labels: np.ndarray, primary: tuple[str, bool]) -> TrivialPredictor:
    """The trivial predictor of `task` fitted on its training `labels` (missing entries left out).

    Args:
        task: `kmtl.Task`.
        labels: numpy array of the task's training labels (examples first; steps or pixels next when per step/pixel).
        primary: `(metric, lower_is_better)`: the task's primary metric.
    """
    labels = np.asarray(labels)
    entries = labels.reshape(-1, task.label_width)
    present = present_entries(task, entries)
    if task.kind == "regression":
        median = primary[0].endswith(_MEDIAN_METRICS)
        values = np.where(present, entries.astype(np.float64), np.nan)
        center = _nan_center(values, median)
        constant = TrivialPredictor("median" if median else "mean", center)
        if not task.per_step or labels.ndim < 2:
            return constant
        forecast = TrivialPredictor("last value", center, last_value=True)
        # The better of the two on the training split.
        metric, lower = primary
        constant_score, forecast_score = (p.score(task, labels).scores.get(metric, np.nan) for p in (constant, forecast))
        return forecast if better(forecast_score, constant_score, lower) else constant
    if task.kind == "multiclass":
        classes = entries[present].astype(int)
        counts = np.bincount(classes[(classes >= 0) & (classes < task.num_classes)], minlength=task.num_classes)
        prior = counts / counts.sum() if counts.sum() else np.full(task.num_classes, 1.0 / task.num_classes)
        return TrivialPredictor("class prior", prior)
    # binary and multilabel: the rate of positives per label (soft labels count at their value).
    values = np.where(present, entries.astype(np.float64), np.nan)
    with np.errstate(invalid="ignore"):
        counts = present.sum(axis=0)
        prior = np.where(counts > 0, np.nansum(values, axis=0) / np.maximum(counts, 1), 0.5)
    return TrivialPredictor("class prior", prior)


def last_values(task: Task, labels: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """For per-step regression labels `(N, T)` or `(N, T, units)`: at each step, the last present target at an
    earlier step of the same sequence, else `fallback`'s row; returned as `(N * T, units)` rows."""
    values = np.asarray(labels, np.float64).reshape(labels.shape[0], labels.shape[1], task.units)
    present = present_entries(task, values)
    steps = np.arange(values.shape[1])[None, :, None]
    latest = np.maximum.accumulate(np.where(present, steps, -1), axis=1)  # last present step up to t
    earlier = np.concatenate([np.full_like(latest[:, :1], -1), latest[:, :-1]], axis=1)  # ... before t
    taken = np.take_along_axis(values, np.maximum(earlier, 0), axis=1)
    fallback = np.asarray(fallback, np.float64).reshape(values.shape)
    return np.where(earlier >= 0, taken, fallback).reshape(-1, task.units)


def _nan_center(values: np.ndarray, median: bool) -> np.ndarray:
    """Per column median or mean over the non-NaN values; 0 for a column without any."""
    out = np.zeros(values.shape[1])
    for k in range(values.shape[1]):
        column = values[:, k][~np.isnan(values[:, k])]
        if column.size:
            out[k] = np.median(column) if median else column.mean()
    return out
