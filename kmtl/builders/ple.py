"""Progressive layered extraction (PLE): stacked CGC levels of task-specific and shared experts."""

from __future__ import annotations

from typing import Mapping, Sequence

from kmtl.builders._common import (
    check_dropout,
    check_features,
    check_nonnegative_int,
    check_positive_int,
    check_widths,
    task_tower,
    tower_units_per_task,
)
from kmtl.heads import task_head
from kmtl.layers.mixture_of_experts import ExpertGate, ExpertMixture, Experts
from kmtl.model import MultiTaskModel
from kmtl.tasks import Task, validate_task_list


def ple(
    inputs,
    features,
    tasks: Sequence[Task],
    *,
    num_levels: int = 2,
    shared_experts: int = 2,
    task_experts: int = 1,
    expert_units: int = 32,
    expert_hidden: Sequence[int] = (),
    expert_activation: str = "relu",
    tower_units: Sequence[int] | Mapping[str, Sequence[int]] = (16,),
    tower_activation: str = "relu",
    dropout: float = 0.0,
    name: str = "ple",
) -> MultiTaskModel:
    """Builds a progressive-layered-extraction model; `num_levels=1` is a customized gate control (CGC) model.

    Each level `l` (1 to `num_levels`) has `shared_experts` shared experts (`level<l>_shared_experts`) and, per
    task, `task_experts` experts of its own (`level<l>_experts_<task>`). Task `t`'s gate mixes its own experts and
    the shared ones, in that order, and its mixture is task `t`'s input to the next level. Every level but the last
    also has a shared gate (`level<l>_shared_gate`) mixing all experts of the level (each task's, in task order,
    then the shared ones) into the next level's shared input. At level 1 every input is `features`. After the last
    level, each task has a tower `tower_<task>` and its head.

    Gates and mixtures of the last level are named `gate_<task>` and `mixture_<task>` (their weights over
    `task_experts + shared_experts` experts are what `expert_utilization` reports); those of earlier levels are
    `level<l>_gate_<task>` and `level<l>_mixture_<task>`.

    Variable partition (read from the graph by `MultiTaskModel`): shared experts and shared gates are shared. At
    the last level, task `t`'s experts and gate are task `t`'s. At earlier levels task `t`'s experts also feed the
    shared gate's mixture, hence every task, so the graph counts them as shared; task `t`'s gate at level `l`
    feeds only task `t`'s experts of level `l + 1`, so it is task `t`'s when `l + 1` is the last level and shared
    otherwise. Towers and heads are per task.

    Args:
        inputs: Keras input tensor(s) of the model.
        features: symbolic tensor `(batch, d)` computed from `inputs`.
        tasks: list of `kmtl.Task`.
        num_levels: int. Number of extraction levels (>= 1); 1 gives CGC.
        shared_experts: int. Shared experts per level (>= 0; at least one of `shared_experts`, `task_experts`).
        task_experts: int. Experts per task per level (>= 0).
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

    >>> import keras
    >>> x = keras.Input((16,), name="features")
    >>> tasks = [Task("ctr", "binary"), Task("cvr", "binary")]
    >>> model = ple(x, x, tasks, num_levels=2, shared_experts=2, task_experts=1, expert_units=8)
    >>> tuple(model.get_layer("gate_ctr").output.shape)
    (None, 3)

    Reference:
        Tang, Liu, Zhao & Gong (2020). Progressive Layered Extraction (PLE): A Novel Multi-Task Learning (MTL)
        Model for Personalized Recommendations. RecSys.
    """
    tasks = validate_task_list(tasks)
    check_features(features)
    check_positive_int("num_levels", num_levels)
    check_nonnegative_int("shared_experts", shared_experts)
    check_nonnegative_int("task_experts", task_experts)
    if shared_experts + task_experts == 0:
        raise ValueError(
            "Invalid value for `shared_experts` and `task_experts`. Expected at least one expert per gate. "
            f"Received: shared_experts={shared_experts}, task_experts={task_experts}"
        )
    check_positive_int("expert_units", expert_units)
    check_widths("expert_hidden", expert_hidden)
    towers = tower_units_per_task(tasks, tower_units)
    check_dropout(dropout)

    # === Layers ===
    expert_args = {"units": expert_units, "hidden_units": expert_hidden, "activation": expert_activation}
    task_inputs = {t.name: features for t in tasks}
    shared_input = features
    for level in range(1, num_levels + 1):
        task_inputs, shared_input = _extraction_level(
            level, level == num_levels, tasks, task_inputs, shared_input, shared_experts, task_experts, expert_args
        )

    outputs = {}
    for task in tasks:
        tower = task_tower(task, task_inputs[task.name], towers[task.name], activation=tower_activation,
                           dropout=dropout)
        outputs[task.name] = task_head(task, tower)

    # === Functional Model ===
    return MultiTaskModel(inputs, outputs, name=name, tasks=tasks)


def _extraction_level(level, last, tasks, task_inputs, shared_input, shared_experts, task_experts, expert_args):
    """One CGC level. Returns `({task_name: mixture}, shared mixture)`; the latter is `None` at the last level."""
    prefix = f"level{level}_"
    shared = []
    if shared_experts:
        shared = [Experts(shared_experts, name=f"{prefix}shared_experts", **expert_args)(shared_input)]
    own = {t.name: [] for t in tasks}
    if task_experts:
        for task in tasks:
            experts = Experts(task_experts, name=f"{prefix}experts_{task.name}", **expert_args)
            own[task.name] = [experts(task_inputs[task.name])]
    next_shared = None
    if not last:
        every_expert = [e for t in tasks for e in own[t.name]] + shared
        gate = ExpertGate(len(tasks) * task_experts + shared_experts, name=f"{prefix}shared_gate")(shared_input)
        next_shared = ExpertMixture(name=f"{prefix}shared_mixture")(every_expert, gate)
    gate_prefix = "" if last else prefix
    outputs = {}
    for task in tasks:
        gate = ExpertGate(task_experts + shared_experts, name=f"{gate_prefix}gate_{task.name}")(task_inputs[task.name])
        outputs[task.name] = ExpertMixture(name=f"{gate_prefix}mixture_{task.name}")(own[task.name] + shared, gate)
    return outputs, next_shared
