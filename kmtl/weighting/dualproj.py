"""DualProj: the averaged gradient projected onto the dual cone of the task gradients."""

from __future__ import annotations

import keras
from keras import ops

from kmtl.weighting._dual_cone import DualConeWeighting, dual_cone_weights, preference
from kmtl.weighting._gradients import combine_rows, gram_matrix
from kmtl.weighting.base import register


@register("dualproj")
@keras.saving.register_keras_serializable(package="kmtl")
class DualProj(DualConeWeighting):
    """The averaged gradient projected onto the dual cone of the task gradients.

    The combination `sum_i p_i g_i` (by default the mean, `p_i = 1/T`, as in the paper) is projected onto
    `{x : G x >= 0}`, so the direction conflicts with no task; with no conflict it is the mean gradient. This is the
    projection step of Gradient Episodic Memory applied to multi-task learning. Solved on the float64 Gram matrix like
    `UPGrad`; the logged weights are the coefficients of each task's gradient in the direction.

    Args:
        pref_vector: list of floats or None. Weights of the combination that is projected; None means `1/T` each.
        iterations: int. Iterations of the fixed-length QP solver.
        ridge: float. Proximal ridge of the QP, relative to squared gradient norms (see `dual_cone_weights`).
        rep_grad: bool. Aggregate gradients of the shared representation instead of the shared parameters.
        **kwargs: passed to `GradientWeighting`.

    Example:

    >>> from kmtl import Task
    >>> strategy = DualProj()
    >>> strategy.configure([Task("a", "binary"), Task("b", "binary")])
    >>> direction, weights = strategy.aggregate(ops.convert_to_tensor([[1.0, 0.0], [-3.0, 1.0]]), None)
    >>> [round(float(v), 4) for v in direction], [round(float(v), 4) for v in weights]  # the mean is (-1, 0.5)
    ([0.0, 0.5], [1.5, 0.5])

    Reference:
        Quinton & Rey (2024). Jacobian Descent for Multi-Objective Optimization. arXiv:2406.16232.
        Lopez-Paz & Ranzato (2017). Gradient Episodic Memory for Continual Learning. NeurIPS.
    """

    def aggregate(self, grads, losses):
        gram = gram_matrix(grads)
        pref = preference(self.pref_vector, self.num_tasks, gram.dtype)
        weights = ops.cast(dual_cone_weights(gram, pref[None, :], self.iterations, self.ridge)[0], grads.dtype)
        return combine_rows(weights, grads), weights
