"""The train step of gradient-level weighting: per-task gradients of the shared variables, aggregated."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def _gradients(tape, target, variables):
    """`tape.gradient` with zeros (not None) for variables the target does not depend on."""
    grads = tape.gradient(target, variables)
    return [tf.zeros(v.shape, v.dtype) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, variables)]


def per_task_gradients(tape, task_losses, variables):
    """Stacks each task's gradient of `variables` into a `(num_tasks, num_parameters)` float32 matrix.

    Args:
        tape: a persistent `tf.GradientTape` that recorded `task_losses`.
        task_losses: list of scalar tensors, one per task, each computed inside the tape.
        variables: the variables to differentiate.
    """
    rows = []
    for loss in task_losses:
        rows.append(tf.concat([tf.reshape(g, [-1]) for g in _gradients(tape, loss, variables)], axis=0))
    return tf.cast(tf.stack(rows), tf.float32)


def unflatten(vector, variables):
    """Splits a flat vector back into tensors shaped like `variables`."""
    sizes = [int(np.prod(v.shape)) for v in variables]
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
        # Slice inside the tape so each task's loss is connected to the variables.
        task_losses = [losses[i] for i in range(len(model.tasks))]
        regularization = model._regularization_loss()
    variables, gradients = [], []
    if shared:
        direction, weights = strategy.aggregate(per_task_gradients(tape, task_losses, shared), losses)
        variables += shared
        gradients += unflatten(direction, shared)
    else:
        weights = tf.ones_like(losses)
    for loss, name in zip(task_losses, model.task_names):
        if own[name]:
            variables += own[name]
            gradients += _gradients(tape, loss, own[name])
    if model.losses or model.penalties:
        extra = _gradients(tape, regularization, variables)
        gradients = [g + tf.cast(e, g.dtype) for g, e in zip(gradients, extra)]
    del tape
    model.optimizer.apply_gradients(zip(gradients, variables))
    batch_size = tf.shape(keras.tree.flatten(y_pred)[0])[0]
    model._task_state.update_loss_trackers(losses, weights, batch_size)
    # Keras's own "loss" tracker (private attribute of keras.Model): the plain sum of task losses plus regularisation.
    model._loss_tracker.update_state(tf.reduce_sum(losses) + regularization, sample_weight=batch_size)
    return model.compute_metrics(x, y, y_pred, sample_weight)
