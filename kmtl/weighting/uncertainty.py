"""Uncertainty weighting: one learned homoscedastic log-variance per task."""

from __future__ import annotations

import keras
from keras import ops

from kmtl.weighting.base import Weighting, register


@register("uncertainty")
@keras.saving.register_keras_serializable(package="kmtl")
class Uncertainty(Weighting):
    """Homoscedastic-uncertainty weighting with one learned log-variance per task.

    kmtl's convention, with `s_t = log(sigma_t^2)` learned for each task t (initialised to `initial_log_variance`):

    - regression tasks contribute `0.5 * exp(-s_t) * L_t + 0.5 * s_t`;
    - classification tasks (binary, multiclass, multilabel) contribute `exp(-s_t) * L_t + 0.5 * s_t`.

    Parametrising by `s` keeps the weights positive and the optimisation stable. For a fixed loss L the optimum is
    `s* = log(L)` for regression and `s* = log(2 L)` for classification. The logged weight of a task is the factor on
    its loss, `0.5 * exp(-s_t)` or `exp(-s_t)`. The variable `log_variance` is saved with the model.

    Args:
        initial_log_variance: float. Initial value of every `s_t`.

    Example:

    >>> model.compile(optimizer="adam", weighting="uncertainty")  # doctest: +SKIP
    >>> model.weighting.log_variance  # doctest: +SKIP

    Reference:
        Kendall, Gal & Cipolla (2018). Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry
        and Semantics. CVPR.
    """

    def __init__(self, initial_log_variance=0.0, **kwargs):
        super().__init__(**kwargs)
        self.initial_log_variance = float(initial_log_variance)

    def create_state(self, num_tasks):
        self.log_variance = self.add_weight(
            shape=(num_tasks,),
            initializer=keras.initializers.Constant(self.initial_log_variance),
            name="log_variance",
            trainable=True,
        )

    def combine(self, losses, training=True):
        scale = ops.convert_to_tensor([0.5 if kind == "regression" else 1.0 for kind in self.task_kinds], "float32")
        s = ops.cast(self.log_variance, losses.dtype)
        weights = scale * ops.exp(-s)
        return ops.sum(weights * losses + 0.5 * s), weights

    def get_config(self):
        return {**super().get_config(), "initial_log_variance": self.initial_log_variance}
