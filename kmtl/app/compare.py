"""Comparing a recipe's multi-task model with single-task models of the same architecture and budget (Δm)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from kmtl.app.registry import resolve
from kmtl.app.train import check_plot_path, check_run_settings
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
    resplit: bool = False,
    label_fractions: Sequence[float] | None = None,
    plot: str | Path | None = None,
    classical: bool = True,
    tune_trials: int | None = None,
    folds: int | None = None,
    **overrides,
):
    """Compares a recipe's multi-task model with single-task models of the same architecture and budget.

    Uses the recipe's settings (`defaults`, then `quick` when asked, then `epochs` and `overrides`), its
    `build_model(tasks=...)`, `compile_model` and `load_data(tasks=...)`; every model of a repeat reloads the data
    with the same seed, so all see the same examples in the same order, for the same epochs and steps. Repeats use
    seeds `seed, seed + 1, ...` for the models; the data seed stays `seed` unless `resplit`. Each task's trivial
    predictor and classical model, fitted on the repeat's training labels, are scored beside the models. A recipe
    that declares `baselines` (a model from another library) has it trained on the same split and its scores passed
    to `log` after kmtl's models (a one-line note when its extra is missing).

    With `label_fractions`, the comparison runs once per fraction f: in each repeat every training example keeps
    each task's label independently with probability f (`kmtl.evaluation.label_fraction.mask_labels`, drawn with
    the repeat's seed; the multi-task and the single-task models get the same masked labels; validation and test
    labels are untouched). The training split is then read once into memory and batched again (shuffled with the
    seed), the same way at every fraction, 1 included.

    Args:
        recipe: `kmtl.Recipe` or its name (see `kmtl recipes`).
        quick: bool. Use the recipe's quick settings (tiny data, one epoch).
        epochs: int. Epochs of every model (default: the recipe's).
        repeats: int. Number of seeds (paired repeats; 3 or more give intervals and tests).
        seed: int. First seed.
        verbose: int. Keras progress-bar verbosity for `fit`.
        log: callable receiving progress lines, or None.
        resplit: bool. Each repeat also draws new data with its seed: a new train/validation/test split of the
            recipe's data (by patient where the recipe splits by group, e.g. clinical-timeseries), or new synthetic
            data. Repeats then measure the spread over data splits as well as over initialisations.
        folds: int or None. K-fold repeats: each seed runs K repeats, one per fold, with the recipe's data setting
            `fold=(k, K)` (the k-th of K folds as the test split, grouped by patient or subject where the recipe's
            data has groups). Only for recipes that declare `fold` among their `data_settings`.
        label_fractions: sequence of float in (0, 1], or None.
        plot: path of a PNG of Δm against the label fraction (needs matplotlib), or None. Checked before training:
            an existing file is never replaced.
        classical: bool. Score the classical reference models (scikit-learn; a few seconds per task).
        tune_trials: int or None. The same tuning effort for both sides: before the repeats, the multi-task model
            and each single-task model get their own keras-tuner random search of `tune_trials` trials over the
            recipe's search space (same epochs, the first repeat's training and validation data, each scored by
            its own tasks' validation metrics; `kmtl.app.compare_tuning`), and every repeat trains each model
            with its best values. None: every model uses the recipe's settings as they are.
        **overrides: other settings, such as `batch_size`, `weighting`, `learning_rate`, `source`.

    Returns:
        `kmtl.evaluation.ComparisonResult` (see `kmtl.evaluation.compare_single_task`), or with `label_fractions` a
        `kmtl.evaluation.label_fraction.LabelFractionResult` holding one per fraction.

    Example:

    >>> print(compare_recipe("facial-attributes", quick=True, repeats=3).table())  # doctest: +SKIP

    Reference:
        Maninis, Radosavovic & Kokkinos (2019). Attentive Single-Tasking of Multiple Tasks. CVPR.
    """
    from kmtl.evaluation.baselines import compare_single_task
    from kmtl.evaluation.label_fraction import LabelFractionResult

    recipe = resolve(recipe)
    settings = recipe.settings(quick=quick, epochs=epochs, **overrides)
    check_run_settings(settings)
    fractions = _check_arguments(recipe, repeats, label_fractions, plot, tune_trials, folds)
    runs = _Runs(recipe, settings, seed, resplit, folds)
    tasks = runs.loader(seed).load(None, fresh=True).tasks
    names = [t.name for t in tasks]
    tuned, current = {}, {}
    if tune_trials is not None:
        from kmtl.app.compare_tuning import tune_each_model

        plans = [("multi-task", list(tasks))] + [(t.name, [t]) for t in tasks if not t.auxiliary]
        tuned = tune_each_model(recipe, settings, lambda subset: runs.loader(seed).load(subset, fresh=True), plans,
                                trials=tune_trials, seed=seed, log=log)

    def build_fn(subset):
        data = runs.loader().load([t.name for t in subset], fresh=True)  # fresh: every model sees the same order
        label = "multi-task" if [t.name for t in subset] == names else subset[0].name
        build_values, current["compile"] = tuned.get(label, ({}, {}))
        return recipe.build(settings, data, tasks=list(subset), **build_values)

    def compile_fn(model):
        return recipe.compile(model, settings, **current.get("compile", {}))  # the values of the model just built

    # The recipe's datasets shuffle themselves; shuffle=False keeps Keras from warning that it cannot.
    fit_kwargs = {"epochs": settings["epochs"], "verbose": verbose, "shuffle": False}
    seeds = [seed + r for r in range(repeats) for _ in range(folds or 1)]

    def compare(fraction):
        if log is not None and fraction is not None:
            log(f"Label fraction {fraction:g}:")
        resample = runs.resample if fraction is None and (resplit or folds) else None
        if fraction is not None:
            resample = lambda repeat, model_seed: runs.masked(repeat, model_seed, tasks, fraction)  # noqa: E731
        splits = [runs.loader(seed).split(i) for i in range(3)] if resample is None else [None] * 3
        result = compare_single_task(build_fn, compile_fn, *splits, list(tasks), fit_kwargs=fit_kwargs, seeds=seeds,
                                     log=log, classical=classical, resample=resample)
        result.notes += runs.notes(fraction) + _tuning_notes(tuned, tune_trials)
        return result

    if fractions is None:
        result = compare(None)
    else:
        result = LabelFractionResult({f: compare(f) for f in fractions})
        if plot is not None:
            path = result.save_plot(plot, title=f"{recipe.name}: {len(seeds)} repeat(s), {settings['epochs']} epoch(s)")
            if log is not None:
                log(f"Plot of Δm against the label fraction: {path}")
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


def _check_arguments(recipe, repeats, label_fractions, plot, tune_trials, folds) -> list | None:
    """Checks the comparison's own arguments before any data is loaded; returns the fractions, largest first."""
    from kmtl.evaluation.label_fraction import check_fractions

    for name, value in (("repeats", repeats), ("tune_trials", tune_trials)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"Invalid value for `{name}`. Expected a positive int. Received: {name}={value!r}")
    fractions = None if label_fractions is None else sorted(set(check_fractions(label_fractions)), reverse=True)
    if plot is not None:
        _check_plot_path(plot, fractions)
    if folds is not None:
        _check_folds(recipe, folds)
    return fractions


def _tuning_notes(tuned, trials) -> list:
    if not tuned:
        return []
    values = "; ".join(f"{label} {dict(**build, **compile)}" for label, (build, compile) in tuned.items())
    return [f"Tuned: each model had its own {trials}-trial random search of the recipe's search space; best values: "
            f"{values}."]


def _check_folds(recipe, folds) -> None:
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"Invalid value for `folds`. Expected an int >= 2. Received: folds={folds!r}")
    if "fold" not in recipe.data_settings:
        raise ValueError(
            f"The {recipe.name} recipe does not declare a `fold` data setting, so its data cannot be split into "
            "folds; use resplit=True (--resplit) for a new split per repeat instead."
        )


