"""Per-task evaluation results: `kmtl.evaluate` and the `EvaluationReport` it returns."""

from __future__ import annotations

from typing import Any


class EvaluationReport:
    """Per-task metrics of one evaluation, printable as a table.

    Args:
        task_metrics: dict `{task_name: {metric_name: value}}`; metric names without the task prefix.
        overall: dict of values that belong to no single task (e.g. the total `loss`).
        kinds: dict `{task_name: kind}` for the table.

    Example:

    >>> report = EvaluationReport({"age": {"loss": 2.0, "mae": 1.1}}, {"loss": 2.0}, {"age": "regression"})
    >>> report["age"]["mae"]
    1.1
    """

    def __init__(self, task_metrics: dict, overall: dict, kinds: dict | None = None):
        self.task_metrics = task_metrics
        self.overall = overall
        self.kinds = kinds or {}

    def __getitem__(self, task: str) -> dict:
        return self.task_metrics[task]

    @property
    def tasks(self) -> list[str]:
        return list(self.task_metrics)

    def to_dict(self) -> dict:
        """`{task: {metric: value}}` plus an `"overall"` entry."""
        return {**{t: dict(m) for t, m in self.task_metrics.items()}, "overall": dict(self.overall)}

    def table(self, digits: int = 4) -> str:
        """The report as a fixed-width text table, one row per task."""
        columns = []
        for metrics in self.task_metrics.values():
            columns += [m for m in metrics if m not in columns]
        header = ["task", "kind"] + columns
        rows = [header]
        for task, metrics in self.task_metrics.items():
            cells = [task, self.kinds.get(task, "")]
            cells += [_format(metrics[c], digits) if c in metrics else "-" for c in columns]
            rows.append(cells)
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        if self.overall:
            lines.append("overall: " + ", ".join(f"{k}={_format(v, digits)}" for k, v in self.overall.items()))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return f"EvaluationReport(tasks={self.tasks})"


def evaluate(model, data: Any, y: Any = None, *, batch_size: int | None = None, verbose: int = 0) -> EvaluationReport:
    """Evaluates a `MultiTaskModel` and groups its logged metrics by task.

    Args:
        model: compiled `kmtl.MultiTaskModel`.
        data: a `tf.data.Dataset` of `(inputs, {task: labels})`, or inputs when `y` is given.
        y: dict of labels when `data` holds inputs.
        batch_size: int. Batch size for array data.
        verbose: int. Keras verbosity.

    Returns:
        `EvaluationReport` with each task's loss, weight and metrics over present labels.
    """
    logs = model.evaluate(data, y, batch_size=batch_size, verbose=verbose, return_dict=True)
    return report_from_logs(model, logs)


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
