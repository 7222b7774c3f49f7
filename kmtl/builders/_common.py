"""Argument checks and small pieces shared by the builders."""

from __future__ import annotations

import numbers
from typing import Mapping, Sequence

import keras

from kmtl._checks import check_nonnegative_int, check_positive_int, check_widths  # noqa: F401 (re-exported)
from kmtl.tasks import Task


def positive_ints(field: str, values, *, allow_empty: bool = False) -> tuple[int, ...]:
    """Checks a sequence of layer widths (at least one unless `allow_empty`) and returns it as a tuple."""
    return check_widths(field, values, allow_empty=allow_empty)


def check_activation(activation) -> None:
    """Checks that `activation` names a Keras activation (or is a callable)."""
    try:
        keras.activations.get(activation)
    except (ValueError, TypeError):
        raise ValueError(
            f"Invalid value for `activation`. Expected a Keras activation name. Received: activation={activation!r}"
        ) from None


def vector_features(inputs, input_features, builder: str):
    """What the first layers read: `input_features`, else `inputs` (several `(batch, d)` inputs concatenated)."""
    if input_features is not None:
        if not keras.backend.is_keras_tensor(input_features) or len(input_features.shape) != 2:
            raise ValueError(
                f"`{builder}` expects `input_features` to be a symbolic tensor (batch, features) computed from "
                f"`inputs`. Received: input_features={input_features!r}"
            )
        return input_features
    tensors = keras.tree.flatten(inputs)
    if not tensors or not all(keras.backend.is_keras_tensor(t) for t in tensors):
        raise ValueError(
            f"`{builder}` expects `inputs` to be Keras input tensors (keras.Input), a list or a dict of them. "
            f"Received: inputs={inputs!r}"
        )
    bad = [t for t in tensors if len(t.shape) != 2]
    if bad:
        raise ValueError(
            f"`{builder}` builds Dense layers on vector inputs of shape (batch, features). Received shapes "
            f"{[tuple(t.shape) for t in bad]}; pass `input_features` computed from them (e.g. pooled or "
            "flattened) or build the towers yourself."
        )
    if len(tensors) == 1:
        return tensors[0]
    return keras.layers.Concatenate(name="concatenated_inputs")(tensors)


def task_tower(task: Task, x, units: Sequence[int], *, activation: str = "relu", dropout: float = 0.0):
    """Applies a task's tower, a `keras.Sequential` named `tower_<task>` of Dense (and Dropout) layers, to `x`.

    Returns `x` unchanged when `units` is empty.
    """
    if not units:
        return x
    layers = []
    for i, width in enumerate(units, start=1):
        layers.append(keras.layers.Dense(width, activation=activation, name=f"tower_{task.name}_dense_{i}"))
        if dropout:
            layers.append(keras.layers.Dropout(dropout, name=f"tower_{task.name}_dropout_{i}"))
    return keras.Sequential(layers, name=f"tower_{task.name}")(x)


def tower_units_per_task(tasks: Sequence[Task], tower_units) -> dict[str, tuple[int, ...]]:
    """Resolves `tower_units` (one sequence for all tasks, or a dict per task) to `{task_name: widths}`."""
    names = [t.name for t in tasks]
    if isinstance(tower_units, Mapping):
        unknown = [k for k in tower_units if k not in names]
        if unknown:
            raise ValueError(f"`tower_units` names unknown task(s) {unknown}. Valid task names: {names}.")
        per_task = {n: tower_units.get(n, ()) for n in names}
    else:
        per_task = {n: tower_units for n in names}
    return {n: check_widths("tower_units", units) for n, units in per_task.items()}


def check_features(features) -> None:
    if len(features.shape) != 2:
        raise ValueError(
            "Invalid value for `features`. Expected a feature vector (batch, features); pool or flatten the "
            f"features first. Received: features.shape={features.shape}"
        )


def check_dropout(dropout) -> None:
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"Invalid value for `dropout`. Expected a float in [0, 1). Received: dropout={dropout!r}")
