"""Training utilities: callbacks and schedules."""

from kmtl.training.callbacks import GradientReversalSchedule, grl_schedule

__all__ = ["GradientReversalSchedule", "grl_schedule"]
