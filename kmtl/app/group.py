"""`kmtl group RECIPE`: which of a recipe's tasks should share layers, from their affinity in a short joint training.

`group_recipe` trains the recipe's own model for a few epochs while `kmtl.grouping.suggest` measures how a step for
each task changes every other task's loss, prints the affinity matrix, the best groups for every number of groups and
the `kmtl.grouping.branched` call that builds the suggested model on the recipe's trunk (its deepest complete shared
feature vector, `kmtl.grouping.shared_features`). On request it draws the heatmap, trains and exports that model, or
compares it on the test split with hard sharing and with one branch per task (the same trunk and branch widths).

Imports TensorFlow only when a run starts, never at import: the CLI parses without it.
"""

from __future__ import annotations

import dataclasses
import numbers
from pathlib import Path
from typing import Any, Callable, Sequence

from kmtl.app.registry import resolve
from kmtl.app.train import check_plot_path, check_run_settings, export_folder
from kmtl.recipe import Recipe

# Where a grouped model is exported: `<export_dir>/<recipe>_grouped/<version>/`, apart from the recipe's own model.
GROUPED_SUFFIX = "_grouped"
METHODS = ("lookahead", "gradient")


@dataclasses.dataclass
class GroupRun:
    """What `group_recipe` produced.

    Attributes:
        grouping: `kmtl.grouping.TaskGrouping` (affinity, groups, scores).
        partitions: dict `{k: (groups, score)}`: the best groups found with exactly k groups, task names.
        trunk: name of the recipe model's layer whose output the branches read, or None when it has none.
        plot_path: the heatmap written, or None.
        model: the trained suggested model (`train=True`), else None.
        report: its `EvaluationReport` on the test split, else None.
        export_path: the exported version (`train=True` with an `export_dir`), else None.
        comparison: `LayoutComparison` (`compare=True`), else None.
    """

    grouping: Any
    partitions: dict
    trunk: str | None
    plot_path: Path | None = None
    model: Any = None
    report: Any = None
    export_path: Path | None = None
    comparison: Any = None


@dataclasses.dataclass
class LayoutComparison:
    """Test scores of branched layouts on one trunk, per repeat.

    Attributes:
        layouts: dict `{layout name: groups}`.
        metrics: dict `{task: (metric name, lower_is_better)}`: each task's primary metric.
        scores: dict `{layout name: [{task: value}, one per repeat]}`.
    """

    layouts: dict
    metrics: dict
    scores: dict

    def table(self) -> str:
        """Per task and layout, the mean ± standard deviation over repeats; last, each layout's Δm against the
        last layout (one branch per task): the mean relative improvement over tasks, mean ± sd over repeats."""
        import numpy as np

        from kmtl.evaluation.deltas import delta_m

        names = list(self.layouts)
        reference = names[-1]
        lower = {t: low for t, (_, low) in self.metrics.items()}

        def cell(values):
            values = np.asarray(values, dtype=float)
            spread = f" ± {values.std(ddof=1):.4f}" if len(values) > 1 else ""
            return f"{values.mean():.4f}{spread}"

        rows = [["task (metric)", *names]]
        for task, (metric, _) in self.metrics.items():
            rows.append([f"{task} ({metric})", *(cell([run[task] for run in self.scores[n]]) for n in names)])
        deltas = [
            cell([100 * delta_m(run, ref, lower) for run, ref in zip(self.scores[n], self.scores[reference])])
            for n in names
        ]
        rows.append([f"Δm vs {reference} (%)", *deltas])
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                         for row in rows)


