"""Output heads: one per task, derived from the task's kind."""

from __future__ import annotations

from typing import Sequence

import keras

from kmtl.tasks import Task


def task_head(
    task: Task,
    features,
    hidden_units: Sequence[int] = (),
    *,
    activation: str = "relu",
    dropout: float = 0.0,
):
    """Applies a task's head to a feature vector: optional hidden layers, then the output layer.

    The output layer is named after the task (its name is the model's output key) and computes in float32 so
    predictions and losses stay accurate under mixed precision. Hidden layers are named `<task>_hidden_<i>`. A
    regression task with `target_offset`/`target_scale` gets a Dense layer `<task>_standardized` followed by a
    fixed `Rescaling` named after the task.

    Args:
        task: `Task`.
        features: symbolic tensor `(batch, d)`.
        hidden_units: sequence of int. Widths of the head's hidden Dense layers.
        activation: str. Activation of the hidden layers.
        dropout: float. Dropout rate after each hidden layer.

    Returns:
        Symbolic tensor `(batch, task.output_units)`.

    Example:

    >>> x = keras.Input((8,))
    >>> task_head(Task("hair", "multiclass", num_classes=4), x, hidden_units=[16]).shape
    (None, 4)
    """
    if len(features.shape) != 2:
        raise ValueError(
            f"Task '{task.name}': heads read a feature vector (batch, features). Received shape {features.shape}; "
            "pool or flatten the features first (e.g. keras.layers.GlobalAveragePooling2D)."
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"Invalid value for `dropout`. Expected a float in [0, 1). Received: dropout={dropout}")
    x = features
    for i, units in enumerate(hidden_units, start=1):
        x = keras.layers.Dense(units, activation=activation, name=f"{task.name}_hidden_{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{task.name}_dropout_{i}")(x)
    if not task.standardizes_targets:
        return keras.layers.Dense(task.output_units, activation=task.activation, name=task.name, dtype="float32")(x)
    # Regression in standardised units: the Dense layer predicts (y - offset) / scale, a fixed Rescaling maps back.
    x = keras.layers.Dense(
        task.output_units, activation=task.activation, name=f"{task.name}_standardized", dtype="float32"
    )(x)
    return keras.layers.Rescaling(task.target_scale, offset=task.target_offset, name=task.name, dtype="float32")(x)
