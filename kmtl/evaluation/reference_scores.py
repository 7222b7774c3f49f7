"""Both reference predictors of every task, fitted on one training split and scored on one test split."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from kmtl.evaluation.arrays import collect_examples
from kmtl.evaluation.classical import classical_scores
from kmtl.evaluation.deltas import resolve_primary_metrics
from kmtl.evaluation.references import training_examples
from kmtl.evaluation.trivial import trivial_scores
from kmtl.tasks import Task, validate_task_list


def reference_scores(
    tasks: Sequence[Task],
    train: Any,
    test: Any,
    *,
    classical: bool = True,
    primary_metrics: Mapping[str, str | tuple[str, bool]] | None = None,
    seed: int = 0,
    categorical: Sequence[str] = (),
    windows: Mapping[str, Mapping[str, int]] | None = None,
) -> dict[str, dict]:
    """Each task's trivial predictor and (with `classical`) classical model, fitted on `train`, scored on `test`.

    Args:
        tasks: list of `kmtl.Task`.
        train: training data: a `tf.data.Dataset` of `(inputs, {task: labels})` batches or a tuple `(x, y_dict)`.
        test: test data in the same forms.
        classical: bool. Also fit `kmtl.evaluation.classical_scores`' model (a few seconds per task at most).
        primary_metrics: dict `{task: metric}` overriding the default primary metrics.
        seed: int. Seed of the classical model's subsample.
        categorical: names of integer inputs holding ids, one-hot encoded for the classical model (e.g.
            `kmtl.evaluation.classical.categorical_inputs(model)`, which `kmtl.evaluate` passes).
        windows: dict `{task: {input: steps}}`: the leading steps of its sequence inputs that a task read at a fixed
            step may see; its classical model reads only those (`kmtl.evaluation.windows.input_windows(model)`,
            which `kmtl.evaluate` passes).

    Returns:
        dict `{task: {"metric", "lower_is_better", "trivial": ReferenceScore, "classical": ReferenceScore or None}}`.
    """
    tasks = validate_task_list(tasks)
    metrics = resolve_primary_metrics(tasks, primary_metrics)
    train = training_examples(train, tasks)  # read once for both predictors (a repeated split: its distinct rows)
    test = collect_examples(test, tasks)
    trivial = trivial_scores(tasks, train, test, primary_metrics=primary_metrics)
    fitted = (classical_scores(tasks, train, test, seed=seed, categorical=categorical, windows=windows)
              if classical else {})
    return {
        t.name: {"metric": metrics[t.name][0], "lower_is_better": metrics[t.name][1], "trivial": trivial[t.name],
                 "classical": fitted.get(t.name)}
        for t in tasks
    }
