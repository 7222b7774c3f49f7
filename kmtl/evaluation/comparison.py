"""The result of a single-task comparison: per-task scores over paired repeats, intervals, tests and Δm.

Statistics, over the repeats (seeds, and data splits or label masks where they change with the seed), each repeat
pairing the multi-task model with the single-task models trained on the same data:

- per task, the relative improvement `(-1)^l (M_mtl - M_single) / |M_single|` of each repeat, its mean and 95%
  Student-t interval (`kmtl.evaluation.statistics.mean_interval`), and the two-sided p-value of the paired t-test
  (the one-sample t-test of the per-repeat improvements, i.e. `scipy.stats.ttest_rel` on the scores normalised by
  the single-task score);
- Δm per repeat (the mean improvement over main tasks), its mean, interval and paired t-test likewise;
- transfer is flagged negative or positive only where the interval excludes zero (so p < 0.05); with one repeat
  nothing is flagged.

Reference:
    Maninis, Radosavovic & Kokkinos (2019). Attentive Single-Tasking of Multiple Tasks. CVPR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kmtl.evaluation.references import CLEAR_MARGIN, clearly_beats, render
from kmtl.evaluation.scoring import relative_improvement
from kmtl.evaluation.statistics import CONFIDENCE, excludes_zero, mean_interval, paired_p_value


def _mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for one value); NaN when any value is NaN."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0


def _transfer(values) -> str | None:
    """`"negative"` or `"positive"` where the interval of the mean of `values` excludes zero, else None."""
    mean, low, high = mean_interval(values)
    return None if not excludes_zero(low, high) else "positive" if mean > 0 else "negative"


@dataclass
class TaskComparison:
    """One task's scores in a comparison: one value per repeat for each model, paired by position.

    Attributes:
        task, kind, metric: str. The task, its kind and its primary metric.
        lower_is_better: bool.
        auxiliary: bool. Auxiliary tasks get no single-task model and stay out of Δm.
        mtl: list of float. The multi-task model's score per repeat.
        single: list of float or None. The single-task model's score per repeat.
        trivial: list of float or None. The trivial predictor's score per repeat (fitted on that repeat's training
            labels; see `kmtl.evaluation.trivial`).
        classical: list of float or None. The classical model's score per repeat (`kmtl.evaluation.classical`).
        references: dict or None. Names and details of the reference predictors (`{"trivial": name, ...}`).
    """

    task: str
    kind: str
    metric: str
    lower_is_better: bool
    auxiliary: bool
    mtl: list
    single: list | None = None
    trivial: list | None = None
    classical: list | None = None
    references: dict | None = None

    @property
    def improvements(self) -> list:
        """Relative improvement per repeat (positive: MTL better); empty for auxiliary tasks."""
        if not self.single:
            return []
        return [relative_improvement(m, s, self.lower_is_better) for m, s in zip(self.mtl, self.single)]

    @property
    def interval(self) -> tuple[float, float, float]:
        """`(mean, low, high)`: the mean improvement and its 95% t-interval (NaN bounds with one repeat)."""
        return mean_interval(self.improvements) if self.improvements else (math.nan,) * 3

    @property
    def p_value(self) -> float:
        """Two-sided p-value of the paired t-test of the improvements (NaN with fewer than two repeats)."""
        return paired_p_value(self.improvements) if self.improvements else math.nan

    @property
    def transfer(self) -> str | None:
        """`"negative"` or `"positive"` where the 95% interval of the improvement excludes zero, else None."""
        return _transfer(self.improvements) if self.improvements else None

    @property
    def negative_transfer(self) -> bool:
        """True when the multi-task model is worse than the single-task one beyond the noise of the repeats."""
        return self.transfer == "negative"

    def beats_trivial(self, side: str = "mtl") -> bool | None:
        """Whether the `"mtl"` or `"single"` model clearly beats the trivial predictor (see
        `kmtl.evaluation.references.clearly_beats`); None without trivial scores."""
        values = self.mtl if side == "mtl" else self.single
        if not self.trivial or not values:
            return None
        return clearly_beats(values, self.trivial, self.lower_is_better)

    def to_dict(self) -> dict:
        mtl_mean, mtl_std = _mean_std(self.mtl)
        out = {"kind": self.kind, "metric": self.metric, "lower_is_better": self.lower_is_better,
               "auxiliary": self.auxiliary, "mtl": list(self.mtl), "mtl_mean": mtl_mean, "mtl_std": mtl_std}
        for name in ("trivial", "classical"):
            values = getattr(self, name)
            if values:
                out[name] = list(values)
                out[f"{name}_mean"] = _mean_std(values)[0]
        if self.references:
            out["references"] = dict(self.references)
        if self.single:
            single_mean, single_std = _mean_std(self.single)
            change_mean, change_std = _mean_std(self.improvements)
            _, low, high = self.interval
            out.update(single=list(self.single), single_mean=single_mean, single_std=single_std,
                       relative_change=[(m - s) / abs(s) if s else float("nan") for m, s in zip(self.mtl, self.single)],
                       improvement=self.improvements, improvement_mean=change_mean, improvement_std=change_std,
                       improvement_interval=[low, high], p_value=self.p_value, transfer=self.transfer,
                       negative_transfer=self.negative_transfer)
        return out


@dataclass
class ComparisonResult:
    """What `compare_single_task` measured: per-task scores over paired repeats, Δm with its interval, every budget.

    Attributes:
        rows: list of `TaskComparison`, in task order.
        seeds: list of int, one per repeat.
        runs: list of dicts, one per trained model: `seed`, `model` (`"multi-task"` or the task name), `tasks`,
            `epochs` and `steps` (optimizer steps).
        notes: list of str. Lines the table prints at its end (e.g. how the repeats' data differ).
    """

    rows: list
    seeds: list
    runs: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def __getitem__(self, task: str) -> TaskComparison:
        for row in self.rows:
            if row.task == task:
                return row
        raise KeyError(f"No task named {task!r}. Tasks: {[r.task for r in self.rows]}")

    @property
    def main_rows(self) -> list:
        return [r for r in self.rows if not r.auxiliary]

    @property
    def delta_m_values(self) -> list:
        """Δm per repeat, over the main (non-auxiliary) tasks."""
        per_seed = zip(*[r.improvements for r in self.main_rows])
        return [float(np.mean(values)) for values in per_seed]

    @property
    def delta_m(self) -> float:
        return _mean_std(self.delta_m_values)[0]

    @property
    def delta_m_std(self) -> float:
        return _mean_std(self.delta_m_values)[1]

    @property
    def delta_m_interval(self) -> tuple[float, float]:
        """The 95% t-interval of Δm over repeats (NaN bounds with one repeat)."""
        return mean_interval(self.delta_m_values)[1:]

    @property
    def delta_m_p_value(self) -> float:
        """Two-sided p-value of the paired t-test of Δm over repeats."""
        return paired_p_value(self.delta_m_values)

    @property
    def negative_transfer(self) -> list:
        """Tasks where the multi-task model is worse than its single-task baseline, the interval excluding zero."""
        return [r.task for r in self.main_rows if r.transfer == "negative"]

    @property
    def positive_transfer(self) -> list:
        """Tasks where the multi-task model is better than its single-task baseline, the interval excluding zero."""
        return [r.task for r in self.main_rows if r.transfer == "positive"]

    def to_dict(self) -> dict:
        low, high = self.delta_m_interval
        return {"tasks": {r.task: r.to_dict() for r in self.rows}, "delta_m": self.delta_m,
                "delta_m_std": self.delta_m_std, "delta_m_interval": [low, high],
                "delta_m_p_value": self.delta_m_p_value, "delta_m_values": self.delta_m_values,
                "seeds": list(self.seeds), "runs": [dict(run) for run in self.runs], "notes": list(self.notes)}

    def table(self, digits: int = 4) -> str:
        """Fixed-width table: per task the scores (mean ± half-width of the 95% interval with repeats), the
        trivial and classical predictors', the improvement with its interval, the paired test and the flags."""
        many = len(self.seeds) > 1
        references = any(r.trivial for r in self.rows)
        header = ["task", "kind", "metric", "multi-task", "single-task"]
        header += ["trivial", "classical"] if references else []
        header += ["improvement", "95% interval", "p", "transfer"]
        rows, undefined, unclear = [header], [], []
        for r in self.rows:
            name = r.task + (" (aux)" if r.auxiliary else "")
            row = [name, r.kind, r.metric + (" (lower better)" if r.lower_is_better else ""),
                   _cell(r.mtl, digits, many), _cell(r.single, digits, many) if r.single else "-"]
            if references:
                row += [_cell(r.trivial, digits, False), _cell(r.classical, digits, False)]
            failed = [name for side, name in (("mtl", "multi-task"), ("single", "single-task"))
                      if r.beats_trivial(side) is False]
            unclear += [r.task + ("" if len(failed) == 2 else f" ({failed[0]})")] if failed else []
            if not r.single:
                rows.append(row + ["-", "-", "-", "-"])
                continue
            mean, low, high = r.interval
            defined = not any(math.isnan(v) for v in r.improvements)
            undefined += [] if defined else [r.task]
            flag = (r.transfer or ("-" if many else "n/a")) if defined else "n/a"
            rows.append(row + [_percent(mean), _percent_interval(low, high), _p(r.p_value), flag])
        lines = render(rows)
        low, high = self.delta_m_interval
        value = "nan" if math.isnan(self.delta_m) else f"{self.delta_m * 100:+.2f}%"
        spread = f", 95% interval {_percent_interval(low, high)}, paired t-test p = {_p(self.delta_m_p_value)}" if (
            many and not undefined) else ""
        seeds = ", ".join(str(s) for s in self.seeds)
        lines.append(f"Δm = {value}{spread} over main tasks (Maninis et al. 2019; positive: multi-task better); "
                     f"{len(self.seeds)} repeat(s), seed(s) {seeds}.")
        if many:
            lines.append(f"Scores: mean ± half-width of the {CONFIDENCE:.0%} t-interval over repeats. Transfer is "
                         "flagged only where the interval of the improvement excludes 0 (paired t-test of the "
                         "per-repeat improvements, p < 0.05).")
        else:
            lines.append("One repeat: no interval and no transfer flag; use 3 or more repeats (--repeats).")
        if self.negative_transfer:
            lines.append(f"Negative transfer on: {', '.join(self.negative_transfer)}.")
        if self.positive_transfer:
            lines.append(f"Positive transfer on: {', '.join(self.positive_transfer)}.")
        if references:
            lines.append("trivial / classical: reference predictors fitted on each repeat's training labels (mean "
                         "over repeats); see `kmtl.evaluation.trivial` and `kmtl.evaluation.classical`.")
            lines += self._reference_notes()
        if unclear:
            lines.append(f"Not clearly better (at least {CLEAR_MARGIN:.0%} relative, interval above 0 with repeats) "
                         f"than the trivial predictor (both models unless named): {', '.join(unclear)}.")
        if undefined:
            lines.append(f"Undefined for {', '.join(undefined)}: a score is NaN or a baseline 0 (e.g. AUROC with one "
                         "class in the test labels); use more test data or other `primary_metrics`.")
        lines += list(self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def _reference_notes(self) -> list:
        """Which trivial predictor each task got, and why a classical model was skipped."""
        trivial, skipped = {}, {}
        for r in self.rows:
            known = r.references or {}
            if "trivial" in known:
                trivial.setdefault(known["trivial"][0], []).append(r.task)
            if "classical" in known and not r.classical:
                skipped.setdefault(known["classical"][1], []).append(r.task)
        lines = []
        if trivial:
            lines.append("Trivial predictors: " + "; ".join(f"{name} ({', '.join(t)})" for name, t in trivial.items())
                         + ".")
        lines += [f"Classical model skipped for {', '.join(t)}: {reason.removeprefix('skipped: ')}."
                  for reason, t in skipped.items()]
        return lines


def _cell(values, digits: int, interval: bool) -> str:
    if not values:
        return "-"
    mean, low, high = mean_interval(values)
    if math.isnan(mean):
        return "nan"
    if interval and math.isfinite(high):
        return f"{mean:.{digits}f} ± {high - mean:.{digits}f}"
    return f"{mean:.{digits}f}"


def _percent(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value * 100:+.2f}%"


def _percent_interval(low: float, high: float) -> str:
    return "-" if not (math.isfinite(low) and math.isfinite(high)) else f"[{low * 100:+.2f}, {high * 100:+.2f}]%"


def _p(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}" if value >= 0.001 else "<0.001"
