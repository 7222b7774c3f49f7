"""Reference predictors' scores (trivial, classical) and whether a model clearly beats the trivial one.

"Clearly better" (`clearly_beats`): the model's relative improvement over the trivial predictor on the task's primary
metric, `(-1)^l (M - M_trivial) / |M_trivial|` (`l` = 1 when lower is better), is at least `CLEAR_MARGIN` (5%): an
AUROC of at least 0.525 against the prior's 0.5, an accuracy 5% above the majority class's, an MAE 5% below the
median's. With repeats (several seeds), the mean improvement must reach the margin and the 95% t-interval of the
improvement must lie above zero.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from kmtl.evaluation.arrays import collect_examples
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


@dataclass
class Examples:
    """A training split read into arrays for the reference predictors, its repetition undone.

    Attributes:
        inputs: dict `{input: array}` (or one array), examples first.
        labels: dict `{task: array}`, examples first.
        rows_read: int. Rows read from the data (at most `MAX_FIT_EXAMPLES`).
        passes: float. How many times the data repeated its distinct examples in those rows: 1 unless it is whole
            passes over one set of examples (a small training split repeated within an epoch, e.g. the
            mixed-effects and forecasting recipes' `passes_per_epoch`); then only the first pass is kept.
    """

    inputs: Any
    labels: dict
    rows_read: int
    passes: float = 1.0

    @property
    def repeated(self) -> bool:
        return self.passes > 1

    def rows_note(self) -> str:
        """What the rows are: empty for plain data, else how the repetition was undone."""
        if not self.repeated:
            return ""
        return f" (the training data repeats its {len(self)} examples, {self.rows_read} rows read)"

    def __len__(self) -> int:
        return len(next(iter(self.labels.values()))) if self.labels else 0


def training_examples(data: Any, tasks: Sequence) -> Examples:
    """Reads at most `MAX_FIT_EXAMPLES` training examples (`collect_examples`) and keeps each distinct one once
    when the data repeats them (`distinct_examples`); `Examples` are returned as they are."""
    if isinstance(data, Examples):
        return data
    inputs, labels = collect_examples(data, tasks, limit=MAX_FIT_EXAMPLES)
    return distinct_examples(inputs, labels)


def distinct_examples(inputs, labels: Mapping[str, np.ndarray]) -> Examples:
    """The first pass of examples that repeat as whole passes over one set; the examples as they are otherwise.

    The rows are read as repetition when the first repeated example comes back after `d` distinct ones, at least
    two passes were read, and every later block of `d` rows holds distinct examples of that first block (the
    order may change: a split shuffled again each pass). A dataset that merely holds some equal examples does not
    look like that, so it keeps them all: they are data, not repetition.

    Example:

    >>> x = np.array([[0.0], [1.0], [2.0]] * 3)
    >>> examples = distinct_examples(x, {"a": np.array([0, 1, 1] * 3)})
    >>> len(examples), examples.rows_read, examples.passes
    (3, 9, 3.0)
    >>> len(distinct_examples(x[:4], {"a": np.array([0, 1, 1, 0])}))  # one equal example: kept
    4
    """
    rows = len(next(iter(labels.values()))) if labels else 0
    keys = _example_keys(inputs, labels, rows)
    seen, period = set(), 0
    for key in keys:
        if key in seen:
            break
        seen.add(key)
        period += 1
    plain = Examples(inputs, dict(labels), rows)
    if period == rows or rows < 2 * period:
        return plain
    for start in range(period, rows, period):
        block = keys[start : start + period]
        if len(set(block)) != len(block) or not seen.issuperset(block):
            return plain
    first = slice(0, period)
    kept = {k: v[first] for k, v in inputs.items()} if isinstance(inputs, Mapping) else inputs[first]
    return Examples(kept, {k: v[first] for k, v in labels.items()}, rows, rows / period)


def _example_keys(inputs, labels, rows) -> list[bytes]:
    arrays = list(inputs.values()) if isinstance(inputs, Mapping) else [inputs]
    arrays += list(labels.values())
    digests = [hashlib.blake2b(digest_size=16) for _ in range(rows)]
    for array in arrays:
        array = np.asarray(array)
        readable = array.dtype.kind in "biufcSUV"
        for i in range(rows):
            row = array[i]
            digests[i].update(np.ascontiguousarray(row).tobytes() if readable else repr(row.tolist()).encode())
    return [d.digest() for d in digests]


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
        lines.append("Classical models (scikit-learn LogisticRegression / RidgeCV on standardised features):")
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
