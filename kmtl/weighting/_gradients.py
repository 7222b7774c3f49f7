"""Helpers of the gradient-level strategies: the Gram matrix of the task gradients, combinations of its rows,
random visiting orders, and saving a strategy's random-number state."""

from __future__ import annotations

import keras
from keras import ops

# Float64 for Gram matrices and the solvers that read them: GPUs never use reduced-precision TF32 matmuls there.
FLOAT = "float64"
# Guards divisions by squared norms that may be exactly zero.
TINY = 1e-30


def gram_matrix(grads):
    """The float64 Gram matrix `G Gᵀ` of the rows of `grads` `(T, P)`."""
    g = ops.cast(grads, FLOAT)
    return ops.matmul(g, ops.transpose(g))


def combine_rows(weights, grads):
    """`sum_t weights[t] * grads[t]`, as an elementwise sum (exact float32, no reduced-precision matmul)."""
    return ops.sum(ops.cast(weights, grads.dtype)[:, None] * grads, axis=0)


def task_orders(num_tasks, seed_generator=None):
    """`(T, T)` int matrix whose row i is the order in which task i visits the tasks: random when a
    `keras.random.SeedGenerator` is given (one permutation per task and step), else `0, 1, ..., T-1`."""
    if seed_generator is None:
        return ops.tile(ops.arange(num_tasks)[None, :], (num_tasks, 1))
    return ops.argsort(keras.random.uniform((num_tasks, num_tasks), seed=seed_generator), axis=1)


class SavesRandomState:
    """Mixin of strategies with a `seed_generator`: saves its state with the strategy's variables, so training
    resumed from a saved model draws the same random numbers as uninterrupted training."""

    def _saved_variables(self):
        generator = getattr(self, "seed_generator", None)
        return list(self.weights) + ([generator.state] if generator is not None else [])

    def save_own_variables(self, store):
        for i, variable in enumerate(self._saved_variables()):
            store[str(i)] = variable

    def load_own_variables(self, store):
        variables = self._saved_variables()
        if len(store.keys()) != len(variables):
            raise ValueError(
                f"{type(self).__name__} expected {len(variables)} saved variables (its state and random-number "
                f"state). Received: {len(store.keys())} variables"
            )
        for i, variable in enumerate(variables):
            variable.assign(store[str(i)])
