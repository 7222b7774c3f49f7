"""Relative improvement, Δm and the result of a single-task comparison.

Reference:
    Maninis, Radosavovic & Kokkinos (2019). Attentive Single-Tasking of Multiple Tasks. CVPR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from kmtl.evaluation.scores import TaskScorer, nme_metric, reports_dice
from kmtl.evaluation.scoring import LOWER_IS_BETTER, lower_is_better, relative_improvement  # noqa: F401 (re-exported)
from kmtl.tasks import Task

PRIMARY_METRICS = {"binary": "auroc", "multiclass": "accuracy", "multilabel": "auroc_macro", "regression": "mae"}


def primary_metric(task: Task) -> tuple[str, bool]:
    """A task's default primary metric and whether lower is better (see `compare_single_task` for the reasons).

    Example:

    >>> primary_metric(Task("age", "regression"))
    ('mae', True)
    """
    if task.kind == "regression" and nme_metric(task) is not None:
        return "nme", True
    metric = PRIMARY_METRICS[task.kind]
    return metric, lower_is_better(metric)


def delta_m(
    mtl: Mapping[str, float],
    single: Mapping[str, float],
    lower_is_better: Mapping[str, bool],
    weights: Mapping[str, float] | None = None,
) -> float:
    """Δm: the mean over tasks of the relative improvement of the multi-task model over single-task baselines.

    `Δm = 1/T Σ_t (-1)^{l_t} (M_mtl,t - M_single,t) / M_single,t`, with `l_t` = 1 when lower is better for task
    t's metric. Positive: the multi-task model is better on average. Values are fractions (0.05 = +5%).

    Args:
        mtl: dict `{task: metric value of the multi-task model}`.
        single: dict `{task: metric value of the single-task model}`; its keys are the tasks averaged over.
        lower_is_better: dict `{task: bool}`.
        weights: optional dict `{task: weight}` for a weighted mean (Maninis et al. use equal weights).

    Returns:
        float; NaN when a task's value is missing, not finite or its baseline is 0.

    Example:

    >>> round(delta_m({"a": 0.9, "b": 4.0}, {"a": 0.8, "b": 5.0}, {"a": False, "b": True}), 4)
    0.1625

    Reference:
        Maninis, Radosavovic & Kokkinos (2019). Attentive Single-Tasking of Multiple Tasks. CVPR.
    """
    if not single:
        raise ValueError("Invalid value for `single`. Expected at least one task. Received: single={}")
    weights = {t: 1.0 for t in single} if weights is None else weights
    total = sum(weights.get(t, 0.0) for t in single)
    if total <= 0:
        raise ValueError(f"Invalid value for `weights`. Expected a positive total. Received: weights={weights}")
    value = 0.0
    for task, baseline in single.items():
        if task not in mtl:
            return float("nan")
        value += weights.get(task, 0.0) * relative_improvement(mtl[task], baseline, lower_is_better[task])
    return float(value / total)


def resolve_primary_metrics(tasks, overrides=None) -> dict:
    """`{task: (metric, lower_is_better)}`: each task's default primary metric, or its override, checked against
    the names `kmtl.evaluate` reports for the task."""
    overrides = dict(overrides or {})
    names = [t.name for t in tasks]
    unknown = [k for k in overrides if k not in names]
    if unknown:
        raise ValueError(f"`primary_metrics` names unknown task(s) {unknown}. Valid task names: {names}.")
    chosen = {}
    for task in tasks:
        given = overrides.get(task.name)
        if given is None:
            chosen[task.name] = primary_metric(task)
            continue
        metric, lower = (given, None) if isinstance(given, str) else tuple(given)
        known = _report_metrics(task)
        if metric not in known:
            raise ValueError(
                f"Task '{task.name}': invalid value for `primary_metrics`. Expected one of {sorted(known)}. "
                f"Received: primary_metrics[{task.name!r}]={metric!r}"
            )
        chosen[task.name] = (metric, lower_is_better(metric) if lower is None else bool(lower))
    return chosen


def _report_metrics(task):
    """Names under which `kmtl.evaluate` reports a task's values."""
    scorer = TaskScorer(task)
    known = {"loss", "weight"} | set(_empty_scores(task, scorer))
    if reports_dice(task):
        known.add("dice")
    if task.kind == "regression" and nme_metric(task) is not None:
        known.add("nme")
    known |= {m if isinstance(m, str) else m.name for m in task.metrics}
    return known - {"auc"}  # the report replaces Keras's approximate AUC by the exact AUROC


def _empty_scores(task, scorer):
    labels = np.full((1, task.label_width), task.missing)
    scorer.add(labels, np.zeros((1, task.output_units)))
    return scorer.scores()


def _mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for one value); NaN when any value is NaN."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0


