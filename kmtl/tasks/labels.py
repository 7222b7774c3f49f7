"""Checks of a whole label dict against the tasks: keys, then each task's labels."""

from __future__ import annotations

from typing import Any, Sequence

from kmtl.tasks.task import Task


def validate_label_dict(tasks: Sequence[Task], labels: Any, num_examples: int | None = None) -> None:
    """Checks that `labels` is a dict keyed exactly by the task names and that each task's labels are valid.

    Args:
        tasks: list of `Task`.
        labels: dict of array-likes, `{task_name: labels}`.
        num_examples: int. Expected number of rows, if known.

    Raises:
        ValueError: naming the unknown or missing task, or the task whose labels are invalid.
    """
    check_label_keys(tasks, labels)
    for task in tasks:
        task.validate_labels(labels[task.name], num_examples)


def check_label_keys(tasks: Sequence[Task], labels: Any) -> None:
    names = [t.name for t in tasks]
    if not isinstance(labels, dict):
        raise ValueError(
            f"Labels must be a dict keyed by task name {names}. Received: {type(labels).__name__}. "
            "Give every task its labels, marking missing ones with the task's `missing` value."
        )
    unknown = [k for k in labels if k not in names]
    if unknown:
        raise ValueError(f"Labels name unknown task(s) {unknown}. Valid task names: {names}.")
    absent = [n for n in names if n not in labels]
    if absent:
        raise ValueError(
            f"Labels are missing for task(s) {absent}. Valid task names: {names}. A task without labels in some "
            "rows still needs an entry, with its missing-label marker in those rows."
        )
