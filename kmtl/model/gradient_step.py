"""The train step of gradient-level weighting, mixed into `MultiTaskModel` as Keras mixes its trainer into `Model`.

Shared variables move along the strategy's aggregate of the per-task gradients (see `kmtl.model.gradients` for how
`G` is filled and its cost). With `rep_grad=True` the rows of `G` are gradients of the shared *representation*
instead (batch x features entries, usually far fewer): the T backward passes stop at the representation, and one more
pass carries the aggregated direction through the trunk (`kmtl.model.partition` splits the graph there).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from kmtl import _keras_internals
from kmtl.model.gradients import gradients_or_zeros, jacobian, loop_gradients, per_task_gradients, unflatten
from kmtl.model.partition import GradientPlan
from kmtl.model.replicas import replica_context


class GradientStep:
    """`train_step` for a `MultiTaskModel`: Keras's own for loss-level strategies, per-task gradients for
    gradient-level ones. Reads the model's compiled state (`weighting`, `_task_state`, `_gradient_method`); no other
    module touches it."""

    def train_step(self, data):
        if getattr(self, "weighting", None) is not None and self.weighting.gradient_level:
            return self._gradient_level_train_step(data)
        return super().train_step(data)

    def _gradient_plan(self):
        """What the gradient-level step needs, worked out on first use after each compile."""
        if self._plan.value is None:
            self._plan.value = GradientPlan(self, rep_grad=getattr(self.weighting, "rep_grad", False))
        return self._plan.value

    def _gradient_level_train_step(self, data):
        """One training step of a `MultiTaskModel` compiled with a `GradientWeighting` strategy.

        Shared variables move along `strategy.aggregate(G, losses)`, where row t of `G` is task t's gradient of the
        shared variables (or of the shared representation, with `rep_grad`); each task's own variables get that task's
        gradient; regularisation losses (layer regularisers, `add_loss`, the model's penalties) add their gradient to
        every variable they touch, outside the strategy. Under `tf.distribute`, `G` and the losses are reduced across
        replicas *before* aggregation, so every replica applies the same direction: the update of the whole global
        batch. Under mixed precision the losses are scaled for the backward passes and `G` is unscaled before the
        strategy sees it. Gradients reach the optimizer in `trainable_variables` order, the order in which
        `compile` (and loading a saved model) builds its slots.
        """
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        strategy = self.weighting
        plan = self._gradient_plan()
        optimizer = self.optimizer
        scale = _loss_scale(optimizer)
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
                y_pred = self(x, training=True)
            # Each task's gradient is taken from its own loss tensor: one from an entry of the stacked losses would
            # also go back, with zeros, through every other task's loss and head.
            task_losses = self.separate_task_losses(y, y_pred, sample_weight)
            losses = tf.stack(task_losses)
            regularization = self._regularization_loss()
            # Everything differentiated is formed inside the tape: a target formed after it has no gradient.
            scaled = losses
            if scale is not None:
                task_losses = [loss * tf.cast(scale, loss.dtype) for loss in task_losses]
                scaled = tf.stack(task_losses)
            scaled_sum = tf.add_n(task_losses)
            # Every replica computes the whole regularisation loss, and the optimizer sums replicas' gradients.
            regularization_target = regularization / replicas
            if scale is not None:
                regularization_target = regularization_target * tf.cast(scale, regularization.dtype)
        global_losses = context.all_reduce(tf.distribute.ReduceOp.SUM, losses) if replicas > 1 else losses
        gradients = {}  # id(variable) -> gradient
        weights = tf.ones_like(losses)
        own_grads = None
        if plan.shared:
            if plan.trunk is None and self._gradient_method == "loop":
                grads, own_grads = loop_gradients(tape, task_losses, plan, self.task_names)
            elif plan.trunk is None:
                grads = jacobian(tape, scaled, plan.shared)
            else:
                grads = per_task_gradients(tape, task_losses, cut)
            per_example = plan.trunk is not None
            direction, weights = _aggregate(strategy, grads, global_losses, scale, context, replicas, per_example)
            if plan.trunk is not None:
                # The regularisation's gradient at the cut (e.g. a head's activity regulariser) goes through the trunk.
                at_cut = gradients_or_zeros(tape, regularization_target, cut)
                upstream = [d + tf.cast(r, d.dtype) for d, r in zip(unflatten(direction, representation), at_cut)]
                shared_grads = tape.gradient(representation, plan.shared, output_gradients=upstream)
                shared_grads = [tf.zeros(v.shape, v.dtype) if g is None else g for g, v in zip(shared_grads, plan.shared)]
            else:
                shared_grads = unflatten(direction, plan.shared)
            gradients.update((id(v), g) for v, g in zip(plan.shared, shared_grads))
        if plan.own_flat:
            if own_grads is None:
                # A task's own variables feed only its loss, so one pass over the sum gives every task its own gradient.
                own_grads = gradients_or_zeros(tape, scaled_sum, plan.own_flat)
            gradients.update((id(v), g) for v, g in zip(plan.own_flat, own_grads))
        variables = list(self.trainable_variables)
        others = [v for v in variables if id(v) not in gradients]
        if others:
            # Variables outside the partition (e.g. a strategy's own) train on the plain sum of task losses.
            gradients.update((id(v), g) for v, g in zip(others, gradients_or_zeros(tape, scaled_sum, others)))
        gradients = [gradients[id(v)] for v in variables]
        if self.losses or self.penalties:
            extra = gradients_or_zeros(tape, regularization_target, variables)
            gradients = [g + tf.cast(e, g.dtype) for g, e in zip(gradients, extra)]
        del tape
        optimizer.apply_gradients(zip(gradients, variables))
        batch_size = tf.shape(keras.tree.flatten(y_pred)[0])[0]
        self._task_state.update_loss_trackers(global_losses, weights, batch_size)
        # Keras's own "loss" tracker: the plain sum of task losses plus regularisation.
        _keras_internals.loss_tracker(self).update_state(tf.reduce_sum(global_losses) + regularization, sample_weight=batch_size)
        return self.compute_metrics(x, y, y_pred, sample_weight)


def _loss_scale(optimizer):
    """The optimizer's loss scale as a tensor, or None where it scales nothing (then G is not divided by 1)."""
    if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer) and optimizer.loss_scale_factor is None:
        return None
    return optimizer.scale_loss(tf.constant(1.0))


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
    # A NaN or infinite entry makes the sum NaN or infinite: one read of G, where testing every entry and selecting
    # zeros wrote two T x P tensors (10 ms of CPU at T = 4, P = 1.2M). A sum over 3.4e38 with finite entries reads as
    # non-finite too; gradients that large wreck the step either way.
    finite = tf.math.is_finite(tf.reduce_sum(grads))
    safe = tf.cond(finite, lambda: grads, lambda: tf.zeros_like(grads))
    direction, weights = strategy.aggregate(safe, losses)
    # A non-finite G (overflow under mixed precision) must reach the optimizer as such, so that it skips the step.
    direction = tf.cond(finite, lambda: direction, lambda: tf.fill(tf.shape(direction), np.nan))
    if scale is not None:
        direction = direction * tf.cast(scale, direction.dtype)
    if columns is not None:
        # The optimizer sums replicas' parameter gradients: the parts of the global direction add up.
        return tf.slice(direction, [offset], [columns]), weights
    # Every replica holds the same global direction, and the optimizer sums replicas' gradients.
    return (direction / replicas if replicas > 1 else direction), weights
