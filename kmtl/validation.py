"""Checks of training data against a model's tasks, run before any graph is traced."""

from __future__ import annotations

from typing import Any

import numpy as np

from kmtl.tasks import check_label_keys, validate_label_dict


def check_fit_data(model, x: Any, y: Any = None, validation_data: Any = None) -> None:
    """Validates labels for `fit`/`evaluate` so errors name the task instead of failing inside a graph.

    Numpy/tensor labels are checked in full. A `tf.data.Dataset` is checked from its `element_spec` (keys, shapes,
    dtypes) and the values of its first batch. Python generators and `PyDataset`s are left to Keras, since reading
    them would consume data.

    For per-step tasks it also checks that each task's output has a time axis `(batch, steps, units)` and that the
    labels have as many steps as the model predicts for the given inputs.
    """
    check_output_ranks(model)
    _check(model, x, y, "training data")
    if validation_data is not None:
        if isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3):
            _check(model, validation_data[0], validation_data[1], "validation_data")
        else:
            _check(model, validation_data, None, "validation_data")


def _check(model, x, y, where):
    try:
        if y is not None:
            _check_arrays(model, x, y)
        elif _is_dataset(x):
            _check_dataset(model, x)
    except ValueError as error:
        raise ValueError(f"Invalid {where}: {error}") from None


def _check_arrays(model, x, y):
    labels = {k: np.asarray(v) for k, v in y.items()} if isinstance(y, dict) else y
    num_examples = _num_examples(x)
    validate_label_dict(model.tasks, labels, num_examples)
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
    for inputs, labels, *_ in dataset.take(1):
        for task in model.tasks:
            task.validate_labels(labels[task.name].numpy())
        check_label_steps(model, inputs, labels)


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
