"""Hyper-parameter tuning with keras-tuner: hypermodels for builders and recipes, and a multi-task objective."""

from kmtl.tuning.hypermodels import (
    BuilderHyperModel,
    MultiTaskHyperModel,
    supports_task_learning_rates,
)
from kmtl.tuning.objective import MultiTaskObjective, MultiTaskScore, metric_direction
from kmtl.tuning.recipe_hypermodel import RecipeHyperModel, default_search_space
from kmtl.tuning.run import TuneRun, make_tuner, tune_recipe

__all__ = [
    "BuilderHyperModel",
    "MultiTaskHyperModel",
    "MultiTaskObjective",
    "MultiTaskScore",
    "RecipeHyperModel",
    "TuneRun",
    "default_search_space",
    "make_tuner",
    "metric_direction",
    "supports_task_learning_rates",
    "tune_recipe",
]
