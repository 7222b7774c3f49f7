"""Multi-task model selection: keep the epoch whose model is best over all tasks together."""

from __future__ import annotations

import math
from pathlib import Path

import keras

from kmtl._files import write_file
from kmtl.evaluation.scoring import lower_is_better, multitask_score

# Not registered: Keras callbacks have no get_config() and are never saved.
class MultiTaskCheckpoint(keras.callbacks.Callback):
    """Saves the model (`.keras`) whenever its multi-task score on validation data is the best so far.

    At each epoch end every scored task's metric is read from the logs (`val_<task>_<metric>`) and the tasks are
    combined by `kmtl.evaluation.scoring.multitask_score`, kmtl's one multi-task score. What is logged and what
    chooses the epoch depends on what the callback is given:

    - `train_data` (with `validation_data`) or `references`: `val_mtl_score` is the weighted mean over tasks of
      each task's **skill over its trivial predictor**, `(m - r) / (p - r)` (0 at the trivial predictor, 1 when
      perfect), the same number `kmtl tune` ranks trials by. `r` is the trivial predictor (class prior, median or
      mean, last value; `kmtl.evaluation.trivial`) fitted on `train_data` at the start of training and scored on
      `validation_data` by the Keras metric the model logs (`trivial_metric_values`), or the value given in
      `references`. It is free of the tasks' units: rescaling a regression task's labels never changes the
      epoch kept. This score chooses the epoch.
    - `baselines` (single-task results for the same metric and validation data): each task counts as
      `1 + (-1)^l (M - B) / |B|` (`l` = 1 when lower is better); the score minus 1 is Δm, the (weighted) mean
      improvement over the baseline tasks, logged as `val_delta_m` (which chooses the epoch) and, plus 1, as
      `val_mtl_score`.
    - neither: only `val_mtl_scaled_score` is logged, and it chooses the epoch: a metric to maximise counts as is
      and an error `m` as `1 / (1 + m / s)` with the task's `scales` entry `s` (default 1). This depends on the
      errors' units (an MAE in months counts less than the same error in years), so prefer `train_data`. Earlier
      versions logged this score as `val_mtl_score`; monitor `val_mtl_scaled_score` for it now.
      `val_mtl_scaled_score` is also logged beside the skill (without baselines), for comparison.

    Each task is scored by its primary metric as logged (`kmtl.evaluation.trivial.logged_primary_metric`: AUROC
    for binary tasks where an `auc` is logged, accuracy for multiclass, MAE or NME for regression; the measure
    `kmtl.evaluate`'s reference table judges the task by), or by `metrics`.

    Higher scores are better. The file is written atomically (a temporary file in the same folder, then a rename),
    so a crash never leaves a half-written model. A file at `filepath` that this callback did not write (one
    there before `fit`, or one appearing during it) is never replaced unless `overwrite=True`.

    Args:
        filepath: str or Path ending in `.keras`.
        train_data: the training split (`tf.data.Dataset` of `(inputs, {task: labels})` batches or `(x, y_dict)`),
            finite; the trivial predictors are fitted on it (at most
            `kmtl.evaluation.references.MAX_FIT_EXAMPLES` examples).
        validation_data: the data the logged validation metrics are computed on (the `validation_data` given to
            `fit`), in the same forms; needed with `train_data` unless `prefix=""`.
        references: dict `{task: the trivial predictor's value of the task's logged metric}` naming every scored
            task, instead of `train_data`.
        baselines: dict `{task: single-task value}`; needs `metrics` for those tasks.
        weights: dict `{task: weight >= 0}`. Tasks scored and their weights (default: equal weights for the
            baseline tasks, or for all non-auxiliary tasks).
        metrics: dict `{task: metric}` or `{task: (metric, lower_is_better)}`: the logged metric per task (`"mae"`
            for `val_age_mae`). Default: the task's primary metric as logged (see above), else its `loss`.
        scales: dict `{task: error scale > 0}` of `val_mtl_scaled_score` (see above).
        prefix: str. Log prefix of the monitored values (`"val_"`; `""` monitors training metrics).
        overwrite: bool. Allow replacing an existing file at `filepath`.
        verbose: int. 1 prints a line when the model is saved.

    Example:

    >>> checkpoint = MultiTaskCheckpoint("best.keras", train_data=train_ds, validation_data=val_ds)  # doctest: +SKIP
    >>> model.fit(train_ds, validation_data=val_ds, epochs=10, callbacks=[checkpoint])  # doctest: +SKIP
    >>> checkpoint.best_epoch, checkpoint.best_score, checkpoint.references  # doctest: +SKIP

    Reference:
        Maninis, Radosavovic & Kokkinos (2019). Attentive Single-Tasking of Multiple Tasks. CVPR.
        Murphy (1988). Skill Scores Based on the Mean Square Error and Their Relationships to the Correlation
        Coefficient. Monthly Weather Review 116.
    """

    def __init__(self, filepath, *, train_data=None, validation_data=None, references=None, baselines=None,
                 weights=None, metrics=None, scales=None, prefix="val_", overwrite=False, verbose=0):
        super().__init__()
        self.filepath = Path(filepath)
        if self.filepath.suffix != ".keras":
            raise ValueError(f"Invalid value for `filepath`. Expected a path ending in .keras. Received: {filepath}")
        self.baselines = None if baselines is None else {k: float(v) for k, v in dict(baselines).items()}
        self.weights = None if weights is None else {k: float(v) for k, v in dict(weights).items()}
        self.metrics = {k: _metric_spec(k, v) for k, v in dict(metrics or {}).items()}
        self.scales = {k: float(v) for k, v in dict(scales or {}).items()}
        bad = {k: v for k, v in self.scales.items() if not (math.isfinite(v) and v > 0)}
        if bad:
            raise ValueError(f"Invalid value for `scales`. Expected finite values > 0. Received: scales={bad}")
        self.prefix = prefix
        self.overwrite = bool(overwrite)
        self.verbose = verbose
        if self.baselines is not None:
            if not self.baselines:
                raise ValueError("Invalid value for `baselines`. Expected at least one task. Received: baselines={}")
            bad = {k: v for k, v in self.baselines.items() if v == 0 or not math.isfinite(v)}
            if bad:
                raise ValueError(f"Invalid value for `baselines`. Expected finite non-zero values. Received: {bad}")
            unnamed = [t for t in self.baselines if t not in self.metrics]
            if unnamed:
                raise ValueError(
                    f"`baselines` for {unnamed} need the metric they measure: pass `metrics`, e.g. "
                    f"metrics={{{unnamed[0]!r}: 'mae'}}."
                )
        if self.weights is not None and (any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0):
            raise ValueError(f"Invalid value for `weights`. Expected values >= 0, not all 0. Received: {self.weights}")
        chosen = [name for name, value in (("train_data", train_data), ("references", references),
                                           ("baselines", baselines)) if value is not None]
        if len(chosen) > 1:
            raise ValueError(f"Pass at most one of `train_data`, `references` and `baselines`. Received: {chosen}")
        if train_data is not None and validation_data is None and prefix:
            raise ValueError(
                "`train_data` needs `validation_data`, the data the logged validation metrics are computed on (the "
                "`validation_data` given to `fit`): each task's trivial predictor is fitted on the training data "
                "and scored there. Pass it, or `prefix=''` to score the training metrics."
            )
        if validation_data is not None and train_data is None:
            raise ValueError("`validation_data` is read only with `train_data`; pass `train_data` too.")
        for name, data in (("train_data", train_data), ("validation_data", validation_data)):
            if data is not None and (hasattr(data, "__next__") or _endless(data)):
                raise ValueError(
                    f"Invalid value for `{name}`. Expected a finite tf.data.Dataset or arrays `(x, y_dict)`, read once "
                    f"when training starts; an iterator would be used up and an endless dataset never ends (pass "
                    f"the dataset before `.repeat()`, or `references=`). Received: {name}={type(data).__name__}"
                )
        self.train_data, self.validation_data = train_data, validation_data
        self.references = None if references is None else _checked_references(references)
        self.skill = train_data is not None or references is not None
        if self.baselines is not None:
            self.score_name = f"{prefix}delta_m"
        else:
            self.score_name = f"{prefix}mtl_score" if self.skill else f"{prefix}mtl_scaled_score"
        self._written = False
        self._refuse_existing()
        self.best_score, self.best_epoch, self.scores = -math.inf, None, []

    def _refuse_existing(self):
        if self.filepath.exists() and not self.overwrite and not self._written:
            raise FileExistsError(
                f"Refusing to overwrite existing file {self.filepath}; pass overwrite=True or choose another path."
            )

    def on_train_begin(self, logs=None):
        self._refuse_existing()
        if not hasattr(self.model, "task_names"):
            raise ValueError(f"MultiTaskCheckpoint needs a kmtl.MultiTaskModel. Received: {type(self.model).__name__}")
        names = self.model.task_names
        scored = list(self.baselines or self.weights or [t.name for t in self.model.tasks if not t.auxiliary])
        unknown = [t for t in scored + list(self.metrics) if t not in names]
        if unknown:
            raise ValueError(f"MultiTaskCheckpoint names unknown task(s) {unknown}. Valid task names: {names}.")
        if sum((self.weights or {t: 1.0 for t in scored}).get(t, 0.0) for t in scored) <= 0:
            raise ValueError(f"Invalid value for `weights`. The scored tasks {scored} all have weight 0.")
        self._scored = scored
        self._specs = {task: self.metrics.get(task) or _default_spec(self.model.task(task)) for task in scored}
        if self.train_data is not None and self.references is None:
            from kmtl.evaluation.trivial import trivial_metric_values

            tasks = [self.model.task(task) for task in scored]
            held_out = self.validation_data if self.prefix else self.train_data
            logged = {task: spec[0] for task, spec in self._specs.items()}
            self.references = trivial_metric_values(tasks, logged, self.train_data, held_out)
        if self.references is not None:
            absent = [t for t in scored if t not in self.references]
            if absent:
                raise ValueError(f"`references` lacks scored task(s) {absent}; expected a value for each of {scored}.")
        self.best_score, self.best_epoch, self.scores = -math.inf, None, []

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        values = {task: self._value(task, logs) for task in self._scored}
        directions = {task: "min" if self._specs[task][1] else "max" for task in self._scored}
        given = self.weights or {task: 1.0 for task in self._scored}
        weights = {t: given.get(t, 0.0) for t in self._scored}
        if self.baselines is not None:
            mtl_score = multitask_score(values, directions, weights=weights, baselines=self.baselines)
            logs[f"{self.prefix}mtl_score"] = mtl_score
            score = mtl_score - 1.0  # Δm
        else:
            logs[f"{self.prefix}mtl_scaled_score"] = multitask_score(values, directions, weights=weights,
                                                                     scales=self.scales)
            if self.skill:
                logs[f"{self.prefix}mtl_score"] = multitask_score(values, directions, weights=weights,
                                                                  references=self.references)
            score = logs[self.score_name]
        logs[self.score_name] = score
        self.scores.append(score)
        if math.isfinite(score) and score > self.best_score:
            if self.verbose:
                print(f"\nEpoch {epoch + 1}: {self.score_name} improved to {score:.5f}; saving {self.filepath}")
            self.best_score, self.best_epoch = score, epoch
            self._save()

    def _value(self, task, logs):
        key = f"{self.prefix}{task}_{self._specs[task][0]}"
        if key not in logs:
            raise ValueError(
                f"MultiTaskCheckpoint: task '{task}' needs `{key}` in the epoch logs (validation data given?). "
                f"Logged: {sorted(logs)}"
            )
        return float(logs[key])

    def _save(self):
        # Whole under a temporary name, then put in place; until this callback has written the file once, a file
        # at `filepath` (one that appeared since `fit` began included) is someone else's and is never replaced.
        write_file(self.filepath, self.model.save, overwrite=self.overwrite or self._written)
        self._written = True


def _default_spec(task):
    """`(logged metric, lower_is_better)`: the task's primary metric as logged, else its loss."""
    from kmtl.evaluation.trivial import logged_primary_metric

    metric = logged_primary_metric(task)
    return metric, lower_is_better(metric)


def _endless(data) -> bool:
    cardinality = getattr(data, "cardinality", None)
    if not callable(cardinality):
        return False
    import tensorflow as tf

    return bool(cardinality() == tf.data.INFINITE_CARDINALITY)


def _checked_references(references):
    checked = {}
    for task, value in dict(references).items():
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok:
            raise ValueError(f"Invalid value for `references`. Expected a finite number for task '{task}'. "
                             f"Received: references={dict(references)!r}")
        checked[task] = float(value)
    return checked


def _metric_spec(task, value):
    if isinstance(value, str):
        return value, lower_is_better(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and isinstance(value[0], str):
        return value[0], bool(value[1])
    raise ValueError(
        f"Invalid value for `metrics`. Expected a metric name or (name, lower_is_better). Received: "
        f"metrics[{task!r}]={value!r}"
    )


__all__ = ["MultiTaskCheckpoint"]
