"""PCGrad: projecting conflicting gradients ("gradient surgery")."""

from __future__ import annotations

import keras
from keras import ops

from kmtl._checks import check_bool
from kmtl.weighting._gradients import TINY, SavesRandomState, combine_rows, gram_matrix, task_orders
from kmtl.weighting.base import GradientWeighting, register


@register("pcgrad")
@keras.saving.register_keras_serializable(package="kmtl")
class PCGrad(SavesRandomState, GradientWeighting):
    """Projecting conflicting gradients ("gradient surgery").

    Each task's gradient `g_i` visits the other tasks in a random order (a fresh permutation per task and step) and,
    whenever it conflicts with another task's *original* gradient (`g_i^PC · g_j < 0`), is projected onto the normal
    plane of `g_j`: `g_i^PC -= (g_i^PC · g_j / ||g_j||²) g_j`. The direction is the SUM of the projected gradients
    (with no conflicts, equal weighting). Each projected gradient is a combination of the original ones, so the
    logged weight of task j is its total coefficient in the direction.

    With two tasks the projected gradient is orthogonal to or agrees with the other task's gradient; with more,
    a later projection can bring back a conflict an earlier one removed (as in the paper's algorithm).

    Args:
        shuffle: bool. Visit the other tasks in a random order per step (the paper); False: in task order.
        seed: int or None. Seed of the random orders.
        rep_grad: bool. Aggregate gradients of the shared representation.
        **kwargs: passed to `GradientWeighting`.

    Example:

    >>> model.compile(optimizer="adam", weighting=PCGrad(seed=1))  # doctest: +SKIP

    Reference:
        Yu, Kumar, Gupta, Levine, Hausman & Finn (2020). Gradient Surgery for Multi-Task Learning. NeurIPS.
    """

    def __init__(self, shuffle=True, seed=None, rep_grad=False, **kwargs):
        super().__init__(rep_grad=rep_grad, **kwargs)
        self.shuffle = check_bool("shuffle", shuffle)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if self.shuffle else None

    def aggregate(self, grads, losses):
        gram = gram_matrix(grads)
        coefficients = pcgrad_coefficients(gram, task_orders(grads.shape[0], self.seed_generator))
        weights = ops.cast(ops.sum(coefficients, axis=0), "float32")
        return combine_rows(weights, grads), weights

    def get_config(self):
        return {**super().get_config(), "shuffle": self.shuffle, "seed": self.seed}


def pcgrad_coefficients(gram, orders):
    """PCGrad's projected gradients in the basis of the original ones: row i of the result holds `g_i^PC`'s
    coefficients. `gram`: float64 `(T, T)`; `orders`: int `(T, T)`, row i the order in which task i visits the others.
    """
    t = gram.shape[0]
    squared_norms = ops.diagonal(gram)
    others = 1.0 - ops.eye(t, dtype=gram.dtype)
    coefficients = ops.eye(t, dtype=gram.dtype)
    for k in range(t):
        partner = ops.one_hot(orders[:, k], t, dtype=gram.dtype) * others  # zero row where the partner is i
        dots = ops.sum(ops.matmul(coefficients, gram) * partner, axis=1)
        step = ops.minimum(dots, 0.0) / ops.maximum(ops.sum(partner * squared_norms, axis=1), TINY)
        coefficients = coefficients - step[:, None] * partner
    return coefficients
