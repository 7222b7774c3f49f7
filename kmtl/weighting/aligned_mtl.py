"""Aligned-MTL and ConFIG: directions built from the eigendecomposition of the (cosine) Gram matrix."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from kmtl.weighting.base import GradientWeighting
from kmtl.weighting.min_norm import combine_rows, gram_matrix

SCALE_MODES = ("min", "median", "rmse")


def _rank_cutoff(num_tasks: int, dtype="float32") -> float:
    """Eigenvalues below this fraction of the largest count as zero: `T * eps` of the gradients' dtype (as the
    paper's code does), since the Gram matrix of float32 gradients resolves nothing finer."""
    return num_tasks * float(np.finfo(keras.backend.standardize_dtype(dtype)).eps)


def _kept_spectrum(matrix, cutoff):
    """`eigh` of a symmetric PSD matrix: ascending eigenvalues, eigenvectors (columns), and a mask of those above
    `cutoff * max` (the numerical rank)."""
    values, vectors = ops.eigh(matrix)
    return values, vectors, values > cutoff * ops.max(values)


def aligned_weights(gram, scale_mode: str = "min", cutoff: float | None = None):
    """Aligned-MTL's task coefficients from the Gram matrix `K = G G^T = V diag(lambda) V^T`.

    With `G = V S W^T` (rows of `G` are the task gradients, `S = diag(lambda)^1/2`), the aligned gradients are the rows
    of `B G` with `B = sigma V S^-1 V^T` (symmetric): `B G = sigma V W^T`, whose non-zero singular values all equal
    `sigma` -- a gradient system with condition number one (the paper writes it with gradients as columns,
    `sigma U V^T`). When the `T` gradients are linearly independent the aligned gradients are orthogonal, each of norm
    `sigma`. Eigenvalues below `cutoff * max(lambda)` count as zero (rank deficiency): their components are dropped
    and `sigma` is taken over the rest. `sigma` is `sqrt` of the smallest kept eigenvalue (`"min"`, the paper's
    choice), of the median one (`"median"`, the lower median as in the paper's code), or of their mean (`"rmse"`).
    The direction, the sum of the aligned gradients, is `alpha^T G` with `alpha = B 1`.

    Args:
        gram: float tensor `(T, T)`.
        scale_mode: str. `"min"`, `"median"` or `"rmse"`.
        cutoff: float or None. Relative eigenvalue cutoff; None means `T * eps(float32)`, the paper code's choice.

    Returns:
        Tuple `(alpha, B)`: `(T,)` coefficients of the sum of the aligned gradients, and the `(T, T)` matrix `B`.
    """
    num_tasks = gram.shape[-1]
    values, vectors, kept = _kept_spectrum(gram, _rank_cutoff(num_tasks) if cutoff is None else cutoff)
    mask = ops.cast(kept, gram.dtype)
    rank = ops.sum(ops.cast(kept, "int32"))
    safe = ops.where(kept, values, 1.0)
    if scale_mode == "min":
        scale = ops.min(ops.where(kept, values, np.inf))
    elif scale_mode == "median":
        # Kept eigenvalues are the `rank` largest; ascending, the lower median is the ((rank - 1) // 2)-th of them.
        scale = ops.take(values, num_tasks - rank + (rank - 1) // 2)
    else:
        scale = ops.sum(values * mask) / ops.maximum(ops.cast(rank, gram.dtype), 1.0)
    scale = ops.where(rank > 0, ops.sqrt(ops.maximum(scale, 0.0)), 0.0)
    inv_sqrt = mask / ops.sqrt(safe)
    alignment = scale * ops.matmul(vectors * inv_sqrt[None, :], ops.transpose(vectors))
    return ops.sum(alignment, axis=1), alignment


@keras.saving.register_keras_serializable(package="kmtl")
class AlignedMTL(GradientWeighting):
    """Aligned-MTL: the task gradients' principal components aligned to one scale, then summed.

    The gradient matrix `G` (rows `g_i`) is replaced by the closest gradient system with condition number one,
    `sigma U V^T` for `G = U S V^T`, scaled by the smallest singular value `sigma` (Senushkin et al. 2023): the
    aligned task gradients are orthogonal with equal norms `sigma` when the gradients are linearly independent (in
    general, all their non-zero singular values equal `sigma`). The direction is their sum (the paper's pre-defined
    task weights, all 1, as in the paper's code; the same scale as kmtl's "equal" when the gradients are already
    orthogonal with equal norms). Everything is computed from the eigendecomposition of the `T x T` Gram matrix (see
    `aligned_weights`); `keras.ops.eigh` compiles under XLA. The logged weights are the coefficients of each task's
    gradient in the direction.

    Args:
        scale_mode: str. `"min"` (the paper), `"median"` or `"rmse"` (options of the paper's code): the singular
            value the aligned system is scaled to.
        rep_grad: bool. Aggregate gradients of the shared representation instead of the shared parameters
            (Aligned-MTL-UB in the paper).
        **kwargs: passed to `GradientWeighting`.

    Example:

    >>> from kmtl import Task
    >>> strategy = AlignedMTL()
    >>> strategy.configure([Task("a", "binary"), Task("b", "binary")])
    >>> direction, weights = strategy.aggregate(ops.convert_to_tensor([[1.0, 0.0], [0.6, 0.8]]), None)
    >>> [round(float(v), 4) for v in weights], [round(float(v), 4) for v in direction]
    ([0.5, 0.5], [0.8, 0.4])

    Reference:
        Senushkin, Patakin, Kuznetsov & Konushin (2023). Independent Component Alignment for Multi-Task Learning.
        CVPR.
    """

    def __init__(self, scale_mode: str = "min", rep_grad: bool = False, **kwargs):
        super().__init__(rep_grad=rep_grad, **kwargs)
        if scale_mode not in SCALE_MODES:
            raise ValueError(
                f"Invalid value for `scale_mode`. Expected one of {list(SCALE_MODES)}. "
                f"Received: scale_mode={scale_mode!r}"
            )
        self.scale_mode = scale_mode

    def aggregate(self, grads, losses):
        cutoff = _rank_cutoff(self.num_tasks, grads.dtype)
        alpha = ops.cast(aligned_weights(gram_matrix(grads), self.scale_mode, cutoff)[0], grads.dtype)
        return combine_rows(alpha, grads), alpha

    def get_config(self):
        return {**super().get_config(), "scale_mode": self.scale_mode}


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
    cutoff = _rank_cutoff(gram.shape[-1]) if cutoff is None else cutoff
    values, vectors, kept = _kept_spectrum(cosines, cutoff)
    inverse = ops.where(kept, 1.0 / ops.where(kept, values, 1.0), 0.0)
    solution = ops.matmul(vectors, inverse * ops.sum(vectors, axis=0))  # C^+ 1
    beta = inv_norms * solution  # x = G^T beta
    k_beta = ops.matmul(gram, beta)
    squared_norm = ops.sum(beta * k_beta)
    length = ops.sum(k_beta)  # sum_i g_i . x
    factor = ops.where(squared_norm > 0, length / ops.where(squared_norm > 0, squared_norm, 1.0), 0.0)
    return factor * beta


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
        cutoff = _rank_cutoff(self.num_tasks, grads.dtype)
        weights = ops.cast(config_weights(gram_matrix(grads), cutoff), grads.dtype)
        return combine_rows(weights, grads), weights


NAMES = {"aligned_mtl": AlignedMTL, "config": ConFIG}
