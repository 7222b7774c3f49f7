"""Reading a Functional model's graph: which layers feed which task outputs."""

from __future__ import annotations

from typing import Sequence

import keras


def partition_layers(model: keras.Model, task_names: Sequence[str]):
    """Splits a multi-output Functional model's layers into shared and per-task ones.

    A layer that feeds exactly one task's output belongs to that task; a layer that feeds several is shared.
    "Feeds" means a task's loss can send gradient to it: paths through a `kmtl.layers.StopGradient` do not count,
    so a task that reads another task's estimate through a stop-gradient does not make that task's layers shared.
    Uses `keras.Function` over the model's own symbolic tensors, so it works for any Functional graph, nested
    models included (a nested model counts as one layer).

    Args:
        model: a Functional model whose `output` is a dict keyed by task name.
        task_names: the task names, in order.

    Returns:
        Tuple `(shared_layers, {task_name: layers})`, each list in graph order.
    """
    shared, per_task = partition_operations(model, task_names)
    return _layers(shared), {name: _layers(operations) for name, operations in per_task.items()}


def partition_operations(model: keras.Model, task_names: Sequence[str]):
    """Like `partition_layers`, for every operation of the graph: its layers and the `keras.ops` calls between
    them (which hold no variables, but compute tensors a task may read)."""
    from kmtl.layers.stop_gradient import StopGradient

    # Gradient stops at a StopGradient's output: treat those tensors as inputs, which cuts the walk there.
    cuts = []
    for layer in model.layers:
        if isinstance(layer, StopGradient):
            try:
                cuts.append(layer.output)
            except (AttributeError, ValueError):  # used at several places: keep the plain (conservative) walk
                pass
    feeds = {}  # id(operation) -> (operation, set of task names it feeds)
    order = []
    for name in task_names:
        function = keras.Function(inputs=keras.tree.flatten(model.input) + cuts, outputs=model.output[name])
        for operation in function.operations:
            if id(operation) not in feeds:
                feeds[id(operation)] = (operation, set())
                order.append(id(operation))
            feeds[id(operation)][1].add(name)
    shared = [feeds[i][0] for i in order if len(feeds[i][1]) > 1]
    per_task = {name: [feeds[i][0] for i in order if feeds[i][1] == {name}] for name in task_names}
    return shared, per_task


def _layers(operations):
    return [operation for operation in operations if isinstance(operation, keras.layers.Layer)]
