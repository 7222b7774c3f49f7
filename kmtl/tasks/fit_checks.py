"""Checks of training data against a model's tasks, run before any graph is traced."""

from __future__ import annotations

from typing import Any

import numpy as np

from kmtl.tasks.batch_checks import checked_batches
from kmtl.tasks.labels import check_label_keys, validate_label_dict


def check_fit_data(
    model,
    x: Any,
    y: Any = None,
    validation_data: Any = None,
    sample_weight: Any = None,
    where: str = "training data",
) -> tuple:
    """Checks the data of `fit`/`evaluate` so errors name the task (or input) instead of failing inside a graph.

    Arrays (numpy, pandas, tensors) are checked in full: label keys, shapes, dtypes and values, that the inputs hold
    no NaN or infinity (a NaN feature trains silently: oneDNN's ReLU maps it to 0 while the weights turn NaN), that
    there is at least one example, and that `sample_weight` is keyed by task names. A `tf.data.Dataset` is checked
    from its `element_spec` (keys, shapes, dtypes), for emptiness and from its first batch; it is returned wrapped so
    that every batch's labels are checked as it is read (see `kmtl.tasks.batch_checks`), and so are Python generators and
    `PyDataset`s, which cannot be read ahead without consuming them.

    For per-step tasks it also checks that each task's output has a time axis `(batch, steps, units)` and that the
    labels have as many steps as the model predicts for the given inputs.

    Returns:
        Tuple `(x, validation_data)`: the data to train on, datasets and generators wrapped with per-batch checks.

    Raises:
        ValueError: saying what was wrong, where, and what is expected.
    """
    check_output_ranks(model)
    _check(model, x, y, where, sample_weight)
    x = checked_batches(model, x, f"the {where}")
    if validation_data is not None:
        if isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3):
            weights = validation_data[2] if len(validation_data) == 3 else None
            _check(model, validation_data[0], validation_data[1], "validation_data", weights)
        else:
            _check(model, validation_data, None, "validation_data")
            validation_data = checked_batches(model, validation_data, "validation_data")
    return x, validation_data


def _check(model, x, y, where, sample_weight=None):
    try:
        if y is not None:
            _check_arrays(model, x, y, sample_weight)
        elif _is_dataset(x):
            _check_dataset(model, x)
    except ValueError as error:
        raise ValueError(f"Invalid {where}: {error}") from None


def _check_arrays(model, x, y, sample_weight):
    if isinstance(y, dict):
        for name, value in y.items():
            if isinstance(value, (list, tuple)):
                raise ValueError(
                    f"Task '{name}': labels must be an array (numpy, pandas or a tensor) with one row per example. "
                    f"Received: a Python {type(value).__name__} of {len(value)} items; pass np.asarray(...) of it."
                )
    labels = {k: np.asarray(v) for k, v in y.items()} if isinstance(y, dict) else y
    num_examples = _num_examples(x)
    if num_examples == 0:
        raise ValueError("the inputs have 0 rows; expected at least one example.")
    validate_label_dict(model.tasks, labels, num_examples)
    check_sample_weight(model.tasks, sample_weight, num_examples)
    check_inputs_finite(model, x)
    check_label_steps(model, x, labels)


def _check_dataset(model, dataset):
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) < 2:
        raise ValueError(
            "a dataset must yield `(inputs, {task_name: labels})` pairs; its elements are "
            f"{type(spec).__name__}."
        )
    label_spec = spec[1]
    check_label_keys(model.tasks, label_spec)
    for task in model.tasks:
        task.validate_label_spec(label_spec[task.name].shape, label_spec[task.name].dtype)
    if len(spec) == 3 and isinstance(spec[2], dict):
        _check_weight_keys(model.tasks, spec[2])
    empty = ValueError(
        "the dataset is empty: it yields no batches. Expected `(inputs, {task_name: labels})` batches; check "
        "`filter`, `take`, `skip` and `batch(..., drop_remainder=True)` on a dataset smaller than one batch."
    )
    if int(dataset.cardinality()) == 0:
        raise empty
    for inputs, labels, *_ in dataset.take(1):
        for task in model.tasks:
            task.validate_labels(labels[task.name].numpy())
        check_label_steps(model, inputs, labels)
        break
    else:
        raise empty


def check_sample_weight(tasks, sample_weight, num_examples=None) -> None:
    """Checks `sample_weight` given with arrays: one array for every task, or a dict with an entry per task.

    Weights must be finite and >= 0, with one row per example.
    """
    if sample_weight is None:
        return
    if isinstance(sample_weight, dict):
        _check_weight_keys(tasks, sample_weight)
        named = list(sample_weight.items())
    else:
        named = [("(all tasks)", sample_weight)]
    for name, weights in named:
        if isinstance(weights, (list, tuple)):
            weights = np.asarray(weights)
        weights = np.asarray(weights)
        field = f"`sample_weight['{name}']`" if isinstance(sample_weight, dict) else "`sample_weight`"
        if weights.ndim == 0 or (num_examples is not None and weights.shape[0] != num_examples):
            raise ValueError(
                f"{field} must have one weight per example ({num_examples} rows). Received shape {weights.shape}."
            )
        values = weights.astype(np.float64)
        bad = ~np.isfinite(values) | (values < 0)
        if bad.any():
            raise ValueError(f"{field} must be finite and >= 0. Received: {values[bad][:3].tolist()}")


