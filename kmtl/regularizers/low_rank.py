"""Low-rank penalties on stacked task weights: trace (nuclear) norms of their unfoldings."""

from __future__ import annotations

import math

import keras
from keras import ops

from kmtl.regularizers.base import Penalty, stack_weights

_MODES = ("last", "tucker", "tt")


@keras.saving.register_keras_serializable(package="kmtl")
class TraceNorm(Penalty):
    """Trace (nuclear) norm of the task weights stacked into a tensor, as in trace-norm soft sharing.

    The T layers' weights, each of shape `(s_1, ..., s_m)` (e.g. a Dense kernel `(d, k)`), are stacked into a tensor
    `W` of shape `(s_1, ..., s_m, T)`, task axis last. The penalty is a sum of nuclear norms (sums of singular
    values) of matrix unfoldings of `W`, chosen by `mode`:

    - `"last"`: the last-axis flattening, a `(s_1 * ... * s_m, T)` matrix (one column per task). It is low when the
      tasks' weights span a low-dimensional subspace.
    - `"tucker"`: the sum over every axis n of the mode-n unfolding `(size_n, product of the other sizes)` — the
      tensor trace norm of the Tucker rank (for a Dense kernel: `(d, k*T) + (k, d*T) + (T, d*k)`).
    - `"tt"`: the sum over n = 1..m of the tensor-train unfolding `(s_1 * ... * s_n, s_{n+1} * ... * s_m * T)`,
      the tensor trace norm of the tensor-train rank (for a Dense kernel: `(d, k*T) + (d*k, T)`).

    The terms are summed with equal weights (scale them all with `strength`). Singular values come from
    `keras.ops.svd(..., compute_uv=False)`; its gradient `U V^T` is defined everywhere on TensorFlow, including
    rank-deficient stacks (where it is a subgradient).

    Args:
        layers: list of str. Names of the T layers, one per task, in task order.
        strength: float. Multiplier of the penalty (>= 0).
        mode: str. `"last"` (default), `"tucker"` or `"tt"`, as above.
        weight: str. Attribute of each layer to read (default `"kernel"`).
        **kwargs: passed to `keras.layers.Layer`.

    Example:

    >>> w = keras.ops.ones((2, 3))
    >>> round(float(TraceNorm(["a", "b"]).compute([w, 2.0 * w])), 4)  # rank 1: ||[w, 2w]||_* = sqrt(6 * 5)
    5.4772

    Reference:
        Yang & Hospedales (2017). Trace Norm Regularised Deep Multi-Task Learning. ICLR workshop.
    """

    def __init__(self, layers, strength=1e-3, mode="last", weight="kernel", **kwargs):
        super().__init__(layers, strength=strength, weight=weight, **kwargs)
        if mode not in _MODES:
            raise ValueError(f"Invalid value for `mode`. Expected one of {_MODES}. Received: mode={mode!r}")
        self.mode = mode

    def compute(self, variables):
        # (s_1, ..., s_m, T): the task axis last, as in the paper.
        tensor = ops.moveaxis(stack_weights(variables), 0, -1)
        return ops.sum(ops.stack([nuclear_norm(m) for m in unfoldings(tensor, self.mode)]))

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def unfoldings(tensor, mode):
    """The matrices whose nuclear norms `TraceNorm` sums, for a tensor whose last axis is the task axis."""
    shape = tuple(tensor.shape)
    if mode == "last":
        return [ops.reshape(tensor, (-1, shape[-1]))]
    if mode == "tucker":
        return [ops.reshape(ops.moveaxis(tensor, n, 0), (shape[n], -1)) for n in range(len(shape))]
    return [ops.reshape(tensor, (math.prod(shape[:n]), -1)) for n in range(1, len(shape))]


def nuclear_norm(matrix):
    """Sum of the singular values of a matrix."""
    return ops.sum(ops.svd(matrix, compute_uv=False))
