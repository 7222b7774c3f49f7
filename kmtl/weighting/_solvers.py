"""MGDA and the simplex solvers it shares with CAGrad, plus Gram-matrix helpers of the gradient-level strategies.

The solvers work on the `(T, T)` Gram matrix `M = G Gᵀ` of the task gradients, in float64 (the Gram matrix is
formed in float64 too, so GPUs never use reduced-precision TF32 matmuls for it). For up to `max_exact_tasks` tasks
they are exact: every non-empty support `S` of the weights is tried at once (one batched elimination), each
candidate is clipped to the simplex and the best objective wins. Every candidate is feasible, so the winner is the
optimum as soon as the optimum's support is among the candidates, and with all supports it always is. For more
tasks, accelerated projected gradient (500 steps) finds the support and one solve on that support polishes the
weights: exact whenever that support is right, which it was in every case tried (up to 16 tasks, including
rank-deficient Gram matrices). Under XLA on 2 CPU cores the exact solver takes about 2 ms at 10 tasks and 10-30 ms
at 12; each extra task doubles it.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from kmtl.weighting.base import GradientWeighting

_FLOAT = "float64"
_TINY = 1e-30


# === Helpers shared by the gradient-level strategies ===


def gram_matrix(grads):
    """The float64 Gram matrix `G Gᵀ` of the rows of `grads` `(T, P)`."""
    g = ops.cast(grads, _FLOAT)
    return ops.matmul(g, ops.transpose(g))


def combine_rows(weights, grads):
    """`sum_t weights[t] * grads[t]`, as an elementwise sum (exact float32, no reduced-precision matmul)."""
    return ops.sum(ops.cast(weights, grads.dtype)[:, None] * grads, axis=0)


def task_orders(num_tasks, seed_generator=None):
    """`(T, T)` int matrix whose row i is the order in which task i visits the tasks: random when a
    `keras.random.SeedGenerator` is given (one permutation per task and step), else `0, 1, ..., T-1`."""
    if seed_generator is None:
        return ops.tile(ops.arange(num_tasks)[None, :], (num_tasks, 1))
    return ops.argsort(keras.random.uniform((num_tasks, num_tasks), seed=seed_generator), axis=1)


class SavesRandomState:
    """Mixin of strategies with a `seed_generator`: saves its state with the strategy's variables, so training
    resumed from a saved model draws the same random numbers as uninterrupted training."""

    def _saved_variables(self):
        generator = getattr(self, "seed_generator", None)
        return list(self.weights) + ([generator.state] if generator is not None else [])

    def save_own_variables(self, store):
        for i, variable in enumerate(self._saved_variables()):
            store[str(i)] = variable

    def load_own_variables(self, store):
        variables = self._saved_variables()
        if len(store.keys()) != len(variables):
            raise ValueError(
                f"{type(self).__name__} expected {len(variables)} saved variables (its state and random-number "
                f"state). Received: {len(store.keys())} variables"
            )
        for i, variable in enumerate(variables):
            variable.assign(store[str(i)])


def check_max_exact_tasks(value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= 16:
        raise ValueError(
            "Invalid value for `max_exact_tasks`. Expected an int in [0, 16] (the exact solver tries 2^T - 1 "
            f"supports). Received: max_exact_tasks={value!r}"
        )
    return int(value)


# === Simplex solvers ===


def _subset_masks(num_tasks):
    """All non-empty 0/1 masks over `num_tasks` tasks, `(2^T - 1, T)` float64."""
    codes = np.arange(1, 2**num_tasks)
    return ops.convert_to_tensor(((codes[:, None] >> np.arange(num_tasks)) & 1).astype("float64"))


def _support_solve(gram, masks, rhs):
    """For every mask s (rows of `masks` `(K, T)`), solves `(M_SS + δI) x_S = rhs_S` with `x = 0` off S.

    `rhs` is `(T, R)`; returns `(K, T, R)`. The ridge `δ = 1e-12 max(diag M)` keeps every system positive definite;
    it moves the weights by a relative 1e-12 times the condition number. The systems are solved together by
    Gauss-Jordan elimination without pivoting (stable for positive-definite matrices), one vectorised step per
    task: much faster under XLA than a batched LU.
    """
    t = gram.shape[0]
    delta = 1e-12 * ops.max(ops.diagonal(gram)) + _TINY
    diagonal = ops.eye(t, dtype=_FLOAT)[None] * (1.0 - masks + delta * masks)[:, :, None]
    systems = gram[None] * masks[:, :, None] * masks[:, None, :] + diagonal
    augmented = ops.concatenate([systems, masks[:, :, None] * rhs[None]], axis=2)
    for k in range(t):
        pivot_row = augmented[:, k, :] / augmented[:, k, k][:, None]
        augmented = augmented - augmented[:, :, k][:, :, None] * pivot_row[:, None, :]
        augmented = augmented + ops.one_hot(k, t, dtype=_FLOAT)[None, :, None] * pivot_row[:, None, :]
    return augmented[:, :, t:]


def _project_to_simplex(v):
    """Euclidean projection of a vector onto the probability simplex (sort-based, fixed size)."""
    t = v.shape[0]
    u = ops.flip(ops.sort(v))
    excess = (ops.cumsum(u) - 1.0) / ops.arange(1, t + 1, dtype=_FLOAT)
    count = ops.sum(ops.cast(u > excess, "int32"))
    return ops.maximum(v - ops.take(excess, count - 1), 0.0)


def _accelerated_descent(gradient, lipschitz, num_tasks, steps=500):
    """FISTA on the simplex from the uniform weights: `steps` projected gradient steps of size `1 / lipschitz`."""
    start = ops.full((num_tasks,), 1.0 / num_tasks, dtype=_FLOAT)

    def body(_, state):
        w, y, t = state
        w_next = _project_to_simplex(y - gradient(y) / lipschitz)
        t_next = 0.5 * (1.0 + ops.sqrt(1.0 + 4.0 * t * t))
        return w_next, w_next + ((t - 1.0) / t_next) * (w_next - w), t_next

    return ops.fori_loop(0, steps, body, (start, start, ops.ones((), _FLOAT)))[0]


def _best_feasible(candidates, objective, gram):
    """Clips candidate weights `(K, T)` to the simplex and returns the one with the lowest `objective(w)`.

    Ties (within 1e-12 of the gradients' squared scale) go to the weights of least norm, so that repeated
    gradients share their weight evenly.
    """
    finite = ops.all(ops.isfinite(candidates), axis=1)
    w = ops.where(finite[:, None], ops.maximum(candidates, 0.0), 0.0)
    total = ops.sum(w, axis=1)
    valid = total > 0
    w = w / ops.where(valid, total, 1.0)[:, None]
    tie_break = 1e-12 * ops.max(ops.diagonal(gram)) * ops.sum(w * w, axis=1)
    value = ops.where(valid, objective(w) + tie_break, np.inf)
    return ops.take(w, ops.argmin(value), axis=0)


def _quadratic_form(w, gram):
    return ops.sum(ops.matmul(w, gram) * w, axis=-1)


def _polish_masks(w):
    return ops.stack([ops.cast(w > 1e-9, _FLOAT), ops.cast(w > 1e-4, _FLOAT)])


def min_norm_weights(gram, max_exact_tasks=10):
    """The convex weights `w` minimising `||sum_t w_t g_t||² = wᵀ M w` over the probability simplex.

    Args:
        gram: float64 tensor `(T, T)`, the Gram matrix of the task gradients.
        max_exact_tasks: int. Up to this many tasks, all supports are tried (exact); above, FISTA then a polish.

    Returns:
        float64 tensor `(T,)`.
    """
    t = gram.shape[0]
    ones = ops.ones((t, 1), _FLOAT)
    if t <= max_exact_tasks:
        candidates = _support_solve(gram, _subset_masks(t), ones)[..., 0]
    else:
        lipschitz = 2.0 * ops.sqrt(ops.sum(gram * gram)) + _TINY  # Frobenius >= spectral norm
        start = _accelerated_descent(lambda w: 2.0 * ops.matmul(gram, w), lipschitz, t)
        polished = _support_solve(gram, _polish_masks(start), ones)[..., 0]
        candidates = ops.concatenate([start[None], polished], axis=0)
    return _best_feasible(candidates, lambda w: _quadratic_form(w, gram), gram)


def _cagrad_support_candidates(gram, b, radius, masks):
    """Stationary points of `bᵀw + r sqrt(wᵀMw)` on the supports in `masks` (closed form, see `cagrad_weights`)."""
    xy = _support_solve(gram, masks, ops.stack([ops.ones_like(b), b], axis=1))
    x, y = xy[..., 0], xy[..., 1]
    a, beta, gamma = ops.sum(x, axis=1), ops.sum(y, axis=1), ops.sum(y * b, axis=1)
    root = ops.sqrt(ops.maximum(beta * beta - a * gamma + a * radius * radius, 0.0))
    lam = (beta + root) / a
    return (lam[:, None] * x - y) / root[:, None]


def cagrad_weights(gram, radius, max_exact_tasks=10):
    """The dual weights of CAGrad: `w` minimising `F(w) = g_wᵀ g_0 + r ||g_w||` over the simplex.

    With `b = M 1 / T` (so `g_wᵀ g_0 = bᵀ w`), stationarity on a support S gives `w_S ∝ λ x - y` with
    `x = M_SS⁻¹ 1`, `y = M_SS⁻¹ b_S` and λ the root of `(λx - y)ᵀ M (λx - y) = r²` that makes the weights sum
    to a positive number. Candidates on all supports (or, above `max_exact_tasks`, on the support found by
    FISTA) plus the uniform weights are compared on F.

    Args:
        gram: float64 tensor `(T, T)`.
        radius: float64 scalar `r = c ||g_0||`.
        max_exact_tasks: int.

    Returns:
        float64 tensor `(T,)`.
    """
    t = gram.shape[0]
    b = ops.mean(gram, axis=1)

    def objective(w):
        return ops.sum(w * b, axis=-1) + radius * ops.sqrt(ops.maximum(_quadratic_form(w, gram), 0.0))

    uniform = ops.full((1, t), 1.0 / t, dtype=_FLOAT)
    if t <= max_exact_tasks:
        candidates = _cagrad_support_candidates(gram, b, radius, _subset_masks(t))
    else:
        # ||g_w|| >= the min-norm distance d on the simplex, so r M / d bounds the Hessian of r ||g_w||.
        floor = ops.sqrt(ops.maximum(_quadratic_form(min_norm_weights(gram, 0), gram), 0.0))
        floor = ops.maximum(floor, 1e-3 * ops.sqrt(ops.max(ops.diagonal(gram)))) + _TINY
        lipschitz = radius * ops.sqrt(ops.sum(gram * gram)) / floor + _TINY

        def gradient(w):
            mw = ops.matmul(gram, w)
            return b + radius * mw / ops.maximum(ops.sqrt(ops.maximum(ops.sum(w * mw), 0.0)), floor)

        start = _accelerated_descent(gradient, lipschitz, t)
        polished = _cagrad_support_candidates(gram, b, radius, _polish_masks(start))
        candidates = ops.concatenate([start[None], polished], axis=0)
    return _best_feasible(ops.concatenate([candidates, uniform], axis=0), objective, gram)


# === MGDA ===

_NORMALIZATIONS = ("none", "l2", "loss", "loss+")


@keras.saving.register_keras_serializable(package="kmtl")
class MGDA(GradientWeighting):
    """Multiple-gradient descent: moves along the minimum-norm point of the convex hull of the task gradients.

    The convex weights `w` minimise `||sum_t w_t ĝ_t||²` over the probability simplex, solved exactly on the Gram
    matrix (see the module docstring), where `ĝ_t = g_t / n_t` are the gradients under the paper's
    `normalization`: `"none"` (`n_t = 1`), `"l2"` (`n_t = ||g_t||`), `"loss"` (`n_t = L_t`) or `"loss+"`
    (`n_t = L_t ||g_t||`). As in the paper's code, the weights then multiply the *unnormalised* task gradients:
    direction `= sum_t w_t g_t`, with `sum_t w_t = 1` (a convex combination, not kmtl's sum convention); with
    `"none"` this is exactly the min-norm point. The logged weights are `w`.

    MGDA-UB (the paper's upper-bound variant) is `MGDA(rep_grad=True)` (also `mgda_ub()`): the weights are found
    on the gradients of the shared representation, which are much cheaper to compute.

    Args:
        normalization: str. One of `"none"`, `"l2"`, `"loss"`, `"loss+"`.
        max_exact_tasks: int in [0, 16]. Up to this many tasks the min-norm problem is solved exactly by trying all
            `2^T - 1` supports at once; with more tasks, 500 accelerated projected-gradient steps find the support
            and one linear solve on it polishes the weights (exact when that support is right).
        rep_grad: bool. Aggregate gradients of the shared representation (MGDA-UB).
        **kwargs: passed to `GradientWeighting`.

    Example:

    >>> import kmtl, numpy as np
    >>> mgda = MGDA()
    >>> mgda.configure([kmtl.Task("a", "regression"), kmtl.Task("b", "regression")])
    >>> direction, weights = mgda.aggregate(np.array([[2.0, 0.0], [0.0, 1.0]], "float32"), np.ones(2, "float32"))
    >>> [round(float(v), 6) for v in weights], [round(float(v), 6) for v in direction]
    ([0.2, 0.8], [0.4, 0.8])
    >>> model.compile(optimizer="adam", weighting=MGDA(normalization="loss+"))  # doctest: +SKIP

    Reference:
        Sener & Koltun (2018). Multi-Task Learning as Multi-Objective Optimization. NeurIPS.
    """

    def __init__(self, normalization="none", max_exact_tasks=10, rep_grad=False, **kwargs):
        super().__init__(rep_grad=rep_grad, **kwargs)
        if normalization not in _NORMALIZATIONS:
            raise ValueError(
                f"Invalid value for `normalization`. Expected one of {list(_NORMALIZATIONS)}. "
                f"Received: normalization={normalization!r}"
            )
        self.normalization = normalization
        self.max_exact_tasks = check_max_exact_tasks(max_exact_tasks)

    def aggregate(self, grads, losses):
        gram = gram_matrix(grads)
        scale = self._normalizers(gram, ops.cast(losses, _FLOAT))
        weights = min_norm_weights(gram / (scale[:, None] * scale[None, :]), self.max_exact_tasks)
        weights = ops.cast(weights, "float32")
        return combine_rows(weights, grads), weights

    def _normalizers(self, gram, losses):
        norms = ops.sqrt(ops.maximum(ops.diagonal(gram), 0.0))
        scale = {"none": ops.ones_like(losses), "l2": norms, "loss": losses, "loss+": losses * norms}
        value = scale[self.normalization]
        return ops.where(value > _TINY, value, 1.0)

    def get_config(self):
        return {**super().get_config(), "normalization": self.normalization, "max_exact_tasks": self.max_exact_tasks}


def mgda_ub(**kwargs) -> MGDA:
    """MGDA-UB: `MGDA` on the gradients of the shared representation (Sener & Koltun 2018), `rep_grad=True`."""
    return MGDA(rep_grad=True, **kwargs)
