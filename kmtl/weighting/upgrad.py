"""UPGrad: unconflicting projection of gradients, each task's gradient projected onto the dual cone, then averaged."""

from __future__ import annotations

import keras
from keras import ops

from kmtl.weighting._dual_cone import DualConeWeighting, dual_cone_weights, preference
from kmtl.weighting._gradients import combine_rows, gram_matrix
from kmtl.weighting.base import register


@register("upgrad")
@keras.saving.register_keras_serializable(package="kmtl")
class UPGrad(DualConeWeighting):
    """Unconflicting projection of gradients: each task's gradient projected onto the dual cone, then averaged.

    Every `g_i` is projected onto `{x : G x >= 0}` (the directions that conflict with no task) and the projections are
    combined with `pref_vector` (by default the mean, as in the paper; kmtl's "equal" weighting is the sum, so UPGrad
    steps are about `1/T` as long). Gradients that conflict with no other pass unchanged, so with no conflict at all
    UPGrad is the mean gradient. The direction has a non-negative inner product with every task's gradient (up to
    the solver's tiny ridge). The projections are solved by `dual_cone_weights` on the `T x T` Gram matrix, formed in
    float64 like MGDA's (GPUs never use TF32 for it); the logged weights are
    the coefficients of each task's gradient in the direction (the `pref_vector`-weighted sum of the projections'
    weights).

    Args:
        pref_vector: list of floats or None. Weights of the projected gradients, one per task; None means `1/T` each.
        iterations: int. Iterations of the fixed-length QP solver.
        ridge: float. Proximal ridge of the QP, relative to squared gradient norms (see `dual_cone_weights`).
        rep_grad: bool. Aggregate gradients of the shared representation instead of the shared parameters.
        **kwargs: passed to `GradientWeighting`.

    Example:

    >>> from kmtl import Task
    >>> strategy = UPGrad()
    >>> strategy.configure([Task("a", "binary"), Task("b", "binary")])
    >>> direction, weights = strategy.aggregate(ops.convert_to_tensor([[1.0, 0.0], [-1.0, 1.0]]), None)
    >>> [round(float(v), 4) for v in direction], [round(float(v), 4) for v in weights]
    ([0.25, 0.75], [1.0, 0.75])

    Reference:
        Quinton & Rey (2024). Jacobian Descent for Multi-Objective Optimization. arXiv:2406.16232.
    """

    def aggregate(self, grads, losses):
        gram = gram_matrix(grads)
        pref = preference(self.pref_vector, self.num_tasks, gram.dtype)
        weights = ops.sum(dual_cone_weights(gram, ops.diag(pref), self.iterations, self.ridge), axis=0)
        weights = ops.cast(weights, grads.dtype)
        return combine_rows(weights, grads), weights
