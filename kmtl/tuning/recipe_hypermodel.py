"""`RecipeHyperModel`: a keras-tuner hypermodel for any recipe, over its optional `SEARCH_SPACE`."""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType
from typing import Any, Mapping

import keras
import keras_tuner

from kmtl import weighting as weighting_lib
from kmtl.model import MultiTaskModel
from kmtl.runner import recipe_settings
from kmtl.tuning.hypermodels import MultiTaskHyperModel
from kmtl.tuning.objective import MultiTaskObjective
from kmtl.tuning.space import check_space, sample_space

# What the compile step accepts when a recipe has no `compile_model`.
_COMPILE_NAMES = ("learning_rate", "weighting")


def resolve_recipe(recipe) -> ModuleType:
    """A recipe module from a module, its CLI name (`"facial-attributes"`) or its module path."""
    if isinstance(recipe, ModuleType):
        return recipe
    if isinstance(recipe, str):
        from kmtl import recipes

        if recipe in recipes.RECIPES:
            return recipes.get(recipe)
        try:
            return importlib.import_module(recipe)
        except ImportError:
            pass
    raise ValueError(
        "Invalid value for `recipe`. Expected a recipe module, a recipe name (see `kmtl recipes`) or a module path. "
        f"Received: recipe={recipe!r}"
    )


def default_search_space(settings: Mapping[str, Any]) -> dict:
    """The space used for a recipe without `SEARCH_SPACE`: learning rate and weighting around its defaults.

    The learning rate is log-uniform in `[lr / 10, lr * 10]` (default `lr`, the recipe's `learning_rate`); the
    weighting is a choice of every strategy in `kmtl.weighting.STRATEGIES`, the recipe's own first.
    """
    rate = float(settings.get("learning_rate", 1e-3))
    first = settings.get("weighting", "equal")
    names = [first] + sorted(n for n in weighting_lib.STRATEGIES if n != first)
    learning_rate = {"min": rate / 10, "max": rate * 10, "sampling": "log", "default": rate}
    return {"learning_rate": learning_rate, "weighting": names}


def _parameters(function) -> set[str]:
    if function is None:
        return set()
    return {
        name for name, p in inspect.signature(function).parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


class RecipeHyperModel(MultiTaskHyperModel):
    """A hypermodel for a recipe: `build(hp)` calls its `build_model` and `compile_model` with the trial's values.

    The search space is `search_space`, else the recipe's `SEARCH_SPACE`, else `default_search_space(settings)`.
    Each entry is routed by name: to `build_model` when it takes an argument of that name, else to
    `compile_model` (e.g. `learning_rate`, `weighting`); any other name is an error, raised here. `build_model`
    also receives `model_kwargs` and the recipe's settings (`DEFAULTS`, `QUICK` with `quick=True`, then
    `settings`) named in its `MODEL_SETTINGS`, or, without one, those named like `build_model`'s arguments (e.g.
    `image_size`); `compile_model` receives `weighting` and `learning_rate` from the settings unless tuned. A
    recipe without `compile_model` is compiled with Adam and the weighting.

    Args:
        recipe: a recipe module, its CLI name or its module path.
        search_space: dict. Overrides the recipe's `SEARCH_SPACE` (see `kmtl.tuning.space` for the entries).
        settings: dict. Overrides of the recipe's settings.
        quick: bool. Start from the recipe's `QUICK` settings (smaller models and data where the recipe says so).
        model_kwargs: dict. Fixed `build_model` arguments, e.g. what `load_data(...).model_settings` derives from
            the data (a fitted normaliser); `kmtl tune` passes those.
        objective: `MultiTaskObjective`. Defaults to `MultiTaskObjective.from_tasks` of the default model's tasks.
        name: str. Defaults to the recipe's module name.

    Example:

    >>> from kmtl.recipes import facial_attributes as fa
    >>> hypermodel = RecipeHyperModel(fa, search_space={"filters": [(4, 8)], "fusion_units": 8}, quick=True)
    >>> model = hypermodel.build(keras_tuner.HyperParameters())
    >>> model.get_layer("conv2a").filters, model.input["image"].shape[1]
    (8, 24)

    Reference:
        O'Malley, Bursztein, Long, Chollet, Jin, Invernizzi et al. (2019). KerasTuner.
        github.com/keras-team/keras-tuner.
    """

    def __init__(
        self,
        recipe,
        *,
        search_space: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        quick: bool = False,
        model_kwargs: Mapping[str, Any] | None = None,
        objective: MultiTaskObjective | None = None,
        name: str | None = None,
    ):
        self.recipe = resolve_recipe(recipe)
        for required in ("build_model", "DEFAULTS"):
            if not hasattr(self.recipe, required):
                raise ValueError(f"Recipe {self.recipe.__name__} has no `{required}`; every recipe defines it.")
        self.settings = recipe_settings(self.recipe, quick=quick, **dict(settings or {}))
        self.model_kwargs = dict(model_kwargs or {})
        if search_space is None:
            search_space = getattr(self.recipe, "SEARCH_SPACE", None) or default_search_space(self.settings)
        space = check_space(search_space)
        self._route(space)
        if objective is None:
            # The tasks may depend on the settings (e.g. a data source with its own tasks): read them off a model.
            objective = MultiTaskObjective.from_tasks(self._build_from(space, keras_tuner.HyperParameters()).tasks)
        super().__init__(objective, name=name or self.recipe.__name__.rsplit(".", 1)[-1])
        self.space = space

    def _route(self, space):
        compile_model = getattr(self.recipe, "compile_model", None)
        build_params = _parameters(self.recipe.build_model)
        compile_params = _parameters(compile_model) - {"model"} if compile_model else set(_COMPILE_NAMES)
        self._to_build = [n for n in space if n in build_params]
        self._to_compile = [n for n in space if n not in build_params and n in compile_params]
        unknown = [n for n in space if n not in build_params and n not in compile_params]
        if unknown:
            raise ValueError(
                f"The search space of recipe {self.recipe.__name__} names {unknown}, which neither `build_model` "
                f"({sorted(build_params)}) nor the compile step ({sorted(compile_params)}) takes."
            )
        # The settings `build_model` takes: those the recipe declares in `MODEL_SETTINGS` (as for `kmtl train`),
        # else those named like its arguments.
        model_keys = set(getattr(self.recipe, "MODEL_SETTINGS", build_params))
        self._fixed_build = {
            k: v for k, v in self.settings.items() if k in model_keys and k not in space and k not in self.model_kwargs
        }
        self._fixed_compile = {k: v for k, v in self.settings.items() if k in compile_params and k not in space}

    def build(self, hp) -> MultiTaskModel:
        """Builds and compiles the recipe's model for the trial's hyper-parameters `hp`."""
        return self._build_from(self.space, hp)

    # Not `_build`: keras_tuner.HyperModel keeps the subclass's `build` under that name.
    def _build_from(self, space, hp) -> MultiTaskModel:
        values = sample_space(hp, space)
        build_kwargs = {**self._fixed_build, **self.model_kwargs, **{n: values[n] for n in self._to_build}}
        model = self.recipe.build_model(**build_kwargs)
        compile_kwargs = {**self._fixed_compile, **{n: values[n] for n in self._to_compile}}
        compile_model = getattr(self.recipe, "compile_model", None)
        if compile_model is not None:
            compiled = compile_model(model, **compile_kwargs)
            model = compiled if isinstance(compiled, MultiTaskModel) else model
        else:
            rate = compile_kwargs.get("learning_rate", 1e-3)
            model.compile(optimizer=keras.optimizers.Adam(rate), weighting=compile_kwargs.get("weighting", "equal"))
        return model
