"""A split's examples as numpy arrays: what the trivial and classical predictors are fitted on and scored with."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from kmtl.tasks import Task


def collect_examples(
    data: Any, tasks: Sequence[Task], *, limit: int | None = None
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Reads `(inputs, {task: labels})` batches into numpy arrays: `({input: array}, {task: array})`.

    Batches padded to different lengths (sequences) are padded again to the longest: inputs with 0 (b"" for
    strings), labels with their task's `missing` marker, so padded steps stay unlabelled.

    Args:
        data: a `tf.data.Dataset` (or any iterable) of batches, or a tuple `(x, {task: labels})` of arrays, with `x`
            an array or a dict of arrays.
        tasks: list of `kmtl.Task`: the tasks whose labels are read; others are ignored.
        limit: int or None. Read at most this many examples (whole batches, then cut).

    Returns:
        `(inputs, labels)`: arrays with the examples on the first axis; `inputs` a dict like the data's (or one
        array when the data's inputs are one array), `labels` a dict by task.

    Raises:
        ValueError: when a task's labels are absent from the data.
    """
    names = [t.name for t in tasks]
    if isinstance(data, (tuple, list)) and len(data) in (2, 3) and isinstance(data[1], Mapping):
        batches = [(data[0], data[1])]
    else:
        batches = _batches(data, limit)
    inputs, labels, named = {}, {}, True
    for batch_inputs, batch_labels in batches:
        if not isinstance(batch_inputs, Mapping):
            batch_inputs, named = {"input": batch_inputs}, False
        for key, value in batch_inputs.items():
            inputs.setdefault(key, []).append(np.asarray(value))
        absent = [n for n in names if n not in batch_labels]
        if absent:
            raise ValueError(
                f"The data holds no labels for task(s) {absent}. Expected batches of (inputs, {{task: labels}}) with "
                f"labels of {names}. Received labels of {sorted(batch_labels)}."
            )
        for name in names:
            labels.setdefault(name, []).append(np.asarray(batch_labels[name]))
    missing = {t.name: t.missing for t in tasks}
    inputs = {k: _concatenate(v, b"" if v[0].dtype.kind in "SOU" else 0) for k, v in inputs.items()}
    labels = {k: _concatenate(v, missing[k]) for k, v in labels.items()}
    if limit is not None:
        inputs = {k: v[:limit] for k, v in inputs.items()}
        labels = {k: v[:limit] for k, v in labels.items()}
    return (inputs if named else inputs["input"]), labels


def _batches(data, limit):
    seen = 0
    for batch in data:
        inputs, labels = batch[0], batch[1]
        inputs = {k: np.asarray(v) for k, v in inputs.items()} if isinstance(inputs, Mapping) else np.asarray(inputs)
        labels = {k: np.asarray(v) for k, v in labels.items()}
        yield inputs, labels
        seen += len(next(iter(labels.values()))) if labels else 0
        if limit is not None and seen >= limit:
            return


def _concatenate(arrays: list, fill) -> np.ndarray:
    """Concatenates on the first axis, padding the other axes to the largest size with `fill`."""
    if len({a.shape[1:] for a in arrays}) > 1:
        ranks = {a.ndim for a in arrays}
        if len(ranks) > 1:
            raise ValueError(f"Batches disagree in rank: {sorted(ranks)}; expected one shape per input and task.")
        largest = np.max([a.shape[1:] for a in arrays], axis=0)
        padded = []
        for a in arrays:
            widths = [(0, 0)] + [(0, int(m - s)) for s, m in zip(a.shape[1:], largest)]
            fill_value = np.asarray(fill).astype(a.dtype) if a.dtype.kind not in "SOU" else fill
            padded.append(np.pad(a, widths, constant_values=fill_value))
        arrays = padded
    return np.concatenate(arrays, axis=0)
