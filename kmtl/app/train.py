"""Running a recipe end to end: data, model, training, per-task report and export."""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from kmtl.app.registry import resolve
from kmtl.recipe import Recipe

# Where `train_recipe` exports unless told otherwise (quick runs: nowhere).
DEFAULT_EXPORT_DIR = "saved_models"
# A quick run exported on request goes to `<export_dir>/<recipe>_quick/`, never beside the served versions.
QUICK_SUFFIX = "_quick"
_DEFAULT = object()


@dataclass
class RecipeRun:
    """What `train_recipe` produced."""

    model: Any
    history: Any
    report: Any
    export_path: Path | None
    recipe_report: str | None = None  # the recipe's own report (`Recipe.report`), as printed


def recipe_settings(recipe: Recipe | str, quick: bool = False, **overrides) -> dict:
    """A recipe's settings: its `defaults`, then `quick` when asked, then the `overrides` that are not None."""
    return resolve(recipe).settings(quick=quick, **overrides)


def check_plot_path(plot) -> None:
    """Refuses a plot path before any data is loaded: a `.png` in an existing folder, never an existing file."""
    path = Path(plot)
    if path.suffix.lower() != ".png":
        raise ValueError(f"Invalid value for `plot`. Expected a path ending in .png. Received: plot={str(plot)!r}")
    if path.exists():
        raise FileExistsError(f"Refusing to overwrite existing file {path}; choose another --plot path.")
    if not path.parent.is_dir():
        raise ValueError(f"Invalid value for `plot`: the folder {path.parent} does not exist. Received: {str(plot)!r}")


def check_run_settings(settings: dict) -> None:
    """Checks the settings every run uses before any data is loaded.

    Raises:
        ValueError: for epochs or a batch size that is not a positive int, a learning rate that is not positive,
            or an unknown weighting strategy.
    """
    for name in ("epochs", "batch_size"):
        value = settings[name]
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"Invalid value for `{name}`. Expected a positive int. Received: {name}={value!r}")
    rate = settings["learning_rate"]
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not rate > 0:
        raise ValueError(f"Invalid value for `learning_rate`. Expected a positive number. Received: learning_rate={rate!r}")
    weighting = settings["weighting"]
    if isinstance(weighting, str):
        from kmtl.weighting import STRATEGIES

        if weighting not in STRATEGIES:
            raise ValueError(
                f"Invalid value for `weighting`. Expected one of {', '.join(sorted(STRATEGIES))}. "
                f"Received: weighting={weighting!r}"
            )


def export_folder(recipe: Recipe, export_dir: str | Path | None, quick: bool) -> Path | None:
    """The folder whose next version a run exports: `<export_dir>/<recipe>/` (`<recipe>_quick/` for quick runs).

    Checked before training, so a bad folder fails at once: it, or its nearest existing parent, must be a writable
    folder.

    Raises:
        ValueError: when a path on the way is a file, or the folder cannot be written.
    """
    if export_dir is None:
        return None
    folder = Path(export_dir) / (recipe.module_name + (QUICK_SUFFIX if quick else ""))
    for path in (folder, *folder.parents):
        if not path.exists():
            continue
        if not path.is_dir():
            raise ValueError(
                f"Invalid value for `export_dir`: {path} is a file, not a folder, so {folder} cannot hold the "
                f"export. Expected a folder. Received: export_dir={str(export_dir)!r}"
            )
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(
                f"Invalid value for `export_dir`: the folder {path} is not writable. Received: "
                f"export_dir={str(export_dir)!r}"
            )
        break
    return folder


def train_recipe(
    recipe: Recipe | str,
    *,
    quick: bool = False,
    export_dir: str | Path | None = _DEFAULT,
    seed: int = 0,
    verbose: int = 1,
    log: Callable[[str], None] = print,
    **overrides,
) -> RecipeRun:
    """Trains a recipe on its data, prints the per-task test metrics (and the recipe's own `report`) and exports it.

    Args:
        recipe: `kmtl.Recipe` or its name (see `kmtl recipes`).
        quick: bool. Use the recipe's quick settings (tiny data, one epoch) for a smoke run. A quick run is not
            exported unless `export_dir` is given, and then to `<export_dir>/<recipe>_quick/`, never where the real
            models are served from.
        export_dir: export root; the model goes to `<export_dir>/<recipe module name>/<next version>/`. Defaults
            to `saved_models` (no export for quick runs). None skips the export.
        seed: int. Seed of Keras, NumPy and TensorFlow randomness and of the data.
        verbose: int. Keras progress-bar verbosity for `fit`.
        log: function receiving the lines to print.
        **overrides: settings such as `epochs`, `batch_size`, `weighting`, `learning_rate`, `source`, `model`.

    Returns:
        `RecipeRun` with the model, its `History`, the test report, the export path and the recipe's report text.

    Raises:
        ValueError: for bad settings or export folder, before any data is loaded.
    """
    recipe = resolve(recipe)
    settings = recipe.settings(quick=quick, **overrides)
    check_run_settings(settings)
    if export_dir is _DEFAULT:
        export_dir = None if quick else DEFAULT_EXPORT_DIR
    folder = export_folder(recipe, export_dir, quick)

    import keras

    from kmtl.evaluation.report import evaluate
    from kmtl.export.serving import for_serving

    keras.utils.set_random_seed(seed)
    data = recipe.load(settings, seed=seed)
    model = recipe.compile(recipe.build(settings, data), settings)
    # The recipe's datasets shuffle themselves; shuffle=False keeps Keras from warning that it cannot.
    history = model.fit(data.train, validation_data=data.val, epochs=settings["epochs"], verbose=verbose,
                        shuffle=False)
    # Beside the trivial and classical predictors fitted on the same training split.
    report = evaluate(model, data.test, train_data=data.train)
    log(f"\nTest metrics per task ({recipe.name}, weighting={settings['weighting']}):")
    log(report.table())
    recipe_report = None
    if recipe.report is not None:
        recipe_report = _recipe_report(recipe, model, data, settings, seed)
        log("\n" + recipe_report)
    export_path = None
    if folder is not None:
        export_path = for_serving(model, folder)
        log(f"\nExported for TF Serving: {export_path}")
        if recipe.plots is not None:
            _save_plots(recipe, model, data.test, export_path / "assets.extra", log)
    elif quick:
        log("\nQuick run: not exported (pass --export-dir to export it to <dir>/"
            f"{recipe.module_name}{QUICK_SUFFIX}/, away from the served models).")
    return RecipeRun(model, history, report, export_path, recipe_report)


def _recipe_report(recipe, model, data, settings, seed) -> str:
    """The recipe's own report of the trained model; without its optional extra, a one-line note saying so."""
    try:
        return recipe.report(model, data, settings, seed)
    except ImportError as error:
        return f"{recipe.name} report skipped ({' '.join(str(error).split())})."


def _save_plots(recipe, model, dataset, directory, log) -> None:
    """Draws the recipe's picture of the trained model next to its export; without matplotlib, says how to get it."""
    try:
        path = recipe.plots(model, dataset, directory)
    except ImportError as error:
        log(f"Predictions grid not drawn: {error}")
        return
    log(f"Predictions grid: {path}")
