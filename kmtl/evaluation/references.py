"""Reference predictors' scores (trivial, classical) and whether a model clearly beats the trivial one.

"Clearly better" (`clearly_beats`): the model's relative improvement over the trivial predictor on the task's primary
metric, `(-1)^l (M - M_trivial) / |M_trivial|` (`l` = 1 when lower is better), is at least `CLEAR_MARGIN` (5%): an
AUROC of at least 0.525 against the prior's 0.5, an accuracy 5% above the majority class's, an MAE 5% below the
median's. With repeats (several seeds), the mean improvement must reach the margin and the 95% t-interval of the
improvement must lie above zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from kmtl.evaluation.scores import TaskScorer
from kmtl.evaluation.scoring import relative_improvement
from kmtl.evaluation.statistics import mean_interval

# The trivial predictors are fitted on at most this many training examples (read in order).
MAX_FIT_EXAMPLES = 20_000
# Relative improvement over the trivial predictor below which a task is marked "not clearly better".
CLEAR_MARGIN = 0.05


@dataclass
class ReferenceScore:
    """One reference predictor's scores on one task.

    Attributes:
        name: str. Short name: `"class prior"`, `"median"`, `"mean"`, `"last value"`, `"logistic"`, `"ridge"`.
        scores: dict `{metric: value}` as `kmtl.evaluate` names them; empty when the predictor was skipped.
        detail: str. What it was fitted on (features, examples), or why it was skipped.
    """

    name: str
    scores: dict = field(default_factory=dict)
    detail: str = ""

    @property
    def skipped(self) -> bool:
        return not self.scores

    def get(self, metric: str) -> float:
        return float(self.scores.get(metric, float("nan")))


def score_predictions(task, labels, predictions) -> dict:
    """The scores `kmtl.evaluate` reports for `task`, of `predictions` `(rows, output_units)` against `labels`."""
    scorer = TaskScorer(task)
    scorer.add(labels, np.asarray(predictions, np.float64))
    return scorer.scores()


def better(value: float, other: float, lower_is_better: bool) -> bool:
    """Whether `value` is finite and better than `other` (or `other` is not finite)."""
    if not math.isfinite(value):
        return False
    if not math.isfinite(other):
        return True
    return value < other if lower_is_better else value > other


def clearly_beats(values, trivial, lower_is_better: bool, margin: float = CLEAR_MARGIN) -> bool | None:
    """Whether a model clearly beats the trivial predictor (see the module docstring); None when undefined.

    Args:
        values: float or list of float: the model's primary metric, one value per repeat.
        trivial: float or list of float: the trivial predictor's, one per repeat (or one for all).
        lower_is_better: bool.
        margin: float. Least relative improvement.

    Example:

    >>> clearly_beats(0.53, 0.5, False), clearly_beats(0.51, 0.5, False), clearly_beats(9.0, 10.0, True)
    (True, False, True)
    """
    values = np.atleast_1d(np.asarray(values, np.float64))
    trivial = np.broadcast_to(np.atleast_1d(np.asarray(trivial, np.float64)), values.shape)
    gains = np.array([relative_improvement(v, t, lower_is_better) for v, t in zip(values, trivial)])
    if gains.size == 0 or np.isnan(gains).any():
        return None
    mean, low, _ = mean_interval(gains)
    return bool(mean >= margin and (gains.size == 1 or low > 0))


def reference_lines(
    rows: Mapping[str, dict], digits: int = 4
) -> list[str]:
    """Text lines of a table of each task's primary metric beside its trivial and classical predictors'.

    Args:
        rows: dict `{task: {"metric": str, "lower_is_better": bool, "model": float, "trivial": ReferenceScore,
            "classical": ReferenceScore or None}}`.
        digits: int. Decimals.

    Returns:
        list of str: a header, the table, a line on what "clearly" means and notes on skipped predictors.
    """
    header = ["task", "metric", "model", "trivial", "classical", "vs trivial", "note"]
    table, notes, unclear = [header], {}, []
    for task, row in rows.items():
        metric, lower = row["metric"], row["lower_is_better"]
        trivial, classical = row["trivial"], row.get("classical")
        value = row["model"]
        gain = relative_improvement(value, trivial.get(metric), lower)
        clear = clearly_beats(value, trivial.get(metric), lower)
        if clear is False:
            unclear.append(task)
        table.append([
            task, metric + (" (lower better)" if lower else ""), _format(value, digits),
            f"{_format(trivial.get(metric), digits)} {trivial.name}",
            "-" if classical is None else "skipped" if classical.skipped else
            f"{_format(classical.get(metric), digits)} {classical.name}",
            "nan" if math.isnan(gain) else f"{gain * 100:+.1f}%",
            "" if clear is not False else "NOT CLEARLY BETTER",
        ])
        if classical is not None and classical.detail:
            notes.setdefault(classical.detail, []).append(task)
    lines = ["Reference predictors fitted on the training split, scored on the same test data (primary metric):"]
    lines += render(table)
    lines.append(f"Clearly better: at least {CLEAR_MARGIN:.0%} relative improvement over the trivial predictor "
                 "(prior, median/mean or last value).")
    if unclear:
        lines.append(f"Not clearly better than the trivial predictor: {', '.join(unclear)}.")
    if notes:
        lines.append("Classical models (scikit-learn LogisticRegression / Ridge on standardised features):")
        lines += [f"  {', '.join(tasks)}: {detail}" for detail, tasks in notes.items()]
    return lines


def render(rows: list[list[str]]) -> list[str]:
    """Fixed-width lines of a table given as rows (header first), with a rule under the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths).rstrip())
    return lines


def _format(value: float, digits: int) -> str:
    return "nan" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"
