"""Soft parameter sharing: one tower per task, corresponding tower layers tied by a penalty."""

from __future__ import annotations

import numbers
from typing import Callable, Sequence

import keras

from kmtl.heads import task_head
from kmtl.model import MultiTaskModel
from kmtl.regularizers import Penalty, SoftSharingL2, TraceNorm
from kmtl.tasks import Task, validate_task_list

PENALTIES = {"l2": SoftSharingL2, "trace_norm": TraceNorm}


def soft_sharing(
    inputs,
    tasks: Sequence[Task],
    *,
    tower_units: Sequence[int] = (64, 64),
    activation: str = "relu",
    penalty: str | Callable[..., Penalty] = "l2",
    strength: float = 1e-3,
    input_features=None,
    head_units: Sequence[int] = (),
    dropout: float = 0.0,
    name: str = "soft_sharing",
) -> MultiTaskModel:
    """Builds a soft-sharing multi-task model: a tower per task, towers pulled together by a penalty.

    Each task has its own tower of Dense layers, named `tower_<task>_<i>` (i = 1, 2, ...), and its head on top.
    For every depth i, the towers' i-th kernels are tied by one penalty added to the training loss — the squared L2
    distance to their mean (`"l2"`, `SoftSharingL2`), the trace norm of their stack (`"trace_norm"`, `TraceNorm`
    with the last-axis flattening), or any penalty a factory makes. No variable is shared unless `input_features`
    is computed by shared layers.

    Args:
        inputs: Keras input tensor(s) of the model.
        tasks: list of at least two `kmtl.Task`.
        tower_units: sequence of int. Widths of the towers' Dense layers (at least one).
        activation: str. Activation of the tower layers and of the heads' hidden layers.
        penalty: `"l2"`, `"trace_norm"`, or a callable `factory(layer_names, strength=strength)` returning a
            `kmtl.regularizers.Penalty` (e.g. the class `kmtl.regularizers.GroupLasso`, or a
            `functools.partial(TraceNorm, mode="tucker")`).
        strength: float. Strength of every depth's penalty (>= 0); 0 trains independent towers.
        input_features: symbolic tensor `(batch, d)` computed from `inputs` that every tower reads. Defaults to
            `inputs` itself, which must then be one tensor `(batch, d)`. Layers computing it are shared.
        head_units: sequence of int. Hidden widths of every head.
        dropout: float. Dropout after each tower layer and hidden head layer.
        name: str. Model name.

    Returns:
        `MultiTaskModel` whose outputs are keyed by task name, with one penalty per tower depth.

    Example:

    >>> import keras, kmtl
    >>> x = keras.Input((16,), name="features")
    >>> tasks = [kmtl.Task("a", "binary"), kmtl.Task("b", "regression")]
    >>> model = soft_sharing(x, tasks, tower_units=[8, 8], penalty="trace_norm", strength=1e-2)
    >>> sorted(model.output), [p.layer_names for p in model.penalties][0]
    (['a', 'b'], ['tower_a_1', 'tower_b_1'])

    Reference:
        Duong, Cohn, Bird & Cook (2015). Low Resource Dependency Parsing: Cross-lingual Parameter Sharing in a
        Neural Network Parser. ACL.
        Yang & Hospedales (2017). Trace Norm Regularised Deep Multi-Task Learning. ICLR workshop.
    """
    tasks = validate_task_list(tasks)
    if len(tasks) < 2:
        raise ValueError(f"Soft sharing ties the towers of at least two tasks. Received: tasks={tasks}")
    tower_units = _check_units(tower_units)
    factory = _penalty_factory(penalty)
    if isinstance(strength, bool) or not isinstance(strength, numbers.Real) or strength < 0:
        raise ValueError(f"Invalid value for `strength`. Expected a number >= 0. Received: strength={strength!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"Invalid value for `dropout`. Expected a float in [0, 1). Received: dropout={dropout}")
    features = _tower_input(inputs, input_features)

    # === Towers ===
    outputs = {}
    for task in tasks:
        x = features
        for i, units in enumerate(tower_units, start=1):
            x = keras.layers.Dense(units, activation=activation, name=f"tower_{task.name}_{i}")(x)
            if dropout:
                x = keras.layers.Dropout(dropout, name=f"tower_{task.name}_dropout_{i}")(x)
        outputs[task.name] = task_head(task, x, head_units, activation=activation, dropout=dropout)

    # === Penalties, one per depth ===
    penalties = []
    for i in range(1, len(tower_units) + 1):
        made = factory([f"tower_{task.name}_{i}" for task in tasks], strength=float(strength))
        if not isinstance(made, Penalty):
            raise ValueError(
                f"`penalty` must make a kmtl.regularizers.Penalty. Received: {type(made).__name__} from {penalty!r}"
            )
        penalties.append(made)
    return MultiTaskModel(inputs, outputs, name=name, tasks=tasks, penalties=penalties)


def _check_units(tower_units):
    units = list(tower_units) if isinstance(tower_units, (list, tuple)) else None
    if not units or any(isinstance(u, bool) or not isinstance(u, int) or u < 1 for u in units):
        raise ValueError(
            f"Invalid value for `tower_units`. Expected a non-empty list of positive ints. "
            f"Received: tower_units={tower_units!r}"
        )
    return units


def _penalty_factory(penalty):
    if isinstance(penalty, str):
        if penalty not in PENALTIES:
            raise ValueError(
                f"Invalid value for `penalty`. Expected one of {sorted(PENALTIES)} or a factory of "
                f"kmtl.regularizers.Penalty. Received: penalty={penalty!r}"
            )
        return PENALTIES[penalty]
    if isinstance(penalty, Penalty) or not callable(penalty):
        raise ValueError(
            "Invalid value for `penalty`. Expected a name or a factory `f(layer_names, strength=...)`, not a "
            f"penalty instance (each depth needs its own). Received: penalty={penalty!r}"
        )
    return penalty


def _tower_input(inputs, input_features):
    if input_features is not None:
        features = input_features
    else:
        flat = keras.tree.flatten(inputs)
        if len(flat) != 1:
            raise ValueError(
                f"The model has {len(flat)} inputs; pass `input_features`, one tensor (batch, d) computed from them "
                "(e.g. by concatenating), for the towers to read."
            )
        features = flat[0]
    if len(features.shape) != 2:
        raise ValueError(
            f"Towers read a feature vector (batch, d). Received shape {features.shape}; pass `input_features` "
            "computed by flattening or pooling."
        )
    return features
