"""IMTL: impartial multi-task learning, its gradient balance (IMTL-G, gradient-level) and its loss balance (IMTL-L,
loss-level)."""

from __future__ import annotations

import keras
from keras import ops

from kmtl.weighting._gradients import TINY, combine_rows, gram_matrix
from kmtl.weighting.base import GradientWeighting, Weighting, register


@register("imtl_g")
@keras.saving.register_keras_serializable(package="kmtl")
class IMTLG(GradientWeighting):
    """IMTL-G: the combination of task gradients whose projections on every task's unit gradient are equal.

    With `u_t = g_t / ||g_t||`, `D = [g_1 - g_t]_{t>1}` and `U = [u_1 - u_t]_{t>1}`, the paper's closed form is
    `α_{2:T} = g_1 Uᵀ (D Uᵀ)⁻¹`, `α_1 = 1 - sum α_{2:T}`; the direction `g = sum_t α_t g_t` (α sums to 1, the
    paper's scale) satisfies `g · u_1 = g · u_t` for every t. Computed on the float64 Gram matrix; the logged
    weights are α. A tiny ridge keeps `D Uᵀ` invertible when gradients repeat.

    Args:
        rep_grad: bool. Aggregate gradients of the shared representation (the paper's choice).
        **kwargs: passed to `GradientWeighting`.

    Example:

    >>> model.compile(optimizer="adam", weighting=IMTLG())  # doctest: +SKIP

    Reference:
        Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang (2021). Towards Impartial Multi-task Learning. ICLR.
    """

    def aggregate(self, grads, losses):
        t = grads.shape[0]
        if t == 1:
            return grads[0], ops.ones_like(losses)
        gram = gram_matrix(grads)
        norms = ops.sqrt(ops.maximum(ops.diagonal(gram), TINY))
        along = gram / norms[None, :]  # along[i, j] = g_i · u_j
        g1_ut = along[0, 0] - along[0, 1:]  # (g_1 · (u_1 - u_t))_{t>1}
        d_ut = g1_ut[None, :] - along[1:, :1] + along[1:, 1:]  # [(g_1 - g_s) · (u_1 - u_t)]_{s,t>1}
        ridge = (1e-12 * ops.max(ops.abs(d_ut)) + TINY) * ops.eye(t - 1, dtype=gram.dtype)
        rest = ops.solve(ops.transpose(d_ut) + ridge, g1_ut[:, None])[:, 0]
        weights = ops.cast(ops.concatenate([1.0 - ops.sum(rest, keepdims=True), rest]), "float32")
        return combine_rows(weights, grads), weights


@register("imtl_l")
@keras.saving.register_keras_serializable(package="kmtl")
class IMTLL(Weighting):
    """IMTL-L: loss balance with one learned log-scale `s_t` per task.

    `total = sum_t(exp(s_t) * L_t - s_t)`. The network's gradient sees each loss scaled by `exp(s_t)` (the logged
    weight); `s_t` is trained by the model's optimizer, and its gradient `exp(s_t) * L_t - 1` vanishes where
    `exp(s_t) * L_t = 1`, so at the optimum every scaled loss equals 1. The trainable variable `log_scale` starts at
    0 and is saved with the model. Only the loss-balance half of IMTL; its gradient balance (IMTL-G) is a
    gradient-level strategy.

    Example:

    >>> from kmtl import Task
    >>> imtl = IMTLL()
    >>> imtl.configure([Task("a", "regression"), Task("b", "binary")])
    >>> total, weights = imtl.combine(ops.convert_to_tensor([2.0, 0.5]))
    >>> float(total), [float(w) for w in weights]
    (2.5, [1.0, 1.0])

    Reference:
        Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang (2021). Towards Impartial Multi-task Learning. ICLR.
    """

    def create_state(self, num_tasks):
        self.log_scale = self.add_weight(shape=(num_tasks,), initializer="zeros", name="log_scale", trainable=True)

    def combine(self, losses, training=True):
        s = ops.cast(self.log_scale, losses.dtype)
        scale = ops.exp(s)
        return ops.sum(scale * losses - s), ops.stop_gradient(scale)
