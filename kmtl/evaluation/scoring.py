"""One home for scoring: which way each metric is better, a task's skill, and the one multi-task score.

Evaluation (`primary_metric`, Δm), model selection (`MultiTaskCheckpoint`) and tuning (`MultiTaskObjective`) all read
the direction of a metric from `metric_direction` and combine tasks with `multitask_score`. What each task counts
as depends on what the caller knows: the tuner and the checkpoint (given the training data) know each task's
trivial predictor and score skill over it (`references`), free of the tasks' units, logged as `val_mtl_score`; with
single-task `baselines` the score is 1 + Δm; with neither, an error `m` counts as `1 / (1 + m / scale)`, which
depends on the units (`MultiTaskCheckpoint` logs that as `val_mtl_scaled_score`).

Reference:
    Maninis, Radosavovic & Kokkinos (2019). Attentive Single-Tasking of Multiple Tasks. CVPR (the Δm measure).
    Murphy (1988). Skill Scores Based on the Mean Square Error and Their Relationships to the Correlation
    Coefficient. Monthly Weather Review 116 (skill over a reference forecast).
"""

from __future__ import annotations

import math
from typing import Mapping

# Metric names (as Keras logs them after `<task>_`, and as `kmtl.evaluate` reports them) by the end of the name.
HIGHER_IS_BETTER = ("accuracy", "auc", "auroc", "precision", "recall", "f1", "f1_score", "fbeta_score", "iou", "dice",
                    "kappa", "r2_score", "correlation")
LOWER_IS_BETTER = ("loss", "error", "mae", "mse", "rmse", "msle", "mape", "nme", "crossentropy", "hinge", "logcosh",
                   "deviation", "mad")
# Averaging suffixes of `kmtl.evaluate`'s names (`f1_macro`, `auroc_ovr`), ignored when reading the direction.
_AVERAGES = ("_macro", "_micro", "_ovr", "_weighted", "_samples")


def metric_direction(metric: str) -> str:
    """`"max"` when larger values of `metric` are better, `"min"` when smaller ones are.

    A `val_` prefix and an averaging suffix (`_macro`, `_micro`, `_ovr`) are ignored; the name is matched by its
    end, so `top_2_accuracy`, `pr_auc` and `val_age_mae` are understood.

    Args:
        metric: str. A metric name, e.g. `"accuracy"`, `"auroc_ovr"`, `"mae"`, `"loss"`.

    Returns:
        `"max"` or `"min"`.

    Raises:
        ValueError: for a name that says neither; pass the direction explicitly then.

    Example:

    >>> metric_direction("top_2_accuracy"), metric_direction("val_nme"), metric_direction("f1_macro")
    ('max', 'min', 'max')
    """
    name = metric.lower()
    if name.startswith("val_"):
        name = name[4:]
    for average in _AVERAGES:
        if name.endswith(average):
            name = name[: -len(average)]
            break
    if name.endswith(HIGHER_IS_BETTER):
        return "max"
    if name.endswith(LOWER_IS_BETTER):
        return "min"
    raise ValueError(
        f"Cannot tell whether metric {metric!r} is better larger or smaller. Expected a name ending in one of "
        f"{HIGHER_IS_BETTER} (larger is better) or {LOWER_IS_BETTER} (smaller is better); otherwise give the direction "
        f"explicitly (e.g. `directions={{task: 'max'}}` or `(metric, lower_is_better)`). Received: metric={metric!r}"
    )


def lower_is_better(metric: str) -> bool:
    """Whether a lower value of `metric` is better (`loss`, `mae`, `rmse`, `nme`, ...); see `metric_direction`.

    Example:

    >>> lower_is_better("val_mae"), lower_is_better("auroc")
    (True, False)
    """
    return metric_direction(metric) == "min"


def relative_improvement(mtl: float, single: float, lower_is_better: bool) -> float:
    """`(-1)^l (mtl - single) / |single|`, positive when the multi-task model is better; NaN when `single` is 0.

    Example:

    >>> round(relative_improvement(0.9, 0.8, False), 4), round(relative_improvement(4.0, 5.0, True), 4)
    (0.125, 0.2)

    Reference:
        Maninis, Radosavovic & Kokkinos (2019). Attentive Single-Tasking of Multiple Tasks. CVPR.
    """
    if single == 0 or not (math.isfinite(single) and math.isfinite(mtl)):
        return float("nan")
    change = (mtl - single) / abs(single)
    return float(-change if lower_is_better else change)