def group_recipe(
    recipe: Recipe | str,
    *,
    epochs: int = 1,
    method: str = "lookahead",
    num_groups: int | None = None,
    levels: int = 1,
    lookahead_rate: float = 0.01,
    branch_units: Sequence[int] = (32,),
    plot: str | Path | None = None,
    train: bool = False,
    export_dir: str | Path | None = None,
    compare: bool = False,
    repeats: int = 1,
    quick: bool = False,
    seed: int = 0,
    verbose: int = 1,
    log: Callable[[str], None] = print,
    **overrides,
) -> GroupRun:
    """Measures a recipe's task affinity in a short joint training and suggests which tasks share a branch.

    The recipe's own model (as `kmtl train` builds and compiles it) trains for `epochs` passes over the training
    split with the recipe's optimizer, on the sum of the task losses (each times its `Task.loss_weight` when the
    recipe's weighting is `static`, else equally); `kmtl.grouping.suggest` measures the affinity before each step.

    Args:
        recipe: `kmtl.Recipe` or its name.
        epochs: int. Epochs of the measured joint training.
        method: `"lookahead"` (Fifty et al. 2021) or `"gradient"` (cosine of the task gradients).
        num_groups: int or None. Exactly this many groups; None chooses the number.
        levels: int. Depths at which the branches split: 2 also gathers the groups into groups of groups
            (`kmtl.grouping.suggest(levels=...)`).
        lookahead_rate: float. Size of the plain gradient step of the lookahead.
        branch_units: widths of each branch's Dense layers in the suggested model.
        plot: path of a PNG heatmap of the affinity, or None. An existing file is never replaced.
        train: bool. Train the suggested model with the recipe's settings and print its test metrics.
        export_dir: export root for the trained suggested model: `<export_dir>/<recipe>_grouped/<version>/`
            (`_grouped_quick` for quick runs); None: no export. Needs `train`.
        compare: bool. Train hard sharing (one group), the suggested groups and one branch per task on the same
            trunk `repeats` times each and print their test scores.
        repeats: int. Seeds `seed, seed + 1, ...` of the comparison.
        quick: bool. The recipe's quick settings (tiny data and model).
        seed: int. Seed of the data, the measured model and the first repeat.
        verbose: int. Keras progress output of the trainings.
        log: function receiving the lines to print.
        **overrides: recipe settings (`source`, `batch_size`, ...); `epochs` here is the measured training's.

    Returns:
        `GroupRun`.

    Raises:
        ValueError: for bad arguments or settings, a plot path that is not a new .png in an existing folder, or
            (with `train` or `compare`) a recipe model without a shared feature vector to branch from — before any
            data is loaded where the check needs no model.
        FileExistsError: when `plot` exists.
    """
    recipe = resolve(recipe)
    settings = recipe.settings(quick=quick, **overrides)
    check_run_settings(settings)
    epochs = _positive_int("epochs", epochs)
    repeats = _positive_int("repeats", repeats)
    levels = _positive_int("levels", levels)
    branch_units = _check_arguments(method, lookahead_rate, branch_units, plot, train, export_dir)
    folder = export_folder(recipe, export_dir, quick)
    if folder is not None:
        folder = folder.with_name(recipe.module_name + GROUPED_SUFFIX + ("_quick" if quick else ""))

    import keras

    from kmtl.grouping import best_partitions, shared_features, suggest

    keras.utils.set_random_seed(seed)
    data = recipe.load(settings, seed=seed)
    model = recipe.compile(recipe.build(settings, data), settings)
    found = shared_features(model)
    trunk = found[0] if found else None
    if trunk is None and (train or compare):
        raise ValueError(
            f"The {recipe.name} recipe's model has no shared feature vector that every task's output is computed "
            "from (its tasks read sequences, images or several tensors), so there is no trunk to branch from: "
            "--train and --compare need one. Without them the affinity and groups are measured."
        )
    train_data = _two_components(data.train)
    steps = epochs * _batches_per_epoch(train_data)
    weighting = "static" if settings["weighting"] == "static" else "equal"
    log(f"Measuring task affinity ({method}) on the {recipe.name} model: {epochs} epoch(s), {steps} steps, "
        f"{weighting} task weights, lookahead step {lookahead_rate:g}")
    grouping = suggest(model, train_data, method=method, k=num_groups, steps=steps, learning_rate=lookahead_rate,
                       optimizer=model.optimizer, seed=seed, weighting=weighting, levels=levels)
    names = grouping.task_names
    partitions = {
        k: ([[names[i] for i in g] for g in groups], score)
        for k, (groups, score) in best_partitions(grouping.affinity, len(names)).items()
    }
    _log_grouping(log, grouping, partitions)
    log("")
    log(_builder_lines(recipe, overrides, grouping, trunk, branch_units, quick))
    run = GroupRun(grouping=grouping, partitions=partitions, trunk=trunk)
    if plot is not None:
        run.plot_path = grouping.plot(plot)
        log(f"\nAffinity heatmap: {run.plot_path}")
    if train:
        run.model, run.report, run.export_path = _train_suggested(
            recipe, settings, data, grouping.groups, branch_units, folder, seed, verbose, log
        )
    if compare:
        run.comparison = compare_layouts(recipe, settings, grouping.groups, branch_units=branch_units,
                                         seeds=[seed + r for r in range(repeats)], data_seed=seed, verbose=verbose)
        log(f"\nTest scores ({recipe.name}, {settings['epochs']} epoch(s), {repeats} repeat(s), branches "
            f"{branch_units} on '{trunk}'):")
        log(run.comparison.table())
    return run


