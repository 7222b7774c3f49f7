"""Relative improvement, Δm and primary metrics of a single-task comparison (its result: `comparison.py`).

Reference:
    Maninis, Radosavovic & Kokkinos (2019). Attentive Single-Tasking of Multiple Tasks. CVPR.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from kmtl.evaluation.comparison import ComparisonResult, TaskComparison  # noqa: F401 (re-exported)
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
