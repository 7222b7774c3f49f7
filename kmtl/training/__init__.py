"""Callbacks and utilities users add to training: backup and resume, the NaN guard, the progress line, gradient
conflict, expert utilisation, the gradient-reversal schedule, per-task optimizers and cluster configuration."""

from kmtl.model import MultiOptimizer, TaskNaNGuard, TaskProgbarLogger
from kmtl.training import distribute
from kmtl.training.backup import BackupAndResume
from kmtl.training.callbacks import GradientReversalSchedule, grl_schedule
from kmtl.training.conflict import GradientConflictMonitor
from kmtl.training.expert_utilization import ExpertUtilizationLogger, expert_utilization
from kmtl.training import schedules  # noqa: F401  (registers AnnealedLearningRate, so saved optimizers load)

__all__ = [
    "BackupAndResume",
    "ExpertUtilizationLogger",
    "GradientConflictMonitor",
    "GradientReversalSchedule",
    "MultiOptimizer",
    "TaskNaNGuard",
    "TaskProgbarLogger",
    "distribute",
    "expert_utilization",
    "grl_schedule",
]
