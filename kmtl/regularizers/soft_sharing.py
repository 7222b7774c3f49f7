"""Soft sharing: task towers' weights pulled towards each other by their squared L2 spread."""

from __future__ import annotations

import keras
from keras import ops

from kmtl.regularizers.base import Penalty, stack_weights


@keras.saving.register_keras_serializable(package="kmtl")
class SoftSharingL2(Penalty):
    """Squared L2 distance of corresponding weights of task towers to their mean, summed over towers.

    With weights `W_1..W_T` of the same shape, the penalty is `sum_t ||W_t - mean_s W_s||_F^2`. It pulls the
    towers together without forcing them to be equal; with T = 2 it equals `0.5 * ||W_1 - W_2||^2`.

    Args:
        layers: list of str. Names of the T layers, one per task.
        strength: float. Multiplier of the penalty (>= 0).
        weight: str. Attribute of each layer to read (default `"kernel"`).
        **kwargs: passed to `keras.layers.Layer`.

    Example:

    >>> p = SoftSharingL2(["tower_a_1", "tower_b_1"], strength=1.0)
    >>> float(p.compute([keras.ops.ones((2, 2)), keras.ops.zeros((2, 2))]))
    2.0

    Reference:
        Duong, Cohn, Bird & Cook (2015). Low Resource Dependency Parsing: Cross-lingual Parameter Sharing in a
        Neural Network Parser. ACL.
    """

    def compute(self, variables):
        stacked = stack_weights(variables)
        return ops.sum(ops.square(stacked - ops.mean(stacked, axis=0, keepdims=True)))
