"""GradVac: gradient vaccine, adaptive cosine-similarity targets between task gradients (saved with the model)."""

from __future__ import annotations

import keras
from keras import ops

from kmtl._checks import is_number
from kmtl.weighting._gradients import TINY, SavesRandomState, combine_rows, gram_matrix, task_orders
from kmtl.weighting.base import GradientWeighting, register


@register("gradvac")
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
        if not is_number(beta) or not 0.0 < beta <= 1.0:
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
            cosine = ops.sum(projected * partner, axis=1) / ops.maximum(norm_i * norm_j, TINY)
            cosine = ops.clip(cosine, -1.0, 1.0)
            target = ops.sum(targets * partner, axis=1)
            root_target = ops.maximum(ops.sqrt(1.0 - target * target), 1e-8)
            step = norm_i * (target * ops.sqrt(1.0 - cosine * cosine) - cosine * root_target)
            step = step / ops.maximum(norm_j * root_target, TINY)
            step = ops.where(ops.logical_and(cosine < target, norm_j > 0.0), step, 0.0)  # no pull towards zeros
            coefficients = coefficients + step[:, None] * partner
            visited = visited + cosine[:, None] * partner
        self.targets.assign(ops.cast(targets + self.beta * others * (visited - targets), "float32"))
        weights = ops.cast(ops.sum(coefficients, axis=0), "float32")
        return combine_rows(weights, grads), weights

    def get_config(self):
        return {**super().get_config(), "beta": self.beta, "seed": self.seed}
