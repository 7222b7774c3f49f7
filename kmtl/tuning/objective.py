"""A multi-task tuning objective: one score from every task's metric, written into the epoch logs.

By default the score is each task's skill over its trivial predictor fitted on the training split, averaged over
tasks (`kmtl.evaluation.scoring.multitask_score` with `references`); the hypermodels fit those references at their
first `fit`. Metric directions come from `kmtl.evaluation.scoring.metric_direction`.

`MultiTaskObjective` is a `keras_tuner.Objective` named `val_mtl_score` (direction `"max"`); its `callback()`,
placed before keras-tuner's own callbacks, writes `mtl_score` and `val_mtl_score` into each epoch's logs, so the
oracle, `EarlyStopping(monitor="val_mtl_score")` and `History` all see the same number.
"""

from __future__ import annotations

import math
import numbers
from typing import Mapping, Sequence

import keras
import keras_tuner

from kmtl.evaluation.scoring import metric_direction, multitask_score, normalised_metric, skill

def _metric_name(metric) -> str:
    if isinstance(metric, str):
        return metric
    if isinstance(metric, keras.metrics.Metric):
        return metric.name
    raise ValueError(f"Invalid metric {metric!r}. Expected a name or a keras.metrics.Metric.")


class MultiTaskObjective(keras_tuner.Objective):
    """A keras-tuner objective that maximises a weighted mean of normalised per-task metrics.

    For each task `t` with metric value `m_t` (read from the logs as `val_<t>_<metric>`):

    - with `references` (the default once fitted: `fit_references`, which kmtl's hypermodels call at their first
      `fit`), `n_t` is the task's skill over its trivial predictor, `(m_t - r_t) / (p_t - r_t)` with `r_t` the
      trivial predictor's value of the metric on the validation data and `p_t` the perfect value (1 for a metric
      to maximise, 0 for an error): 0 at the trivial predictor, 1 when perfect, `1 - m_t / r_t` for an error.
      It is free of each task's units, so age in months or years ranks trials the same;
    - without references or baselines (a search run without kmtl's hypermodels, or with `scales`), a metric to
      maximise (accuracy, AUC, F1, IoU, ...; assumed in `[0, 1]`) is used as is,
      `n_t = m_t`, and a metric to minimise (MAE, RMSE, loss, NME, ...; assumed `>= 0`) is mapped to
      `n_t = 1 / (1 + m_t / s_t)`, which is 1 at `m_t = 0`, 1/2 at `m_t = s_t` (the task's `scales` entry,
      default 1: set it to a typical error, in the metric's units) and tends to 0 as the error grows;
    - with a baseline `b_t` (e.g. the single-task model's value), `n_t = m_t / b_t` for a metric to maximise and
      `n_t = 2 - m_t / b_t` for one to minimise, so `n_t = 1` at the baseline and `n_t - 1` is the task's relative
      improvement; with equal weights the score minus 1 is then the multi-task gain `Δm`.

    The score is `Σ w_t n_t / Σ w_t` (weights default to 1); larger is better. A NaN metric gives a NaN score,
    which keras-tuner never ranks above a number.

    Args:
        metrics: dict `{task_name: metric_name}`, the metric each task is scored by, named as in the logs after
            `<task>_` (`"accuracy"`, `"auc"`, `"mae"`, `"loss"`, ...).
        weights: dict `{task_name: float >= 0}`. Defaults to 1 for every task.
        directions: dict `{task_name: "max" | "min"}`. Defaults to `metric_direction(metric_name)`.
        scales: dict `{task_name: float > 0}`. Error scale `s_t` of a minimised metric without baseline.
        baselines: dict `{task_name: float > 0}`. Reference values `b_t` (e.g. single-task results).
        references: dict `{task_name: float}` naming every scored task: the trivial predictor's value `r_t` of the
            task's metric. None: fitted from the data at the hypermodel's first `fit` unless `scales` or
            `baselines` choose another normalisation. At most one of `references`, `baselines` and `scales`.
        validation: bool. Score the validation logs (`val_mtl_score`) when True, the training logs otherwise.

    Example:

    >>> objective = MultiTaskObjective({"smiling": "accuracy", "age": "mae"}, references={"smiling": 0.6, "age": 8})
    >>> objective.name, objective.direction
    ('val_mtl_score', 'max')
    >>> round(objective.score({"val_smiling_accuracy": 0.9, "val_age_mae": 2.0}), 6)  # (0.3 / 0.4 + 1 - 2 / 8) / 2
    0.75

    Reference:
        Maninis, Radosavovic & Kokkinos (2019). Attentive Single-Tasking of Multiple Tasks. CVPR (the Δm measure).
        Vandenhende, Georgoulis, Van Gansbeke, Proesmans, Dai & Van Gool (2021). Multi-Task Learning for Dense
        Prediction Tasks: A Survey. IEEE TPAMI.
    """

    def __init__(
        self,
        metrics: Mapping[str, str],
        *,
        weights: Mapping[str, float] | None = None,
        directions: Mapping[str, str] | None = None,
        scales: Mapping[str, float] | None = None,
        baselines: Mapping[str, float] | None = None,
        references: Mapping[str, float] | None = None,
        validation: bool = True,
    ):
        if not isinstance(metrics, Mapping) or not metrics:
            raise ValueError(
                "Invalid value for `metrics`. Expected a non-empty dict {task: metric name}. "
                f"Received: metrics={metrics!r}"
            )
        self.metrics = {task: _metric_name(metric) for task, metric in metrics.items()}
        tasks = list(self.metrics)
        self.weights = _per_task("weights", weights, tasks, 1.0, lambda w: w >= 0, "a number >= 0")
        if not sum(self.weights.values()) > 0:
            raise ValueError(f"Invalid value for `weights`. Expected a positive total. Received: weights={weights!r}")
        self.scales = _per_task("scales", scales, tasks, 1.0, lambda s: s > 0, "a number > 0")
        self.baselines = _per_task("baselines", baselines, tasks, None, lambda b: b > 0, "a number > 0")
        given = dict(directions or {})
        _check_known("directions", given, tasks)
        bad = {k: v for k, v in given.items() if v not in ("max", "min")}
        if bad:
            raise ValueError(f"Invalid value for `directions`. Expected 'max' or 'min'. Received: directions={bad!r}")
        self.directions = {t: given.get(t) or metric_direction(self.metrics[t]) for t in tasks}
        chosen = [name for name, value in (("references", references), ("baselines", baselines), ("scales", scales))
                  if value is not None]
        if len(chosen) > 1:
            raise ValueError(f"Pass at most one of `references`, `baselines` and `scales`. Received: {chosen}")
        # Fitted by `fit_references` (the hypermodels call it at their first fit) unless another normalisation
        # was chosen.
        self.fits_references = not chosen
        self.references = None
        if references is not None:
            self.references = self._checked_references(references)
        self.validation = bool(validation)
        super().__init__("val_mtl_score" if validation else "mtl_score", "max")

    @classmethod
    def from_tasks(cls, tasks: Sequence, **kwargs) -> "MultiTaskObjective":
        """The objective scoring each non-auxiliary task by its primary metric, as logged.

        The metric is `kmtl.evaluation.trivial.logged_primary_metric(task)`: the logged Keras metric measuring the
        primary metric `kmtl.evaluate`'s reference table and `compare` judge the task by (AUROC for binary tasks,
        accuracy for multiclass, MAE or NME for regression; the first metric when none measures it). Scoring an
        imbalanced binary task by accuracy would leave it out of the search: its trivial predictor's accuracy is
        near 1, so its skill stays near 0 whatever the model does.

        Args:
            tasks: list of `kmtl.Task`.
            **kwargs: `weights`, `directions`, `scales`, `baselines`, `references`, `validation` as for the
                constructor.

        Returns:
            `MultiTaskObjective`.

        Example:

        >>> import kmtl
        >>> MultiTaskObjective.from_tasks([kmtl.Task("died", "binary"), kmtl.Task("stay", "regression")]).metrics
        {'died': 'auc', 'stay': 'mae'}
        """
        from kmtl.evaluation.trivial import logged_primary_metric

        metrics = {t.name: logged_primary_metric(t) for t in tasks if not t.auxiliary and t.metrics}
        if not metrics:
            raise ValueError(
                "Invalid value for `tasks`. Expected at least one non-auxiliary task with a metric. "
                f"Received: tasks={list(tasks)!r}"
            )
        return cls(metrics, **kwargs)

    def fit_references(self, tasks: Sequence, train, validation) -> dict[str, float]:
        """Fits each scored task's trivial predictor on `train` and sets `references` to its metric on `validation`.

        Uses `kmtl.evaluation.trivial.trivial_metric_values`: the class prior, the median or mean, or the last
        value, scored by the Keras metric the model logs for the task.

        Args:
            tasks: list of `kmtl.Task` (those the objective scores must be among them).
            train: training data: a `tf.data.Dataset` of `(inputs, {task: labels})` batches or `(x, y_dict)`.
            validation: validation data in the same forms (training data for an objective with
                `validation=False`).

        Returns:
            dict `{task: reference value}`, also stored as `references`.
        """
        from kmtl.evaluation.trivial import trivial_metric_values

        self.references = self._checked_references(trivial_metric_values(tasks, self.metrics, train, validation))
        return dict(self.references)

    def _checked_references(self, references) -> dict:
        references = _per_task("references", references, list(self.metrics), None, lambda r: True, "a finite number")
        absent = [t for t, value in references.items() if value is None]
        if absent:
            raise ValueError(f"`references` must name every scored task; it lacks {absent}. Scored tasks: "
                             f"{list(self.metrics)}.")
        return references

    def log_keys(self, prefix: str = "val_") -> dict[str, str]:
        """`{task: log key}`, e.g. `{"age": "val_age_mae"}`."""
        return {task: f"{prefix}{task}_{metric}" for task, metric in self.metrics.items()}

    def normalised(self, task: str, value: float) -> float:
        """The task's normalised value `n_t` (see the class docstring) for a metric value: its skill with
        references."""
        if self.references is not None:
            return skill(value, self.references[task], self.directions[task])
        return normalised_metric(value, self.directions[task], baseline=self.baselines[task], scale=self.scales[task])

    def score(self, logs: Mapping[str, float], prefix: str | None = None) -> float:
        """The weighted mean of normalised task metrics read from `logs`.

        Args:
            logs: dict of epoch logs.
            prefix: str. Prefix of the keys; defaults to `"val_"` for a validation objective, `""` otherwise.

        Raises:
            ValueError: naming the task and the log key when a metric is not in `logs`.
        """
        prefix = ("val_" if self.validation else "") if prefix is None else prefix
        values = {}
        for task, key in self.log_keys(prefix).items():
            if key not in logs:
                raise ValueError(
                    f"Task '{task}': the objective reads `{key}`, which is not in the logs. Logged: {sorted(logs)}. "
                    "Pass `metrics={task: name}` naming a metric the model logs."
                )
            values[task] = logs[key]
        return multitask_score(values, self.directions, weights=self.weights, baselines=self.baselines,
                               scales=self.scales, references=self.references)

    def has_value(self, logs):
        return self.name in logs or all(k in logs for k in self.log_keys(self._prefix).values())

    def get_value(self, logs):
        # keras-tuner reads the value the callback logged; computing it here too keeps a run without the callback
        # (e.g. a user's own `fit`) scored the same way.
        return logs[self.name] if self.name in logs else self.score(logs)

    def callback(self) -> "MultiTaskScore":
        """A fresh `MultiTaskScore` callback writing this objective's score into the epoch logs."""
        return MultiTaskScore(self)

    @property
    def _prefix(self) -> str:
        return "val_" if self.validation else ""

    def __repr__(self):
        return f"MultiTaskObjective(metrics={self.metrics}, weights={self.weights}, directions={self.directions})"


