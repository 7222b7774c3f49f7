"""Single-task baselines: train the multi-task model and one model per task on the same budget, report Δm.

Reference:
    Maninis, Radosavovic & Kokkinos (2019). Attentive Single-Tasking of Multiple Tasks. CVPR.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import keras

from kmtl.evaluation.deltas import (
    ComparisonResult,
    TaskComparison,
    delta_m,
    lower_is_better,
    primary_metric,
    relative_improvement,
    resolve_primary_metrics,
)
from kmtl.evaluation.report import evaluate
from kmtl.tasks import Task, validate_task_list

__all__ = [
    "ComparisonResult",
    "compare_single_task",
    "delta_m",
    "lower_is_better",
    "primary_metric",
    "relative_improvement",
]


def compare_single_task(
    build_fn: Callable[[list[Task]], Any],
    compile_fn: Callable[[Any], Any],
    train: Any,
    val: Any,
    test: Any,
    tasks: Sequence[Task],
    *,
    fit_kwargs: Mapping[str, Any] | None = None,
    repeats: int = 1,
    seeds: Sequence[int] | None = None,
    primary_metrics: Mapping[str, str | tuple[str, bool]] | None = None,
    log: Callable[[str], None] | None = None,
    trivial: bool = True,
    classical: bool = True,
    resample: Callable[[int, int], tuple] | None = None,
) -> ComparisonResult:
    """Trains the multi-task model and one single-task model per main task with the same architecture and budget.

    For every seed, the multi-task model (all `tasks`) and one model per non-auxiliary task are each built with
    `build_fn`, compiled with `compile_fn`, trained with the same `fit_kwargs` (so the same epochs and steps, the
    single-task data being the same examples with the other tasks' labels dropped) after
    `keras.utils.set_random_seed(seed)`, and evaluated on `test` with `kmtl.evaluate`. Each task is scored by its
    primary metric; the relative improvement `(-1)^l (M_mtl - M_single) / |M_single|` (`l` = 1 when lower is
    better) and Δm, its mean over main tasks, are computed per seed (a repeat), then reported with their mean, 95%
    t-interval and paired t-test over repeats (see `kmtl.evaluation.comparison`); transfer is flagged only where the
    interval excludes zero. Beside them, each task's trivial predictor and classical model, fitted on the repeat's
    training data (`kmtl.evaluation.trivial`, `kmtl.evaluation.classical`), and whether each model clearly beats
    the trivial predictor. The classical model reads the inputs as the multi-task model does, as in
    `kmtl.evaluate`: the integer ids it looks up are one-hot encoded, and a task it reads at a fixed step of a
    sequence sees the steps up to it.

    Default primary metrics (override per task with `primary_metrics`):

    - binary: `auroc` (threshold-free and insensitive to class imbalance, where accuracy rewards predicting the
      majority class);
    - multiclass: `accuracy` (always defined, where one-vs-rest AUROC needs every class in the test labels);
    - multilabel: `auroc_macro` (as binary, each label counting equally);
    - regression: `mae` (in the targets' units and less dominated by a few outliers than RMSE), or `nme` when the
      task lists `kmtl.metrics.NormalizedMeanError` (the landmark benchmarks' measure).

    Args:
        build_fn: callable `tasks -> MultiTaskModel` building an uncompiled model for a list of `Task`s (e.g. a
            recipe's `build_model(tasks=...)`); called with all tasks and with each main task alone.
        compile_fn: callable `model -> model or None` compiling it (optimizer, weighting).
        train: training data: a `tf.data.Dataset` of `(inputs, {task: labels})`, a tuple `(x, y_dict)`, or a
            callable `task_names -> dataset or tuple` (e.g. a recipe's `load_data(tasks=...)`), called per model.
            Labels of tasks a model does not learn are dropped.
        val: validation data passed to `fit`, in the same forms, or None.
        test: test data for `kmtl.evaluate`, in the same forms.
        tasks: list of `kmtl.Task`, the multi-task model's tasks. Auxiliary tasks get no single-task model and
            stay out of Δm.
        fit_kwargs: dict of `fit` arguments shared by every model (`epochs`, `batch_size`, `steps_per_epoch`,
            `verbose`, ...). Defaults to `{"epochs": 1, "verbose": 0}`. Callbacks are shared too, so leave out
            ones that change the budget (early stopping) or keep state.
        repeats: int. Number of seeds when `seeds` is not given (seeds 0, 1, ...).
        seeds: sequence of int. Seeds, one repeat each.
        primary_metrics: dict `{task: metric}` or `{task: (metric, lower_is_better)}` overriding the defaults; a
            metric is a name in `kmtl.evaluate`'s report (e.g. `"f1"`, `"rmse"`, `"loss"`).
        log: callable receiving progress lines (e.g. `print`), or None.
        trivial: bool. Score each task's trivial predictor fitted on the training data.
        classical: bool. Also score its classical model (a few seconds per task at most).
        resample: callable `(repeat, seed) -> (train, val, test)` or None, `repeat` counting from 0. Called before
            each repeat's models; its splits (in the forms above) replace `train`, `val` and `test` for that repeat:
            e.g. training labels masked with the seed, a new split of the data, or a fold. Every model of a repeat
            gets the same splits.

    Returns:
        `ComparisonResult`: per task the MTL and single-task scores, relative improvement and negative-transfer
        flag, Δm (mean ± std over seeds), and per model its seed, epochs and optimizer steps.

    Example:

    >>> result = compare_single_task(  # doctest: +SKIP
    ...     lambda tasks: fa.build_model(tasks=tasks), fa.compile_model, train, val, test, fa.make_tasks(),
    ...     fit_kwargs={"epochs": 5}, repeats=3)
    >>> print(result.table())  # doctest: +SKIP

    Reference:
        Maninis, Radosavovic & Kokkinos (2019). Attentive Single-Tasking of Multiple Tasks. CVPR.
    """
    tasks = validate_task_list(tasks)
    seeds = _seeds(repeats, seeds)
    metrics = resolve_primary_metrics(tasks, primary_metrics)
    fit_kwargs = dict({"epochs": 1, "verbose": 0} if fit_kwargs is None else fit_kwargs)
    if "validation_data" in fit_kwargs:
        raise ValueError("Pass validation data as `val`, not in `fit_kwargs`, so each model gets its tasks' labels.")
    main = [t for t in tasks if not t.auxiliary]
    if not main:
        raise ValueError("Invalid value for `tasks`. Expected at least one task that is not auxiliary.")
    scores = {t.name: {"mtl": [], "single": [], "trivial": [], "classical": []} for t in tasks}
    runs, fitted, details = [], {}, {}
    for repeat, seed in enumerate(seeds, start=1):
        splits = (train, val, test) if resample is None else tuple(resample(repeat - 1, seed))
        key = tuple(id(split) for split in splits)  # the same data: references fitted once
        # Read before any model is built, so that building or training never changes what they read.
        unread = _read_references_data(splits, tasks) if (trivial or classical) and key not in fitted else None
        plans = [("multi-task", tasks)] + [(task.name, [task]) for task in main]
        for label, subset in plans:
            if log is not None:
                log(f"[seed {seed}, repeat {repeat}/{len(seeds)}] training the {label} model ({len(subset)} task(s))")
            model = _build(build_fn, compile_fn, subset, seed)
            if label == "multi-task" and (trivial or classical):
                if unread is not None:  # fitted as `kmtl.evaluate` fits them for this model
                    fitted[key] = _references(unread, tasks, primary_metrics, classical, model)
                for name, row in fitted[key].items():
                    scores[name]["trivial"].append(row["trivial"].get(row["metric"]))
                    if row["classical"] is not None and not row["classical"].skipped:
                        scores[name]["classical"].append(row["classical"].get(row["metric"]))
                    details[name] = {k: (v.name, v.detail) for k, v in row.items()
                                     if k in ("trivial", "classical") and v}
            report, budget = _train_and_evaluate(model, splits, subset, fit_kwargs)
            runs.append({"seed": seed, "model": label, "tasks": [t.name for t in subset], **budget})
            for task in subset:
                value = report[task.name][metrics[task.name][0]]
                scores[task.name]["mtl" if label == "multi-task" else "single"].append(value)
    rows = [
        TaskComparison(
            task=t.name,
            kind=t.kind,
            metric=metrics[t.name][0],
            lower_is_better=metrics[t.name][1],
            auxiliary=t.auxiliary,
            mtl=scores[t.name]["mtl"],
            single=scores[t.name]["single"] if not t.auxiliary else None,
            trivial=scores[t.name]["trivial"] or None,
            classical=scores[t.name]["classical"] or None,
            references=details.get(t.name),
        )
        for t in tasks
    ]
    return ComparisonResult(rows, list(seeds), runs)


# --- Helpers -----------------------------------------------------------------------------------------------------


def _build(build_fn, compile_fn, subset, seed):
    """Builds and compiles one model for `subset`, after seeding Keras with `seed`."""
    names = [t.name for t in subset]
    keras.utils.set_random_seed(seed)
    model = build_fn(list(subset))
    compiled = compile_fn(model)
    model = model if compiled is None else compiled
    model_names = list(getattr(model, "task_names", []))
    if not set(names) <= set(model_names):
        raise ValueError(
            f"`build_fn` must build a model for the tasks it is given (it may add auxiliary tasks of its own). "
            f"Asked for {names}, received a model with tasks {model_names or None}."
        )
    return model


def _train_and_evaluate(model, splits, subset, fit_kwargs):
    """Trains and evaluates a built model on `subset`; returns its report and budget."""
    # Data callables get the tasks asked for; labels are then kept for every task of the model.
    train, val, test = (_select(split, [t.name for t in subset], model.task_names) for split in splits)
    kwargs = dict(fit_kwargs)
    if val is not None:
        kwargs["validation_data"] = val
    if isinstance(train, tuple):
        history = model.fit(*train, **kwargs)
    else:
        kwargs.setdefault("shuffle", False)  # a dataset shuffles itself; Keras warns that it cannot
        history = model.fit(train, **kwargs)
    report = evaluate(model, *test) if isinstance(test, tuple) else evaluate(model, test)
    return report, {"epochs": len(history.epoch), "steps": int(model.optimizer.iterations.numpy())}


def _read_references_data(splits, tasks):
    """The training examples (`Examples`) and the test split, as arrays, that the reference predictors use."""
    from kmtl.evaluation.arrays import collect_examples
    from kmtl.evaluation.references import training_examples

    names = [t.name for t in tasks]
    train, _, test = (_select(split, names, names) for split in splits)
    return training_examples(train, tasks), collect_examples(test, tasks)


def _references(data, tasks, primary_metrics, classical, model):
    """Each task's reference predictors fitted on the training examples and scored on the test arrays (`data`, from
    `_read_references_data`); the classical model reads the inputs as `model` does, as in `kmtl.evaluate`: the
    integer ids it looks up as categories, and a sequence up to the step at which it reads a task."""
    from kmtl.evaluation.classical import categorical_inputs
    from kmtl.evaluation.reference_scores import reference_scores
    from kmtl.evaluation.windows import input_windows

    reading = {"categorical": categorical_inputs(model), "windows": input_windows(model)} if classical else {}
    return reference_scores(tasks, *data, classical=classical, primary_metrics=primary_metrics, **reading)


def _select(data, requested, names):
    """The data (or what a callable returns for the `requested` tasks) with labels and per-task sample weights of
    `names` only."""
    if data is None:
        return None
    if callable(data) and not hasattr(data, "element_spec"):
        data = data(list(requested))
    if hasattr(data, "element_spec"):  # tf.data.Dataset

        def keep(inputs, labels, *rest):
            rest = tuple({n: r[n] for n in names} if isinstance(r, dict) else r for r in rest)
            return (inputs, {n: labels[n] for n in names}) + rest

        return data.map(keep)
    if isinstance(data, (tuple, list)) and len(data) in (2, 3) and isinstance(data[1], Mapping):
        rest = tuple({n: r[n] for n in names} if isinstance(r, Mapping) else r for r in data[2:])
        return (data[0], {n: data[1][n] for n in names}) + rest
    raise ValueError(
        "Invalid data. Expected a tf.data.Dataset of (inputs, {task: labels}), a tuple (x, {task: labels}) or a "
        f"callable task_names -> one of those. Received: {type(data).__name__}"
    )


def _seeds(repeats, seeds):
    if seeds is None:
        return list(range(_check_positive("repeats", repeats)))
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("Invalid value for `seeds`. Expected at least one seed. Received: seeds=[]")
    if repeats not in (1, len(seeds)):
        raise ValueError(f"`repeats`={repeats} and {len(seeds)} `seeds` disagree. Received: seeds={seeds}")
    return seeds


def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Invalid value for `{name}`. Expected a positive int. Received: {name}={value!r}")
    return value
