"""`Recipe`: a declared, ready-made multi-task setup (tasks, model, compile step, data, settings), and a registry.

A recipe is one object, read in one place. Everything a runner needs is a field: the functions it calls
(`build_model`, `compile_model`, `load_data`), the settings they take (`data_settings`, `model_settings`), the
training `defaults` and the `quick` smoke-run overrides, the keras-tuner `search_space`, and which `build_model`
arguments `load_data` derives from the data (`derived_settings`, e.g. a normaliser fitted on the training split).

The registry maps a recipe's name to its description and the module that declares it, so names and descriptions
are listed without importing the module (or TensorFlow); `get_recipe(name)` imports it on first use.

This module imports neither Keras nor any recipe.

Example:

>>> RecipeData("train", "val", "test", tasks=[]).splits
('train', 'val', 'test')
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping, Sequence

__all__ = [
    "COMPILE_SETTINGS",
    "Recipe",
    "RecipeData",
    "RecipeEntry",
    "get_recipe",
    "recipe_entries",
    "register_recipe",
]

# The settings every recipe's `compile_model(model, weighting=..., learning_rate=...)` takes.
COMPILE_SETTINGS = ("weighting", "learning_rate")
# The settings every recipe's `defaults` holds.
REQUIRED_DEFAULTS = ("epochs", "batch_size", "weighting", "learning_rate")


@dataclasses.dataclass
class RecipeData:
    """What a recipe's `load_data` returns: three batched datasets, their tasks and what the model must know.

    Unpacks as `(train, val, test)`, so `train, val, test = recipe.load_data(...)` works.

    Args:
        train, val, test: `tf.data.Dataset`s of `(inputs, {task: labels})`.
        tasks: list of `kmtl.Task`: the tasks the labels are for (they may depend on the data source).
        model_settings: dict of `build_model` arguments derived from the data (e.g. a fitted normaliser); its keys
            are the recipe's `derived_settings`.
    """

    train: Any
    val: Any
    test: Any
    tasks: list = dataclasses.field(default_factory=list)
    model_settings: dict = dataclasses.field(default_factory=dict)

    @property
    def splits(self) -> tuple:
        return (self.train, self.val, self.test)

    def __iter__(self):
        return iter(self.splits)

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index):
        return self.splits[index]


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A ready-made multi-task setup, declared once.

    Args:
        name: str. The name the CLI and the registry use (`"facial-attributes"`); exports go to
            `<root>/<module_name>/`, where `module_name` is the name with `-` replaced by `_`.
        description: str. One line for `kmtl recipes`.
        tasks: list of `kmtl.Task`. The tasks of the default data source.
        build_model: callable `(**model settings, tasks=None, **derived settings) -> MultiTaskModel`, uncompiled.
        compile_model: callable `(model, weighting, learning_rate, **compile settings) -> model`.
        load_data: callable `(batch_size, seed, tasks=None, **data settings) -> RecipeData`.
        defaults: dict of settings: `epochs`, `batch_size`, `weighting`, `learning_rate` and the data and model
            settings the recipe runs with. The functions' own argument defaults are these values.
        quick: dict. Overrides of `defaults` for a smoke run (tiny data and model, one epoch).
        data_settings: tuple of str. The settings passed to `load_data`.
        model_settings: tuple of str. The `build_model` arguments settings and searches may set.
        compile_settings: tuple of str. Further `compile_model` arguments settings may set (e.g. an optimizer
            choice), beside `weighting` and `learning_rate`.
        derived_settings: tuple of str. The `build_model` arguments `load_data` derives from the data, found in
            `RecipeData.model_settings`.
        search_space: dict or None. What `kmtl tune` searches (see `kmtl.tuning.space`); its names are model
            settings or compile settings (`weighting`, `learning_rate`). None: learning rate and weighting.
        models: tuple of str. The architectures `build_model(model=...)` offers; empty when there is one.
        sources: str. The data sources `load_data(source=...)` reads, for help texts.
        baselines: callable `(settings, seed) -> str` or None. The baseline a user would pick instead of kmtl
            (e.g. a classical model from another library), trained on the same split as the run with `settings` and
            data seed `seed`; returns its scores as printable text, which `kmtl compare` prints beside kmtl's. It
            raises ImportError when its optional extra is not installed (compare then prints a one-line note).
        plots: callable `(model, dataset, directory) -> path` or None. A picture of what the trained model does
            (e.g. predicted masks); `kmtl train` draws it for the test data into the exported version's
            `assets.extra/` (TF Serving's folder for extra files, which it does not serve) and prints its path.
        report: callable `(model, data, settings, seed) -> str` or None. What the trained model shows beyond the
            per-task table (e.g. its estimates beside a classical fit, naive forecasts, a probe of its features):
            `kmtl train` prints it after its report, for the model it trained on `data` (the `RecipeData` of
            `settings` and data seed `seed`). It raises ImportError when its optional extra is not installed
            (train then prints a one-line note). A recipe's `baselines` may train a model and return this report.
    """

    name: str
    description: str
    tasks: Sequence[Any]
    build_model: Callable[..., Any]
    compile_model: Callable[..., Any]
    load_data: Callable[..., RecipeData]
    defaults: Mapping[str, Any]
    quick: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    data_settings: tuple = ()
    model_settings: tuple = ()
    compile_settings: tuple = ()
    derived_settings: tuple = ()
    search_space: Mapping[str, Any] | None = None
    models: tuple = ()
    sources: str = "synthetic"
    baselines: Callable[[Mapping[str, Any], int], str] | None = None
    plots: Callable[[Any, Any, Any], Any] | None = None
    report: Callable[[Any, RecipeData, Mapping[str, Any], int], str] | None = None

    def __post_init__(self):
        missing = [k for k in REQUIRED_DEFAULTS if k not in self.defaults]
        if missing:
            raise ValueError(
                f"Invalid value for `defaults` of recipe {self.name!r}. Expected the settings {list(REQUIRED_DEFAULTS)}."
                f" Received: defaults without {missing}"
            )
        known = {*self.defaults, *self.data_settings, *self.model_settings, *self.compile_settings}
        unknown = sorted(set(self.quick) - known)
        if unknown:
            raise ValueError(
                f"Invalid value for `quick` of recipe {self.name!r}. Expected settings of `defaults`, "
                f"`data_settings` or `model_settings`. Received: unknown settings {unknown}"
            )
        for field in ("baselines", "plots", "report"):
            if getattr(self, field) is not None and not callable(getattr(self, field)):
                raise ValueError(
                    f"Invalid value for `{field}` of recipe {self.name!r}. Expected a callable or None. "
                    f"Received: {field}={getattr(self, field)!r:.200}"
                )
        if self.search_space is not None:
            unknown = sorted(set(self.search_space) - set(self.model_settings) - set(COMPILE_SETTINGS))
            if unknown:
                raise ValueError(
                    f"Invalid value for `search_space` of recipe {self.name!r}. Expected names of `model_settings` "
                    f"{list(self.model_settings)} or {list(COMPILE_SETTINGS)}. Received: unknown names {unknown}"
                )

    @property
    def module_name(self) -> str:
        """The recipe's folder name for exports and searches: `facial_attributes`."""
        return self.name.replace("-", "_")

    def settings(self, quick: bool = False, **overrides) -> dict:
        """The settings of a run: `defaults`, then `quick` when asked, then the `overrides` that are not None.

        Raises:
            ValueError: for an override no part of the recipe takes, or `model` for a recipe with one model.
        """
        known = {*self.defaults, *self.data_settings, *self.model_settings, *self.compile_settings}
        given = {k: v for k, v in overrides.items() if v is not None}
        if "model" in given and not self.models:
            raise ValueError(f"The {self.name} recipe has one model. Received: model={given['model']!r}")
        if "model" in given and given["model"] not in self.models:
            raise ValueError(
                f"Invalid value for `model`. Expected one of {', '.join(self.models)}. Received: model={given['model']!r}"
            )
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(
                f"Invalid settings for recipe {self.name!r}. Expected some of {sorted(known)}. "
                f"Received: {', '.join(f'{k}={given[k]!r}' for k in unknown)}"
            )
        settings = dict(self.defaults)
        if quick:
            settings.update(self.quick)
        settings.update(given)
        return settings

    def load(self, settings: Mapping[str, Any], *, seed: int = 0, tasks: Sequence[str] | None = None) -> RecipeData:
        """Calls `load_data` with the data settings among `settings`; `tasks` keeps only those tasks' labels."""
        kwargs = {k: settings[k] for k in self.data_settings if k in settings}
        if tasks is not None:
            kwargs["tasks"] = list(tasks)
        data = self.load_data(batch_size=settings["batch_size"], seed=seed, **kwargs)
        if not isinstance(data, RecipeData):
            raise TypeError(
                f"Recipe {self.name!r}: `load_data` must return a `kmtl.RecipeData`. Received: {type(data).__name__}"
            )
        extra = sorted(set(data.model_settings) - set(self.derived_settings))
        if extra:
            raise ValueError(
                f"Recipe {self.name!r}: `load_data` derived {extra}, which `derived_settings` "
                f"{list(self.derived_settings)} does not declare."
            )
        return data

    def build(self, settings: Mapping[str, Any], data: RecipeData | None = None, **arguments):
        """Calls `build_model` with the model settings among `settings`, what `data` derived, then `arguments`."""
        kwargs = {k: settings[k] for k in self.model_settings if k in settings}
        if data is not None:
            kwargs.update(data.model_settings)
        kwargs.update(arguments)
        return self.build_model(**kwargs)

    def compile(self, model, settings: Mapping[str, Any], **arguments):
        """Calls `compile_model` with the settings' `weighting`, `learning_rate` and compile settings, then
        `arguments`; returns it."""
        kwargs = {k: settings[k] for k in COMPILE_SETTINGS}
        kwargs.update({k: settings[k] for k in self.compile_settings if k in settings})
        kwargs.update(arguments)
        compiled = self.compile_model(model, **kwargs)
        return model if compiled is None else compiled


