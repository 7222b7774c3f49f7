"""GLS: the geometric loss strategy, the geometric mean of the task losses."""

from __future__ import annotations

import keras
from keras import ops

from kmtl.weighting.base import Weighting, register

# Floor for losses that are divided by or put in a log, so a zero loss (e.g. a batch without labels) stays finite.
_EPSILON = 1e-12


@register("gls")
@keras.saving.register_keras_serializable(package="kmtl")
class GeometricMean(Weighting):
    """Geometric loss strategy (GLS): minimises the geometric mean of the task losses.

    `total = (L_1 * ... * L_K) ** (1 / K)`, computed as `exp(mean(log L_t))` with every loss floored at 1e-12 so a
    zero loss keeps the total finite (its task then gets no gradient). The logged weight of task t is the gradient
    of the total with respect to its loss, `total / (K * L_t)` (0 for a floored loss): tasks with small losses get
    large weights, which makes the total invariant to each task's loss scale. The strategy has no state.

    Example:

    >>> from kmtl import Task
    >>> gls = GeometricMean()
    >>> gls.configure([Task("a", "regression"), Task("b", "binary")])
    >>> total, weights = gls.combine(ops.convert_to_tensor([4.0, 1.0]))
    >>> round(float(total), 5), [round(float(w), 5) for w in weights]
    (2.0, [0.25, 1.0])

    Reference:
        Chennupati, Sistu, Yogamani & Rawashdeh (2019). MultiNet++: Multi-Stream Feature Aggregation and Geometric
        Loss Strategy for Multi-Task Learning. CVPR Workshops.
    """

    def combine(self, losses, training=True):
        floored = ops.maximum(losses, _EPSILON)
        total = ops.exp(ops.mean(ops.log(floored)))
        gradient = ops.stop_gradient(total) / (self.num_tasks * ops.stop_gradient(floored))
        weights = ops.where(losses > _EPSILON, gradient, ops.zeros_like(gradient))
        return total, ops.stop_gradient(weights)
