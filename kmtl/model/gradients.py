"""Per-task gradients from a persistent `tf.GradientTape`: T backward passes or one vectorised jacobian.

Row t of the matrix `G` is task t's gradient of the shared parameters (P of them), so `G` holds T x P floats: at
T = 8 tasks and a 1M-parameter trunk that is 32 MB, plus the T backward passes that fill it. Two ways fill it: a loop
of T `tape.gradient` calls (the default) or one `tape.jacobian`; `benchmarks/weighting_speed.py` measures both.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

GRADIENT_METHODS = ("loop", "jacobian")


def gradients_or_zeros(tape, target, sources):
    """`tape.gradient` with zeros (not None) for sources the target does not depend on."""
    grads = tape.gradient(target, sources)
    # Not `unconnected_gradients=ZERO`: TensorFlow reads a TF dtype off the sources, and Keras variables have none.
    return [tf.zeros(s.shape, s.dtype) if g is None else tf.convert_to_tensor(g) for g, s in zip(grads, sources)]


def stack_rows(rows):
    """The `(T, P)` float32 matrix whose row t is the tensors of `rows[t]` flattened and joined, written once: one
    concatenation of all T x (number of tensors) pieces, where joining each row and then stacking the rows copied
    `G` twice (without XLA 8 against 12 ms of CPU for `G`, its Gram matrix and a combination at T = 8, P = 660k)."""
    pieces = [tf.reshape(tf.cast(t, tf.float32), [-1]) for row in rows for t in row]
    return tf.reshape(tf.concat(pieces, axis=0), [len(rows), -1])


def per_task_gradients(tape, task_losses, sources):
    """Stacks each task's gradient of `sources` into a `(num_tasks, num_entries)` float32 matrix.

    Args:
        tape: a persistent `tf.GradientTape` that recorded `task_losses`.
        task_losses: list of scalar tensors, one per task, each computed inside the tape.
        sources: the variables (or watched tensors) to differentiate.
    """
    return stack_rows([gradients_or_zeros(tape, loss, sources) for loss in task_losses])


def unflatten(vector, like):
    """Splits a flat vector back into tensors shaped (and typed) like the tensors or variables in `like`."""
    sizes = [int(np.prod(v.shape)) if None not in v.shape else tf.size(v) for v in like]
    parts = tf.split(vector, sizes)
    return [tf.cast(tf.reshape(p, tf.shape(v)), v.dtype) for p, v in zip(parts, like)]


def loop_gradients(tape, task_losses, plan, task_names):
    """T backward passes, each to the shared variables and that task's own ones."""
    rows, own_grads = [], []
    num_shared = len(plan.shared)
    for loss, name in zip(task_losses, task_names):
        grads = gradients_or_zeros(tape, loss, plan.shared + plan.own[name])
        rows.append(grads[:num_shared])
        own_grads += grads[num_shared:]
    return stack_rows(rows), own_grads


def jacobian(tape, losses, variables):
    """All task gradients in one vectorised `tape.jacobian` call."""
    jacobians = tape.jacobian(losses, variables)
    num_tasks = losses.shape[0]
    rows = [
        tf.zeros((num_tasks, int(np.prod(v.shape)))) if j is None else tf.reshape(tf.cast(j, tf.float32), [num_tasks, -1])
        for j, v in zip(jacobians, variables)
    ]
    return tf.concat(rows, axis=1)
