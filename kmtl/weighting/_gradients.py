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
    """The float64 Gram matrix `G Gᵀ` of the rows of `grads` `(T, P)`.

    Where float32 matmuls are exact float32 (`exact_float32_matmul`), one float32 matmul cast to float64: the T x P
    work of a float64 matmul of the whole matrix, and of its float64 copy, was ~3x the time (11.4 against 3.4 ms of
    CPU at T = 4, P = 1.2M). Elsewhere (TF32 on a GPU) the float64 product.
    """
    if exact_float32_matmul() and grads.dtype == "float32":
        return ops.cast(ops.matmul(grads, ops.transpose(grads)), FLOAT)
    g = ops.cast(grads, FLOAT)
    return ops.matmul(g, ops.transpose(g))


def combine_rows(weights, grads):
    """`sum_t weights[t] * grads[t]`: one `(1, T) x (T, P)` matmul where float32 matmuls are exact float32 (2.6
    against 6.6 ms of CPU at T = 4, P = 1.2M), else an elementwise sum (no reduced-precision matmul)."""
    weights = ops.cast(weights, grads.dtype)
    if exact_float32_matmul():
        return ops.matmul(weights[None, :], grads)[0]
    return ops.sum(weights[:, None] * grads, axis=0)


def exact_float32_matmul() -> bool:
    """Whether float32 matmuls round as float32: TensorFlow without a GPU, or with TF32 turned off. On an Ampere or
    newer GPU TensorFlow rounds matmul inputs to TF32 (10-bit mantissa) by default; other backends are not asked."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not tf.config.list_logical_devices("GPU") or not tf.config.experimental.tensor_float_32_execution_enabled()


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
