"""Sluice networks: task towers whose subspaces are mixed by learned alphas, heads reading learned layer mixtures."""

from __future__ import annotations

from typing import Sequence

import keras

from kmtl.builders._common import check_activation, positive_ints, vector_features
from kmtl.heads import task_head
from kmtl.layers.sluice import LayerMixture, SubspaceMixing
from kmtl.model import MultiTaskModel
from kmtl.tasks import Task, validate_task_list


def sluice(
    inputs,
    tasks: Sequence[Task],
    *,
    units: Sequence[int] = (64, 64),
    subspaces: int = 2,
    orthogonality: float = 1e-3,
    activation: str = "relu",
    self_weight: float = 0.9,
    layer_mixture: bool = True,
    input_features=None,
    head_units: Sequence[int] = (),
    name: str = "sluice",
) -> MultiTaskModel:
    """Builds a sluice network: task towers with learned subspace sharing and learned layer mixtures.

    Every task gets a tower of Dense layers `tower_<task>_<i>` (widths `units`). After each layer, a
    `kmtl.layers.SubspaceMixing` unit `alpha_<i>` splits each task's activation into `subspaces` subspaces and
    mixes all tasks' subspaces with a learned `(T*S, T*S)` matrix (near the identity at first); it also adds the
    orthogonality penalty between each task's subspaces to the model's losses. With `layer_mixture`, a
    `kmtl.layers.LayerMixture` unit `beta_<task>` gives each task's head a learned convex mixture of the task's
    mixed outputs at every depth; otherwise the head reads the last one.

    Which variables are shared follows the graph: the alpha units and the tower layers (every task's loss reaches
    them through the alphas) are shared; the beta units and the heads belong to their task.

    Args:
        inputs: Keras input tensor(s) of the model: one `(batch, d)` tensor, or a list or dict of them.
        tasks: list of `kmtl.Task`.
        units: sequence of int. Widths of each tower's Dense layers; each a multiple of `subspaces`, and all
            equal when `layer_mixture` is true (the mixture adds layers' outputs).
        subspaces: int. Subspaces per task and layer (1 gives cross-stitch units).
        orthogonality: float. Strength of the subspace orthogonality penalty (>= 0).
        activation: str. Activation of the tower layers.
        self_weight: float. Initial weight of each subspace on itself in the alpha units, in `[0, 1]`.
        layer_mixture: bool. Whether heads read a learned mixture of all depths (beta) or the last layer.
        input_features: symbolic tensor `(batch, d)` computed from `inputs` that the first layers read (the layers
            computing it are shared). Defaults to `inputs`, concatenated when there are several.
        head_units: sequence of int. Hidden widths of every task head.
        name: str. Model name.

    Returns:
        `MultiTaskModel` whose outputs are keyed by task name.

    Raises:
        ValueError: for invalid tasks, widths, subspaces, strengths or inputs.

    Example:

    >>> import keras, kmtl
    >>> x = keras.Input((16,), name="features")
    >>> tasks = [kmtl.Task("a", "binary"), kmtl.Task("b", "regression")]
    >>> model = sluice(x, tasks, units=(8, 8), subspaces=2)
    >>> sorted(model.output), tuple(model.get_layer("alpha_1").alpha.shape)
    (['a', 'b'], (4, 4))

    Reference:
        Ruder, Bingel, Augenstein & Søgaard (2019). Latent Multi-task Architecture Learning. AAAI.
    """
    tasks = validate_task_list(tasks)
    units = positive_ints("units", units)
    head_units = positive_ints("head_units", head_units, allow_empty=True)
    check_activation(activation)
    _check_sluice_arguments(units, subspaces, orthogonality, self_weight, layer_mixture)
    features = vector_features(inputs, input_features, "sluice")

    # === Towers and alpha units ===
    columns = [features] * len(tasks)
    depths = []  # depths[i][t]: task t's mixed output after layer i + 1
    for i, width in enumerate(units, start=1):
        columns = [
            keras.layers.Dense(width, activation=activation, name=f"tower_{task.name}_{i}")(column)
            for task, column in zip(tasks, columns)
        ]
        columns = SubspaceMixing(
            subspaces=subspaces, orthogonality=orthogonality, self_weight=self_weight, name=f"alpha_{i}"
        )(columns)
        depths.append(columns)

    # === Beta units and heads ===
    outputs = {}
    for t, task in enumerate(tasks):
        if layer_mixture:
            features_t = LayerMixture(name=f"beta_{task.name}")([depth[t] for depth in depths])
        else:
            features_t = depths[-1][t]
        outputs[task.name] = task_head(task, features_t, head_units)
    return MultiTaskModel(inputs, outputs, name=name, tasks=tasks)


def _check_sluice_arguments(units, subspaces, orthogonality, self_weight, layer_mixture):
    """Raises a ValueError naming the first invalid sluice argument."""
    if isinstance(subspaces, bool) or not isinstance(subspaces, int) or subspaces < 1:
        raise ValueError(f"Invalid value for `subspaces`. Expected a positive int. Received: subspaces={subspaces!r}")
    indivisible = [u for u in units if u % subspaces]
    if indivisible:
        raise ValueError(
            f"Invalid value for `units`. Each width must be a multiple of subspaces={subspaces}. "
            f"Received: units={units}"
        )
    if layer_mixture and len(set(units)) > 1:
        raise ValueError(
            "Invalid value for `units`. With layer_mixture=True every layer must have the same width (the heads "
            f"read a weighted sum of the layers' outputs). Received: units={units}"
        )
    for field, value, highest in (("orthogonality", orthogonality, float("inf")), ("self_weight", self_weight, 1.0)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= highest:
            expected = "a float >= 0" if highest == float("inf") else "a float in [0, 1]"
            raise ValueError(f"Invalid value for `{field}`. Expected {expected}. Received: {field}={value!r}")
