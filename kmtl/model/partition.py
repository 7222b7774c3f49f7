"""Reading a Functional model's graph: which layers feed which task outputs, the shared and per-task variables,
and for `rep_grad` the split of the graph at the shared representation."""

from __future__ import annotations

from typing import Sequence

import keras

from kmtl import _keras_internals
from kmtl.layers.stop_gradient import StopGradient


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


def variable_partition(model):
    """`(shared variables, {task: own variables})` of a `MultiTaskModel`: a variable of a layer that feeds several
    tasks' outputs is shared; one of a layer that feeds one task only is that task's."""
    shared_layers, task_layers = partition_layers(model, model.task_names)
    shared = _unique_variables(shared_layers)
    taken = {id(v) for v in shared}
    per_task = {name: [v for v in _unique_variables(layers) if id(v) not in taken] for name, layers in task_layers.items()}
    return shared, per_task


def _unique_variables(layers):
    seen, out = set(), []
    for layer in layers:
        for variable in layer.trainable_variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                out.append(variable)
    return out


class GradientPlan:
    """What the step needs to know about a model, worked out once: shared and own variables, and for `rep_grad`
    the split of the graph into a trunk (inputs -> shared representation) and heads (representation -> outputs)."""

    def __init__(self, model, rep_grad: bool):
        shared, own = variable_partition(model)
        self.shared = list(shared)
        self.own = {name: list(v) for name, v in own.items()}
        self.own_flat = [v for name in model.task_names for v in self.own[name]]
        self.trunk = self.heads = None
        self.passthrough = {}  # task name -> index of the representation tensor that is the task's output
        if rep_grad:
            self.trunk, self.heads, self.passthrough = _split_at_representation(model)

    def heads_output(self, representation, x):
        """The model's outputs from the representation (a list of tensors) and the inputs."""
        y_pred = dict(self.heads(representation + keras.tree.flatten(x), training=True)) if self.heads else {}
        y_pred.update({name: representation[i] for name, i in self.passthrough.items()})
        return y_pred


def _split_at_representation(model):
    """Two Functional models sharing the model's layers: trunk(inputs) -> representation, heads(...) -> outputs.

    Returns `(trunk, heads, passthrough)`: `passthrough` maps a task whose output is itself part of the
    representation to its index there (the heads model, which cannot output its own input, leaves it out; `heads`
    is None when every output is such a task).

    The representation is every output of a shared operation (a layer or a `keras.ops` call) that something not
    shared reads: a task's own layer, or the model's output itself (a task whose head other tasks read is shared).
    The model's inputs are not part of it, even where a task's layer reads them.
    """
    shared, per_task = partition_operations(model, model.task_names)
    shared = [op for op in shared if not isinstance(op, keras.layers.InputLayer)]
    shared_outputs = {}
    for operation in shared:
        if _keras_internals.call_count(operation) != 1:
            raise ValueError(
                f"`rep_grad=True` needs each shared layer to be called once; shared layer '{operation.name}' is "
                "used at several places, so its output is not one representation. Use rep_grad=False."
            )
        for tensor in keras.tree.flatten(operation.output):
            shared_outputs[id(tensor)] = tensor
    readers = [t for ops in per_task.values() for op in ops for t in keras.tree.flatten(op.input)]
    readers += keras.tree.flatten(model.output)
    boundary, seen = [], set()
    for tensor in readers:
        if id(tensor) in shared_outputs and id(tensor) not in seen:
            seen.add(id(tensor))
            boundary.append(tensor)
    if not boundary:
        raise ValueError("`rep_grad=True` needs a shared representation, but no task layer reads a shared layer.")
    inputs = keras.tree.flatten(model.input)
    trunk = keras.Model(model.input, boundary, name=f"{model.name}_trunk")
    position = {id(tensor): i for i, tensor in enumerate(boundary)}
    passthrough = {n: position[id(t)] for n, t in model.output.items() if id(t) in position}
    outputs = {n: t for n, t in model.output.items() if n not in passthrough}
    heads = keras.Model(boundary + inputs, outputs, name=f"{model.name}_heads") if outputs else None
    recomputed = {id(op) for op in (heads.operations if heads else ())} & {id(op) for op in shared}
    if recomputed:  # the heads would use shared variables out of the representation's reach
        names = [op.name for op in shared if id(op) in recomputed]
        raise ValueError(
            f"`rep_grad=True` could not split the model at one shared representation: shared operations {names} "
            "are also computed after it. Use rep_grad=False."
        )
    return trunk, heads, passthrough
