"""The train step of gradient-level weighting: per-task gradients of the shared part, aggregated.

Cost model. Row t of the matrix `G` handed to the strategy is task t's gradient of the shared parameters (P of
them), so `G` holds T x P floats: at T = 8 tasks and a 1M-parameter trunk that is 32 MB, plus the T backward passes
that fill it. With `rep_grad=True` the rows are gradients of the shared *representation* instead (batch x features
entries, usually far fewer): the T backward passes stop at the representation, and one more pass carries the
aggregated direction through the trunk. Two ways fill `G` with parameter gradients: a loop of T `tape.gradient` calls
(default) or one vectorised `tape.jacobian`; `benchmarks/weighting_speed.py` measures both.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

GRADIENT_METHODS = ("loop", "jacobian")


def _gradients(tape, target, sources):
    """`tape.gradient` with zeros (not None) for sources the target does not depend on."""
    grads = tape.gradient(target, sources)
    # Not `unconnected_gradients=ZERO`: TensorFlow reads a TF dtype off the sources, and Keras variables have none.
    return [tf.zeros(s.shape, s.dtype) if g is None else tf.convert_to_tensor(g) for g, s in zip(grads, sources)]


def _flat(tensors):
    return tf.concat([tf.reshape(tf.cast(t, tf.float32), [-1]) for t in tensors], axis=0)


def per_task_gradients(tape, task_losses, sources):
    """Stacks each task's gradient of `sources` into a `(num_tasks, num_entries)` float32 matrix.

    Args:
        tape: a persistent `tf.GradientTape` that recorded `task_losses`.
        task_losses: list of scalar tensors, one per task, each computed inside the tape.
        sources: the variables (or watched tensors) to differentiate.
    """
    return tf.stack([_flat(_gradients(tape, loss, sources)) for loss in task_losses])


def unflatten(vector, like):
    """Splits a flat vector back into tensors shaped (and typed) like the tensors or variables in `like`."""
    sizes = [int(np.prod(v.shape)) if None not in v.shape else tf.size(v) for v in like]
    parts = tf.split(vector, sizes)
    return [tf.cast(tf.reshape(p, tf.shape(v)), v.dtype) for p, v in zip(parts, like)]


class GradientPlan:
    """What the step needs to know about a model, worked out once: shared and own variables, and for `rep_grad`
    the split of the graph into a trunk (inputs -> shared representation) and heads (representation -> outputs)."""

    def __init__(self, model, rep_grad: bool):
        self.shared = model.shared_variables
        self.own = model.task_variables
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
    from kmtl.graph import partition_operations

    shared, per_task = partition_operations(model, model.task_names)
    shared = [op for op in shared if not isinstance(op, keras.layers.InputLayer)]
    shared_outputs = {}
    for operation in shared:
        # Keras has no public count of a layer's calls; `_inbound_nodes` lists them (one node per call).
        if len(getattr(operation, "_inbound_nodes", ())) != 1:
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


def replica_context():
    """`(replica context, number of replicas)` under `tf.distribute` with several replicas, else `(None, 1)`."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None, 1
    return context, context.num_replicas_in_sync


