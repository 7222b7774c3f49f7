"""A branched architecture: a trunk shared by all tasks, one branch per group of tasks, one head per task."""

from __future__ import annotations

from typing import Sequence

import keras

from kmtl._checks import check_widths
from kmtl._keras_internals import call_count
from kmtl.heads import task_head
from kmtl.model import MultiTaskModel
from kmtl.model.partition import partition_operations
from kmtl.tasks import Task, validate_task_list


def branched(
    inputs,
    features,
    tasks: Sequence[Task],
    groups: Sequence[Sequence[str]],
    *,
    branch_units: Sequence[int] = (32,),
    activation: str = "relu",
    head_units: Sequence[int] = (),
    dropout: float = 0.0,
    name: str = "branched",
) -> MultiTaskModel:
    """Builds a branched multi-task model: the tasks of each group share a branch after the common trunk.

    `features` is the trunk (shared by every task). Group `g` (counted from 1) gets a branch `branch_<g>`, a
    `keras.Sequential` of Dense layers `branch_<g>_dense_<i>` of widths `branch_units`, on top of it; each task's head
    reads its group's branch. So the trunk is shared by all tasks, a branch by the tasks of its group (a one-task
    group's branch is that task's own), and the heads by none. One group of all tasks is hard sharing with a deeper
    trunk; one group per task is a trunk with a tower per task. `kmtl.grouping.suggest` chooses the groups.

    Groups may nest, so tasks split at more than one depth (Lu et al. 2017): a group's items are task names, whose
    heads read its branch, and groups, which branch off it again: the `h`-th subgroup of group `g` gets the branch
    `branch_<g>_<h>` on top of `branch_<g>`, and so on. `[[["a1", "a2"], ["a3"]], ["b1", "b2"]]`: the a-tasks share
    `branch_1`, then a1 and a2 share `branch_1_1` and a3 has `branch_1_2`; the b-tasks share `branch_2`.

    Args:
        inputs: Keras input tensor(s) of the model.
        features: symbolic tensor `(batch, d)` computed from `inputs` by any Keras layers (the shared trunk).
        tasks: list of `kmtl.Task`.
        groups: list of lists of task names (or nested groups); every task in exactly one group.
        branch_units: sequence of int. Widths of each branch's Dense layers (at least one).
        activation: str. Activation of the branch layers and the heads' hidden layers.
        head_units: sequence of int. Hidden widths of every task head.
        dropout: float. Dropout after each hidden head layer.
        name: str. Model name.

    Returns:
        `MultiTaskModel` whose outputs are keyed by task name.

    Raises:
        ValueError: when a group is empty, names an unknown task or a task twice, or a task is in no group; for
            invalid widths.

    Example:

    >>> import keras, kmtl
    >>> x = keras.Input((8,), name="x")
    >>> trunk = keras.layers.Dense(16, activation="relu", name="trunk")(x)
    >>> tasks = [kmtl.Task(name, "regression") for name in ("a", "b", "c")]
    >>> model = kmtl.grouping.branched(x, trunk, tasks, [["a", "b"], ["c"]], branch_units=(8,))
    >>> sorted(model.output)
    ['a', 'b', 'c']

    Reference:
        Lu, Kumar, Zhai, Cheng, Javidi, Feris (2017). Fully-Adaptive Feature Sharing in Multi-Task Networks with
        Applications in Person Attribute Classification. CVPR (branches shared by groups of tasks).
    """
    tasks = validate_task_list(tasks)
    groups = check_groups(groups, [t.name for t in tasks])
    branch_units = check_widths("branch_units", branch_units, allow_empty=False)
    head_units = check_widths("head_units", head_units)
    by_name = {t.name: t for t in tasks}
    outputs = {}

    def grow(features, group, path):
        branch = keras.Sequential(
            [
                keras.layers.Dense(width, activation=activation, name=f"branch_{path}_dense_{i}")
                for i, width in enumerate(branch_units, start=1)
            ],
            name=f"branch_{path}",
        )(features)
        subgroups = 0
        for item in group:
            if isinstance(item, str):
                outputs[item] = task_head(by_name[item], branch, head_units, activation=activation, dropout=dropout)
            else:
                subgroups += 1
                grow(branch, item, f"{path}_{subgroups}")

    for number, group in enumerate(groups, start=1):
        grow(features, group, str(number))
    return MultiTaskModel(inputs, {t.name: outputs[t.name] for t in tasks}, name=name, tasks=tasks)


