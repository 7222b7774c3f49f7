"""Evaluation: per-task reports and plots, single-task baselines and Δm, cross-validation, model selection."""

from kmtl.evaluation.compare import compare_recipe, compare_single_task
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
    "compare_recipe",
    "compare_single_task",
    "cross_validate",
    "delta_m",
    "evaluate",
    "report_from_logs",
    "save_plots",
]
