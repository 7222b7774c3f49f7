"""Multi-gate mixture of experts (MMoE): shared experts, one softmax gate and one tower per task."""

from __future__ import annotations

from typing import Mapping, Sequence

import keras  # noqa: F401 (used by the docstring example)

from kmtl.builders._common import (
    check_dropout,
    check_features,
    check_positive_int,
    check_widths,
    task_tower,
    tower_units_per_task,
)
from kmtl.heads import task_head
from kmtl.layers.mixture_of_experts import ExpertGate, ExpertMixture, Experts
from kmtl.model import MultiTaskModel
from kmtl.tasks import Task, validate_task_list


def mmoe(
    inputs,
    features,
    tasks: Sequence[Task],
    *,
    num_experts: int = 4,
    expert_units: int = 32,
    expert_hidden: Sequence[int] = (),
    expert_activation: str = "relu",
    tower_units: Sequence[int] | Mapping[str, Sequence[int]] = (16,),
    tower_activation: str = "relu",
    dropout: float = 0.0,
    name: str = "mmoe",
) -> MultiTaskModel:
    """Builds a multi-gate mixture-of-experts model.

    `num_experts` expert MLPs (one `Experts` layer named `experts`) read the shared features; each task has a
    softmax gate `gate_<task>` over the experts computed from the same features, a mixture `mixture_<task>` of the
    expert outputs weighted by its gate, a tower `tower_<task>` (a small `keras.Sequential` of Dense layers) and its
    head. Read a task's gate weights with `keras.Model(model.input, model.get_layer("gate_<task>").output)` or
    `kmtl.training.expert_utilization.expert_utilization(model, x)`.

    Variable partition (read from the graph by `MultiTaskModel`): the experts, and the layers computing `features`,
    are shared; each task's gate, tower and head are that task's.

    Args:
        inputs: Keras input tensor(s) of the model.
        features: symbolic tensor `(batch, d)` computed from `inputs` (e.g. embeddings or a shared trunk).
        tasks: list of `kmtl.Task`.
        num_experts: int. Number of shared experts.
        expert_units: int. Output width of every expert.
        expert_hidden: sequence of int. Hidden widths of every expert.
        expert_activation: str. Activation of the experts' layers.
        tower_units: hidden widths of every tower, or a dict `{task_name: widths}` per task; `()` for no tower.
        tower_activation: str. Activation of the towers' layers.
        dropout: float. Dropout after each tower layer.
        name: str. Model name.

    Returns:
        `MultiTaskModel` whose outputs are keyed by task name.

    Example:

    >>> x = keras.Input((16,), name="features")
    >>> tasks = [Task("click", "binary"), Task("watch_time", "regression")]
    >>> model = mmoe(x, x, tasks, num_experts=3, expert_units=8)
    >>> sorted(model.output), tuple(model.get_layer("gate_click").output.shape)
    (['click', 'watch_time'], (None, 3))

    Reference:
        Ma, Zhao, Yi, Chen, Hong & Chi (2018). Modeling Task Relationships in Multi-task Learning with Multi-gate
        Mixture-of-Experts. KDD.
    """
    tasks = validate_task_list(tasks)
    check_features(features)
    check_positive_int("num_experts", num_experts)
    check_positive_int("expert_units", expert_units)
    check_widths("expert_hidden", expert_hidden)
    towers = tower_units_per_task(tasks, tower_units)
    check_dropout(dropout)

    # === Layers ===
    experts = Experts(num_experts, expert_units, expert_hidden, activation=expert_activation, name="experts")(features)
    outputs = {}
    for task in tasks:
        gate = ExpertGate(num_experts, name=f"gate_{task.name}")(features)
        mixed = ExpertMixture(name=f"mixture_{task.name}")(experts, gate)
        tower = task_tower(task, mixed, towers[task.name], activation=tower_activation, dropout=dropout)
        outputs[task.name] = task_head(task, tower)

    # === Functional Model ===
    return MultiTaskModel(inputs, outputs, name=name, tasks=tasks)
