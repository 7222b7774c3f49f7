"""What UPGrad and DualProj share: the projection onto the dual cone of the task gradients (a small QP solver) and
their arguments.

The dual cone of the gradients `g_1..g_T` (the rows of `G`) is `{x : G x >= 0}`: the update directions `x` (the
parameters move by `-learning_rate * x`) along which, to first order, no task's loss increases. Projecting
`y = G^T u` onto it is a problem in `T` weights only (Quinton & Rey 2024, Prop. 1): `proj(G^T u) = G^T w` with
`w = argmin_{v >= u} v^T K v` and `K = G G^T`, so the whole method works on the `T x T` Gram matrix.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from keras import ops

from kmtl._checks import check_positive_int
from kmtl.weighting.base import GradientWeighting

# Projected-Newton settings: the largest step that counts a variable near zero as "at its bound", the Armijo
# constant, how many times a Newton direction is recomputed after pinning variables it would push below zero, and the
# number of halvings tried on the projected arc. Chosen by measurement on random and nearly degenerate Gram matrices
# with T <= 16 against scipy's NNLS (see tests/test_weighting_conic.py).
_BIND = 1e-3
_ARMIJO = 0.1
_REFINE = 2
_HALVINGS = 10


def dual_cone_weights(gram, anchors, iterations: int = 20, ridge: float = 1e-8):
    """Weights of the projections of `anchors @ G` onto the dual cone of the rows of `G`, from the Gram matrix.

    Solves, for every row `u` of `anchors`, `w = argmin_{v >= u} v^T K v + ridge * sum_i K_ii (v_i - u_i)^2` with
    `K = gram`, by a projected Newton method (Bertsekas 1982) with a fixed number of iterations, so that it runs inside
    a traced and XLA-compiled step. The variables are rescaled so that `K` has a unit diagonal (a task's gradient norm
    does not affect convergence), where the ridge term is `ridge` on the diagonal. It keeps the problem strictly
    convex when gradients are linearly dependent (more tasks than parameters, duplicated tasks) and moves the answer
    only when the gradients' cosine matrix has an eigenvalue near `ridge`. Each iteration pins the variables at zero
    whose gradient points outwards, takes a Newton step on the others (recomputed after pinning those it would push
    below zero), and keeps the better of a backtracking (Armijo) search along the projected arc and an exact line
    search along the Newton direction (less its components that push variables at zero down) stopped at the first
    bound.

    The projection of `y = G^T u` is `G^T w`. The QP's multipliers are non-negative, so
    `G (G^T w) = K w >= -ridge * diag(K) (w - u)`: every task's gradient has a non-negative inner product with the
    projection, up to the ridge; when `K u >= 0` (no conflict) `w = u` exactly.

    Args:
        gram: float tensor `(T, T)`, the Gram matrix `G G^T` (symmetric positive semi-definite).
        anchors: float tensor `(R, T)`; row `r` is the `u` of one projection.
        iterations: int. Newton iterations (fixed). On about 2,000 random float64 problems with T <= 16
            (conflicting, badly scaled, nearly collinear, duplicated, rank-deficient) 20 reached scipy's NNLS
            solution of the same problem to 1e-9 relative, except one (16 nearly collinear gradients with norms
            spread over e^+-9) that needed 30. Fewer Newton recomputations (`_REFINE`) stalled on some of them.
        ridge: float > 0. Weight of the proximal term, relative to each task's squared gradient norm. The default
            suits a float64 Gram matrix (what the strategies pass); use about 1e-6 for a float32 one.

    Returns:
        Float tensor `(R, T)` of weights `w >= anchors`.

    Reference:
        Quinton & Rey (2024). Jacobian Descent for Multi-Objective Optimization. arXiv:2406.16232.
        Bertsekas (1982). Projected Newton Methods for Optimization Problems with Simple Constraints. SIAM J. Control.
    """
    gram = ops.convert_to_tensor(gram)
    anchors = ops.cast(anchors, gram.dtype)
    diag = ops.diagonal(gram)
    valid = diag > 1e-20 * ops.max(diag)  # zero gradients keep weight u: they add nothing to the direction
    mask = ops.cast(valid, gram.dtype)
    norms = ops.sqrt(ops.where(valid, diag, 1.0))
    eye = ops.eye(gram.shape[-1], dtype=gram.dtype)
    cosines = gram / (norms[:, None] * norms[None, :]) * mask[:, None] * mask[None, :]
    hessian = cosines * (1.0 - eye) + eye * (1.0 + ridge)
    # In the variables y = norms * (v - u) >= 0 the problem is min 0.5 y^T H y + (K u / norms)^T y.
    linear = ops.matmul(anchors, gram) / norms * mask
    step = _projected_newton_step(hessian, linear)
    y = ops.fori_loop(0, iterations, lambda _, y: step(y), ops.zeros_like(linear))
    return anchors + y / norms


def _change(hessian, y, grad, candidates):
    """`f(candidate) - f(y)` for each candidate `(R, L, T)`, from the step alone (no cancellation), and its linear
    part."""
    s = candidates - y[:, None, :]
    linear = ops.sum(grad[:, None, :] * s, axis=-1)
    return linear + 0.5 * ops.sum(ops.matmul(s, hessian) * s, axis=-1), linear


def _projected_newton_step(hessian, linear):
    """One iteration of the projected Newton method on `min_y 0.5 y^T H y + linear^T y, y >= 0` (rows batched)."""
    dtype = hessian.dtype
    eye = ops.eye(hessian.shape[-1], dtype=dtype)
    halvings = ops.convert_to_tensor(np.append(0.5 ** np.arange(_HALVINGS), 0.0), dtype)

    def newton(free, grad):
        # Newton step on the free variables; pinned ones stay put (their rows and columns become identity).
        system = free[:, :, None] * hessian[None] * free[:, None, :] + eye * (1.0 - free)[:, :, None]
        return free * ops.solve(system, -(free * grad)[..., None])[..., 0]

    def step(y):
        grad = ops.matmul(y, hessian) + linear
        residual = ops.norm(y - ops.maximum(y - grad, 0.0), axis=-1, keepdims=True)
        near = y <= ops.minimum(_BIND, residual)
        free = 1.0 - ops.cast(ops.logical_and(near, grad > 0), dtype)
        direction = newton(free, grad)
        for _ in range(_REFINE):
            free = free * (1.0 - ops.cast(ops.logical_and(near, direction < 0), dtype))
            direction = newton(free, grad)
        # Projected arc: the Newton step on the free variables, a (unit-diagonal) gradient step on the pinned ones.
        arc = direction - (1.0 - free) * grad
        candidates = ops.maximum(y[:, None, :] + halvings[None, :, None] * arc[:, None, :], 0.0)
        change, linear_change = _change(hessian, y, grad, candidates)
        accepted = ops.argmax(ops.cast(change <= _ARMIJO * linear_change, "int32"), axis=-1)  # the zero step always is
        y_arc = ops.take_along_axis(candidates, accepted[:, None, None], axis=1)[:, 0]
        change_arc = ops.take_along_axis(change, accepted[:, None], axis=1)[:, 0]
        # Ray: the Newton step without the components that push variables already at zero further down, with an
        # exact line search cut at the first variable it drives to zero (set exactly to zero).
        ray = ops.where(ops.logical_and(y <= 0.0, direction < 0), 0.0, direction)
        slope = ops.sum(grad * ray, axis=-1, keepdims=True)
        curvature = ops.sum(ops.matmul(ray, hessian) * ray, axis=-1, keepdims=True)
        best = ops.where(slope < 0, -slope / ops.where(curvature > 0, curvature, 1.0), 0.0)
        falling = ray < 0
        ratio = ops.where(falling, y / ops.where(falling, -ray, 1.0), np.inf)
        length = ops.minimum(ops.min(ratio, axis=-1, keepdims=True), best)
        y_ray = ops.where(ops.logical_and(falling, ratio <= length), 0.0, ops.maximum(y + length * ray, 0.0))
        change_ray = _change(hessian, y, grad, y_ray[:, None, :])[0][:, 0]
        return ops.where((change_ray < change_arc)[:, None], y_ray, y_arc)

    return step


def preference(pref_vector, num_tasks: int, dtype="float32"):
    if pref_vector is None:
        return ops.full((num_tasks,), 1.0 / num_tasks, dtype=dtype)
    return ops.convert_to_tensor(pref_vector, dtype=dtype)


class DualConeWeighting(GradientWeighting):
    """Shared arguments and checks of UPGrad and DualProj."""

    def __init__(
        self,
        pref_vector: Sequence[float] | None = None,
        iterations: int = 20,
        ridge: float = 1e-8,
        rep_grad: bool = False,
        **kwargs,
    ):
        super().__init__(rep_grad=rep_grad, **kwargs)
        if pref_vector is not None:
            values = np.asarray(pref_vector, dtype="float64")
            if values.ndim != 1 or not np.all(np.isfinite(values)) or np.any(values < 0) or not np.sum(values) > 0:
                raise ValueError(
                    "Invalid value for `pref_vector`. Expected None or a list of non-negative floats, one per task, "
                    f"not all zero. Received: pref_vector={pref_vector!r}"
                )
            pref_vector = [float(v) for v in values]
        check_positive_int("iterations", iterations)
        if isinstance(ridge, bool) or not (isinstance(ridge, (int, float)) and 0 < ridge < 1):
            raise ValueError(f"Invalid value for `ridge`. Expected a float in (0, 1). Received: ridge={ridge!r}")
        self.pref_vector = pref_vector
        self.iterations = int(iterations)
        self.ridge = float(ridge)

    def create_state(self, num_tasks):
        if self.pref_vector is not None and len(self.pref_vector) != num_tasks:
            raise ValueError(
                f"Invalid value for `pref_vector`. Expected {num_tasks} values, one per task {list(self.task_names)}. "
                f"Received: pref_vector={self.pref_vector!r}"
            )

    def get_config(self):
        return {
            **super().get_config(),
            "pref_vector": self.pref_vector,
            "iterations": self.iterations,
            "ridge": self.ridge,
        }
