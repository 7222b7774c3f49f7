"""Training utilities: per-task optimizers, callbacks (gradient-reversal schedule, expert utilisation, gradient
conflict) and the gradient-level step."""

from kmtl.training import distribute
from kmtl.training.backup import BackupAndResume
from kmtl.training.callbacks import GradientReversalSchedule, grl_schedule
from kmtl.training.conflict import GradientConflictMonitor
from kmtl.training.expert_utilization import ExpertUtilizationLogger, expert_utilization
from kmtl.training.multi_optimizer import MultiOptimizer
from kmtl.training.nan_guard import TaskNaNGuard

__all__ = [
    "BackupAndResume",
    "ExpertUtilizationLogger",
    "GradientConflictMonitor",
    "GradientReversalSchedule",
    "MultiOptimizer",
    "TaskNaNGuard",
    "distribute",
    "expert_utilization",
    "grl_schedule",
]
