"""Training utilities: callbacks (gradient-reversal schedule, expert utilisation) and the gradient-level step."""

from kmtl.training.callbacks import GradientReversalSchedule, grl_schedule
from kmtl.training.expert_utilization import ExpertUtilizationLogger, expert_utilization

__all__ = ["ExpertUtilizationLogger", "GradientReversalSchedule", "expert_utilization", "grl_schedule"]
