"""Evaluation: per-task reports and plots, trivial and classical reference predictors, single-task baselines and Δm
with intervals, cross-validation, model selection."""

from kmtl.evaluation.baselines import compare_single_task
from kmtl.evaluation.classical import classical_scores
from kmtl.evaluation.deltas import ComparisonResult, delta_m
from kmtl.evaluation.plots import save_plots
from kmtl.evaluation.reference_scores import reference_scores
from kmtl.evaluation.report import EvaluationReport, evaluate, report_from_logs
from kmtl.evaluation.resampling import CrossValidationResult, cross_validate
from kmtl.evaluation.scores import ConfusionMatrix
from kmtl.evaluation.selection import MultiTaskCheckpoint
from kmtl.evaluation.trivial import trivial_scores

__all__ = [
    "ComparisonResult",
    "ConfusionMatrix",
    "CrossValidationResult",
    "EvaluationReport",
    "MultiTaskCheckpoint",
    "classical_scores",
    "compare_single_task",
    "cross_validate",
    "delta_m",
    "evaluate",
    "reference_scores",
    "report_from_logs",
    "save_plots",
    "trivial_scores",
]


def __getattr__(name):
    # Deprecated in 0.2, removed in 0.3: running a recipe's comparison moved to the application layer.
    if name == "compare_recipe":
        import warnings

        from kmtl.app.compare import compare_recipe

        warnings.warn(
            "`kmtl.evaluation.compare_recipe` is deprecated; use `kmtl.app.compare.compare_recipe`.",
            DeprecationWarning,
            stacklevel=2,
        )
        return compare_recipe
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
