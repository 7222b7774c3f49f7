"""Running a keras-tuner search for a kmtl hypermodel: the tuner with the multi-task objective, distributed roles.

Running a recipe's search (data, hypermodel, printing the best values) is `kmtl.app.tune.tune_recipe`.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras_tuner

TUNERS = {"random": keras_tuner.RandomSearch, "bayesian": keras_tuner.BayesianOptimization}


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
