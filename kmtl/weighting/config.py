"""ConFIG: conflict-free inverse gradients, the direction with the same cosine to every task gradient."""

from __future__ import annotations

import keras
from keras import ops

from kmtl.weighting._gradients import combine_rows, gram_matrix
from kmtl.weighting._solvers import kept_spectrum, rank_cutoff
from kmtl.weighting.base import GradientWeighting, register


def config_weights(gram, cutoff: float | None = None):
    """ConFIG's coefficients from the Gram matrix.

    With unit gradients `u_i = g_i / ||g_i||` and their cosine matrix `C`, the minimum-norm solution of
    `u_i . x = 1` for all `i` is `x = sum_i c_i u_i` with `c = C^+ 1` (pseudo-inverse through `eigh`, eigenvalues
    below `cutoff * max` dropped). The direction is `(sum_i g_i . x) / ||x||^2 * x`: the unit vector `x / ||x||`
    scaled by the sum of the gradients' projections on it. Zero gradients are left out (weight 0); if `x` vanishes
    (e.g. two opposite gradients) the direction is zero.

    Args:
        gram: float tensor `(T, T)`.
        cutoff: float or None. Relative eigenvalue cutoff of the pseudo-inverse; None means `T * eps(float32)`.

    Returns:
        Float tensor `(T,)`: the coefficient of each `g_i` in the direction.
    """
    diag = ops.diagonal(gram)
    valid = diag > 1e-20 * ops.max(diag)
    inv_norms = ops.where(valid, 1.0 / ops.sqrt(ops.where(valid, diag, 1.0)), 0.0)
    cosines = gram * inv_norms[:, None] * inv_norms[None, :]
    cutoff = rank_cutoff(gram.shape[-1]) if cutoff is None else cutoff
    values, vectors, kept = kept_spectrum(cosines, cutoff)
    inverse = ops.where(kept, 1.0 / ops.where(kept, values, 1.0), 0.0)
    solution = ops.matmul(vectors, inverse * ops.sum(vectors, axis=0))  # C^+ 1
    beta = inv_norms * solution  # x = G^T beta
    k_beta = ops.matmul(gram, beta)
    squared_norm = ops.sum(beta * k_beta)
    length = ops.sum(k_beta)  # sum_i g_i . x
    factor = ops.where(squared_norm > 0, length / ops.where(squared_norm > 0, squared_norm, 1.0), 0.0)
    return factor * beta


@register("config")
@keras.saving.register_keras_serializable(package="kmtl")
class ConFIG(GradientWeighting):
    """ConFIG: the direction with the same cosine similarity to every task gradient (conflict-free inverse gradients).

    `g_u` is the unit vector along `pinv([u_1; ...; u_T]) 1`, where `u_i = g_i / ||g_i||`: when the gradients are
    linearly independent it makes the same, positive, angle with each of them. The direction is
    `(sum_i g_i . g_u) g_u` (Liu et al. 2024, Eq. 2, with the paper's default equal weights and projection length),
    so its length is the sum of the task gradients' projections on it; if all gradients are parallel it is their sum,
    the scale of kmtl's "equal". Computed from the `T x T` Gram matrix (see `config_weights`); the logged weights
    are the coefficients of each task's gradient in the direction. (The paper's momentum variant, M-ConFIG, is not
    included.)

    Args:
        rep_grad: bool. Aggregate gradients of the shared representation instead of the shared parameters.
        **kwargs: passed to `GradientWeighting`.

    Example:

    >>> from kmtl import Task
    >>> strategy = ConFIG()
    >>> strategy.configure([Task("a", "binary"), Task("b", "binary")])
    >>> direction, weights = strategy.aggregate(ops.convert_to_tensor([[2.0, 0.0], [0.0, 1.0]]), None)
    >>> [round(float(v), 4) for v in direction]  # unit (1, 1) / sqrt(2), length (2 + 1) / sqrt(2)
    [1.5, 1.5]

    Reference:
        Liu, Chu & Thuerey (2024). ConFIG: Towards Conflict-free Training of Physics Informed Neural Networks.
        arXiv:2408.11104 (ICLR 2025).
    """

    def aggregate(self, grads, losses):
        cutoff = rank_cutoff(self.num_tasks, grads.dtype)
        weights = ops.cast(config_weights(gram_matrix(grads), cutoff), grads.dtype)
        return combine_rows(weights, grads), weights
