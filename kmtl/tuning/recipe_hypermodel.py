"""`RecipeHyperModel`: a keras-tuner hypermodel for any declared `kmtl.Recipe`, over its search space."""

from __future__ import annotations

from typing import Any, Mapping

import keras_tuner

from kmtl import weighting as weighting_lib
from kmtl.model import MultiTaskModel
from kmtl.recipe import COMPILE_SETTINGS, Recipe
from kmtl.tuning.hypermodels import MultiTaskHyperModel
from kmtl.tuning.objective import MultiTaskObjective
from kmtl.tuning.space import check_space, sample_space


def default_search_space(settings: Mapping[str, Any]) -> dict:
    """The space used for a recipe without a `search_space`: learning rate and weighting around its defaults.

    The learning rate is log-uniform in `[lr / 10, lr * 10]` (default `lr`, the recipe's `learning_rate`); the
    weighting is a choice of every strategy in `kmtl.weighting.STRATEGIES`, the recipe's own first.
    """
    rate = float(settings.get("learning_rate", 1e-3))
    first = settings.get("weighting", "equal")
    names = [first] + sorted(n for n in weighting_lib.STRATEGIES if n != first)
    learning_rate = {"min": rate / 10, "max": rate * 10, "sampling": "log", "default": rate}
    return {"learning_rate": learning_rate, "weighting": names}


class RecipeHyperModel(MultiTaskHyperModel):
    """A hypermodel for a recipe: `build(hp)` calls its `build_model` and `compile_model` with the trial's values.

    The search space is `search_space`, else the recipe's `search_space`, else `default_search_space(settings)`.
    Each name is routed as the recipe declares it: a model setting (`Recipe.model_settings`) goes to
    `build_model`, `weighting` and `learning_rate` to `compile_model`; any other name is an error, raised here.
    `build_model` also receives the run's model settings that are not searched (the recipe's `defaults`, its
    `quick` settings with `quick=True`, then `settings`) and `model_kwargs`.

    Args:
        recipe: `kmtl.Recipe`.
        search_space: dict. Overrides the recipe's `search_space` (see `kmtl.tuning.space` for the entries).
        settings: dict. Overrides of the recipe's settings.
        quick: bool. Start from the recipe's `quick` settings (smaller models and data where the recipe says so).
        model_kwargs: dict. Fixed `build_model` arguments, e.g. what `load_data(...).model_settings` derives from
            the data (a fitted normaliser); `kmtl tune` passes those.
        objective: `MultiTaskObjective`. Defaults to `MultiTaskObjective.from_tasks` of the default model's tasks.
        name: str. Defaults to the recipe's `module_name`.

    Example:

    >>> import keras, kmtl
    >>> def build_model(units=4, tasks=None):
    ...     x = keras.Input((3,), name="x")
    ...     trunk = keras.layers.Dense(units, name="trunk")(x)
    ...     return kmtl.builders.hard_sharing(x, trunk, [kmtl.Task("a", "binary")])
    >>> def compile_model(model, weighting, learning_rate):
    ...     model.compile(keras.optimizers.Adam(learning_rate), weighting=weighting)
    ...     return model
    >>> defaults = {"epochs": 1, "batch_size": 8, "weighting": "equal", "learning_rate": 1e-3}
    >>> recipe = kmtl.Recipe("tiny", "One binary task.", [], build_model, compile_model, load_data=None,
    ...                      defaults=defaults, model_settings=("units",))
    >>> hypermodel = RecipeHyperModel(recipe, search_space={"units": [8, 16]})
    >>> hypermodel.build(keras_tuner.HyperParameters()).get_layer("trunk").units
    8

    Reference:
        O'Malley, Bursztein, Long, Chollet, Jin, Invernizzi et al. (2019). KerasTuner.
        github.com/keras-team/keras-tuner.
    """

    def __init__(
        self,
        recipe: Recipe,
        *,
        search_space: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        quick: bool = False,
        model_kwargs: Mapping[str, Any] | None = None,
        objective: MultiTaskObjective | None = None,
        name: str | None = None,
    ):
        if not isinstance(recipe, Recipe):
            raise ValueError(
                "Invalid value for `recipe`. Expected a `kmtl.Recipe`. "
                f"Received: recipe={recipe!r:.200}"
            )
        self.recipe = recipe
        self.settings = recipe.settings(quick=quick, **dict(settings or {}))
        self.model_kwargs = dict(model_kwargs or {})
        if search_space is None:
            search_space = recipe.search_space or default_search_space(self.settings)
        space = check_space(search_space)
        self._route(space)
        if objective is None:
            # The tasks may depend on the settings (e.g. a data source with its own tasks): read them off a model.
            objective = MultiTaskObjective.from_tasks(self._build_from(space, keras_tuner.HyperParameters()).tasks)
        super().__init__(objective, name=name or recipe.module_name)
        self.space = space

    def _route(self, space):
        model_names = set(self.recipe.model_settings)
        unknown = [n for n in space if n not in model_names and n not in COMPILE_SETTINGS]
        if unknown:
            raise ValueError(
                f"The search space of recipe {self.recipe.name} names {unknown}, which neither `build_model` "
                f"({sorted(model_names)}) nor the compile step ({sorted(COMPILE_SETTINGS)}) takes."
            )
        self._to_build = [n for n in space if n in model_names]
        self._to_compile = [n for n in space if n in COMPILE_SETTINGS]

    def build(self, hp) -> MultiTaskModel:
        """Builds and compiles the recipe's model for the trial's hyper-parameters `hp`."""
        return self._build_from(self.space, hp)

    # Not `_build`: keras_tuner.HyperModel keeps the subclass's `build` under that name.
    def _build_from(self, space, hp) -> MultiTaskModel:
        values = sample_space(hp, space)
        model = self.recipe.build(self.settings, **self.model_kwargs, **{n: values[n] for n in self._to_build})
        return self.recipe.compile(model, self.settings, **{n: values[n] for n in self._to_compile})
