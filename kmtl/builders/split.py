"""Split layers: every layer has shared units and units of each task; primary and supplementary targets."""

from __future__ import annotations

import math
from typing import Sequence

import keras

from kmtl.builders._common import check_activation, positive_ints, vector_features
from kmtl.heads import task_head
from kmtl.model import MultiTaskModel
from kmtl.tasks import Task, validate_task_list


def split(
    inputs,
    tasks: Sequence[Task],
    *,
    units: Sequence[int] = (32, 32),
    shared_fraction: float = 0.5,
    primary: str | Sequence[str] | None = None,
    supplementary_weight: float | None = 0.1,
    activation: str = "relu",
    input_features=None,
    head_units: Sequence[int] = (),
    name: str = "split",
) -> MultiTaskModel:
    """Builds split layers: each layer has shared units and task-specific units, e.g. for multivariate forecasting.

    Layer `i` gives each task `units[i]` units: `round(shared_fraction * units[i])` shared units
    (`split_shared_<i>`, one Dense layer common to all tasks) and the rest its own (`split_<task>_<i>`). Shared
    units read the whole previous layer (the shared units and every task's units); a task's units read the
    previous layer's shared units and that task's units only. Each task's head reads the last layer's shared units
    and its own. `shared_fraction=1` is hard sharing; `shared_fraction=0` is one independent network per task.

    A typical use is forecasting several series at once (one regression task per target series, inputs a
    flattened window of past values): `primary` names the targets you care about, the others are supplementary
    targets that only help the shared units learn. Supplementary tasks are returned with
    `loss_weight=supplementary_weight`, which takes effect when the model is compiled with `weighting="static"`.
    Mark them `auxiliary=True` on their `Task` to keep them out of exports.

    Which variables are shared follows the graph: the shared units are shared, and so is every task's units below
    the last layer (the shared units above read them); a task's last-layer units and head belong to the task.

    Args:
        inputs: Keras input tensor(s) of the model: one `(batch, d)` tensor, or a list or dict of them.
        tasks: list of `kmtl.Task` (usually regression tasks, one per target).
        units: sequence of int. Units each task sees per layer (shared plus its own).
        shared_fraction: float in `[0, 1]`. Fraction of each layer's units that is shared.
        primary: str or sequence of str. Names of the primary tasks; `None` makes every task primary.
        supplementary_weight: float >= 0, or `None`. Loss weight given to the supplementary (non-primary) tasks;
            `None` keeps their own `loss_weight`.
        activation: str. Activation of the split layers.
        input_features: symbolic tensor `(batch, d)` computed from `inputs` that the first layers read (the layers
            computing it are shared). Defaults to `inputs`, concatenated when there are several.
        head_units: sequence of int. Hidden widths of every task head.
        name: str. Model name.

    Returns:
        `MultiTaskModel` whose outputs are keyed by task name; its `tasks` carry the supplementary loss weights.

    Raises:
        ValueError: for invalid tasks, widths, fractions, primary names, weights or inputs.

    Example:

    >>> import keras, kmtl
    >>> window = keras.Input((24,), name="window")
    >>> tasks = [kmtl.Task(f"series_{i}", "regression") for i in range(3)]
    >>> model = split(window, tasks, units=(8,), primary="series_0")
    >>> [t.loss_weight for t in model.tasks]
    [1.0, 0.1, 0.1]
    >>> model.compile(optimizer="adam", weighting="static")

    Reference:
        Caruana (1997). Multitask Learning. Machine Learning 28 (extra outputs as supplementary tasks that help a
        primary task). The split of each layer into shared and task-specific units is described here without a
        specific paper.
    """
    tasks = validate_task_list(tasks)
    units = positive_ints("units", units)
    head_units = positive_ints("head_units", head_units, allow_empty=True)
    check_activation(activation)
    if isinstance(shared_fraction, bool) or not isinstance(shared_fraction, (int, float)) or not (
        0 <= shared_fraction <= 1
    ):
        raise ValueError(
            "Invalid value for `shared_fraction`. Expected a float in [0, 1]. "
            f"Received: shared_fraction={shared_fraction!r}"
        )
    widths = [_split_width(u, shared_fraction) for u in units]
    tasks = _weighted_tasks(tasks, primary, supplementary_weight)
    features = vector_features(inputs, input_features, "split")

    # === Split layers ===
    shared, own = None, {task.name: None for task in tasks}
    for i, (n_shared, n_own) in enumerate(widths, start=1):
        below_shared = [] if shared is None else [shared]
        if n_shared:
            reads = below_shared + [own[t.name] for t in tasks if own[t.name] is not None]
            x = _joined(reads or [features], f"split_shared_{i}_inputs")
            next_shared = keras.layers.Dense(n_shared, activation=activation, name=f"split_shared_{i}")(x)
        else:
            next_shared = None
        if n_own:
            for task in tasks:
                reads = below_shared + ([] if own[task.name] is None else [own[task.name]])
                x = _joined(reads or [features], f"split_{task.name}_{i}_inputs")
                own[task.name] = keras.layers.Dense(n_own, activation=activation, name=f"split_{task.name}_{i}")(x)
        shared = next_shared

    # === Heads ===
    outputs = {}
    for task in tasks:
        reads = ([] if shared is None else [shared]) + ([] if own[task.name] is None else [own[task.name]])
        outputs[task.name] = task_head(task, _joined(reads, f"{task.name}_head_inputs"), head_units)
    return MultiTaskModel(inputs, outputs, name=name, tasks=tasks)


def _split_width(width, shared_fraction):
    """(shared units, each task's units) of a layer of `width` units per task."""
    n_shared = int(math.floor(shared_fraction * width + 0.5))
    n_own = width - n_shared
    if 0 < shared_fraction < 1 and (n_shared == 0 or n_own == 0):
        raise ValueError(
            f"A layer of {width} units cannot have both shared and task-specific units with "
            f"shared_fraction={shared_fraction}; use wider layers or a fraction of 0 or 1."
        )
    return n_shared, n_own


def _weighted_tasks(tasks, primary, supplementary_weight):
    """The tasks, supplementary ones copied with `loss_weight=supplementary_weight`."""
    names = [t.name for t in tasks]
    if primary is None:
        return tasks
    primary = [primary] if isinstance(primary, str) else list(primary)
    unknown = [p for p in primary if p not in names]
    if not primary or unknown:
        raise ValueError(
            f"Invalid value for `primary`. Expected task names among {names}. Received: primary={primary!r}"
        )
    if supplementary_weight is None:
        return tasks
    if (
        isinstance(supplementary_weight, bool)
        or not isinstance(supplementary_weight, (int, float))
        or not math.isfinite(supplementary_weight)
        or supplementary_weight < 0
    ):
        raise ValueError(
            "Invalid value for `supplementary_weight`. Expected a finite float >= 0 or None. "
            f"Received: supplementary_weight={supplementary_weight!r}"
        )
    return [
        t if t.name in primary else Task.from_config({**t.get_config(), "loss_weight": supplementary_weight})
        for t in tasks
    ]


def _joined(tensors, name):
    return tensors[0] if len(tensors) == 1 else keras.layers.Concatenate(name=name)(tensors)