@dataclass
class TaskComparison:
    """One task's scores in a comparison: one value per seed for the multi-task and the single-task model."""

    task: str
    kind: str
    metric: str
    lower_is_better: bool
    auxiliary: bool
    mtl: list
    single: list | None = None

    @property
    def improvements(self) -> list:
        """Relative improvement per seed (positive: MTL better); empty for auxiliary tasks."""
        if not self.single:
            return []
        return [relative_improvement(m, s, self.lower_is_better) for m, s in zip(self.mtl, self.single)]

    @property
    def negative_transfer(self) -> bool:
        """True when the multi-task model is worse than the single-task one on average over seeds."""
        mean = _mean_std(self.improvements)[0] if self.improvements else float("nan")
        return bool(mean < 0)

    def to_dict(self) -> dict:
        mtl_mean, mtl_std = _mean_std(self.mtl)
        out = {"kind": self.kind, "metric": self.metric, "lower_is_better": self.lower_is_better,
               "auxiliary": self.auxiliary, "mtl": list(self.mtl), "mtl_mean": mtl_mean, "mtl_std": mtl_std}
        if self.single:
            single_mean, single_std = _mean_std(self.single)
            change_mean, change_std = _mean_std(self.improvements)
            out.update(single=list(self.single), single_mean=single_mean, single_std=single_std,
                       relative_change=[(m - s) / abs(s) if s else float("nan") for m, s in zip(self.mtl, self.single)],
                       improvement=self.improvements, improvement_mean=change_mean, improvement_std=change_std,
                       negative_transfer=self.negative_transfer)
        return out


@dataclass
class ComparisonResult:
    """What `compare_single_task` measured: per-task scores over seeds, Δm and every model's budget.

    Attributes:
        rows: list of `TaskComparison`, in task order.
        seeds: list of int.
        runs: list of dicts, one per trained model: `seed`, `model` (`"multi-task"` or the task name), `tasks`,
            `epochs` and `steps` (optimizer steps).
    """

    rows: list
    seeds: list
    runs: list = field(default_factory=list)

    def __getitem__(self, task: str) -> TaskComparison:
        for row in self.rows:
            if row.task == task:
                return row
        raise KeyError(f"No task named {task!r}. Tasks: {[r.task for r in self.rows]}")

    @property
    def delta_m_values(self) -> list:
        """Δm per seed, over the main (non-auxiliary) tasks."""
        main = [r for r in self.rows if not r.auxiliary]
        per_seed = zip(*[r.improvements for r in main])
        return [float(np.mean(values)) for values in per_seed]

    @property
    def delta_m(self) -> float:
        return _mean_std(self.delta_m_values)[0]

    @property
    def delta_m_std(self) -> float:
        return _mean_std(self.delta_m_values)[1]

    @property
    def negative_transfer(self) -> list:
        """Names of the tasks on which the multi-task model is worse than its single-task baseline."""
        return [r.task for r in self.rows if not r.auxiliary and r.negative_transfer]

    def to_dict(self) -> dict:
        return {"tasks": {r.task: r.to_dict() for r in self.rows}, "delta_m": self.delta_m,
                "delta_m_std": self.delta_m_std, "delta_m_values": self.delta_m_values, "seeds": list(self.seeds),
                "runs": [dict(run) for run in self.runs]}

    def table(self, digits: int = 4) -> str:
        """Fixed-width table: per task its metric, MTL and single-task score, relative improvement and a flag."""
        many = len(self.seeds) > 1

        def cell(values, scale=1.0, sign=False, suffix=""):
            mean, std = _mean_std(values)
            if math.isnan(mean):
                return "nan"
            text = f"{mean * scale:+.{digits - 2}f}" if sign else f"{mean * scale:.{digits}f}"
            return text + suffix + (f" ± {std * scale:.{digits - 2 if sign else digits}f}{suffix}" if many else "")

        header = ["task", "kind", "metric", "multi-task", "single-task", "improvement", "negative transfer"]
        rows, undefined = [header], []
        for r in self.rows:
            metric = r.metric + (" (lower better)" if r.lower_is_better else "")
            name = r.task + (" (aux)" if r.auxiliary else "")
            if not r.single:
                rows.append([name, r.kind, metric, cell(r.mtl), "-", "-", "-"])
                continue
            defined = not any(math.isnan(v) for v in r.improvements)
            undefined += [] if defined else [r.task]
            flag = ("yes" if r.negative_transfer else "no") if defined else "n/a"
            rows.append([name, r.kind, metric, cell(r.mtl), cell(r.single), cell(r.improvements, 100, True, "%"), flag])
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        spread = f" ± {self.delta_m_std * 100:.2f}%" if many and not undefined else ""
        value = "nan" if math.isnan(self.delta_m) else f"{self.delta_m * 100:+.2f}%"
        seeds = ", ".join(str(s) for s in self.seeds)
        lines.append(f"Δm = {value}{spread} over main tasks (Maninis et al. 2019; positive: multi-task better), "
                     f"seed(s) {seeds}.")
        if self.negative_transfer:
            lines.append(f"Negative transfer on: {', '.join(self.negative_transfer)}.")
        if undefined:
            lines.append(f"Undefined for {', '.join(undefined)}: a score is NaN or a baseline 0 (e.g. AUROC with one "
                         "class in the test labels); use more test data or other `primary_metrics`.")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()
