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
    """
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
    for _, labels, *_ in dataset.take(1):
        for task in model.tasks:
            task.validate_labels(labels[task.name].numpy())


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
