"""MGDA (and MGDA-UB): the minimum-norm point of the convex hull of the task gradients."""

from __future__ import annotations

import keras
from keras import ops

from kmtl._checks import check_choice
from kmtl.weighting._gradients import FLOAT, TINY, combine_rows, gram_matrix
from kmtl.weighting._solvers import check_max_exact_tasks, min_norm_weights
from kmtl.weighting.base import GradientWeighting, register

_NORMALIZATIONS = ("none", "l2", "loss", "loss+")


@register("mgda")
@keras.saving.register_keras_serializable(package="kmtl")
class MGDA(GradientWeighting):
    """Multiple-gradient descent: moves along the minimum-norm point of the convex hull of the task gradients.

    The convex weights `w` minimise `||sum_t w_t ĝ_t||²` over the probability simplex, solved exactly on the Gram
    matrix (see `kmtl.weighting._solvers`), where `ĝ_t = g_t / n_t` are the gradients under the paper's
    `normalization`: `"none"` (`n_t = 1`), `"l2"` (`n_t = ||g_t||`), `"loss"` (`n_t = L_t`) or `"loss+"`
    (`n_t = L_t ||g_t||`). As in the paper's code, the weights then multiply the *unnormalised* task gradients:
    direction `= sum_t w_t g_t`, with `sum_t w_t = 1` (a convex combination, not kmtl's sum convention); with
    `"none"` this is exactly the min-norm point. The logged weights are `w`.

    MGDA-UB (the paper's upper-bound variant) is `MGDA(rep_grad=True)` (also `mgda_ub()`): the weights are found
    on the gradients of the shared representation, which are much cheaper to compute.

    Args:
        normalization: str. One of `"none"`, `"l2"`, `"loss"`, `"loss+"`.
        max_exact_tasks: int in [0, 16]. Up to this many tasks the min-norm problem is solved exactly by trying all
            `2^T - 1` supports at once; with more tasks, 500 accelerated projected-gradient steps find the support
            and one linear solve on it polishes the weights (exact when that support is right).
        rep_grad: bool. Aggregate gradients of the shared representation (MGDA-UB).
        **kwargs: passed to `GradientWeighting`.

    Example:

    >>> import kmtl, numpy as np
    >>> mgda = MGDA()
    >>> mgda.configure([kmtl.Task("a", "regression"), kmtl.Task("b", "regression")])
    >>> direction, weights = mgda.aggregate(np.array([[2.0, 0.0], [0.0, 1.0]], "float32"), np.ones(2, "float32"))
    >>> [round(float(v), 6) for v in weights], [round(float(v), 6) for v in direction]
    ([0.2, 0.8], [0.4, 0.8])
    >>> model.compile(optimizer="adam", weighting=MGDA(normalization="loss+"))  # doctest: +SKIP

    Reference:
        Sener & Koltun (2018). Multi-Task Learning as Multi-Objective Optimization. NeurIPS.
    """

    def __init__(self, normalization="none", max_exact_tasks=10, rep_grad=False, **kwargs):
        super().__init__(rep_grad=rep_grad, **kwargs)
        self.normalization = check_choice("normalization", normalization, _NORMALIZATIONS)
        self.max_exact_tasks = check_max_exact_tasks(max_exact_tasks)

    def aggregate(self, grads, losses):
        gram = gram_matrix(grads)
        scale = self._normalizers(gram, ops.cast(losses, FLOAT))
        weights = min_norm_weights(gram / (scale[:, None] * scale[None, :]), self.max_exact_tasks)
        weights = ops.cast(weights, "float32")
        return combine_rows(weights, grads), weights

    def _normalizers(self, gram, losses):
        norms = ops.sqrt(ops.maximum(ops.diagonal(gram), 0.0))
        scale = {"none": ops.ones_like(losses), "l2": norms, "loss": losses, "loss+": losses * norms}
        value = scale[self.normalization]
        return ops.where(value > TINY, value, 1.0)

    def get_config(self):
        return {**super().get_config(), "normalization": self.normalization, "max_exact_tasks": self.max_exact_tasks}


@register("mgda_ub")
def mgda_ub(**kwargs) -> MGDA:
    """MGDA-UB: `MGDA` on the gradients of the shared representation (Sener & Koltun 2018), `rep_grad=True`."""
    return MGDA(rep_grad=True, **kwargs)
