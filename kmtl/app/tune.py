"""Tuning a recipe end to end: data, hypermodel, keras-tuner search, best hyper-parameters and score."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from kmtl.app.registry import resolve
from kmtl.app.train import check_run_settings
from kmtl.recipe import Recipe


@dataclass
class TuneRun:
    """What `tune_recipe` produced. `best_values` and `best_score` are None on a distributed worker."""

    tuner: Any
    hypermodel: Any
    best_values: dict | None
    best_score: float | None
    project_dir: Path


def tune_recipe(
    recipe: Recipe | str,
    *,
    max_trials: int,
    epochs: int | None = None,
    quick: bool = False,
    directory: str | Path = "tuning",
    seed: int = 0,
    kind: str = "random",
    resume: bool = False,
    overwrite: bool = False,
    verbose: int = 1,
    log: Callable[[str], None] = print,
    **overrides,
) -> TuneRun:
    """Searches a recipe's hyper-parameters and prints the best ones with their score.

    Data and model settings reach the recipe as for `kmtl train`: `load_data` gets its `data_settings`,
    `build_model` its `model_settings` (see `kmtl.tuning.RecipeHyperModel`) plus what `load_data` derived from the
    data (`RecipeData.model_settings`).

    The search lives in `<directory>/<recipe module name>/`. A folder left by an earlier search is never reused or
    deleted silently: without `resume` or `overwrite` this raises `FileExistsError`; `resume=True` continues it
    (keras-tuner reloads the oracle and runs the remaining trials up to `max_trials`); `overwrite=True` deletes
    it and starts over. Under keras-tuner's distributed environment variables, workers share the chief's folder
    and skip this check.

    Args:
        recipe: `kmtl.Recipe` or its name.
        max_trials: int. Trials in all.
        epochs: int. Epochs per trial (default: the recipe's, the quick settings' with `quick`).
        quick: bool. The recipe's quick settings: tiny data and model sizes for a smoke run.
        directory: root folder of searches.
        seed: int. Seed of Keras, NumPy and TensorFlow randomness, of the data and of the search.
        kind: str. `"random"` or `"bayesian"`.
        resume: bool. Continue a search found in the folder.
        overwrite: bool. Delete a search found in the folder and start over.
        verbose: int. keras-tuner and Keras verbosity.
        log: function receiving the lines to print.
        **overrides: recipe settings (`batch_size`, `num_train`, `source`, ...).

    Returns:
        `TuneRun`.
    """
    recipe = resolve(recipe)
    if resume and overwrite:
        raise ValueError("Pass at most one of `resume` and `overwrite`. Received: resume=True, overwrite=True")
    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1:
        raise ValueError(f"Invalid value for `max_trials`. Expected a positive int. Received: max_trials={max_trials!r}")
    settings = recipe.settings(quick=quick, epochs=epochs, **overrides)
    check_run_settings(settings)
    project_dir = Path(directory) / recipe.module_name
    for path in (project_dir, *project_dir.parents):
        if path.exists() and not path.is_dir():
            raise ValueError(
                f"Invalid value for `directory`: {path} is a file, not a folder. Received: directory={str(directory)!r}"
            )

    import keras

    from kmtl.tuning.recipe_hypermodel import RecipeHyperModel
    from kmtl.tuning.run import is_distributed_worker, make_tuner

    if project_dir.exists() and any(project_dir.iterdir()) and not is_distributed_worker():
        if overwrite:
            shutil.rmtree(project_dir)
        elif not resume:
            raise FileExistsError(
                f"{project_dir} holds an earlier search; pass --resume to continue it, --overwrite to start over, "
                "or choose another --directory."
            )
    keras.utils.set_random_seed(seed)
    data = recipe.load(settings, seed=seed)
    # What the model must know about the data (e.g. a normaliser fitted on the training split), as for `kmtl train`.
    hypermodel = RecipeHyperModel(recipe, settings=settings, model_kwargs=data.model_settings)
    tuner = make_tuner(hypermodel, max_trials=max_trials, directory=directory, project_name=recipe.module_name,
                       kind=kind, seed=seed)
    tuner.search(data.train, validation_data=data.val, epochs=settings["epochs"], verbose=verbose, shuffle=False)
    if is_distributed_worker():
        log(f"Worker {os.environ.get('KERASTUNER_TUNER_ID')} finished; the chief holds the results.")
        return TuneRun(tuner, hypermodel, None, None, project_dir)
    best = tuner.oracle.get_best_trials(1)
    if not best or best[0].score is None:
        raise RuntimeError(f"No trial of {project_dir} finished with a score; see the trials' messages there.")
    values = hypermodel.decode(best[0].hyperparameters.values)
    log(f"\nBest {hypermodel.objective.name}: {best[0].score:.4f} (trial {best[0].trial_id}, {project_dir})")
    for name, value in values.items():
        log(f"  {name:24s} {value}")
    for line in skill_lines(hypermodel.objective, best[0]):
        log(line)
    return TuneRun(tuner, hypermodel, values, float(best[0].score), project_dir)


def skill_lines(objective, trial) -> list[str]:
    """What the best trial's score is made of: each task's metric beside its trivial predictor's, and its skill."""
    if objective.references is None:
        return []
    lines = [f"{objective.name} is the mean over tasks of each task's skill over its trivial predictor (fitted on "
             "the training split): (m - trivial) / (perfect - trivial), 0 at trivial, 1 when perfect."]
    for task, key in objective.log_keys().items():
        value = trial.metrics.get_last_value(key) if trial.metrics.exists(key) else float("nan")
        reference = objective.references[task]
        lines.append(f"  {task:24s} {objective.metrics[task]} {value:.4f} (trivial {reference:.4f}) "
                     f"skill {objective.normalised(task, value):+.3f}")
    return lines
