"""Evaluation: per-task reports and plots, single-task baselines and Δm, cross-validation, model selection."""

from kmtl.evaluation.baselines import compare_single_task
from kmtl.evaluation.deltas import ComparisonResult, delta_m
from kmtl.evaluation.plots import save_plots
from kmtl.evaluation.report import EvaluationReport, evaluate, report_from_logs
from kmtl.evaluation.resampling import CrossValidationResult, cross_validate
from kmtl.evaluation.scores import ConfusionMatrix
from kmtl.evaluation.selection import MultiTaskCheckpoint

__all__ = [
    "ComparisonResult",
    "ConfusionMatrix",
    "CrossValidationResult",
    "EvaluationReport",
    "MultiTaskCheckpoint",
    "compare_single_task",
    "cross_validate",
    "delta_m",
    "evaluate",
    "report_from_logs",
    "save_plots",
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
