"""Per-task label fractions: keep each training example's label of each task with probability f, then Δm against f.

When datasets annotated for different tasks are combined, each example carries only some tasks' labels: the regime
where sharing a model is expected to help most. `mask_labels` simulates it on fully labelled training data;
`LabelFractionResult` holds a comparison per fraction, prints Δm with its interval per fraction and plots it.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from kmtl._files import write_file
from kmtl.evaluation.references import render
from kmtl.tasks import Task


def check_fractions(fractions: Sequence[float]) -> list[float]:
    """The fractions as floats, each in (0, 1].

    Raises:
        ValueError: for an empty list or a fraction outside (0, 1].
    """
    fractions = list(fractions)
    if not fractions:
        raise ValueError("Invalid value for `label_fractions`. Expected at least one fraction in (0, 1]. Received: []")
    bad = [f for f in fractions if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1]
    if bad:
        raise ValueError(
            f"Invalid value for `label_fractions`. Expected fractions in (0, 1] (1 keeps every label). Received: {bad}"
        )
    return [float(f) for f in fractions]


def mask_labels(labels: Mapping[str, np.ndarray], tasks: Sequence[Task], fraction: float, seed: int) -> dict:
    """Each example keeps each task's label independently with probability `fraction`; the others become missing.

    An example's whole label of a task is kept or dropped (every step of a per-step task, every pixel of a
    per-pixel one); labels already missing stay missing. The draw depends only on `seed`, the task's name and the
    example's position, not on the other tasks or on `fraction`: the labels kept at a smaller fraction are a subset
    of those kept at a larger one, and the same seed gives the same labels to every model.

    Args:
        labels: dict `{task: array}`, examples on the first axis.
        tasks: list of `kmtl.Task` (their `missing` markers); tasks without labels in `labels` are ignored.
        fraction: float in (0, 1].
        seed: int.

    Returns:
        dict `{task: array}`: copies with the dropped labels set to the task's missing marker.

    Example:

    >>> y = {"a": np.ones(1000, "int32")}
    >>> int((mask_labels(y, [Task("a", "binary")], 0.3, seed=0)["a"] == 1).sum())
    321
    """
    check_fractions([fraction])
    out = dict(labels)
    for task in tasks:
        if task.name not in labels:
            continue
        values = np.array(labels[task.name], copy=True)
        if fraction < 1:
            stream = np.random.default_rng([seed, zlib.crc32(task.name.encode())])
            dropped = stream.random(len(values)) >= fraction
            if values.dtype.kind in "iub" and not float(task.missing).is_integer():
                values = values.astype(np.float32)  # a NaN marker
            elif values.dtype.kind in "ub" and task.missing < 0:
                values = values.astype(np.int32)  # room for a negative marker
            values[dropped] = task.missing
        out[task.name] = values
    return out


@dataclass
class LabelFractionResult:
    """One `ComparisonResult` per label fraction.

    Attributes:
        results: dict `{fraction: ComparisonResult}`, fractions in decreasing order.
    """

    results: dict

    @property
    def fractions(self) -> list[float]:
        return list(self.results)

    def to_dict(self) -> dict:
        return {str(f): r.to_dict() for f, r in self.results.items()}

    def table(self) -> str:
        """Each fraction's comparison table, then `summary()`."""
        blocks = [f"Label fraction {f:g}:\n{result.table()}" for f, result in self.results.items()]
        return "\n\n".join(blocks + [self.summary()])

    def summary(self) -> str:
        """Δm per fraction with its 95% interval and paired t-test, and each main task's mean improvement."""
        first = next(iter(self.results.values()))
        tasks = [r.task for r in first.main_rows]
        rows = [["label fraction", "Δm", "95% interval", "p"] + tasks]
        for fraction, result in self.results.items():
            low, high = result.delta_m_interval
            p = result.delta_m_p_value
            rows.append([f"{fraction:g}", _percent(result.delta_m), _interval(low, high),
                         "-" if math.isnan(p) else f"{p:.3f}"]
                        + [_percent(result[t].interval[0]) + _flag(result[t].transfer) for t in tasks])
        lines = ["Δm against the fraction of training labels each task keeps (positive: multi-task better):"]
        lines += render(rows)
        lines.append("Per task: mean relative improvement over repeats; + or - marks positive or negative transfer "
                     "(the 95% interval excludes 0).")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def save_plot(self, path: str | Path, *, title: str = "", overwrite: bool = False) -> Path:
        """Plots Δm (with its 95% interval where there are repeats) against the label fraction, as a PNG.

        Needs matplotlib (`pip install "kmtl[plots]"`). Written whole under a temporary name, then put in place;
        an existing file is never replaced unless `overwrite`.
        """
        try:
            from matplotlib.figure import Figure
        except ImportError as error:
            raise ImportError('Plots need matplotlib, the optional extra `plots`: pip install "kmtl[plots]"') from error
        fractions = np.array(self.fractions)
        means = np.array([r.delta_m for r in self.results.values()]) * 100
        bounds = np.array([r.delta_m_interval for r in self.results.values()], dtype=np.float64) * 100
        figure = Figure(figsize=(5.5, 3.8), layout="constrained")
        axes = figure.add_subplot()
        axes.axhline(0.0, color="grey", linewidth=0.8)
        has_interval = np.isfinite(bounds).all(axis=1)
        errors = np.where(has_interval, [means - bounds[:, 0], bounds[:, 1] - means], 0.0)
        axes.errorbar(fractions, means, yerr=errors, marker="o", capsize=4, label="Δm (95% interval)")
        axes.set_xscale("log")
        axes.set_xticks(fractions, [f"{f:g}" for f in fractions])
        axes.minorticks_off()
        axes.set_xlabel("fraction of training labels kept per task")
        axes.set_ylabel("Δm (%)")
        axes.set_title(title or "Multi-task against single-task models")
        axes.legend(loc="best")

        def save(temporary):
            with open(temporary, "wb") as handle:
                figure.savefig(handle, format="png", dpi=100)

        return write_file(path, save, overwrite=overwrite)


def _percent(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value * 100:+.2f}%"


def _interval(low: float, high: float) -> str:
    return "-" if not (math.isfinite(low) and math.isfinite(high)) else f"[{low * 100:+.2f}, {high * 100:+.2f}]%"


def _flag(transfer: str | None) -> str:
    return {"positive": " +", "negative": " -"}.get(transfer, "")