def skill(value: float, reference: float, direction: str) -> float:
    """A metric's skill over a reference predictor: `(m - r) / (p - r)`, with `p` the perfect value.

    `p` is 1 for a metric to maximise (accuracy, AUC, F1, Dice, kappa: all at most 1) and 0 for one to minimise
    (errors), so the skill is 0 at the reference, 1 when perfect and negative when worse than the reference; for
    an error it is `1 - m / r`, for AUROC against a prior's 0.5 it is `2 AUROC - 1`. It does not change when a
    regression task's labels are rescaled (years or months), since the error and its reference scale together.
    NaN when a value is not finite; 0 where the reference is already perfect (nothing is left to gain).

    Example:

    >>> skill(2.0, 8.0, "min"), skill(0.75, 0.5, "max"), skill(0.5, 0.5, "max")
    (0.75, 0.5, 0.0)

    Reference:
        Murphy (1988). Skill Scores Based on the Mean Square Error and Their Relationships to the Correlation
        Coefficient. Monthly Weather Review 116.
    """
    value, reference = float(value), float(reference)
    if not (math.isfinite(value) and math.isfinite(reference)):
        return float("nan")
    gap = (1.0 if direction == "max" else 0.0) - reference
    return 0.0 if gap == 0 else (value - reference) / gap


def normalised_metric(value: float, direction: str, *, baseline: float | None = None, scale: float = 1.0) -> float:
    """A task's metric on a common scale where larger is better, `n_t` of `multitask_score`.

    With a baseline `b`: `n = 1 + relative_improvement(value, b)`, so `n = 1` at the baseline (for `b > 0` this is
    `value / b` for a metric to maximise and `2 - value / b` for one to minimise). Without: `n = value` for a metric
    to maximise (assumed in `[0, 1]`), `n = 1 / (1 + value / scale)` for one to minimise (assumed `>= 0`): 1 at 0,
    1/2 at `value = scale`.

    Example:

    >>> normalised_metric(0.9, "max"), normalised_metric(5.0, "min", scale=5.0), normalised_metric(4.0, "min", baseline=5.0)
    (0.9, 0.5, 1.2)
    """
    value = float(value)
    if baseline is not None:
        return 1.0 + relative_improvement(value, float(baseline), direction == "min")
    return value if direction == "max" else 1.0 / (1.0 + value / scale)


def multitask_score(
    values: Mapping[str, float],
    directions: Mapping[str, str],
    *,
    weights: Mapping[str, float] | None = None,
    baselines: Mapping[str, float | None] | None = None,
    scales: Mapping[str, float] | None = None,
    references: Mapping[str, float] | None = None,
) -> float:
    """The multi-task score `Σ_t w_t n_t / Σ_t w_t`; larger is better.

    With `references` (each task's trivial predictor's value of the metric, e.g. from
    `kmtl.evaluation.trivial.trivial_metric_values`), `n_t = skill(values[t], references[t], directions[t])`: the
    score is the weighted mean skill, 0 when every task is at its trivial predictor, 1 when all are perfect, and
    free of the tasks' units. This is `val_mtl_score`, what `kmtl tune` ranks by and `MultiTaskCheckpoint` keeps
    the best epoch by. Otherwise
    `n_t = normalised_metric(values[t], directions[t], baseline=baselines[t], scale=scales[t])`; with a baseline
    for every task and equal weights the score minus 1 is Δm (Maninis et al. 2019). A NaN metric gives NaN.

    Args:
        values: dict `{task: metric value}`; its keys are the tasks scored.
        directions: dict `{task: "max" | "min"}`.
        weights: dict `{task: weight >= 0}`; 1 for a task not named.
        baselines: dict `{task: reference value}` (e.g. single-task results); None for a task without.
        scales: dict `{task: error scale > 0}` of minimised metrics without baseline; 1 for a task not named.
        references: dict `{task: the trivial predictor's value}` naming every task of `values`, or None.

    Example:

    >>> multitask_score({"smiling": 0.9, "age": 5.0}, {"smiling": "max", "age": "min"}, scales={"age": 5.0})
    0.7
    """
    weights, baselines, scales = dict(weights or {}), dict(baselines or {}), dict(scales or {})
    total = sum(weights.get(t, 1.0) for t in values)
    if not total > 0:
        raise ValueError(f"Invalid value for `weights`. Expected a positive total. Received: weights={weights}")
    if references is not None:
        absent = [t for t in values if t not in references]
        if absent:
            raise ValueError(f"`references` lacks task(s) {absent}; expected a value for every scored task "
                             f"{list(values)}. Received: references={dict(references)}")
        return float(sum(weights.get(t, 1.0) * skill(v, references[t], directions[t]) for t, v in values.items())
                     / total)
    score = sum(
        weights.get(t, 1.0) * normalised_metric(v, directions[t], baseline=baselines.get(t), scale=scales.get(t, 1.0))
        for t, v in values.items()
    )
    return float(score / total)
