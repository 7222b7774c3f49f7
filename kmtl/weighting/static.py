"""Fixed loss weights: equal (the plain sum of task losses) and static (each task's `loss_weight`)."""

from __future__ import annotations

import keras
from keras import ops

from kmtl.weighting.base import Weighting, register


@register("equal")
@keras.saving.register_keras_serializable(package="kmtl")
class Equal(Weighting):
    """Sums the task losses, each with weight 1 (what Keras does for several outputs without `loss_weights`).

    Example:

    >>> model.compile(optimizer="adam", weighting="equal")  # doctest: +SKIP
    """

    def combine(self, losses, training=True):
        return ops.sum(losses), ops.ones_like(losses)


@register("static")
@keras.saving.register_keras_serializable(package="kmtl")
class Static(Weighting):
    """Weights each task's loss by its fixed `Task.loss_weight`.

    Example:

    >>> tasks = [Task("age", "regression", loss_weight=0.1), Task("smiling", "binary")]  # doctest: +SKIP
    >>> model.compile(optimizer="adam", weighting="static")  # doctest: +SKIP
    """

    def combine(self, losses, training=True):
        weights = ops.convert_to_tensor(self.loss_weights, dtype=losses.dtype)
        return ops.sum(weights * losses), weights
