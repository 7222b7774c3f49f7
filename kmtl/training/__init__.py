"""Training utilities: per-task optimizers, callbacks (gradient-reversal schedule, expert utilisation, gradient
conflict) and the gradient-level step."""

from kmtl.training.callbacks import GradientReversalSchedule, grl_schedule
from kmtl.training.conflict import GradientConflictMonitor
from kmtl.training.expert_utilization import ExpertUtilizationLogger, expert_utilization
from kmtl.training.multi_optimizer import MultiOptimizer

__all__ = [
    "ExpertUtilizationLogger",
    "GradientConflictMonitor",
    "GradientReversalSchedule",
    "MultiOptimizer",
    "expert_utilization",
    "grl_schedule",
]
