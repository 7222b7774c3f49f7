"""Gradient-level strategies with state saved with the model: GradVac (similarity targets) and GradNorm (learned
task weights)."""

from __future__ import annotations

import keras
from keras import ops

from kmtl.weighting.base import GradientWeighting
from kmtl.weighting.min_norm import (
    SavesRandomState,
    combine_rows,
    gram_matrix,
    task_orders,
)

_TINY = 1e-30


@keras.saving.register_keras_serializable(package="kmtl")
class GradVac(SavesRandomState, GradientWeighting):
    """Gradient vaccine: pulls each pair of task gradients towards an adaptive cosine-similarity target.

    Each task's gradient `g_i'` (starting at `g_i`) visits the other tasks j in a random order. With
    `φ = cos(g_i', g_j)` and the target `φ̂_ij`, if `φ < φ̂_ij` it becomes
    `g_i' + ||g_i'|| (φ̂_ij sqrt(1 - φ²) - φ sqrt(1 - φ̂_ij²)) / (||g_j|| sqrt(1 - φ̂_ij²)) g_j`, which raises the
    cosine to exactly `φ̂_ij`; in every visit the target follows `φ̂_ij <- (1 - β) φ̂_ij + β φ`. Targets start at 0
    (so the first corrections are PCGrad's projections). The direction is the SUM of the corrected gradients;
    the logged weights are each task's total coefficient in it.

    kmtl uses the whole-vector variant: one target per ordered task pair for the whole gradient (the paper also
    keeps targets per parameter group). The `(T, T)` targets are the non-trainable variable `targets`, saved with
    the model (with the random-number state, so resumed training draws the same orders).

    Args:
        beta: float in (0, 1]. EMA rate of the targets.
        seed: int or None. Seed of the random visiting orders.
        rep_grad: bool. Aggregate gradients of the shared representation.
        **kwargs: passed to `GradientWeighting`.

    Example:

    >>> model.compile(optimizer="adam", weighting=GradVac(beta=0.01, seed=1))  # doctest: +SKIP
    >>> model.weighting.targets  # doctest: +SKIP

    Reference:
        Wang, Tsvetkov, Firat & Cao (2021). Gradient Vaccine: Investigating and Improving Multi-task Optimization in
        Massively Multilingual Models. ICLR.
    """

    def __init__(self, beta=0.01, seed=None, rep_grad=False, **kwargs):
        super().__init__(rep_grad=rep_grad, **kwargs)
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 < beta <= 1.0:
            raise ValueError(f"Invalid value for `beta`. Expected a float in (0, 1]. Received: beta={beta!r}")
        self.beta = float(beta)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def create_state(self, num_tasks):
        self.targets = self.add_weight(
            shape=(num_tasks, num_tasks), initializer="zeros", name="targets", trainable=False, dtype="float32"
        )

    def aggregate(self, grads, losses):
        t = grads.shape[0]
        gram = gram_matrix(grads)
        norms = ops.sqrt(ops.maximum(ops.diagonal(gram), 0.0))
        targets = ops.cast(self.targets, gram.dtype)
        orders = task_orders(t, self.seed_generator)
        others = 1.0 - ops.eye(t, dtype=gram.dtype)
        coefficients = ops.eye(t, dtype=gram.dtype)  # row i: g_i' in the basis of the original gradients
        visited = ops.zeros_like(targets)  # the cosine of each visit, at its pair's place
        for k in range(t):
            partner = ops.one_hot(orders[:, k], t, dtype=gram.dtype) * others  # zero row where the partner is i
            projected = ops.matmul(coefficients, gram)
            norm_i = ops.sqrt(ops.maximum(ops.sum(projected * coefficients, axis=1), 0.0))
            norm_j = ops.sum(partner * norms, axis=1)
            cosine = ops.sum(projected * partner, axis=1) / ops.maximum(norm_i * norm_j, _TINY)
            cosine = ops.clip(cosine, -1.0, 1.0)
            target = ops.sum(targets * partner, axis=1)
            root_target = ops.maximum(ops.sqrt(1.0 - target * target), 1e-8)
            step = norm_i * (target * ops.sqrt(1.0 - cosine * cosine) - cosine * root_target)
            step = step / ops.maximum(norm_j * root_target, _TINY)
            step = ops.where(ops.logical_and(cosine < target, norm_j > 0.0), step, 0.0)  # no pull towards zeros
            coefficients = coefficients + step[:, None] * partner
            visited = visited + cosine[:, None] * partner
        self.targets.assign(ops.cast(targets + self.beta * others * (visited - targets), "float32"))
        weights = ops.cast(ops.sum(coefficients, axis=0), "float32")
        return combine_rows(weights, grads), weights

    def get_config(self):
        return {**super().get_config(), "beta": self.beta, "seed": self.seed}


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
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha < 0:
            raise ValueError(f"Invalid value for `alpha`. Expected a float >= 0. Received: alpha={alpha!r}")
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or learning_rate <= 0:
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
