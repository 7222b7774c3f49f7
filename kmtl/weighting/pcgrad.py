"""Gradient-level strategies: PCGrad, GradDrop, IMTL-G and CAGrad (GradVac and GradNorm are in
`gradient_stateful.py`, MGDA in `min_norm.py`; `NAMES` lists them all).

Every strategy here works on the `(T, P)` matrix of task gradients inside the traced train step. Those whose
direction is a combination `sum_t w_t g_t` compute the coefficients `w` on the float64 Gram matrix and log them as
the task weights.
"""

from __future__ import annotations

import keras
from keras import ops

from kmtl.weighting.base import GradientWeighting
from kmtl.weighting.gradient_stateful import GradNorm, GradVac
from kmtl.weighting.min_norm import (
    MGDA,
    SavesRandomState,
    cagrad_weights,
    check_max_exact_tasks,
    combine_rows,
    gram_matrix,
    mgda_ub,
    task_orders,
)

_TINY = 1e-30


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
        self.shuffle = _check_bool(shuffle, "shuffle")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if self.shuffle else None

    def aggregate(self, grads, losses):
        gram = gram_matrix(grads)
        coefficients = pcgrad_coefficients(gram, task_orders(grads.shape[0], self.seed_generator))
        weights = ops.cast(ops.sum(coefficients, axis=0), "float32")
        return combine_rows(weights, grads), weights

    def get_config(self):
        return {**super().get_config(), "shuffle": self.shuffle, "seed": self.seed}


@keras.saving.register_keras_serializable(package="kmtl")
class GradDrop(SavesRandomState, GradientWeighting):
    """Gradient sign dropout: per coordinate, keeps only the positive or only the negative task gradients.

    With the sign purity `P = 0.5 (1 + sum_i g_i / sum_i |g_i|)` of every coordinate and a uniform draw `U` per
    coordinate and step, task i keeps its component where `P > U` and it is positive, or `P < U` and it is
    negative: the mask is `M_i`. The direction is `sum_i (l_i + (1 - l_i) M_i) g_i` with leak `l_i` (l = 1: task i
    is never dropped; l = 0: pure GradDrop). Where all gradients agree in sign, nothing is dropped and the direction
    is the SUM of the gradients. The direction is not a combination of the rows, so the logged weights are ones.

    The paper applies GradDrop to gradients of activations, summing them over the batch before computing `P`;
    kmtl computes `P` per column of the gradient matrix (shared parameters, or with `rep_grad=True` the entries of
    the shared representation), the paper's variant for inputs that are not batch-separated. Under XLA on CPU,
    TensorFlow's random draws are slow (about 1 s per million shared parameters, measured on 2 cores; 6 ms without
    XLA), so on CPU compile with `jit_compile=False` or use `rep_grad=True`.

    Args:
        leak: float in [0, 1], or a list of one such float per task.
        seed: int or None. Seed of the uniform draws.
        rep_grad: bool. Aggregate gradients of the shared representation.
        **kwargs: passed to `GradientWeighting`.

    Example:

    >>> model.compile(optimizer="adam", weighting=GradDrop(leak=0.0, seed=1))  # doctest: +SKIP

    Reference:
        Chen, Ngiam, Huang, Luong, Kretzschmar, Chai & Anguelov (2020). Just Pick a Sign: Optimizing Deep Multitask
        Models with Gradient Sign Dropout. NeurIPS.
    """

    def __init__(self, leak=0.0, seed=None, rep_grad=False, **kwargs):
        super().__init__(rep_grad=rep_grad, **kwargs)
        values = leak if isinstance(leak, (list, tuple)) else [leak]
        if not values or not all(_is_number(v) and 0.0 <= v <= 1.0 for v in values):
            raise ValueError(
                f"Invalid value for `leak`. Expected a float in [0, 1] or a list of them. Received: leak={leak!r}"
            )
        self.leak = [float(v) for v in leak] if isinstance(leak, (list, tuple)) else float(leak)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def create_state(self, num_tasks):
        if isinstance(self.leak, list) and len(self.leak) != num_tasks:
            raise ValueError(
                f"`leak` has {len(self.leak)} values for {num_tasks} tasks {list(self.task_names)}. Expected one "
                f"per task. Received: leak={self.leak}"
            )

    def aggregate(self, grads, losses):
        t = grads.shape[0]
        leak = self.leak if isinstance(self.leak, list) else [self.leak] * t
        leak = ops.convert_to_tensor(leak, grads.dtype)[:, None]
        purity = 0.5 * (1.0 + ops.sum(grads, axis=0) / ops.maximum(ops.sum(ops.abs(grads), axis=0), 1e-37))
        draw = keras.random.uniform(purity.shape, dtype=grads.dtype, seed=self.seed_generator)
        keep = ops.logical_or(
            ops.logical_and(purity > draw, grads > 0), ops.logical_and(purity < draw, grads < 0)
        )
        mask = leak + (1.0 - leak) * ops.cast(keep, grads.dtype)
        return ops.sum(mask * grads, axis=0), ops.ones_like(losses)

    def get_config(self):
        return {**super().get_config(), "leak": self.leak, "seed": self.seed}


