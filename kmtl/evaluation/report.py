"""Per-task evaluation results: `kmtl.evaluate` and the `EvaluationReport` it returns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kmtl.evaluation.inputs import check_evaluate_arguments
from kmtl.evaluation.references import reference_lines
from kmtl.evaluation.scores import (
    CLASSIFICATION_KINDS,
    ConfusionMatrix,
    TaskScorer,
    geometric_mean,
)

# Fewer labelled examples than this (or a single class present) make a classification task's test scores
# meaningless: the table shows "n/a (too few examples: ...)" instead of them (the values stay in the report).
MIN_EXAMPLES = 10
# Columns the table keeps for a task with too few examples: they come from the loss, not from scoring.
_LOSS_COLUMNS = ("loss", "weight")
WEIGHT_NOTE = "weight: the task's weight in the total loss as the weighting strategy set it (mean over the batches)."
NEGATIVE_LOSS_NOTE = (
    "overall loss: the weighted total the optimiser minimises, with the weighting's own terms (uncertainty "
    "weighting adds log σ² per task), so it can be below 0."
)

# Keras metrics that `evaluate` replaces with exact values from scikit-learn (Keras's AUC is a 200-threshold
# approximation of the AUROC that the report computes exactly).
_SUPERSEDED = {"auc"}


class EvaluationReport:
    """Per-task metrics of one evaluation, printable as a table.

    Args:
        task_metrics: dict `{task_name: {metric_name: value}}`; metric names without the task prefix.
        overall: dict of values that belong to no single task (e.g. the total `loss`).
        kinds: dict `{task_name: kind}` for the table.
        confusion: dict `{task_name: ConfusionMatrix}` of classification tasks.
        too_few: dict `{task_name: reason}` of tasks with too few labelled examples to score (see `MIN_EXAMPLES`):
            the table shows "n/a" for their scores; `to_dict` and item access keep the values.
        references: dict `{task_name: {"metric", "lower_is_better", "trivial", "classical"}}` from
            `kmtl.evaluation.reference_scores`, or None: the table then adds each task's primary metric beside its
            trivial and classical predictors' and marks the tasks not clearly better than the trivial one.

    Example:

    >>> report = EvaluationReport({"age": {"loss": 2.0, "mae": 1.1}}, {"loss": 2.0}, {"age": "regression"})
    >>> report["age"]["mae"]
    1.1
    """

    def __init__(
        self,
        task_metrics: dict,
        overall: dict,
        kinds: dict | None = None,
        confusion: dict | None = None,
        too_few: dict | None = None,
        references: dict | None = None,
    ):
        self.task_metrics = task_metrics
        self.overall = overall
        self.kinds = kinds or {}
        self.confusion = confusion or {}
        self.too_few = too_few or {}
        self.references = references

    def __getitem__(self, task: str) -> dict:
        return self.task_metrics[task]

    @property
    def tasks(self) -> list[str]:
        return list(self.task_metrics)

    def confusion_matrix(self, task: str) -> ConfusionMatrix:
        """The confusion matrix of a classification task (rows true, columns predicted), labelled by `label_names`.

        Args:
            task: str. Task name.

        Returns:
            `kmtl.evaluation.scores.ConfusionMatrix`: `matrix`, `classes` and, for multilabel tasks, `labels`.

        Raises:
            ValueError: for an unknown task or one without a confusion matrix (regression).
        """
        if task not in self.confusion:
            known = sorted(self.confusion)
            raise ValueError(
                f"Invalid value for `task`. Expected a classification task of this report, one of {known}. "
                f"Received: task={task!r}"
            )
        return self.confusion[task]

    def to_dict(self) -> dict:
        """`{task: {metric: value}}` plus an `"overall"` entry."""
        return {**{t: dict(m) for t, m in self.task_metrics.items()}, "overall": dict(self.overall)}

    def to_dataframe(self):
        """A `pandas.DataFrame`: one row per task (index: task name), a `kind` column and one column per metric;
        a last row `"overall"` holds the overall values (e.g. the total `loss`).

        Raises:
            ImportError: when pandas is not installed.
        """
        try:
            import pandas as pd
        except ImportError as error:
            raise ImportError("`EvaluationReport.to_dataframe()` needs pandas: `pip install pandas`.") from error
        rows = {t: {"kind": self.kinds.get(t, ""), **m} for t, m in self.task_metrics.items()}
        if self.overall:
            rows["overall"] = {"kind": "", **self.overall}
        frame = pd.DataFrame.from_dict(rows, orient="index")
        frame.index.name = "task"
        return frame

    def save_plots(self, directory: str | Path, history: Any = None, *, overwrite: bool = False) -> list[Path]:
        """Writes PNG plots: confusion heatmaps and, from a `History`, learning curves and task weights.

        See `kmtl.evaluation.plots.save_plots`; needs matplotlib (`pip install "kmtl[plots]"`).
        """
        from kmtl.evaluation.plots import save_plots

        return save_plots(self, directory, history, overwrite=overwrite)

    def table(self, digits: int = 4, width: int = 120) -> str:
        """The report as a fixed-width text table, one row per task and `-` where a metric does not apply.

        Args:
            digits: int. Decimals of each value.
            width: int. Line width; wider tables are split into blocks of metric columns, each led by the task
                and kind columns.
        """
        columns = []
        for metrics in self.task_metrics.values():
            columns += [m for m in metrics if m not in columns]
        cells = {
            c: [
                "-" if c not in m else "n/a" if t in self.too_few and c not in _LOSS_COLUMNS else _format(m[c], digits)
                for t, m in self.task_metrics.items()
            ]
            for c in columns
        }
        lead = [["task"] + self.tasks, ["kind"] + [self.kinds.get(t, "") for t in self.tasks]]
        lead_width = sum(max(map(len, col)) + 2 for col in lead)
        blocks, used = [[]], lead_width
        for column in columns:
            size = max(len(column), *map(len, cells[column])) + 2
            if blocks[-1] and used + size > width:
                blocks.append([])
                used = lead_width
            blocks[-1].append([column] + cells[column])
            used += size
        lines = []
        for block in blocks:
            lines += ([""] if lines else []) + _render(lead + block)
        if self.overall:
            lines.append("overall: " + ", ".join(f"{k}={_format(v, digits)}" for k, v in self.overall.items()))
        lines += [f"{task}: n/a (too few examples: {reason})" for task, reason in self.too_few.items()]
        if "weight" in columns:
            lines.append(WEIGHT_NOTE)
        if isinstance(self.overall.get("loss"), float) and self.overall["loss"] < 0:
            lines.append(NEGATIVE_LOSS_NOTE)
        if self.references:
            rows = {
                task: {**row, "model": float(self.task_metrics[task].get(row["metric"], float("nan")))}
                for task, row in self.references.items()
            }
            lines += [""] + reference_lines(rows, digits)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return f"EvaluationReport(tasks={self.tasks})"


def evaluate(
    model,
    data: Any,
    y: Any = None,
    *,
    batch_size: int | None = None,
    verbose: int = 0,
    threshold: float = 0.5,
    train_data: Any = None,
    classical: bool = True,
) -> EvaluationReport:
    """Evaluates a `MultiTaskModel`: each task's metrics over its present labels, computed with scikit-learn.

    Every task gets its loss (and weight) from the Keras evaluation, and metrics computed from the predictions over
    the labels that are present (missing markers and padded steps are left out):

    - binary: `accuracy`, `precision`, `recall`, `f1`, `auroc`;
    - multiclass: `accuracy`, `precision_macro`, `recall_macro`, `f1_macro`, `auroc_ovr` (one-vs-rest, macro over
      the classes that occur);
    - multilabel: `accuracy` over entries, `precision`, `recall`, `f1`, `auroc` each `_macro` (mean over labels)
      and `_micro` (entries pooled), and `dice`;
    - regression: `mae`, `rmse`, and `nme` when the task's metrics include `kmtl.metrics.NormalizedMeanError`;
    - `dice` (mean per-example Dice of the thresholded mask) also for per-step binary tasks and binary tasks that
      list a Dice metric.

    Undefined values (AUROC with one class present) are NaN; precision and recall with nothing predicted or present
    are 0. Other metrics the model logs (e.g. `top_2_accuracy`) are kept under their Keras names. `overall` holds
    the total `loss` and, when the model has main (non-auxiliary) classification tasks with enough examples to
    score (see `MIN_EXAMPLES`), `geometric_mean_accuracy`.

    Args:
        model: compiled `kmtl.MultiTaskModel`.
        data: a `tf.data.Dataset` or `keras.utils.PyDataset` of `(inputs, {task: labels})` batches, or inputs
            when `y` is given. The data is read twice (Keras evaluation, then predictions), so a one-shot
            iterator or generator is refused.
        y: dict of labels when `data` holds inputs.
        batch_size: int. Batch size for array data.
        verbose: int. Keras verbosity.
        threshold: float. Probability at or above which binary and multilabel entries count as positive.
        train_data: the training split (a dataset of `(inputs, {task: labels})` batches or a tuple `(x, y)`), or
            None. When given, each task's trivial predictor (and, with `classical`, a logistic or ridge regression)
            is fitted on it and scored on `data` (`kmtl.evaluation.reference_scores`); the table shows them beside
            the model's primary metric and marks tasks the model does not clearly beat the trivial predictor on.
        classical: bool. With `train_data`, also fit the classical model (a few seconds per task at most).

    Returns:
        `EvaluationReport` with each task's metrics, confusion matrices of classification tasks and, with
        `train_data`, `references`.

    Example:

    >>> report = kmtl.evaluate(model, test_ds)  # doctest: +SKIP
    >>> report["smiling"]["auroc"], report.confusion_matrix("hair").matrix  # doctest: +SKIP
    """
    check_evaluate_arguments(model, data, y)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise ValueError(
            f"Invalid value for `threshold`. Expected a number in (0, 1). Received: threshold={threshold!r}"
        )
    if y is None and (hasattr(data, "__next__") or not hasattr(data, "__iter__") and not hasattr(data, "__getitem__")):
        raise ValueError(
            "Invalid value for `data`. Expected a tf.data.Dataset, a keras.utils.PyDataset or arrays with `y`; a "
            f"one-shot iterator cannot be read twice. Received: data={type(data).__name__}"
        )
    logs = model.evaluate(data, y, batch_size=batch_size, verbose=verbose, return_dict=True)
    from_keras = report_from_logs(model, logs)
    scorers = {task.name: TaskScorer(task, threshold) for task in model.tasks}
    for labels, predictions in _labelled_predictions(model, data, y, batch_size):
        for name, scorer in scorers.items():
            scorer.add(labels[name], predictions[name])
    task_metrics, confusion = {}, {}
    for task in model.tasks:
        keras_values = from_keras.task_metrics[task.name]
        scores = scorers[task.name].scores()
        metrics = {k: keras_values[k] for k in ("loss", "weight") if k in keras_values}
        metrics.update(scores)
        metrics.update({k: v for k, v in keras_values.items() if k not in metrics and k not in _SUPERSEDED})
        task_metrics[task.name] = metrics
        matrix = scorers[task.name].confusion()
        if matrix is not None:
            confusion[task.name] = matrix
    overall = dict(from_keras.overall)
    too_few = {name: _too_few(matrix) for name, matrix in confusion.items() if _too_few(matrix)}
    accuracies = [
        task_metrics[t.name].get("accuracy", float("nan"))
        for t in model.tasks
        if t.kind in CLASSIFICATION_KINDS and not t.auxiliary and t.name not in too_few
    ]
    accuracies = [a for a in accuracies if np.isfinite(a)]
    if accuracies:
        overall["geometric_mean_accuracy"] = geometric_mean(accuracies)
    references = None
    if train_data is not None:
        from kmtl.evaluation.classical import categorical_inputs
        from kmtl.evaluation.reference_scores import reference_scores
        from kmtl.evaluation.windows import input_windows

        test = data if y is None else (data, y)
        references = reference_scores(model.tasks, train_data, test, classical=classical,
                                      categorical=categorical_inputs(model) if classical else (),
                                      windows=input_windows(model) if classical else None)
    return EvaluationReport(task_metrics, overall, from_keras.kinds, confusion, too_few, references)


def _too_few(matrix) -> str | None:
    """Why a classification task's test scores mean nothing (few examples, one class), or None."""
    counts = np.asarray(matrix.matrix)
    if counts.ndim == 3:  # multilabel: one 2x2 matrix per label, the entries of each counted
        examples, classes = int(counts[0].sum()), 2 if (counts.sum(axis=2)[:, 1] > 0).any() else 1
    else:
        examples, classes = int(counts.sum()), int((counts.sum(axis=1) > 0).sum())
    if examples >= MIN_EXAMPLES and classes >= 2:
        return None
    return (f"{examples} labelled, {classes} class{'es' if classes != 1 else ''} present; scores need at least "
            f"{MIN_EXAMPLES} and 2 classes")


