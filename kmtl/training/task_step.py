"""The train step of gradient-level weighting: per-task gradients of the shared variables, aggregated."""

from __future__ import annotations

import keras
import tensorflow as tf


def per_task_gradients(tape, losses, variables):
    """Stacks each task's gradient of `variables` into a `(num_tasks, num_parameters)` float32 matrix."""
    rows = []
    for i in range(losses.shape[0]):
        grads = tape.gradient(losses[i], variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        rows.append(tf.concat([tf.reshape(tf.convert_to_tensor(g), [-1]) for g in grads], axis=0))
    return tf.cast(tf.stack(rows), tf.float32)


def unflatten(vector, variables):
    """Splits a flat vector back into tensors shaped like `variables`."""
    sizes = [int(tf.size(v)) for v in variables]
    parts = tf.split(vector, sizes)
    return [tf.cast(tf.reshape(p, v.shape), v.dtype) for p, v in zip(parts, variables)]


def gradient_level_train_step(model, data):
    """One training step of a `MultiTaskModel` compiled with a `GradientWeighting` strategy.

    Shared variables move along `strategy.aggregate(G, losses)`, where row t of `G` is task t's gradient of the
    shared variables; each task's own variables get that task's gradient; regularisation losses add their
    gradient to every variable they touch.
    """
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    strategy = model.weighting
    shared = model.shared_variables
    own = model.task_variables
    with tf.GradientTape(persistent=True) as tape:
        y_pred = model(x, training=True)
        losses = model.task_losses(y, y_pred, sample_weight)
        regularization = model._regularization_loss()
    variables, gradients = [], []
    if shared:
        direction, weights = strategy.aggregate(per_task_gradients(tape, losses, shared), losses)
        variables += shared
        gradients += unflatten(direction, shared)
    else:
        weights = tf.ones_like(losses)
    for i, name in enumerate(model.task_names):
        if own[name]:
            variables += own[name]
            gradients += tape.gradient(losses[i], own[name], unconnected_gradients=tf.UnconnectedGradients.ZERO)
    if model.losses:
        extra = tape.gradient(regularization, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        gradients = [g + tf.cast(e, g.dtype) for g, e in zip(gradients, extra)]
    del tape
    model.optimizer.apply_gradients(zip(gradients, variables))
    model._task_state.update_loss_trackers(losses, weights)
    # Keras's own "loss" tracker (private attribute of keras.Model): the plain sum of task losses plus regularisation.
    model._loss_tracker.update_state(tf.reduce_sum(losses) + regularization)
    return model.compute_metrics(x, y, y_pred, sample_weight)