def _check_plot_path(plot, fractions) -> None:
    if fractions is None:
        raise ValueError("`plot` draws Δm against the label fraction: pass `label_fractions` too (--label-fraction).")
    check_plot_path(plot)


class _Runs:
    """The data of each repeat: the recipe's splits for the repeat's data seed and fold, and masked training labels.

    `compare_single_task` calls `resample(repeat, seed)` before a repeat's models, so `build_fn` then builds them
    with that repeat's data (and what the recipe derives from it, e.g. a normaliser).
    """

    def __init__(self, recipe, settings, seed, resplit, folds=None):
        self.recipe, self.settings, self.seed, self.resplit, self.folds = recipe, settings, seed, resplit, folds
        self.data = (seed, None)  # (data seed, fold)
        self._loaders, self._examples = {}, (None, None, None)

    def loader(self, data_seed=None):
        key = self.data if data_seed is None else (data_seed, self.data[1])
        if key not in self._loaders:
            settings = self.settings if key[1] is None else {**self.settings, "fold": key[1]}
            self._loaders = {key: _Loader(self.recipe, settings, key[0])}  # one split in memory
        return self._loaders[key]

    def resample(self, repeat, model_seed):
        """The recipe's splits for a repeat: drawn with the model seed when resplitting, else with the first seed;
        with folds, repeat `r` holds out fold `r % folds`."""
        fold = None if self.folds is None else (repeat % self.folds, self.folds)
        self.data = (model_seed if self.resplit else self.seed, fold)
        loader = self.loader()
        return tuple(loader.split(i) for i in range(3))

    def masked(self, repeat, model_seed, tasks, fraction):
        """The repeat's splits with training labels masked to `fraction` (drawn with the model seed)."""
        import tensorflow as tf

        from kmtl.evaluation.arrays import collect_examples
        from kmtl.evaluation.label_fraction import mask_labels

        _, val, test = self.resample(repeat, model_seed)
        if self._examples[0] != self.data:  # the training split in memory, read once per data seed and fold
            self._examples = (self.data, *collect_examples(self.loader().load(None, fresh=False).train, tasks))
        _, inputs, labels = self._examples
        labels = mask_labels(labels, tasks, fraction, model_seed)
        batch_size = self.settings["batch_size"]

        def train(names):
            dataset = tf.data.Dataset.from_tensor_slices((inputs, {n: labels[n] for n in names}))
            dataset = dataset.shuffle(len(next(iter(labels.values()))), seed=model_seed, reshuffle_each_iteration=True)
            return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)

        return train, val, test

    def notes(self, fraction) -> list:
        notes = []
        if self.folds:
            notes.append(f"Each seed ran {self.folds} repeats, one per fold of the recipe's `fold` data setting "
                         "(grouped where the recipe's data has groups).")
        if self.resplit:
            notes.append("Each repeat drew new data with its seed (resplit): a new split of the recipe's data, by "
                         "group where the recipe splits by group.")
        if fraction == 1:
            notes.append("Label fraction 1: every training label kept (the training split read into memory and "
                         "batched again, as at the other fractions).")
        elif fraction is not None:
            notes.append(f"Label fraction {fraction:g}: each training example kept each task's label with probability "
                         f"{fraction:g}, drawn with the repeat's seed; every model of a repeat got the same labels; "
                         "validation and test labels untouched.")
        return notes


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
