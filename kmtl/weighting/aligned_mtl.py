"""Aligned-MTL: the task gradients' principal components aligned to one scale, from the eigendecomposition of the
Gram matrix."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from kmtl._checks import check_choice
from kmtl.weighting._gradients import combine_rows, gram_matrix
from kmtl.weighting._solvers import kept_spectrum, rank_cutoff
from kmtl.weighting.base import GradientWeighting, register

SCALE_MODES = ("min", "median", "rmse")


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
    values, vectors, kept = kept_spectrum(gram, rank_cutoff(num_tasks) if cutoff is None else cutoff)
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


@register("aligned_mtl")
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
        self.scale_mode = check_choice("scale_mode", scale_mode, SCALE_MODES)

    def aggregate(self, grads, losses):
        cutoff = rank_cutoff(self.num_tasks, grads.dtype)
        alpha = ops.cast(aligned_weights(gram_matrix(grads), self.scale_mode, cutoff)[0], grads.dtype)
        return combine_rows(alpha, grads), alpha

    def get_config(self):
        return {**super().get_config(), "scale_mode": self.scale_mode}