def gradient_level_train_step(model, data):
    """One training step of a `MultiTaskModel` compiled with a `GradientWeighting` strategy.

    Shared variables move along `strategy.aggregate(G, losses)`, where row t of `G` is task t's gradient of the
    shared variables (or of the shared representation, with `rep_grad`); each task's own variables get that task's
    gradient; regularisation losses (layer regularisers, `add_loss`, the model's penalties) add their gradient to
    every variable they touch, outside the strategy. Under `tf.distribute`, `G` and the losses are reduced across
    replicas *before* aggregation, so every replica applies the same direction: the update of the whole global
    batch. Under mixed precision the losses are scaled for the backward passes and `G` is unscaled before the
    strategy sees it. Gradients reach the optimizer in `model.trainable_variables` order, the order in which
    `compile` (and loading a saved model) builds its slots.
    """
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    strategy = model.weighting
    plan = model._gradient_plan()
    optimizer = model.optimizer
    scale = optimizer.scale_loss(tf.constant(1.0)) if hasattr(optimizer, "scale_loss") else None
    context, replicas = replica_context()
    representation = cut = None
    with tf.GradientTape(persistent=True) as tape:
        if plan.trunk is not None:
            representation = keras.tree.flatten(plan.trunk(x, training=True))
            # The heads read the representation cut from the trunk, so a loss's gradient at each boundary tensor is
            # its partial derivative. The total one would count twice the path from a lower boundary tensor through
            # an upper one (a head reading two stacked shared layers) once the trunk's backward pass adds it again.
            cut = [tf.stop_gradient(z) for z in representation]
            tape.watch(cut)
            y_pred = plan.heads_output(cut, x)
        else:
            y_pred = model(x, training=True)
        losses = model.task_losses(y, y_pred, sample_weight)
        regularization = model._regularization_loss()
        # Everything differentiated is formed inside the tape: a target formed after it has no gradient.
        scaled = losses * tf.cast(scale, losses.dtype) if scale is not None else losses
        task_losses = [scaled[i] for i in range(len(model.tasks))]
        scaled_sum = tf.reduce_sum(scaled)
        # Every replica computes the whole regularisation loss, and the optimizer sums replicas' gradients.
        regularization_target = regularization / replicas
        if scale is not None:
            regularization_target = regularization_target * tf.cast(scale, regularization.dtype)
    global_losses = context.all_reduce(tf.distribute.ReduceOp.SUM, losses) if replicas > 1 else losses
    gradients = {}  # id(variable) -> gradient
    weights = tf.ones_like(losses)
    own_grads = None
    if plan.shared:
        if plan.trunk is None and model._gradient_method == "loop":
            grads, own_grads = _loop_gradients(tape, task_losses, plan, model.task_names)
        elif plan.trunk is None:
            grads = _jacobian(tape, scaled, plan.shared)
        else:
            grads = per_task_gradients(tape, task_losses, cut)
        per_example = plan.trunk is not None
        direction, weights = _aggregate(strategy, grads, global_losses, scale, context, replicas, per_example)
        if plan.trunk is not None:
            # The regularisation's gradient at the cut (e.g. a head's activity regulariser) goes through the trunk.
            at_cut = _gradients(tape, regularization_target, cut)
            upstream = [d + tf.cast(r, d.dtype) for d, r in zip(unflatten(direction, representation), at_cut)]
            shared_grads = tape.gradient(representation, plan.shared, output_gradients=upstream)
            shared_grads = [tf.zeros(v.shape, v.dtype) if g is None else g for g, v in zip(shared_grads, plan.shared)]
        else:
            shared_grads = unflatten(direction, plan.shared)
        gradients.update((id(v), g) for v, g in zip(plan.shared, shared_grads))
    if plan.own_flat:
        if own_grads is None:
            # A task's own variables feed only its loss, so one pass over the sum gives every task its own gradient.
            own_grads = _gradients(tape, scaled_sum, plan.own_flat)
        gradients.update((id(v), g) for v, g in zip(plan.own_flat, own_grads))
    variables = list(model.trainable_variables)
    others = [v for v in variables if id(v) not in gradients]
    if others:
        # Variables outside the partition (e.g. a strategy's own) train on the plain sum of task losses.
        gradients.update((id(v), g) for v, g in zip(others, _gradients(tape, scaled_sum, others)))
    gradients = [gradients[id(v)] for v in variables]
    if model.losses or model.penalties:
        extra = _gradients(tape, regularization_target, variables)
        gradients = [g + tf.cast(e, g.dtype) for g, e in zip(gradients, extra)]
    del tape
    optimizer.apply_gradients(zip(gradients, variables))
    batch_size = tf.shape(keras.tree.flatten(y_pred)[0])[0]
    model._task_state.update_loss_trackers(global_losses, weights, batch_size)
    # Keras's own "loss" tracker (private attribute of keras.Model): the plain sum of task losses plus regularisation.
    model._loss_tracker.update_state(tf.reduce_sum(global_losses) + regularization, sample_weight=batch_size)
    return model.compute_metrics(x, y, y_pred, sample_weight)


def _aggregate(strategy, grads, losses, scale, context, replicas, per_example=False):
    """Unscales `G`, forms the global batch's `G` across replicas, asks the strategy for the direction, and returns
    this replica's part of it (scaled back).

    Args:
        per_example: bool. Whether the columns of `G` are entries of this replica's own examples (`rep_grad`)
            rather than shared parameters.
    """
    if scale is not None:
        grads = grads / tf.cast(scale, grads.dtype)
    columns = offset = None
    if replicas > 1 and per_example:
        # Each replica's columns belong to its own examples: the global G has all replicas' columns side by side
        # (an order of columns no strategy depends on). Each replica keeps its own slice of the direction.
        columns = tf.shape(grads)[1]
        counts = context.all_gather(tf.reshape(columns, [1]), axis=0)
        before = tf.range(replicas) < tf.cast(context.replica_id_in_sync_group, tf.int32)
        offset = tf.reduce_sum(tf.where(before, counts, tf.zeros_like(counts)))
        grads = context.all_gather(grads, axis=1)
    elif replicas > 1:
        # Aggregate the global batch's gradients, not each replica's: reduce first.
        grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    finite = tf.reduce_all(tf.math.is_finite(grads))
    direction, weights = strategy.aggregate(tf.where(finite, grads, tf.zeros_like(grads)), losses)
    # A non-finite G (overflow under mixed precision) must reach the optimizer as such, so that it skips the step.
    direction = tf.where(finite, direction, tf.fill(tf.shape(direction), np.nan))
    if scale is not None:
        direction = direction * tf.cast(scale, direction.dtype)
    if columns is not None:
        # The optimizer sums replicas' parameter gradients: the parts of the global direction add up.
        return tf.slice(direction, [offset], [columns]), weights
    # Every replica holds the same global direction, and the optimizer sums replicas' gradients.
    return direction / replicas, weights


def _loop_gradients(tape, task_losses, plan, task_names):
    """T backward passes, each to the shared variables and that task's own ones."""
    rows, own_grads = [], []
    num_shared = len(plan.shared)
    for loss, name in zip(task_losses, task_names):
        grads = _gradients(tape, loss, plan.shared + plan.own[name])
        rows.append(_flat(grads[:num_shared]))
        own_grads += grads[num_shared:]
    return tf.stack(rows), own_grads


def _jacobian(tape, losses, variables):
    """All task gradients in one vectorised `tape.jacobian` call."""
    jacobians = tape.jacobian(losses, variables)
    num_tasks = losses.shape[0]
    rows = [
        tf.zeros((num_tasks, int(np.prod(v.shape)))) if j is None else tf.reshape(tf.cast(j, tf.float32), [num_tasks, -1])
        for j, v in zip(jacobians, variables)
    ]
    return tf.concat(rows, axis=1)
