"""Tuning a recipe end to end: data, hypermodel, keras-tuner search, best hyper-parameters and score."""

from __future__ import annotations

import inspect
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import keras
import keras_tuner

from kmtl.runner import recipe_settings
from kmtl.tuning.recipe_hypermodel import RecipeHyperModel, resolve_recipe

TUNERS = {"random": keras_tuner.RandomSearch, "bayesian": keras_tuner.BayesianOptimization}


@dataclass
class TuneRun:
    """What `tune_recipe` produced. `best_values` and `best_score` are None on a distributed worker."""

    tuner: Any
    hypermodel: Any
    best_values: dict | None
    best_score: float | None
    project_dir: Path


def is_distributed_worker() -> bool:
    """Whether keras-tuner's environment variables make this process a worker of a chief oracle."""
    return "KERASTUNER_ORACLE_IP" in os.environ and "chief" not in os.environ.get("KERASTUNER_TUNER_ID", "")


def make_tuner(
    hypermodel,
    *,
    max_trials: int,
    directory: str | Path,
    project_name: str,
    kind: str = "random",
    seed: int | None = None,
    overwrite: bool = False,
    **kwargs,
):
    """A keras-tuner tuner for a kmtl hypermodel, with the hypermodel's multi-task objective.

    Args:
        hypermodel: a `kmtl.tuning` hypermodel (it carries `objective`).
        max_trials: int. Trials in all (a resumed search counts the trials already run).
        directory: where keras-tuner keeps `<directory>/<project_name>/` (oracle state, trials, checkpoints).
        project_name: str. Folder of this search.
        kind: str. `"random"` (`keras_tuner.RandomSearch`) or `"bayesian"` (`keras_tuner.BayesianOptimization`).
        seed: int. Seed of the search.
        overwrite: bool. As for keras-tuner: True deletes the folder first; False resumes a search found there.
        **kwargs: other tuner arguments (e.g. `executions_per_trial`).

    Returns:
        The tuner.
    """
    if kind not in TUNERS:
        raise ValueError(f"Invalid value for `kind`. Expected one of {sorted(TUNERS)}. Received: kind={kind!r}")
    return TUNERS[kind](
        hypermodel, objective=hypermodel.objective, max_trials=max_trials, seed=seed, directory=str(directory),
        project_name=project_name, overwrite=overwrite, **kwargs,
    )


def _data_settings(recipe, settings: dict) -> dict:
    """The settings `load_data` takes: those in the recipe's `DATA_SETTINGS`, else those named like its arguments."""
    names = getattr(recipe, "DATA_SETTINGS", None)
    if names is None:
        names = [n for n in inspect.signature(recipe.load_data).parameters if n not in ("batch_size", "seed")]
    return {k: settings[k] for k in names if k in settings}


def tune_recipe(
    recipe,
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

    Data and model settings reach the recipe as for `kmtl train`: `load_data` gets those in `DATA_SETTINGS`,
    `build_model` those in `MODEL_SETTINGS` (see `RecipeHyperModel`) plus the `model_settings` dict that
    `load_data`'s result may carry.

    The search lives in `<directory>/<recipe module name>/`. A folder left by an earlier search is never reused or
    deleted silently: without `resume` or `overwrite` this raises `FileExistsError`; `resume=True` continues it
    (keras-tuner reloads the oracle and runs the remaining trials up to `max_trials`); `overwrite=True` deletes
    it and starts over. Under keras-tuner's distributed environment variables, workers share the chief's folder
    and skip this check.

    Args:
        recipe: a recipe module, name or module path.
        max_trials: int. Trials in all.
        epochs: int. Epochs per trial (default: the recipe's, `QUICK`'s with `quick`).
        quick: bool. The recipe's `QUICK` settings: tiny data and model sizes for a smoke run.
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
    recipe = resolve_recipe(recipe)
    if resume and overwrite:
        raise ValueError("Pass at most one of `resume` and `overwrite`. Received: resume=True, overwrite=True")
    settings = recipe_settings(recipe, quick=quick, **overrides)
    project_name = recipe.__name__.rsplit(".", 1)[-1]
    project_dir = Path(directory) / project_name
    if project_dir.exists() and any(project_dir.iterdir()) and not is_distributed_worker():
        if overwrite:
            shutil.rmtree(project_dir)
        elif not resume:
            raise FileExistsError(
                f"{project_dir} holds an earlier search; pass --resume to continue it, --overwrite to start over, "
                "or choose another --directory."
            )
    keras.utils.set_random_seed(seed)
    splits = recipe.load_data(batch_size=settings["batch_size"], seed=seed, **_data_settings(recipe, settings))
    train, val, _ = splits
    # What the model must know about the data (e.g. a normaliser fitted on the training split), as for `kmtl train`.
    model_kwargs = dict(getattr(splits, "model_settings", {}))
    make = getattr(recipe, "hypermodel", None) or (lambda **kwargs: RecipeHyperModel(recipe, **kwargs))
    hypermodel = make(settings=settings, model_kwargs=model_kwargs)
    tuner = make_tuner(hypermodel, max_trials=max_trials, directory=directory, project_name=project_name, kind=kind,
                       seed=seed)
    tuner.search(train, validation_data=val, epochs=epochs or settings["epochs"], verbose=verbose, shuffle=False)
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
    return TuneRun(tuner, hypermodel, values, float(best[0].score), project_dir)