# === Registry ===


@dataclasses.dataclass(frozen=True)
class RecipeEntry:
    """A registered recipe: its name, description and the module that declares it as `RECIPE`."""

    name: str
    description: str
    module: str


_REGISTRY: dict[str, RecipeEntry] = {}
_LOADED: dict[str, Recipe] = {}


def register_recipe(recipe: Recipe | RecipeEntry) -> None:
    """Registers a recipe by name: a `RecipeEntry` (its module is imported on first `get_recipe`) or a `Recipe`.

    Raises:
        ValueError: for anything else, or an entry whose name another entry holds.
    """
    if isinstance(recipe, Recipe):
        known = _REGISTRY.get(recipe.name)
        module = known.module if known is not None and known.description == recipe.description else ""
        _REGISTRY[recipe.name] = RecipeEntry(recipe.name, recipe.description, module)
        _LOADED[recipe.name] = recipe
        return
    if not isinstance(recipe, RecipeEntry):
        raise ValueError(f"Expected a `kmtl.Recipe` or a `RecipeEntry`. Received: recipe={recipe!r:.200}")
    known = _REGISTRY.get(recipe.name)
    if known is not None and known != recipe:
        raise ValueError(f"A recipe named {recipe.name!r} is registered already ({known}). Received: {recipe}")
    _REGISTRY[recipe.name] = recipe


def unregister_recipe(name: str) -> None:
    """Removes a recipe from the registry (for tests)."""
    _REGISTRY.pop(name, None)
    _LOADED.pop(name, None)


def recipe_entries() -> dict[str, RecipeEntry]:
    """The registered recipes by name, sorted; imports none of them."""
    return {name: _REGISTRY[name] for name in sorted(_REGISTRY)}


def get_recipe(name: str) -> Recipe:
    """The registered recipe called `name`, importing its module on first use.

    Raises:
        ValueError: for an unknown name, or a module whose `RECIPE` does not match its entry.
    """
    if name in _LOADED:
        return _LOADED[name]
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ValueError(
            f"Unknown recipe. Expected one of {', '.join(sorted(_REGISTRY)) or 'none registered'}. "
            f"Received: recipe={name!r}"
        )
    recipe = getattr(importlib.import_module(entry.module), "RECIPE", None)
    if not isinstance(recipe, Recipe) or (recipe.name, recipe.description) != (entry.name, entry.description):
        raise ValueError(
            f"Module {entry.module} must declare `RECIPE`, a `kmtl.Recipe` named {entry.name!r} with the registered "
            f"description. Received: {recipe!r:.200}"
        )
    _LOADED[name] = recipe
    return recipe