def check_groups(groups, task_names: Sequence[str]) -> list:
    """`groups` as (nested) lists of task names, after checking that they partition `task_names`.

    A group holds task names and, for branches that split again, groups of its own (`[["a", "b"], [["c"], ["d"]]]`).
    """

    def valid(group):
        return isinstance(group, (list, tuple)) and all(isinstance(i, str) or valid(i) for i in group)

    if isinstance(groups, (str, bytes)) or not isinstance(groups, (list, tuple)) or not all(valid(g) for g in groups):
        raise ValueError(
            "Invalid value for `groups`. Expected a list of lists of task names, e.g. [['a', 'b'], ['c']] (a group "
            f"may hold groups of its own: [['a', 'b'], [['c'], ['d', 'e']]]). Received: groups={groups!r}"
        )

    def listed(group):
        return [i if isinstance(i, str) else listed(i) for i in group]

    def empty(group):
        return not group or any(not isinstance(i, str) and empty(i) for i in group)

    groups = [listed(g) for g in groups]
    seen = [n for g in groups for n in group_tasks(g)]
    problems = []
    if any(empty(g) for g in groups):
        problems.append("an empty group")
    unknown = sorted({n for n in seen if n not in task_names})
    if unknown:
        problems.append(f"unknown task(s) {unknown}")
    twice = sorted({n for n in seen if seen.count(n) > 1})
    if twice:
        problems.append(f"task(s) {twice} in several groups")
    missing = [n for n in task_names if n not in seen]
    if missing:
        problems.append(f"task(s) {missing} in no group")
    if problems:
        raise ValueError(
            f"Invalid value for `groups`: {'; '.join(problems)}. Expected every task of {list(task_names)} in "
            f"exactly one non-empty group. Received: groups={groups!r}"
        )
    return groups


def group_tasks(group) -> list[str]:
    """The task names in a (nested) group, in order."""
    return [n for i in group for n in ([i] if isinstance(i, str) else group_tasks(i))]


def shared_features(model: keras.Model):
    """The deepest shared feature vector of a multi-task model: the output of the last shared layer from which every
    task's output is computed alone (all paths from the inputs to the outputs pass through it), if it is a
    floating-point `(batch, d)` tensor of a layer called once.

    It is the trunk to keep when replacing what follows it by `branched`'s branches: for a `hard_sharing` model the
    tensor its heads read; for a model that shares partly after it (e.g. `split`), the last feature vector before
    the sharing stops being complete.

    Args:
        model: a Functional model whose `output` is a dict keyed by task name (e.g. a `kmtl.MultiTaskModel`).

    Returns:
        `(layer_name, tensor)`, or None when no such tensor exists (e.g. the tasks read a sequence or an image).

    Example:

    >>> import keras, kmtl
    >>> x = keras.Input((8,), name="x")
    >>> trunk = keras.layers.Dense(16, name="trunk")(x)
    >>> tasks = [kmtl.Task(name, "regression") for name in ("a", "b")]
    >>> kmtl.grouping.shared_features(kmtl.builders.hard_sharing(x, trunk, tasks))[0]
    'trunk'
    """
    names = list(model.output)
    shared, _ = partition_operations(model, names)
    order = {id(op): i for i, op in enumerate(keras.Function(keras.tree.flatten(model.input), model.output).operations)}
    candidates = [
        op for op in sorted(shared, key=lambda op: order.get(id(op), -1))
        if isinstance(op, keras.layers.Layer) and not isinstance(op, keras.layers.InputLayer)
        and call_count(op) == 1 and len(keras.tree.flatten(op.output)) == 1 and len(op.output.shape) == 2
        and keras.backend.is_float_dtype(op.output.dtype)  # not token ids or other lookups
    ]
    for layer in reversed(candidates):
        if any(layer.output is t for t in keras.tree.flatten(model.output)):
            continue  # a task's output itself (a head others read) is not a trunk
        try:
            keras.Function([layer.output], model.output)
        except ValueError:  # some output also needs a tensor computed beside this one
            continue
        return layer.name, layer.output
    return None
