"""GradNorm: task weights learned so that weighted gradient norms follow each task's training rate."""

from __future__ import annotations

import keras
from keras import ops

from kmtl._checks import is_number
from kmtl.weighting._gradients import combine_rows
from kmtl.weighting.base import GradientWeighting, register


@register("gradnorm")
@keras.saving.register_keras_serializable(package="kmtl")
class GradNorm(GradientWeighting):
    """GradNorm: task weights learned so that weighted gradient norms follow each task's relative training rate.

    With weights `w_i`, gradient norms `G_i = w_i ||g_i||` (here of all shared parameters, or with `rep_grad=True`
    of the shared representation; the paper uses the last shared layer), their mean `Ḡ`, loss ratios
    `L̃_i = L_i / L_i(0)` (`L_i(0)` recorded at the first step) and inverse training rates `r_i = L̃_i / mean(L̃)`,
    GradNorm minimises `sum_i |G_i - Ḡ r_i^α|` over w with the target `Ḡ r_i^α` held constant. Its gradient is
    `sign(G_i - Ḡ r_i^α) ||g_i||`; each step `aggregate` takes one plain gradient step of `learning_rate` on w,
    keeps w positive (at least 1e-6) and renormalises it to sum T. The direction is `sum_i w_i g_i` with the
    weights from before the update (kmtl's sum convention; the logged weights). State, saved with the model:
    `task_weights`, `initial_losses` and `initialized`.

    Args:
        alpha: float >= 0. Strength of the pull towards equal training rates.
        learning_rate: float > 0. Step size of the weights' update.
        rep_grad: bool. Aggregate gradients of the shared representation.
        **kwargs: passed to `GradientWeighting`.

    Example:

    >>> model.compile(optimizer="adam", weighting=GradNorm(alpha=1.5))  # doctest: +SKIP
    >>> model.weighting.task_weights  # doctest: +SKIP

    Reference:
        Chen, Badrinarayanan, Lee & Rabinovich (2018). GradNorm: Gradient Normalization for Adaptive Loss
        Balancing in Deep Multitask Networks. ICML.
    """

    def __init__(self, alpha=1.5, learning_rate=0.025, rep_grad=False, **kwargs):
        super().__init__(rep_grad=rep_grad, **kwargs)
        if not is_number(alpha) or alpha < 0:
            raise ValueError(f"Invalid value for `alpha`. Expected a float >= 0. Received: alpha={alpha!r}")
        if not is_number(learning_rate) or learning_rate <= 0:
            raise ValueError(
                f"Invalid value for `learning_rate`. Expected a float > 0. Received: learning_rate={learning_rate!r}"
            )
        self.alpha = float(alpha)
        self.learning_rate = float(learning_rate)

    def create_state(self, num_tasks):
        self.task_weights = self.add_weight(
            shape=(num_tasks,), initializer="ones", name="task_weights", trainable=False, dtype="float32"
        )
        self.initial_losses = self.add_weight(
            shape=(num_tasks,), initializer="zeros", name="initial_losses", trainable=False, dtype="float32"
        )
        self.initialized = self.add_weight(
            shape=(), initializer="zeros", name="initialized", trainable=False, dtype="float32"
        )

    def aggregate(self, grads, losses):
        t = grads.shape[0]
        losses = ops.cast(losses, "float32")
        first = self.initialized < 0.5
        initial = ops.where(first, losses, self.initial_losses)
        self.initial_losses.assign(initial)
        self.initialized.assign(ops.ones_like(self.initialized))
        weights = ops.copy(self.task_weights)  # the value before the update below
        norms = ops.sqrt(ops.sum(ops.square(grads), axis=1))
        weighted = weights * norms
        ratios = losses / ops.maximum(initial, 1e-12)
        rates = ratios / ops.maximum(ops.mean(ratios), 1e-12)
        target = ops.mean(weighted) * ops.power(rates, self.alpha)
        updated = ops.maximum(weights - self.learning_rate * ops.sign(weighted - target) * norms, 1e-6)
        self.task_weights.assign(updated * (t / ops.sum(updated)))
        return combine_rows(weights, grads), weights

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "learning_rate": self.learning_rate}
