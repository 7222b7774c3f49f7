"""Hyper-parameter tuning with keras-tuner: hypermodels for builders and recipes, and a multi-task objective."""

from kmtl.tuning.hypermodels import (
    BuilderHyperModel,
    MultiTaskHyperModel,
    supports_task_learning_rates,
)
from kmtl.tuning.objective import MultiTaskObjective, MultiTaskScore, metric_direction
from kmtl.tuning.recipe_hypermodel import RecipeHyperModel, default_search_space
from kmtl.tuning.run import make_tuner

__all__ = [
    "BuilderHyperModel",
    "MultiTaskHyperModel",
    "MultiTaskObjective",
    "MultiTaskScore",
    "RecipeHyperModel",
    "default_search_space",
    "make_tuner",
    "metric_direction",
    "supports_task_learning_rates",
]

# Deprecated in 0.2, removed in 0.3: running a recipe's search moved to the application layer, `kmtl.app.tune`.
_MOVED = {"tune_recipe": "kmtl.app.tune", "TuneRun": "kmtl.app.tune"}


def __getattr__(name):
    if name in _MOVED:
        import warnings

        from kmtl.app import tune

        warnings.warn(
            f"`kmtl.tuning.{name}` is deprecated; use `{_MOVED[name]}.{name}`.", DeprecationWarning, stacklevel=2
        )
        return getattr(tune, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
