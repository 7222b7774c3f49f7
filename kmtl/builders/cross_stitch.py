"""Cross-stitch networks: one tower per task, joined by learned cross-stitch units."""

from __future__ import annotations

from typing import Sequence

import keras

from kmtl.builders._common import check_activation, positive_ints, vector_features
from kmtl.heads import task_head
from kmtl.layers.cross_stitch import CrossStitch
from kmtl.model import MultiTaskModel
from kmtl.tasks import Task, validate_task_list


def cross_stitch(
    inputs,
    tasks: Sequence[Task],
    *,
    units: Sequence[int] = (64, 64),
    activation: str = "relu",
    stitch_after: Sequence[int] | None = None,
    mode: str = "matrix",
    self_weight: float = 0.9,
    input_features=None,
    head_units: Sequence[int] = (),
    name: str = "cross_stitch",
) -> MultiTaskModel:
    """Builds a cross-stitch network: a Dense tower per task, towers mixed by cross-stitch units.

    Every task gets a tower of Dense layers `tower_<task>_<i>` (widths `units`) reading the inputs. After each
    layer listed in `stitch_after`, a `kmtl.layers.CrossStitch` unit `cross_stitch_<i>` replaces each task's
    activation by a learned linear combination of all tasks' activations at that depth. Each task's head reads
    its own tower's last output.

    Which variables are shared follows the graph (see `MultiTaskModel.shared_variables`): the cross-stitch units
    and every tower layer before a unit are shared (all tasks' losses reach them through the unit); tower layers
    after the last unit and the heads belong to their task.

    Args:
        inputs: Keras input tensor(s) of the model: one `(batch, d)` tensor, or a list or dict of them.
        tasks: list of `kmtl.Task`.
        units: sequence of int. Widths of each tower's Dense layers.
        activation: str. Activation of the tower layers.
        stitch_after: sequence of int. 1-based indices of the tower layers followed by a cross-stitch unit.
            Defaults to every layer.
        mode: str. `"matrix"` (one `(T, T)` matrix per unit) or `"channel"` (one per unit and channel).
        self_weight: float. Initial weight of a task's own activation in each unit, in `[0, 1]`.
        input_features: symbolic tensor `(batch, d)` computed from `inputs` that the first layers read (the layers
            computing it are shared). Defaults to `inputs`, concatenated when there are several.
        head_units: sequence of int. Hidden widths of every task head.
        name: str. Model name.

    Returns:
        `MultiTaskModel` whose outputs are keyed by task name.

    Raises:
        ValueError: for invalid tasks, widths, layer indices, mode, self weight or inputs.

    Example:

    >>> import keras, kmtl
    >>> x = keras.Input((16,), name="features")
    >>> tasks = [kmtl.Task("a", "binary"), kmtl.Task("b", "regression")]
    >>> model = cross_stitch(x, tasks, units=(8, 8))
    >>> sorted(model.output), tuple(model.get_layer("cross_stitch_2").alpha.shape)
    (['a', 'b'], (2, 2))

    Reference:
        Misra, Shrivastava, Gupta & Hebert (2016). Cross-stitch Networks for Multi-task Learning. CVPR.
    """
    tasks = validate_task_list(tasks)
    units = positive_ints("units", units)
    head_units = positive_ints("head_units", head_units, allow_empty=True)
    check_activation(activation)
    stitch_after = _check_stitch_after(stitch_after, len(units))
    if mode not in ("matrix", "channel"):
        raise ValueError(f"Invalid value for `mode`. Expected 'matrix' or 'channel'. Received: mode={mode!r}")
    if isinstance(self_weight, bool) or not isinstance(self_weight, (int, float)) or not 0 <= self_weight <= 1:
        raise ValueError(
            f"Invalid value for `self_weight`. Expected a float in [0, 1]. Received: self_weight={self_weight!r}"
        )
    features = vector_features(inputs, input_features, "cross_stitch")

    # === Towers and cross-stitch units ===
    columns = [features] * len(tasks)
    for i, width in enumerate(units, start=1):
        columns = [
            keras.layers.Dense(width, activation=activation, name=f"tower_{task.name}_{i}")(column)
            for task, column in zip(tasks, columns)
        ]
        if i in stitch_after:
            columns = CrossStitch(mode=mode, self_weight=self_weight, name=f"cross_stitch_{i}")(columns)

    # === Heads ===
    outputs = {task.name: task_head(task, column, head_units) for task, column in zip(tasks, columns)}
    return MultiTaskModel(inputs, outputs, name=name, tasks=tasks)


def _check_stitch_after(stitch_after, num_layers):
    if stitch_after is None:
        return set(range(1, num_layers + 1))
    indices = list(stitch_after) if isinstance(stitch_after, (list, tuple, set)) else None
    valid = indices is not None and all(
        isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= num_layers for i in indices
    )
    if not valid or len(set(indices)) != len(indices):
        raise ValueError(
            f"Invalid value for `stitch_after`. Expected distinct layer indices in 1..{num_layers} (one per "
            f"entry of `units`). Received: stitch_after={stitch_after!r}"
        )
    return set(indices)