class MultiTaskScore(keras.callbacks.Callback):
    """Writes `mtl_score` (training logs) and `val_mtl_score` (validation logs) into each epoch's logs.

    Keras hands every callback the same logs dict and `History` (which keras-tuner's oracle reads) comes last, so
    put this callback first: the hypermodels in `kmtl.tuning` do so, and the tuner appends its own callbacks after
    the user's. `val_mtl_score`
    is written when the validation logs hold every task's metric (training without validation data gives
    `mtl_score` only).

    Args:
        objective: `MultiTaskObjective`.

    Example:

    >>> score = MultiTaskScore(MultiTaskObjective({"a": "accuracy"}))
    >>> logs = {"a_accuracy": 0.5, "val_a_accuracy": 0.75}
    >>> score.on_epoch_end(0, logs)
    >>> logs["mtl_score"], logs["val_mtl_score"]
    (0.5, 0.75)

    Reference:
        O'Malley, Bursztein, Long, Chollet, Jin, Invernizzi et al. (2019). KerasTuner.
        github.com/keras-team/keras-tuner.
    """

    def __init__(self, objective: MultiTaskObjective):
        super().__init__()
        if not isinstance(objective, MultiTaskObjective):
            raise ValueError(
                f"Invalid value for `objective`. Expected a MultiTaskObjective. Received: objective={objective!r}"
            )
        self.objective = objective

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        logs["mtl_score"] = self.objective.score(logs, prefix="")  # raises, naming the task, if a metric is absent
        val_keys = self.objective.log_keys("val_").values()
        present = [k in logs for k in val_keys]
        if all(present):
            logs["val_mtl_score"] = self.objective.score(logs, prefix="val_")
        elif any(present):
            missing = [k for k in val_keys if k not in logs]
            raise ValueError(f"Validation logs lack {missing} (logged: {sorted(logs)}).")


def _check_known(field, given, tasks):
    unknown = [k for k in given if k not in tasks]
    if unknown:
        raise ValueError(f"`{field}` names task(s) {unknown} that `metrics` does not score. Scored tasks: {tasks}.")


def _per_task(field, given, tasks, default, valid, expected):
    given = dict(given or {})
    _check_known(field, given, tasks)
    for task, value in given.items():
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and valid(value)
        if not ok:
            raise ValueError(
                f"Invalid value for `{field}`. Expected {expected} for task '{task}'. Received: {field}={given!r}"
            )
    return {t: (float(given[t]) if t in given else default) for t in tasks}