def branched_recipe_model(recipe: Recipe, settings: dict, data, groups, branch_units=(32,)):
    """The recipe's model with everything after its trunk (`kmtl.grouping.shared_features`) replaced by one branch
    per group, compiled as the recipe compiles: a fresh model each call."""
    from kmtl.grouping import branched, shared_features

    base = recipe.build(settings, data)
    found = shared_features(base)
    if found is None:
        raise ValueError(f"The {recipe.name} recipe's model has no shared feature vector to branch from.")
    model = branched(base.input, found[1], base.tasks, groups, branch_units=branch_units,
                     name=f"{recipe.module_name}_grouped")
    return recipe.compile(model, settings)


def compare_layouts(recipe: Recipe, settings: dict, groups, *, branch_units=(32,), seeds=(0,), data_seed: int = 0,
                    verbose: int = 0) -> LayoutComparison:
    """Trains hard sharing (one group), `groups` and one branch per task on the recipe's trunk, once per seed each,
    with the recipe's settings, and scores each on the test split with its tasks' primary metrics.

    Every model gets the data loaded afresh with `data_seed` (the same split and batch order) and its seed's
    weights; a layout whose groups equal an earlier one's shares its scores rather than training again.
    """
    import keras

    from kmtl.evaluation.deltas import primary_metric
    from kmtl.evaluation.report import evaluate

    def load():
        keras.utils.set_random_seed(data_seed)
        return recipe.load(settings, seed=data_seed)

    tasks = recipe.build(settings, load()).tasks
    names = [t.name for t in tasks]
    layouts = {"hard sharing": [names], "suggested": [list(g) for g in groups], "per task": [[n] for n in names]}
    metrics = {t.name: primary_metric(t) for t in tasks}
    scores = {layout: [] for layout in layouts}
    for seed in seeds:
        done = {}
        for layout, layout_groups in layouts.items():
            key = _canonical(layout_groups)
            if key not in done:
                data = load()
                keras.utils.set_random_seed(seed)
                model = branched_recipe_model(recipe, settings, data, layout_groups, branch_units)
                model.fit(data.train, validation_data=data.val, epochs=settings["epochs"], verbose=verbose,
                          shuffle=False)
                report = evaluate(model, data.test)
                done[key] = {t: float(report[t][metric]) for t, (metric, _) in metrics.items()}
            scores[layout].append(done[key])
    return LayoutComparison(layouts=layouts, metrics=metrics, scores=scores)


def _train_suggested(recipe, settings, data, groups, branch_units, folder, seed, verbose, log):
    import keras

    from kmtl.evaluation.report import evaluate
    from kmtl.export.serving import for_serving

    keras.utils.set_random_seed(seed)
    model = branched_recipe_model(recipe, settings, data, groups, branch_units)
    model.fit(data.train, validation_data=data.val, epochs=settings["epochs"], verbose=verbose, shuffle=False)
    report = evaluate(model, data.test, train_data=data.train)
    log(f"\nTest metrics per task (suggested groups, {recipe.name}, {settings['epochs']} epoch(s)):")
    log(report.table())
    export_path = None
    if folder is not None:
        export_path = for_serving(model, folder)
        log(f"\nExported for TF Serving: {export_path}")
    return model, report, export_path


