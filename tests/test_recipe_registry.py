"""`kmtl.Recipe`: declared recipes, their registry, and the layering (only `kmtl.app` imports `kmtl.recipes`)."""

import ast
import dataclasses
import inspect
import pathlib
import subprocess
import sys

import pytest

import kmtl
import kmtl.recipe
from kmtl.recipe import Recipe, RecipeData, RecipeEntry, get_recipe, register_recipe

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULTS = {"epochs": 1, "batch_size": 4, "weighting": "equal", "learning_rate": 0.1}


def _recipe(**changes):
    fields = dict(name="toy", description="A toy.", tasks=[], build_model=lambda **kw: kw,
                  compile_model=lambda model, **kw: None, load_data=lambda **kw: RecipeData(1, 2, 3),
                  defaults=DEFAULTS, quick={"epochs": 1}, model_settings=("units",))
    fields.update(changes)
    return Recipe(**fields)


@pytest.mark.parametrize("name", ["facial-attributes", "clinical-timeseries"])
def test_each_shipped_recipe_declares_one_recipe_matching_its_entry(name):
    import kmtl.recipes

    recipe = kmtl.recipes.get(name)
    module = sys.modules[kmtl.recipes.RECIPES[name].module]
    assert recipe is module.RECIPE and recipe.name == name
    assert recipe.description == kmtl.recipes.RECIPES[name].description
    assert recipe.module_name == name.replace("-", "_")
    # One source of truth: the settings a run uses are `build_model`'s and `load_data`'s own defaults.
    for function, names in ((recipe.build_model, recipe.model_settings), (recipe.load_data, recipe.data_settings)):
        parameters = inspect.signature(function).parameters
        for setting in names:
            if setting in recipe.defaults and setting in parameters:
                assert parameters[setting].default == recipe.defaults[setting], (name, setting)


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"defaults": {"epochs": 1}}, "Received: defaults without ['batch_size', 'weighting', 'learning_rate']"),
        ({"quick": {"width": 2}}, "Received: unknown settings ['width']"),
        ({"search_space": {"momentum": [0.9], "units": [2]}}, "Received: unknown names ['momentum']"),
    ],
)
def test_recipe_declarations_are_checked(changes, fragment):
    with pytest.raises(ValueError) as raised:
        _recipe(**changes)
    assert fragment in str(raised.value)


def test_settings_layer_defaults_quick_and_overrides():
    recipe = _recipe(quick={"epochs": 2, "units": 3})
    assert recipe.settings() == DEFAULTS
    assert recipe.settings(quick=True, batch_size=None, learning_rate=0.5) == {
        **DEFAULTS, "epochs": 2, "units": 3, "learning_rate": 0.5}
    with pytest.raises(ValueError, match="Received: colour='red'"):
        recipe.settings(colour="red")
    with pytest.raises(ValueError, match="has one model. Received: model='lstm'"):
        recipe.settings(model="lstm")


def test_load_build_and_compile_pass_only_declared_settings():
    seen = {}

    def load_data(batch_size, seed, size=1, tasks=None):
        seen["load"] = (batch_size, seed, size, tasks)
        return RecipeData("tr", "va", "te", tasks=["t"], model_settings={"scale": 2.0})

    recipe = _recipe(load_data=load_data, data_settings=("size",), derived_settings=("scale",),
                     compile_model=lambda model, weighting, learning_rate: (model, weighting, learning_rate))
    settings = recipe.settings(size=5, units=7)
    data = recipe.load(settings, seed=3, tasks=["t"])
    assert seen["load"] == (4, 3, 5, ["t"]) and list(data) == ["tr", "va", "te"]
    assert recipe.build(settings, data, tasks="x") == {"units": 7, "scale": 2.0, "tasks": "x"}
    assert recipe.compile("m", settings) == ("m", "equal", 0.1)
    undeclared = dataclasses.replace(recipe, derived_settings=())
    with pytest.raises(ValueError, match=r"derived \['scale'\], which `derived_settings` \[\] does not declare"):
        undeclared.load(settings)
    with pytest.raises(TypeError, match="must return a `kmtl.RecipeData`. Received: tuple"):
        _recipe(load_data=lambda **kw: (1, 2, 3)).load(DEFAULTS)


def test_registry_by_name():
    with pytest.raises(ValueError, match="Received: recipe='no-such-recipe'"):
        get_recipe("no-such-recipe")
    recipe = _recipe(name="toy-registry")
    register_recipe(recipe)
    try:
        assert get_recipe("toy-registry") is recipe
        assert kmtl.recipe.recipe_entries()["toy-registry"].description == "A toy."
        with pytest.raises(ValueError, match="is registered already"):
            register_recipe(RecipeEntry("toy-registry", "Another.", "somewhere"))
    finally:
        kmtl.recipe.unregister_recipe("toy-registry")


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_only_the_application_layer_imports_recipes():
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / "kmtl").rglob("*.py"))
        if "app" not in path.relative_to(ROOT / "kmtl").parts
        for name in _imports(path)
        if name == "kmtl.recipes" or name.startswith("kmtl.recipes.")
    ]
    assert offenders == []
    # The recipes use kmtl's public API and the core `kmtl.recipe`, never the application.
    recipe_imports = [name for path in (ROOT / "recipes").rglob("*.py") for name in _imports(path)]
    assert not [name for name in recipe_imports if name.startswith("kmtl.app")]


def test_import_kmtl_is_lazy_and_every_public_name_resolves():
    code = "import sys, kmtl; print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stderr[-2000:]
    for name in kmtl.__all__:
        assert getattr(kmtl, name) is not None, name
    assert {"Task", "MultiTaskModel", "Recipe", "RecipeData", "builders", "evaluate"} <= set(kmtl.__all__)
    assert kmtl.Recipe is Recipe and set(kmtl.__all__) <= set(dir(kmtl))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        kmtl.nope