def _labelled_predictions(model, data, y, batch_size):
    """Yields `(labels, predictions)` dicts in matching order: one pass over the data, predicting batch by batch."""
    if y is not None:
        predictions = model.predict(data, batch_size=batch_size, verbose=0)
        yield y, predictions
        return
    if hasattr(data, "__getitem__") and hasattr(data, "__len__") and not hasattr(data, "element_spec"):
        batches = (data[i] for i in range(len(data)))  # a keras.utils.PyDataset
    else:
        batches = iter(data)
    for batch in batches:
        inputs, labels = batch[0], batch[1]
        predictions = model.predict_on_batch(inputs)
        yield {k: np.asarray(v) for k, v in labels.items()}, predictions


def report_from_logs(model, logs: dict, prefix: str = "") -> EvaluationReport:
    """Builds a report from Keras logs (`history` entries or `evaluate(return_dict=True)`), e.g. `prefix="val_"`."""
    names = sorted(model.task_names, key=len, reverse=True)  # longest first, so "age_group" wins over "age"
    task_metrics = {t: {} for t in model.task_names}
    overall = {}
    for key, value in logs.items():
        if not key.startswith(prefix):
            continue
        key = key[len(prefix):]
        owner = next((t for t in names if key.startswith(t + "_")), None)
        if owner is None:
            overall[key] = float(value)
        else:
            task_metrics[owner][key[len(owner) + 1:]] = float(value)
    kinds = {t.name: t.kind + (" (aux)" if t.auxiliary else "") for t in model.tasks}
    return EvaluationReport(task_metrics, overall, kinds)


def _format(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _render(columns: list[list[str]]) -> list[str]:
    """Lines of a table given as columns (header first), with a rule under the header."""
    widths = [max(len(cell) for cell in column) for column in columns]
    rows = [[column[i] for column in columns] for i in range(len(columns[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines
