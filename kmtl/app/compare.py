"""Comparing a recipe's multi-task model with single-task models of the same architecture and budget (Δm)."""

from __future__ import annotations

from typing import Callable

from kmtl.app.registry import resolve
from kmtl.app.train import check_run_settings
from kmtl.recipe import Recipe


def compare_recipe(
    recipe: Recipe | str,
    *,
    quick: bool = False,
    epochs: int | None = None,
    repeats: int = 1,
    seed: int = 0,
    verbose: int = 0,
    log: Callable[[str], None] | None = None,
    **overrides,
):
    """Compares a recipe's multi-task model with single-task models of the same architecture and budget.

    Uses the recipe's settings (`defaults`, then `quick` when asked, then `epochs` and `overrides`), its
    `build_model(tasks=...)`, `compile_model` and `load_data(tasks=...)`; every model reloads the data with the same
    seed, so all see the same examples in the same order. Repeats use seeds `seed, seed + 1, ...` for the models;
    the data seed stays `seed`. A recipe that declares `baselines` (a model from another library) has it trained on
    the same split and its scores passed to `log` after kmtl's models (a one-line note when its extra is missing).

    Args:
        recipe: `kmtl.Recipe` or its name (see `kmtl recipes`).
        quick: bool. Use the recipe's quick settings (tiny data, one epoch).
        epochs: int. Epochs of every model (default: the recipe's).
        repeats: int. Number of seeds.
        seed: int. First seed.
        verbose: int. Keras progress-bar verbosity for `fit`.
        log: callable receiving progress lines, or None.
        **overrides: other settings, such as `batch_size`, `weighting`, `learning_rate`, `source`.

    Returns:
        `kmtl.evaluation.ComparisonResult` (see `kmtl.evaluation.compare_single_task`).

    Example:

    >>> print(compare_recipe("facial-attributes", quick=True).table())  # doctest: +SKIP

    Reference:
        Maninis, Radosavovic & Kokkinos (2019). Attentive Single-Tasking of Multiple Tasks. CVPR.
    """
    from kmtl.evaluation.baselines import compare_single_task

    recipe = resolve(recipe)
    settings = recipe.settings(quick=quick, epochs=epochs, **overrides)
    check_run_settings(settings)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"Invalid value for `repeats`. Expected a positive int. Received: repeats={repeats!r}")
    loader = _Loader(recipe, settings, seed)
    tasks = loader.load(None, fresh=True).tasks

    def build_fn(subset):
        data = loader.load([t.name for t in subset], fresh=True)  # fresh: every model sees the same order
        return recipe.build(settings, data, tasks=list(subset))

    def compile_fn(model):
        return recipe.compile(model, settings)

    # The recipe's datasets shuffle themselves; shuffle=False keeps Keras from warning that it cannot.
    fit_kwargs = {"epochs": settings["epochs"], "verbose": verbose, "shuffle": False}
    seeds = [seed + r for r in range(repeats)]
    splits = [loader.split(i) for i in range(3)]
    result = compare_single_task(build_fn, compile_fn, *splits, list(tasks), fit_kwargs=fit_kwargs, seeds=seeds,
                                 log=log)
    if recipe.baselines is not None and log is not None:
        log(baseline_report(recipe, settings, seed))
    return result


def baseline_report(recipe: Recipe, settings: dict, seed: int = 0) -> str:
    """The recipe's declared `baselines` trained on the split of `settings` and `seed`, as text; a one-line note
    when the baseline's optional extra is not installed."""
    try:
        return recipe.baselines(settings, seed)
    except ImportError as error:
        return f"Baseline skipped ({' '.join(str(error).split())})."


class _Loader:
    """A recipe's data for a list of task names, loaded when a model is built and reused by its data callables."""

    def __init__(self, recipe, settings, seed):
        self.recipe, self.settings, self.seed = recipe, settings, seed
        self.names, self.data = None, None

    def load(self, names, fresh):
        if fresh or self.data is None or self.names != names:
            self.data = self.recipe.load(self.settings, seed=self.seed, tasks=names)
            self.names = names
        return self.data

    def split(self, index):
        return lambda names: self.load(list(names), fresh=False)[index]
