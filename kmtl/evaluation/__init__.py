"""Evaluation: per-task reports."""

from kmtl.evaluation.report import EvaluationReport, evaluate, report_from_logs

__all__ = ["EvaluationReport", "evaluate", "report_from_logs"]
