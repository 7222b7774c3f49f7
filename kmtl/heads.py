"""Output heads: one per task, derived from the task's kind."""

from __future__ import annotations

from typing import Sequence

import keras

from kmtl.layers.crf import CRF
from kmtl.tasks import Task


def task_head(
    task: Task,
    features,
    hidden_units: Sequence[int] = (),
    *,
    activation: str = "relu",
    dropout: float = 0.0,
):
    """Applies a task's head to a feature vector (or, for a per-step task, to each step's features).

    The output layer is named after the task (its name is the model's output key) and computes in float32 so
    predictions and losses stay accurate under mixed precision. Hidden layers are named `<task>_hidden_<i>`. A
    regression task with `target_offset`/`target_scale` gets a Dense layer `<task>_standardized` followed by a
    fixed `Rescaling` named after the task.

    A per-step task (`Task(per_step=True)`) reads features `(batch, steps, d)` (e.g. from an RNN with
    `return_sequences=True`) and applies the same layers at every step; a Keras mask on the features (from `Masking`
    or `mask_zero`) passes through to its predictions, where losses and metrics treat masked steps as missing.

    Args:
        task: `Task`.
        features: symbolic tensor `(batch, d)`; `(batch, steps, d)` for a per-step task (`steps` may be None).
        hidden_units: sequence of int. Widths of the head's hidden Dense layers.
        activation: str. Activation of the hidden layers.
        dropout: float. Dropout rate after each hidden layer.

    Returns:
        Symbolic tensor `(batch, task.output_units)`; `(batch, steps, task.output_units)` for a per-step task.

    Raises:
        ValueError: naming the task, when the features' rank does not fit the task (per-step or not).

    Example:

    >>> x = keras.Input((8,))
    >>> task_head(Task("hair", "multiclass", num_classes=4), x, hidden_units=[16]).shape
    (None, 4)
    >>> sequence = keras.Input((None, 8))
    >>> task_head(Task("stage", "multiclass", num_classes=3, per_step=True), sequence).shape
    (None, None, 3)
    """
    _check_features(task, features)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"Invalid value for `dropout`. Expected a float in [0, 1). Received: dropout={dropout}")
    if getattr(task, "per_pixel", False):
        return pixel_head(task, features, hidden_units, activation=activation, dropout=dropout)
    if getattr(task.loss, "sequence_level", False):
        return crf_head(task, features, hidden_units, activation=activation, dropout=dropout)
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


def pixel_head(
    task: Task,
    features,
    hidden_units: Sequence[int] = (),
    *,
    activation: str = "relu",
    dropout: float = 0.0,
):
    """Applies a per-pixel task's head to a feature map: 3x3 convolutions, then a 1x1 convolution per pixel.

    The output layer is a `Conv2D` named after the task, computing in float32 (so under mixed precision the mask
    probabilities stay accurate); hidden layers are `<task>_hidden_<i>` (3x3, same padding) and, with dropout,
    `<task>_dropout_<i>` (`SpatialDropout2D`). A regression task with `target_offset`/`target_scale` predicts
    standardised values rescaled by a fixed `Rescaling` named after the task.

    Args:
        task: `Task` with `per_pixel=True`.
        features: symbolic tensor `(batch, height, width, channels)`, e.g. a U-Net decoder's last map.
        hidden_units: sequence of int. Filters of the hidden 3x3 convolutions.
        activation: str. Activation of the hidden layers.
        dropout: float. Spatial dropout rate after each hidden layer.

    Returns:
        Symbolic tensor `(batch, height, width, task.output_units)`.

    Example:

    >>> maps = keras.Input((16, 16, 8))
    >>> task_head(Task("lesion", "binary", per_pixel=True), maps).shape
    (None, 16, 16, 1)
    """
    _check_features(task, features)
    x = features
    for i, units in enumerate(hidden_units, start=1):
        x = keras.layers.Conv2D(units, 3, padding="same", activation=activation, name=f"{task.name}_hidden_{i}")(x)
        if dropout:
            x = keras.layers.SpatialDropout2D(dropout, name=f"{task.name}_dropout_{i}")(x)
    if not task.standardizes_targets:
        return keras.layers.Conv2D(task.output_units, 1, activation=task.activation, name=task.name, dtype="float32")(x)
    x = keras.layers.Conv2D(
        task.output_units, 1, activation=task.activation, name=f"{task.name}_standardized", dtype="float32"
    )(x)
    return keras.layers.Rescaling(task.target_scale, offset=task.target_offset, name=task.name, dtype="float32")(x)


def _check_features(task: Task, features) -> None:
    rank = len(features.shape)
    if getattr(task, "per_pixel", False):
        if rank != 4:
            raise ValueError(
                f"Task '{task.name}' is per_pixel: its head reads a feature map (batch, height, width, channels). "
                f"Received shape {features.shape}; keep the image axes (e.g. a decoder's output)."
            )
        return
    if task.per_step and rank != 3:
        raise ValueError(
            f"Task '{task.name}' is per_step: its head reads per-step features (batch, steps, features). Received "
            f"shape {features.shape}; keep the time axis (e.g. an RNN with return_sequences=True)."
        )
    if not task.per_step and rank == 3:
        raise ValueError(
            f"Task '{task.name}' is not per_step: its head reads a feature vector (batch, features). Received "
            f"per-step features of shape {features.shape}; pool them over time (e.g. "
            "keras.layers.GlobalAveragePooling1D) or declare the task with per_step=True."
        )
    if not task.per_step and rank != 2:
        pixels = " or, for one output per pixel, declare the task with per_pixel=True" if rank == 4 else ""
        raise ValueError(
            f"Task '{task.name}': heads read a feature vector (batch, features). Received shape {features.shape}; "
            f"pool or flatten the features first (e.g. keras.layers.GlobalAveragePooling2D){pixels}."
        )


def crf_head(
    task: Task,
    features,
    hidden_units: Sequence[int] = (),
    *,
    activation: str = "relu",
    dropout: float = 0.0,
):
    """Applies a CRF head to per-token features: hidden Dense layers, linear tag scores, then a `kmtl.layers.CRF`.

    `task_head` calls it for a task declared with `loss=kmtl.losses.CRFLoss()`, so every builder gives such a task a
    CRF. The tag scores are a Dense layer `<task>_emissions`; the CRF layer is named after the task and outputs tag
    marginals `(batch, steps, num_classes)`; a Keras mask on the features (padding) passes through to them.

    Args:
        task: `Task`, multiclass and per_step.
        features: symbolic tensor `(batch, steps, d)`.
        hidden_units, activation, dropout: as for `task_head`.

    Returns:
        Symbolic tensor `(batch, steps, task.num_classes)`.

    Example:

    >>> from kmtl.losses import CRFLoss
    >>> tokens = keras.Input((None, 8))
    >>> crf_head(Task("ner", "multiclass", num_classes=5, per_step=True, loss=CRFLoss()), tokens).shape
    (None, None, 5)
    """
    if task.kind != "multiclass" or not task.per_step:
        raise ValueError(
            f"Task '{task.name}': a CRF head tags tokens, so the task must be multiclass with per_step=True. "
            f"Received: {task!r}"
        )
    _check_features(task, features)
    x = features
    for i, units in enumerate(hidden_units, start=1):
        x = keras.layers.Dense(units, activation=activation, name=f"{task.name}_hidden_{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{task.name}_dropout_{i}")(x)
    emissions = keras.layers.Dense(task.num_classes, name=f"{task.name}_emissions", dtype="float32")(x)
    return CRF(task.num_classes, name=task.name)(emissions)
