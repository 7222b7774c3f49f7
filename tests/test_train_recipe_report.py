"""`kmtl train` prints a recipe's own report (`Recipe.report`) after its per-task table, for the model it trained."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kmtl import Task
from kmtl.app.train import _recipe_report, train_recipe
from kmtl.recipe import Recipe, RecipeData
from tiny import tiny_data, tiny_model

TASKS = [Task("b", "regression")]
DEFAULTS = {"epochs": 1, "batch_size": 8, "weighting": "equal", "learning_rate": 0.1}


def _load_data(batch_size, seed, tasks=None):
    x, y = tiny_data(TASKS, n=16, seed=seed + 1)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    return RecipeData(dataset, dataset, dataset, tasks=TASKS)


def _compile(model, weighting, learning_rate):
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), weighting=weighting)


def _toy(report):
    return Recipe(name="toy-report", description="A toy.", tasks=TASKS, defaults=DEFAULTS, load_data=_load_data,
                  build_model=lambda **kw: tiny_model(tasks=TASKS, compile=False, seed=None),
                  compile_model=_compile, report=report)


def _prediction_report(model, data, settings, seed):
    """The trained model's first test prediction, the run's learning rate and seed: what only the hook can know."""
    x, _ = next(iter(data.test))
    return f"toy: {float(model(x)['b'][0, 0]):.6f} lr={settings['learning_rate']} seed={seed}"


@pytest.mark.slow  # ~5 s: a fit of 2 steps and the per-task report with its reference predictors
def test_train_prints_the_recipes_report_of_the_trained_model_after_its_table():
    lines = []
    run = train_recipe(_toy(_prediction_report), export_dir=None, seed=3, verbose=0, log=lines.append,
                       learning_rate=0.05)
    x, _ = next(iter(_load_data(8, 3).test))
    expected = f"toy: {float(run.model(x)['b'][0, 0]):.6f} lr=0.05 seed=3"
    assert run.recipe_report == expected
    table = next(i for i, line in enumerate(lines) if line.startswith("\nTest metrics per task"))
    assert lines[table + 2:] == ["\n" + expected]  # the header, the table, then the recipe's report


def test_a_report_whose_extra_is_missing_is_a_one_line_note():
    def needs_extra(model, data, settings, seed):
        raise ImportError("the toy report needs statsmodels:\n pip install statsmodels")

    note = _recipe_report(_toy(needs_extra), None, None, DEFAULTS, 0)
    assert note == "toy-report report skipped (the toy report needs statsmodels: pip install statsmodels)."


def test_report_must_be_callable():
    with pytest.raises(ValueError, match="Invalid value for `report` of recipe 'toy-report'.*Received: report='x'"):
        _toy("x")


def test_compile_passes_the_declared_compile_settings():
    received = {}
    recipe = Recipe(name="toy-compile", description="A toy.", tasks=TASKS, defaults={**DEFAULTS, "optimizer": "sgd"},
                    load_data=_load_data, build_model=lambda **kw: None, compile_settings=("optimizer",),
                    compile_model=lambda model, **kwargs: received.update(kwargs))
    recipe.compile(None, recipe.settings(optimizer="adam"))
    assert received == {"weighting": "equal", "learning_rate": 0.1, "optimizer": "adam"}