def _check_weight_keys(tasks, sample_weight):
    names = [t.name for t in tasks]
    unknown = [k for k in sample_weight if k not in names]
    if unknown:
        raise ValueError(f"`sample_weight` names unknown task(s) {unknown}. Valid task names: {names}.")
    absent = [n for n in names if n not in sample_weight]
    if absent:
        raise ValueError(
            f"`sample_weight` has no entry for task(s) {absent}. A dict of sample weights needs every task "
            f"{names}; give unweighted tasks np.ones(num_examples)."
        )


def check_inputs_finite(model, x) -> None:
    """Checks floating-point inputs (numpy, pandas, tensors) for NaN and infinity, naming the input and first row."""
    for name, values in _named_inputs(model, x):
        if not np.issubdtype(values.dtype, np.floating) or values.ndim == 0:
            continue
        rows = values.reshape(len(values), -1)
        step = max(1, 2**22 // max(rows.shape[1], 1))  # bound the temporary boolean array at ~4 MB
        for start in range(0, len(rows), step):
            finite = np.isfinite(rows[start : start + step])
            if not finite.all():
                row = start + int(np.argmin(finite.all(axis=1)))
                value = rows[row][~np.isfinite(rows[row])][0]
                raise ValueError(
                    f"input {name} holds {value} in row {row}; expected finite values. A NaN or infinite feature "
                    "trains silently (oneDNN's ReLU maps NaN to 0 while the weights turn NaN): impute or drop it."
                )


def _named_inputs(model, x):
    """`(description, numpy array)` for each input array (a pandas DataFrame gives one per column)."""
    if isinstance(x, dict):
        items = list(x.items())
    else:
        values = list(x) if isinstance(x, (list, tuple)) else [x]
        names = [getattr(t, "name", None) for t in getattr(model, "inputs", None) or []]
        items = [(names[i] if i < len(names) and names[i] else f"#{i}", v) for i, v in enumerate(values)]
    for name, value in items:
        columns = getattr(value, "columns", None)
        if columns is not None and hasattr(value, "to_numpy"):  # pandas DataFrame
            for column in columns:
                yield f"'{name}' (column '{column}')", np.asarray(value[column].to_numpy())
        elif value is not None and hasattr(value, "shape"):
            yield f"'{name}'", np.asarray(value)


def check_output_ranks(model) -> None:
    """Checks that per-step tasks' outputs are `(batch, steps, units)` and other tasks' outputs have no time axis."""
    outputs = getattr(model, "output", None)
    if not isinstance(outputs, dict):
        return
    for task in model.tasks:
        rank = len(outputs[task.name].shape)
        if task.per_step and rank != 3:
            raise ValueError(
                f"Task '{task.name}' is per_step but its output has shape {outputs[task.name].shape}; expected "
                "(batch, steps, units). Build its head on per-step features (kmtl.heads.task_head)."
            )
        if not task.per_step and rank == 3:
            raise ValueError(
                f"Task '{task.name}' is not per_step but its output has a time axis, shape "
                f"{outputs[task.name].shape}. Declare the task with per_step=True, or pool the features over time."
            )


def check_label_steps(model, inputs, labels) -> None:
    """Checks that per-step tasks' labels have as many steps as the model predicts for `inputs`.

    The predicted number of steps comes from the model's output shape for the inputs' shapes, worked out
    symbolically (no data runs through the model); models whose output shape cannot be inferred are left to Keras.
    """
    per_step = [t for t in model.tasks if t.per_step]
    if not per_step or not isinstance(labels, dict):
        return
    predicted = _predicted_shapes(model, inputs)
    if predicted is None:
        return
    for task in per_step:
        label_shape, output_shape = _shape(labels[task.name]), predicted.get(task.name)
        if output_shape is None or len(label_shape) < 2 or len(output_shape) < 2 or output_shape[1] is None:
            continue
        if label_shape[1] is not None and label_shape[1] != output_shape[1]:
            raise ValueError(
                f"Task '{task.name}': labels have {label_shape[1]} steps but the model predicts {output_shape[1]} "
                f"steps for these inputs (labels shape {tuple(label_shape)}). Give one label per predicted step, "
                f"marking padded or unlabelled steps with {task.missing}."
            )


def _predicted_shapes(model, inputs):
    """Output shapes `{task: shape}` for inputs of these shapes (batch left open), or None if unknown."""

    def spec(value):
        shape = _shape(value)
        return None if len(shape) == 0 else (None,) + shape[1:]

    if isinstance(inputs, dict):
        shapes = {k: spec(v) for k, v in inputs.items()}
    elif isinstance(inputs, (list, tuple)):
        shapes = [spec(v) for v in inputs]
    else:
        shapes = spec(inputs)
    known = shapes.values() if isinstance(shapes, dict) else shapes if isinstance(shapes, list) else [shapes]
    if any(shape is None for shape in known):
        return None
    try:
        return dict(model.compute_output_shape(shapes))
    except Exception:  # a model whose output shape cannot be inferred symbolically: Keras reports any mismatch
        return None


def _shape(value) -> tuple:
    shape = getattr(value, "shape", None)
    return tuple(np.shape(value) if shape is None else shape)


def _is_dataset(x):
    try:
        import tensorflow as tf
    except ImportError:  # pragma: no cover - TensorFlow is a dependency
        return False
    return isinstance(x, tf.data.Dataset)


def _num_examples(x):
    if isinstance(x, dict):
        x = next(iter(x.values()), None)
    elif isinstance(x, (list, tuple)):
        x = x[0] if x else None
    shape = getattr(x, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) > 0 and shape[0] is not None else None
