"""Cross-validation of multi-task models with scikit-learn's splitters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import keras
import numpy as np

from kmtl.evaluation.report import EvaluationReport, evaluate

SPLITTERS = ("kfold", "holdout", "loo", "group_kfold")


@dataclass
class CrossValidationResult:
    """Per-fold reports of `cross_validate` and their mean ± std per task and metric.

    Attributes:
        reports: list of `EvaluationReport`, one per fold (scored on the fold's held-out examples).
        folds: list of `(train_indices, test_indices)` numpy arrays.
    """

    reports: list
    folds: list

    def _collect(self) -> dict:
        values = {}
        for report in self.reports:
            for task, metrics in report.to_dict().items():
                for name, value in metrics.items():
                    values.setdefault(task, {}).setdefault(name, []).append(value)
        return values

    def mean(self) -> dict:
        """`{task: {metric: mean over folds}}` (and `"overall"`); folds where a metric is NaN are left out."""
        return {t: {m: _nan_stat(v, np.mean) for m, v in ms.items()} for t, ms in self._collect().items()}

    def std(self) -> dict:
        """`{task: {metric: sample standard deviation over folds}}` (ddof=1; 0 with one fold)."""
        return {t: {m: _nan_stat(v, _sample_std) for m, v in ms.items()} for t, ms in self._collect().items()}

    def to_dict(self) -> dict:
        return {"mean": self.mean(), "std": self.std(), "folds": [r.to_dict() for r in self.reports],
                "test_sizes": [int(len(test)) for _, test in self.folds]}

    def summary(self, digits: int = 4) -> EvaluationReport:
        """An `EvaluationReport` whose cells read `mean ± std` over folds."""
        mean, std = self.mean(), self.std()
        cells = {
            t: {m: f"{v:.{digits}f} ± {std[t][m]:.{digits}f}" for m, v in ms.items()} for t, ms in mean.items()
        }
        overall = cells.pop("overall", {})
        return EvaluationReport(cells, overall, self.reports[0].kinds if self.reports else {})

    def table(self, digits: int = 4) -> str:
        """The per-task mean ± std over folds as a text table."""
        return f"{len(self.reports)} folds, mean ± std:\n" + self.summary(digits).table(digits)

    def __str__(self) -> str:
        return self.table()


def cross_validate(
    build_fn: Callable[[], Any],
    compile_fn: Callable[[Any], Any],
    x: Any,
    y: Mapping[str, Any] | None = None,
    *,
    splitter: Any = "kfold",
    n_splits: int | None = None,
    groups: Any = None,
    test_size: float = 0.2,
    stratify: str | None = None,
    seed: int = 0,
    fit_kwargs: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    to_data: Callable[[Any, bool], Any] | None = None,
    verbose: int = 1,
) -> CrossValidationResult:
    """Cross-validates a multi-task model: one fresh model per fold, scored with `kmtl.evaluate` on the held-out part.

    Args:
        build_fn: callable `() -> MultiTaskModel`, building a fresh uncompiled model.
        compile_fn: callable `model -> model or None` compiling it.
        x: numpy array or dict of arrays (inputs), examples on the first axis; or, with `y=None`, a
            `kmtl.data.SequenceData`-like object (`len(x)` examples, `x.subset(indices)`, per-example labels in
            `x.labels` for `stratify`), each fold turned into data by `to_data`.
        y: dict `{task: labels}`, examples on the first axis, missing labels marked; None for `SequenceData`.
        splitter: `"kfold"` (`sklearn.model_selection.KFold`, shuffled), `"holdout"` (`ShuffleSplit`: `n_splits`
            random hold-out splits of `test_size`, default 1), `"loo"` (`LeaveOneOut`), `"group_kfold"`
            (`GroupKFold`, needs `groups`), or any scikit-learn splitter object (e.g. `StratifiedKFold(5)`).
        n_splits: int. Folds for k-fold (default 5) or repeats of hold-out (default 1); unused by `"loo"`.
        groups: array `(num_examples,)` of group ids (e.g. subject ids): examples of a group never fall on both sides
            of a split. Required by `"group_kfold"`, passed to any splitter.
        test_size: float. Held-out fraction for `"holdout"`.
        stratify: str. Name of a task whose labels are passed to the splitter as `y` (for stratified splitters).
        seed: int. Seed of shuffling; fold `i` trains after `keras.utils.set_random_seed(seed + i)`.
        fit_kwargs: dict of `fit` arguments for every fold (default `{"epochs": 1, "verbose": 0}`).
        batch_size: int. Batch size of the evaluation (array data).
        to_data: callable `(subset, training) -> dataset` for `SequenceData`-like `x`, e.g.
            `lambda d, training: kmtl.data.sequences.to_dataset(d, 32, shuffle=training)`.
        verbose: int. 1 shows a `keras.utils.Progbar` over folds, 0 nothing.

    Returns:
        `CrossValidationResult` with per-fold reports and per-task `mean()` / `std()`.

    Example:

    >>> result = cross_validate(build, compile_fn, x, y, splitter="group_kfold", n_splits=3,  # doctest: +SKIP
    ...                         groups=subject_ids, fit_kwargs={"epochs": 5, "verbose": 0})
    >>> print(result.table())  # doctest: +SKIP
    """
    episodes = y is None and hasattr(x, "subset")
    if episodes and to_data is None:
        raise ValueError("`x` holds episodes (it has `subset`): pass `to_data=lambda subset, training: dataset`.")
    if not episodes and not isinstance(y, Mapping):
        raise ValueError(f"Invalid value for `y`. Expected a dict {{task: labels}}. Received: y={type(y).__name__}")
    num = len(x) if episodes else _num_examples(x, y)
    split_y = None
    if stratify is not None:
        labels = x.labels if episodes else y
        if stratify not in labels:
            raise ValueError(
                f"Invalid value for `stratify`. Expected a task in {sorted(labels)}. Received: {stratify!r}"
            )
        split_y = np.asarray(labels[stratify]).reshape(num, -1)[:, 0]
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape[:1] != (num,):
            raise ValueError(f"`groups` must have one entry per example ({num}). Received shape {groups.shape}.")
    split_args = (np.zeros((num, 1)), split_y) + ((groups,) if groups is not None else ())
    folds = list(make_splitter(splitter, n_splits, test_size, seed, groups).split(*split_args))
    fit_kwargs = dict({"epochs": 1, "verbose": 0} if fit_kwargs is None else fit_kwargs)
    progress = keras.utils.Progbar(len(folds), verbose=verbose, unit_name="fold")
    reports = []
    for i, (train, test) in enumerate(folds):
        keras.utils.set_random_seed(seed + i)
        model = build_fn()
        compiled = compile_fn(model)
        model = model if compiled is None else compiled
        if episodes:
            model.fit(to_data(x.subset(train), True), **{"shuffle": False, **fit_kwargs})
            report = evaluate(model, to_data(x.subset(test), False))
        else:
            model.fit(_take(x, train), _take(y, train), **fit_kwargs)
            report = evaluate(model, _take(x, test), _take(y, test), batch_size=batch_size)
        reports.append(report)
        progress.update(i + 1, values=[("loss", report.overall.get("loss", float("nan")))])
    return CrossValidationResult(reports, [(np.asarray(a), np.asarray(b)) for a, b in folds])


def make_splitter(splitter: Any, n_splits: int | None = None, test_size: float = 0.2, seed: int = 0, groups=None):
    """A scikit-learn splitter for a name in `SPLITTERS`, or `splitter` itself when it has a `split` method."""
    from sklearn import model_selection

    if not isinstance(splitter, str) and hasattr(splitter, "split"):
        return splitter
    if splitter not in SPLITTERS:
        raise ValueError(
            f"Invalid value for `splitter`. Expected one of {SPLITTERS} or a scikit-learn splitter. "
            f"Received: splitter={splitter!r}"
        )
    if n_splits is not None and (isinstance(n_splits, bool) or not isinstance(n_splits, int) or n_splits < 1):
        raise ValueError(f"Invalid value for `n_splits`. Expected a positive int. Received: n_splits={n_splits!r}")
    if splitter == "kfold":
        return model_selection.KFold(n_splits or 5, shuffle=True, random_state=seed)
    if splitter == "holdout":
        return model_selection.ShuffleSplit(n_splits or 1, test_size=test_size, random_state=seed)
    if splitter == "loo":
        return model_selection.LeaveOneOut()
    if groups is None:
        raise ValueError("`splitter='group_kfold'` needs `groups`: one group id per example.")
    return model_selection.GroupKFold(n_splits or 5)


def _num_examples(x, y) -> int:
    arrays = list(x.values()) if isinstance(x, Mapping) else [x]
    sizes = {len(a) for a in arrays}
    sizes |= {len(np.asarray(v)) for v in y.values()}
    if len(sizes) != 1:
        raise ValueError(f"Inputs and labels must have the same number of examples. Received sizes {sorted(sizes)}.")
    return sizes.pop()


def _take(data, indices):
    if isinstance(data, Mapping):
        return {k: np.asarray(v)[indices] for k, v in data.items()}
    return np.asarray(data)[indices]


def _nan_stat(values, fn) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(fn(values)) if values.size else float("nan")


def _sample_std(values) -> float:
    return float(np.std(values, ddof=1)) if values.size > 1 else 0.0