def _check_arguments(method, lookahead_rate, branch_units, plot, train, export_dir) -> tuple:
    """Checks what needs no data; returns `branch_units` as a tuple."""
    if method not in METHODS:
        raise ValueError(f"Invalid value for `method`. Expected one of {list(METHODS)}. Received: method={method!r}")
    if isinstance(lookahead_rate, bool) or not isinstance(lookahead_rate, numbers.Real) or not lookahead_rate > 0:
        raise ValueError(
            "Invalid value for `lookahead_rate`. Expected a positive number. "
            f"Received: lookahead_rate={lookahead_rate!r}"
        )
    branch_units = tuple(branch_units)
    if not branch_units or any(isinstance(u, bool) or not isinstance(u, numbers.Integral) or u < 1
                               for u in branch_units):
        raise ValueError(
            f"Invalid value for `branch_units`. Expected one or more positive ints. Received: {branch_units!r}"
        )
    if export_dir is not None and not train:
        raise ValueError("`export_dir` exports the trained suggested model: pass `train=True` (--train) too.")
    if plot is not None:
        check_plot_path(plot)
    return branch_units


def _log_grouping(log, grouping, partitions) -> None:
    log("")
    log(str(grouping))
    log("")
    log("Best groups for each number of groups k (score: the affinity kept within groups):")
    suggested = sorted(_leaf_groups(grouping.groups))
    for k, (groups, score) in partitions.items():
        mark = "  <- suggested" if sorted(groups) == suggested else ""
        log(f"  k={k:<2d} {score:9.4f}  {groups}{mark}")


def _builder_lines(recipe, overrides, grouping, trunk, branch_units, quick) -> str:
    if trunk is None:
        return ("Suggested groups, for a branched model on your own trunk (this recipe's model has no shared feature "
                "vector to branch from):\n    " + grouping.builder_call(branch_units=branch_units))
    given = {k: v for k, v in overrides.items() if v is not None and k != "epochs"}
    arguments = ", ".join(["quick=True"] * quick + [f"{k}={v!r}" for k, v in given.items()])
    return "\n".join([
        f"The suggested model: a branch per group on the {recipe.name} model's shared features "
        f"(layer '{trunk}'); `kmtl group {recipe.name} --train` trains it:",
        "    import kmtl",
        f"    recipe = kmtl.recipes.get({recipe.name!r})",
        f"    settings = recipe.settings({arguments})",
        "    data = recipe.load(settings)",
        "    base = recipe.build(settings, data)",
        f"    features = base.get_layer({trunk!r}).output",
        "    model = " + grouping.builder_call("base.input", "features", "base.tasks", branch_units=branch_units),
        "    model = recipe.compile(model, settings)",
    ])


def _canonical(group) -> tuple:
    """(Nested) groups as nested tuples in a fixed order: equal for layouts that build the same branches."""
    return tuple(sorted((item if isinstance(item, str) else _canonical(item) for item in group), key=repr))


def _leaf_groups(groups) -> list:
    """The innermost groups of (nested) groups: the lists of task names that share a last branch."""
    leaves = []
    for group in groups:
        if all(isinstance(item, str) for item in group):
            leaves.append(list(group))
        else:
            leaves += _leaf_groups([item if not isinstance(item, str) else [item] for item in group])
    return leaves


def _two_components(dataset):
    """`(inputs, labels)` batches: a recipe's third component (sample weights) is not used by the measurement."""
    if isinstance(dataset.element_spec, tuple) and len(dataset.element_spec) == 3:
        return dataset.map(lambda x, y, _: (x, y))
    return dataset


def _batches_per_epoch(dataset) -> int:
    count = int(dataset.cardinality())
    if count < 0:  # unknown (e.g. filtered): count one pass
        count = sum(1 for _ in dataset)
    if count < 1:
        raise ValueError("The recipe's training split has no batches: no affinity can be measured.")
    return count


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"Invalid value for `{name}`. Expected a positive int. Received: {name}={value!r}")
    return int(value)