@keras.saving.register_keras_serializable(package="kmtl")
class IMTLG(GradientWeighting):
    """IMTL-G: the combination of task gradients whose projections on every task's unit gradient are equal.

    With `u_t = g_t / ||g_t||`, `D = [g_1 - g_t]_{t>1}` and `U = [u_1 - u_t]_{t>1}`, the paper's closed form is
    `α_{2:T} = g_1 Uᵀ (D Uᵀ)⁻¹`, `α_1 = 1 - sum α_{2:T}`; the direction `g = sum_t α_t g_t` (α sums to 1, the
    paper's scale) satisfies `g · u_1 = g · u_t` for every t. Computed on the float64 Gram matrix; the logged
    weights are α. A tiny ridge keeps `D Uᵀ` invertible when gradients repeat.

    Args:
        rep_grad: bool. Aggregate gradients of the shared representation (the paper's choice).
        **kwargs: passed to `GradientWeighting`.

    Example:

    >>> model.compile(optimizer="adam", weighting=IMTLG())  # doctest: +SKIP

    Reference:
        Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang (2021). Towards Impartial Multi-task Learning. ICLR.
    """

    def aggregate(self, grads, losses):
        t = grads.shape[0]
        if t == 1:
            return grads[0], ops.ones_like(losses)
        gram = gram_matrix(grads)
        norms = ops.sqrt(ops.maximum(ops.diagonal(gram), _TINY))
        along = gram / norms[None, :]  # along[i, j] = g_i · u_j
        g1_ut = along[0, 0] - along[0, 1:]  # (g_1 · (u_1 - u_t))_{t>1}
        d_ut = g1_ut[None, :] - along[1:, :1] + along[1:, 1:]  # [(g_1 - g_s) · (u_1 - u_t)]_{s,t>1}
        ridge = (1e-12 * ops.max(ops.abs(d_ut)) + _TINY) * ops.eye(t - 1, dtype=gram.dtype)
        rest = ops.solve(ops.transpose(d_ut) + ridge, g1_ut[:, None])[:, 0]
        weights = ops.cast(ops.concatenate([1.0 - ops.sum(rest, keepdims=True), rest]), "float32")
        return combine_rows(weights, grads), weights


