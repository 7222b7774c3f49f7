"""Multi-task model selection: keep the epoch whose model is best over all tasks together."""

from __future__ import annotations

import math
from pathlib import Path

import keras

from kmtl._files import write_file
from kmtl.evaluation.scoring import lower_is_better, multitask_score

# Logged metrics tried in order for a task's score when `metrics` does not name one (Keras log names).
_DEFAULT_LOG_METRICS = {
    "binary": ("auc", "accuracy"),
    "multilabel": ("auc", "accuracy"),
    "multiclass": ("accuracy",),
    "regression": ("nme", "mae", "rmse", "mse"),
}


# Not registered: Keras callbacks have no get_config() and are never saved.
class MultiTaskCheckpoint(keras.callbacks.Callback):
    """Saves the model (`.keras`) whenever its multi-task score on validation data is the best so far.

    At each epoch end every scored task's metric is read from the logs (`val_<task>_<metric>`) and the tasks are
    combined by `kmtl.evaluation.scoring.multitask_score`, the one multi-task score of kmtl (the tuning objective
    logs the same number), logged as `val_mtl_score`:

    - without `baselines`, a metric to maximise counts as is and a metric to minimise as `1 / (1 + m / s)` with
      the task's `scales` entry `s` (default 1);
    - with `baselines` (single-task results for the same metric and validation data) each task counts as
      `1 + (-1)^l (M - B) / |B|` (`l` = 1 when lower is better), so the score minus 1 is Δm, the (weighted) mean
      improvement over the baseline tasks, which is also logged as `val_delta_m`.

    Higher scores are better. The file is written atomically (a temporary file in the same folder, then a rename),
    so a crash never leaves a half-written model. A file at `filepath` that this callback did not write (one
    there before `fit`, or one appearing during it) is never replaced unless `overwrite=True`.

    Args:
        filepath: str or Path ending in `.keras`.
        baselines: dict `{task: single-task value}`; needs `metrics` for those tasks.
        weights: dict `{task: weight >= 0}`. Tasks scored and their weights (default: equal weights for the
            baseline tasks, or for all non-auxiliary tasks).
        metrics: dict `{task: metric}` or `{task: (metric, lower_is_better)}`: the logged metric per task (`"mae"`
            for `val_age_mae`). Defaults per kind: binary/multilabel `auc` (else `accuracy`), multiclass `accuracy`,
            regression `nme`, `mae`, `rmse` or `mse`, whichever is logged first; else the task's `loss`.
        scales: dict `{task: error scale > 0}` for minimised metrics without baseline (see above).
        prefix: str. Log prefix of the monitored values (`"val_"`; `""` monitors training metrics).
        overwrite: bool. Allow replacing an existing file at `filepath`.
        verbose: int. 1 prints a line when the model is saved.

    Example:

    >>> checkpoint = MultiTaskCheckpoint("best.keras", baselines={"age": 5.1, "smiling": 0.91},  # doctest: +SKIP
    ...                                  metrics={"age": "mae", "smiling": "auc"})
    >>> model.fit(train_ds, validation_data=val_ds, epochs=10, callbacks=[checkpoint])  # doctest: +SKIP
    >>> checkpoint.best_epoch, checkpoint.best_score  # doctest: +SKIP

    Reference:
        Maninis, Radosavovic & Kokkinos (2019). Attentive Single-Tasking of Multiple Tasks. CVPR.
    """

    def __init__(self, filepath, *, baselines=None, weights=None, metrics=None, scales=None, prefix="val_",
                 overwrite=False, verbose=0):
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
        self.score_name = f"{prefix}delta_m" if self.baselines is not None else f"{prefix}mtl_score"
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
        self.best_score, self.best_epoch, self.scores = -math.inf, None, []

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        values = {task: self._value(task, logs) for task in self._scored}
        directions = {task: "min" if self._spec(task, logs)[1] else "max" for task in self._scored}
        weights = self.weights or {task: 1.0 for task in self._scored}
        mtl_score = multitask_score(values, directions, weights={t: weights.get(t, 0.0) for t in self._scored},
                                    baselines=self.baselines, scales=self.scales)
        logs[f"{self.prefix}mtl_score"] = mtl_score
        score = mtl_score - 1.0 if self.baselines is not None else mtl_score  # Δm with baselines
        logs[self.score_name] = score
        self.scores.append(score)
        if math.isfinite(score) and score > self.best_score:
            if self.verbose:
                print(f"\nEpoch {epoch + 1}: {self.score_name} improved to {score:.5f}; saving {self.filepath}")
            self.best_score, self.best_epoch = score, epoch
            self._save()

    def _spec(self, task, logs):
        if task in self.metrics:
            return self.metrics[task]
        kind = self.model.task(task).kind
        for metric in _DEFAULT_LOG_METRICS[kind]:
            if f"{self.prefix}{task}_{metric}" in logs:
                return metric, lower_is_better(metric)
        return "loss", True

    def _value(self, task, logs):
        metric = self._spec(task, logs)[0]
        key = f"{self.prefix}{task}_{metric}"
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
