"""Running a recipe end to end: data, model, training, per-task report and export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import keras

from kmtl.evaluation import EvaluationReport, evaluate
from kmtl.export import for_serving


@dataclass
class RecipeRun:
    """What `train_recipe` produced."""

    model: Any
    history: Any
    report: EvaluationReport
    export_path: Path | None


def recipe_settings(recipe, quick: bool = False, **overrides) -> dict:
    """A recipe's training settings: its `DEFAULTS`, then `QUICK` when `quick`, then non-None `overrides`."""
    settings = dict(recipe.DEFAULTS)
    if quick:
        settings.update(recipe.QUICK)
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return settings


def train_recipe(
    recipe,
    *,
    quick: bool = False,
    export_dir: str | Path | None = "saved_models",
    seed: int = 0,
    verbose: int = 1,
    log: Callable[[str], None] = print,
    **overrides,
) -> RecipeRun:
    """Trains a recipe on its data, prints the per-task test metrics and exports it.

    Args:
        recipe: a recipe module (see `kmtl.recipes.get`).
        quick: bool. Use the recipe's `QUICK` settings (tiny data, one epoch) for a smoke run.
        export_dir: export root; the model goes to `<export_dir>/<recipe module name>/<next version>/`.
            None skips the export.
        seed: int. Seed of Keras, NumPy and TensorFlow randomness and of the data.
        verbose: int. Keras progress-bar verbosity for `fit`.
        log: function receiving the lines to print.
        **overrides: settings such as `epochs`, `batch_size`, `weighting`, `learning_rate`, `source`, `model`.

    Returns:
        `RecipeRun` with the model, its `History`, the test report and the export path.
    """
    settings = recipe_settings(recipe, quick=quick, **overrides)
    keras.utils.set_random_seed(seed)
    # A recipe names the settings its `load_data` and `build_model` accept (`DATA_SETTINGS`, `MODEL_SETTINGS`).
    model_keys = getattr(recipe, "MODEL_SETTINGS", ("image_size",))
    if "model" in settings and "model" not in model_keys:
        raise ValueError(f"The {recipe.NAME} recipe has one model. Received: model={settings['model']!r}")
    data_keys = getattr(recipe, "DATA_SETTINGS", ("num_train", "num_val", "num_test", "image_size", "source"))
    data_kwargs = {k: settings[k] for k in data_keys if k in settings}
    splits = recipe.load_data(batch_size=settings["batch_size"], seed=seed, **data_kwargs)
    train, val, test = splits
    model_kwargs = {k: settings[k] for k in model_keys if k in settings}
    # What the model must know about the data (e.g. a normaliser fitted on the training split), if the recipe's
    # `load_data` returns it as a `model_settings` dict beside the three datasets.
    model_kwargs.update(getattr(splits, "model_settings", {}))
    model = recipe.build_model(**model_kwargs)
    recipe.compile_model(model, weighting=settings["weighting"], learning_rate=settings["learning_rate"])
    # The recipe's datasets shuffle themselves; shuffle=False keeps Keras from warning that it cannot.
    history = model.fit(train, validation_data=val, epochs=settings["epochs"], verbose=verbose, shuffle=False)
    report = evaluate(model, test)
    log(f"\nTest metrics per task ({recipe.NAME}, weighting={settings['weighting']}):")
    log(report.table())
    export_path = None
    if export_dir is not None:
        export_path = for_serving(model, Path(export_dir) / recipe.__name__.rsplit(".", 1)[-1])
        log(f"\nExported for TF Serving: {export_path}")
    return RecipeRun(model, history, report, export_path)
