"""The same tuning effort for both sides of a comparison: a keras-tuner search of equal trials per model."""

from __future__ import annotations

import tempfile
from typing import Callable, Sequence

from kmtl.recipe import COMPILE_SETTINGS, Recipe


def tune_each_model(
    recipe: Recipe,
    settings: dict,
    load: Callable[[list[str] | None], object],
    plans: Sequence[tuple[str, list]],
    *,
    trials: int,
    seed: int,
    log: Callable[[str], None] | None = None,
) -> dict[str, tuple[dict, dict]]:
    """Searches the recipe's search space with `trials` random-search trials for each model of a comparison.

    Every model (the multi-task one and each single-task one) gets its own search of the same number of trials,
    the same epochs and the same data (training and validation splits of the first repeat, scored by the
    multi-task objective of its own tasks: for a single-task model, that task's validation metric). A single-task
    model's search leaves out `weighting` (one task has nothing to weight).

    Args:
        recipe: `kmtl.Recipe`.
        settings: the run's settings.
        load: callable `task names or None -> RecipeData` (the comparison's data for the first seed).
        plans: list of `(label, tasks)`: `"multi-task"` with all tasks, then each main task's name with itself.
        trials: int. Trials per model.
        seed: int. Seed of every search.
        log: callable receiving progress lines, or None.

    Returns:
        dict `{label: (build values, compile values)}`: the best trial's values of each model, split into
        `build_model` arguments and `compile_model` arguments.
    """
    from kmtl.tuning.recipe_hypermodel import RecipeHyperModel, default_search_space
    from kmtl.tuning.run import make_tuner

    space = dict(recipe.search_space or default_search_space(settings))
    best = {}
    with tempfile.TemporaryDirectory(prefix="kmtl-compare-tuning-") as directory:
        for label, subset in plans:
            names = [t.name for t in subset]
            data = load(names)
            # A model of one task has nothing to weight: its trials go to the other settings.
            searched = space if len(subset) > 1 else {k: v for k, v in space.items() if k != "weighting"}
            hypermodel = RecipeHyperModel(recipe, search_space=searched, settings=settings,
                                          model_kwargs={**data.model_settings, "tasks": list(subset)})
            tuner = make_tuner(hypermodel, max_trials=trials, directory=directory, project_name=f"model_{len(best)}",
                               kind="random", seed=seed, overwrite=True)
            if log is not None:
                log(f"Tuning the {label} model: {trials} trial(s) of {settings['epochs']} epoch(s)")
            tuner.search(data.train, validation_data=data.val, epochs=settings["epochs"], verbose=0, shuffle=False)
            trial = tuner.oracle.get_best_trials(1)
            if not trial or trial[0].score is None:
                raise RuntimeError(f"No tuning trial of the {label} model finished with a score.")
            values = hypermodel.decode(trial[0].hyperparameters.values)
            best[label] = ({k: v for k, v in values.items() if k not in COMPILE_SETTINGS},
                           {k: v for k, v in values.items() if k in COMPILE_SETTINGS})
            if log is not None:
                log(f"  best {hypermodel.objective.name} {trial[0].score:.4f}: {values}")
    return best