@keras.saving.register_keras_serializable(package="kmtl")
class CAGrad(GradientWeighting):
    """Conflict-averse gradient descent: the best worst-task improvement within a ball around the mean gradient.

    With the mean gradient `g_0`, `φ = c² ||g_0||²` and dual weights `w` minimising `g_wᵀ g_0 + sqrt(φ) ||g_w||`
    over the simplex (solved exactly on the Gram matrix, see `min_norm.cagrad_weights`), the direction is
    `(g_0 + sqrt(φ) / ||g_w|| g_w) / s`, with `s = 1` (`rescale=0`), `1 + c²` (`rescale=1`) or `1 + c`
    (`rescale=2`). The scale is the paper's: with `c = 0` the direction is the MEAN gradient. The logged weights
    are the coefficients `(1 / T + sqrt(φ) w_t / ||g_w||) / s`. Where `g_w` vanishes (below 1e-6 of the largest
    gradient norm: the origin is in the convex hull of the gradients), the direction is `g_0 / s`.

    Args:
        c: float >= 0. Radius of the ball, relative to `||g_0||`.
        rescale: int, 0, 1 or 2. Divides the direction by 1, `1 + c²` or `1 + c`.
        max_exact_tasks: int in [0, 16]. Up to this many tasks the dual is solved exactly (all supports); above,
            accelerated projected gradient then a polish on the support found.
        rep_grad: bool. Aggregate gradients of the shared representation.
        **kwargs: passed to `GradientWeighting`.

    Example:

    >>> model.compile(optimizer="adam", weighting=CAGrad(c=0.4))  # doctest: +SKIP

    Reference:
        Liu, Liu, Jin, Stone & Liu (2021). Conflict-Averse Gradient Descent for Multi-task Learning. NeurIPS.
    """

    def __init__(self, c=0.4, rescale=1, max_exact_tasks=10, rep_grad=False, **kwargs):
        super().__init__(rep_grad=rep_grad, **kwargs)
        if not _is_number(c) or c < 0:
            raise ValueError(f"Invalid value for `c`. Expected a float >= 0. Received: c={c!r}")
        if rescale not in (0, 1, 2) or isinstance(rescale, bool):
            raise ValueError(f"Invalid value for `rescale`. Expected 0, 1 or 2. Received: rescale={rescale!r}")
        self.c = float(c)
        self.rescale = int(rescale)
        self.max_exact_tasks = check_max_exact_tasks(max_exact_tasks)

    def aggregate(self, grads, losses):
        t = grads.shape[0]
        gram = gram_matrix(grads)
        radius = self.c * ops.sqrt(ops.maximum(ops.mean(gram), 0.0))
        w = cagrad_weights(gram, radius, self.max_exact_tasks)
        gw_norm = ops.sqrt(ops.maximum(ops.sum(ops.matmul(gram, w) * w), 0.0))
        # Where g_w vanishes (the origin is in the hull) its direction is rounding noise: no step along it.
        vanishes = gw_norm <= 1e-6 * ops.sqrt(ops.max(ops.diagonal(gram)))
        step = ops.where(vanishes, 0.0, radius / ops.where(vanishes, 1.0, gw_norm))
        scale = (1.0, 1.0 + self.c**2, 1.0 + self.c)[self.rescale]
        weights = (1.0 / t + step * w) / scale
        weights = ops.cast(weights, "float32")
        return combine_rows(weights, grads), weights

    def get_config(self):
        return {
            **super().get_config(),
            "c": self.c,
            "rescale": self.rescale,
            "max_exact_tasks": self.max_exact_tasks,
        }


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
        step = ops.minimum(dots, 0.0) / ops.maximum(ops.sum(partner * squared_norms, axis=1), _TINY)
        coefficients = coefficients - step[:, None] * partner
    return coefficients


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_bool(value, name):
    if not isinstance(value, bool):
        raise ValueError(f"Invalid value for `{name}`. Expected a bool. Received: {name}={value!r}")
    return value


NAMES = {
    "pcgrad": PCGrad,
    "graddrop": GradDrop,
    "mgda": MGDA,
    "mgda_ub": mgda_ub,
    "imtl_g": IMTLG,
    "cagrad": CAGrad,
    "gradvac": GradVac,
    "gradnorm": GradNorm,
}
