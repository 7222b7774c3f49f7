"""Inter-task affinity measured during a short joint training of a `MultiTaskModel`.

Two measures, averaged over the training steps:

- `"lookahead"` (Fifty et al. 2021): before each step, for every task `i`, a plain gradient step of size
  `learning_rate` on task `i`'s loss through the shared variables only gives shared values `θ_s - η ∇L_i`; the
  affinity of `i` onto `j` is `1 - L_j(after) / L_j(before)` on the same batch, the relative change of task `j`'s loss
  (positive: a step for `i` helps `j`). Costs T backward and T + 1 forward passes per step.
- `"gradient"`: the cosine similarity of the tasks' gradients of the shared variables, symmetric, in `[-1, 1]`.
  Costs T backward passes and one forward pass per step.

The lookahead losses come from `keras.Model.stateless_call` with the moved values, so no variable of the model is
assigned for them; the before and after passes read the same non-trainable state (a dropout layer draws the same
mask in both). Between measurements the model trains on the sum of its task losses (plus its regularisation), and
every variable of the model is restored to its value from before `measure_affinity` when it returns or fails.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from keras import ops

from kmtl.losses import masked_loss
from kmtl.model.gradients import gradients_or_zeros, per_task_gradients
from kmtl.tasks import resolve_loss
from kmtl.tasks.batch_checks import named_batch_errors

METHODS = ("lookahead", "gradient")


def measure_affinity(
    model, batches, *, method: str, steps: int, learning_rate: float, optimizer, weights=None
) -> np.ndarray:
    """Trains `model` for `steps` batches and returns the mean affinity matrix `(T, T)` (row: the stepping task).

    Args:
        model: `kmtl.MultiTaskModel` with shared variables.
        batches: iterator of `(inputs, {task_name: labels})` batches, at least `steps` of them.
        method: `"lookahead"` or `"gradient"`.
        steps: int. Training steps; the affinity is measured before each.
        learning_rate: float. Size of the lookahead step.
        optimizer: a fresh Keras optimizer for the joint training.
        weights: sequence of T floats or None (all 1). Task `i`'s loss counts `weights[i]` times in the joint
            training, and its lookahead step is `learning_rate * weights[i]` times its gradient.

    Returns:
        float64 array `(T, T)`: entry `[i, j]` is the affinity of task `i` onto task `j`.
    """
    snapshot = [(variable, ops.convert_to_numpy(variable)) for variable in model.variables]
    try:
        with named_batch_errors():
            return _measure(model, batches, method, steps, learning_rate, optimizer, weights)
    finally:
        for variable, value in snapshot:
            variable.assign(value)


def _measure(model, batches, method, steps, learning_rate, optimizer, weights):
    unweighted = _task_loss_function(model)
    if weights is None:
        task_losses = unweighted
    else:
        weights = tf.constant(np.asarray(weights, dtype="float32"))
        task_losses = lambda y, y_pred: unweighted(y, y_pred) * weights  # noqa: E731
    trainable = list(model.trainable_variables)
    shared_ids = {id(v) for v in model.shared_variables}
    shared_positions = [i for i, v in enumerate(trainable) if id(v) in shared_ids]
    measure = _lookahead_step if method == "lookahead" else _gradient_step

    @tf.function(autograph=False)  # nothing to convert; autograph doubled the tracing time
    def step(x, y):
        values = [tf.convert_to_tensor(v.value) for v in trainable]
        state = [v.value for v in model.non_trainable_variables]
        affinity, valid = measure(model, unweighted, weights, values, state, shared_positions, x, y, learning_rate)
        _train_step(model, task_losses, optimizer, x, y)
        return affinity, valid

    total = counts = None
    for number in range(1, steps + 1):
        x, y = next(batches)
        affinity, valid = step(x, y)
        affinity, valid = affinity.numpy().astype(np.float64), valid.numpy().astype(np.float64)
        broken = (valid > 0) & ~np.isfinite(affinity)
        if broken.any():
            names = sorted({model.task_names[j] for j in np.nonzero(broken)[1]})
            raise ValueError(
                f"The joint training diverged at step {number}: the loss of task(s) {names} after a lookahead step "
                f"is not finite. Use a smaller `learning_rate`. Received: learning_rate={learning_rate}"
            )
        total = affinity * valid if total is None else total + affinity * valid
        counts = valid if counts is None else counts + valid
    return np.where(counts > 0, total / np.maximum(counts, 1.0), np.nan)


def _lookahead_step(model, task_losses, weights, values, state, shared_positions, x, y, learning_rate):
    shared = [values[i] for i in shared_positions]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(shared)
        y_pred, _ = model.stateless_call(values, state, x, training=True)
        before = task_losses(y, y_pred)
        per_task = [before[i] for i in range(before.shape[0])]
    grads = [tape.gradient(loss, shared, unconnected_gradients=tf.UnconnectedGradients.ZERO) for loss in per_task]
    del tape
    rows = []
    for i, task_grads in enumerate(grads):
        rate = learning_rate if weights is None else learning_rate * weights[i]
        moved = list(values)
        for position, value, grad in zip(shared_positions, shared, task_grads):
            moved[position] = value - tf.cast(rate, value.dtype) * grad
        y_after, _ = model.stateless_call(moved, state, x, training=True)
        after = task_losses(y, y_after)
        rows.append(1.0 - after / tf.where(before > 0, before, tf.ones_like(before)))
    # A task with no labels in the batch (or a zero loss) neither steps nor has a relative change: such entries are
    # left out of the mean over steps.
    present = tf.cast(before > 0, tf.float32)
    valid = present[:, None] * present[None, :]
    return tf.stack(rows) * valid, valid


def _gradient_step(model, task_losses, weights, values, state, shared_positions, x, y, learning_rate):
    del weights, learning_rate  # a cosine is the same for any positive scale of either gradient
    shared = [values[i] for i in shared_positions]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(shared)
        y_pred, _ = model.stateless_call(values, state, x, training=True)
        losses = task_losses(y, y_pred)
        per_task = [losses[i] for i in range(losses.shape[0])]
    grads = per_task_gradients(tape, per_task, shared)
    del tape
    norms = tf.norm(grads, axis=1)
    valid = tf.cast(norms > 0, tf.float32)
    unit = grads / tf.where(norms > 0, norms, tf.ones_like(norms))[:, None]
    valid = valid[:, None] * valid[None, :]
    return tf.matmul(unit, unit, transpose_b=True) * valid, valid


def _train_step(model, task_losses, optimizer, x, y):
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        y_pred = model(x, training=True)
        total = tf.reduce_sum(task_losses(y, y_pred))
        for extra in list(model.losses) + [p.penalty() for p in model.penalties]:
            total += tf.cast(tf.reduce_sum(extra), total.dtype)
    grads = gradients_or_zeros(tape, total, variables)
    optimizer.apply_gradients(zip(grads, variables))


def _task_loss_function(model):
    """`(y, y_pred) -> (T,)` masked task losses: the compiled model's own, else from the tasks' declared losses."""
    if getattr(model, "compiled", False):
        return lambda y, y_pred: model.task_losses(y, y_pred)
    loss_fns = {t.name: resolve_loss(t.loss, task_name=t.name) for t in model.tasks}

    def task_losses(y, y_pred):
        return tf.stack([
            tf.cast(masked_loss(t, loss_fns[t.name], y[t.name], y_pred[t.name]), tf.float32) for t in model.tasks
        ])

    return task_losses
