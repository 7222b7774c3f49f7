"""CAGrad: conflict-averse gradient descent, and the solver of its dual on the Gram matrix."""

from __future__ import annotations

import keras
from keras import ops

from kmtl._checks import is_number
from kmtl.weighting._gradients import FLOAT, TINY, combine_rows, gram_matrix
from kmtl.weighting._solvers import (
    accelerated_descent,
    best_feasible,
    check_max_exact_tasks,
    min_norm_weights,
    polish_masks,
    quadratic_form,
    subset_masks,
    support_solve,
)
from kmtl.weighting.base import GradientWeighting, register


@register("cagrad")
@keras.saving.register_keras_serializable(package="kmtl")
class CAGrad(GradientWeighting):
    """Conflict-averse gradient descent: the best worst-task improvement within a ball around the mean gradient.

    With the mean gradient `g_0`, `φ = c² ||g_0||²` and dual weights `w` minimising `g_wᵀ g_0 + sqrt(φ) ||g_w||`
    over the simplex (solved exactly on the Gram matrix, see `cagrad_weights`), the direction is
    `(g_0 + sqrt(φ) / ||g_w|| g_w) / s`, with `s = 1` (`rescale=0`), `1 + c²` (`rescale=1`) or `1 + c`
    (`rescale=2`). The scale is the paper's: with `c = 0` the direction is the MEAN gradient. The logged weights
    are the coefficients `(1 / T + sqrt(φ) w_t / ||g_w||) / s`. Where `g_w` vanishes (below 1e-6 of the largest
    gradient norm: the origin is in the convex hull of the gradients), the direction is `g_0 / s`.

    Args:
        c: float >= 0. Radius of the ball, relative to `||g_0||`.
        rescale: int, 0, 1 or 2. Divides the direction by 1, `1 + c²` or `1 + c`.
        max_exact_tasks: int in [0, 16]. Up to this many tasks the dual is solved exactly (all supports); above,
            accelerated projected gradient then a polish on the support found.
        rep_grad: bool. Aggregate gradients of the shared representation.
        **kwargs: passed to `GradientWeighting`.

    Example:

    >>> model.compile(optimizer="adam", weighting=CAGrad(c=0.4))  # doctest: +SKIP

    Reference:
        Liu, Liu, Jin, Stone & Liu (2021). Conflict-Averse Gradient Descent for Multi-task Learning. NeurIPS.
    """

    def __init__(self, c=0.4, rescale=1, max_exact_tasks=10, rep_grad=False, **kwargs):
        super().__init__(rep_grad=rep_grad, **kwargs)
        if not is_number(c) or c < 0:
            raise ValueError(f"Invalid value for `c`. Expected a float >= 0. Received: c={c!r}")
        if rescale not in (0, 1, 2) or isinstance(rescale, bool):
            raise ValueError(f"Invalid value for `rescale`. Expected 0, 1 or 2. Received: rescale={rescale!r}")
        self.c = float(c)
        self.rescale = int(rescale)
        self.max_exact_tasks = check_max_exact_tasks(max_exact_tasks)

    def aggregate(self, grads, losses):
        t = grads.shape[0]
        gram = gram_matrix(grads)
        radius = self.c * ops.sqrt(ops.maximum(ops.mean(gram), 0.0))
        w = cagrad_weights(gram, radius, self.max_exact_tasks)
        gw_norm = ops.sqrt(ops.maximum(ops.sum(ops.matmul(gram, w) * w), 0.0))
        # Where g_w vanishes (the origin is in the hull) its direction is rounding noise: no step along it.
        vanishes = gw_norm <= 1e-6 * ops.sqrt(ops.max(ops.diagonal(gram)))
        step = ops.where(vanishes, 0.0, radius / ops.where(vanishes, 1.0, gw_norm))
        scale = (1.0, 1.0 + self.c**2, 1.0 + self.c)[self.rescale]
        weights = (1.0 / t + step * w) / scale
        weights = ops.cast(weights, "float32")
        return combine_rows(weights, grads), weights

    def get_config(self):
        return {
            **super().get_config(),
            "c": self.c,
            "rescale": self.rescale,
            "max_exact_tasks": self.max_exact_tasks,
        }


def _cagrad_support_candidates(gram, b, radius, masks):
    """Stationary points of `bᵀw + r sqrt(wᵀMw)` on the supports in `masks` (closed form, see `cagrad_weights`)."""
    xy = support_solve(gram, masks, ops.stack([ops.ones_like(b), b], axis=1))
    x, y = xy[..., 0], xy[..., 1]
    a, beta, gamma = ops.sum(x, axis=1), ops.sum(y, axis=1), ops.sum(y * b, axis=1)
    root = ops.sqrt(ops.maximum(beta * beta - a * gamma + a * radius * radius, 0.0))
    lam = (beta + root) / a
    return (lam[:, None] * x - y) / root[:, None]


def cagrad_weights(gram, radius, max_exact_tasks=10):
    """The dual weights of CAGrad: `w` minimising `F(w) = g_wᵀ g_0 + r ||g_w||` over the simplex.

    With `b = M 1 / T` (so `g_wᵀ g_0 = bᵀ w`), stationarity on a support S gives `w_S ∝ λ x - y` with
    `x = M_SS⁻¹ 1`, `y = M_SS⁻¹ b_S` and λ the root of `(λx - y)ᵀ M (λx - y) = r²` that makes the weights sum
    to a positive number. Candidates on all supports (or, above `max_exact_tasks`, on the support found by
    FISTA) plus the uniform weights are compared on F.

    Args:
        gram: float64 tensor `(T, T)`.
        radius: float64 scalar `r = c ||g_0||`.
        max_exact_tasks: int.

    Returns:
        float64 tensor `(T,)`.
    """
    t = gram.shape[0]
    b = ops.mean(gram, axis=1)

    def objective(w):
        return ops.sum(w * b, axis=-1) + radius * ops.sqrt(ops.maximum(quadratic_form(w, gram), 0.0))

    uniform = ops.full((1, t), 1.0 / t, dtype=FLOAT)
    if t <= max_exact_tasks:
        candidates = _cagrad_support_candidates(gram, b, radius, subset_masks(t))
    else:
        # ||g_w|| >= the min-norm distance d on the simplex, so r M / d bounds the Hessian of r ||g_w||.
        floor = ops.sqrt(ops.maximum(quadratic_form(min_norm_weights(gram, 0), gram), 0.0))
        floor = ops.maximum(floor, 1e-3 * ops.sqrt(ops.max(ops.diagonal(gram)))) + TINY
        lipschitz = radius * ops.sqrt(ops.sum(gram * gram)) / floor + TINY

        def gradient(w):
            mw = ops.matmul(gram, w)
            return b + radius * mw / ops.maximum(ops.sqrt(ops.maximum(ops.sum(w * mw), 0.0)), floor)

        start = accelerated_descent(gradient, lipschitz, t)
        polished = _cagrad_support_candidates(gram, b, radius, polish_masks(start))
        candidates = ops.concatenate([start[None], polished], axis=0)
    return best_feasible(ops.concatenate([candidates, uniform], axis=0), objective, gram)
