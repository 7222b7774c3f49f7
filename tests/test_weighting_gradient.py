"""Tests for the gradient-level strategies PCGrad, GradDrop, MGDA, IMTL-G, CAGrad, GradVac and GradNorm: closed forms,
the papers' defining properties, reference solutions, XLA, configs and saved state."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops
from tiny import tiny_data, tiny_model

from kmtl import Task
from kmtl.weighting import STRATEGIES as NAMES
from kmtl.weighting._gradients import task_orders
from kmtl.weighting.cagrad import CAGrad
from kmtl.weighting.graddrop import GradDrop
from kmtl.weighting.gradnorm import GradNorm
from kmtl.weighting.gradvac import GradVac
from kmtl.weighting.imtl import IMTLG
from kmtl.weighting.mgda import MGDA, mgda_ub
from kmtl.weighting.pcgrad import PCGrad, pcgrad_coefficients


def configured(strategy, num_tasks):
    strategy.configure([Task(f"t{i}", "regression") for i in range(num_tasks)])
    return strategy


def aggregate(strategy, grads, losses=None):
    grads = np.asarray(grads, "float32")
    losses = np.ones(len(grads), "float32") if losses is None else np.asarray(losses, "float32")
    direction, weights = strategy.aggregate(ops.convert_to_tensor(grads), ops.convert_to_tensor(losses))
    return ops.convert_to_numpy(direction).astype(np.float64), ops.convert_to_numpy(weights).astype(np.float64)


def random_grads(num_tasks, size=7, seed=0, shift=0.3):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(num_tasks, size)) + shift * rng.normal(size=size)).astype("float32")


def simplex_minimum(objective, num_tasks, starts=8):
    """Reference solution of `min objective(w)` over the simplex: SLSQP from several starts, best kept."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(0)
    best = None
    for k in range(starts):
        start = np.full(num_tasks, 1.0 / num_tasks) if k == 0 else rng.dirichlet(np.ones(num_tasks))
        result = minimize(
            objective, start, method="SLSQP", bounds=[(0, 1)] * num_tasks,
            constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}], options={"ftol": 1e-16, "maxiter": 1000},
        )
        w = np.clip(result.x, 0, None) / np.clip(result.x, 0, None).sum()
        if best is None or objective(w) < objective(best):
            best = w
    return best


# === MGDA ===


@pytest.mark.parametrize(
    "g1, g2", [([1.0, 0.0], [0.0, 2.0]), ([3.0, 1.0], [-1.0, 2.0]), ([1.0, 1.0], [3.0, 2.0]), ([2.0, 0.5], [0.2, 0.1])]
)
def test_mgda_two_tasks_closed_form(g1, g2):
    g1, g2 = np.array(g1), np.array(g2)
    gamma = np.clip(np.dot(g2 - g1, g2) / np.dot(g1 - g2, g1 - g2), 0.0, 1.0)
    direction, weights = aggregate(configured(MGDA(), 2), [g1, g2])
    np.testing.assert_allclose(weights, [gamma, 1.0 - gamma], atol=1e-6)
    np.testing.assert_allclose(direction, gamma * g1 + (1.0 - gamma) * g2, atol=1e-6)


def assert_min_norm(weights, gram):
    # KKT certificate of the min-norm point: every g_i · g_w >= ||g_w||² (equality on the support).
    assert weights.min() >= 0 and weights.sum() == pytest.approx(1.0, abs=1e-6)
    assert (gram @ weights).min() >= weights @ gram @ weights - 1e-7 * np.abs(gram).max()


@pytest.mark.parametrize("num_tasks", [3, 4, 5, 6])
@pytest.mark.parametrize("max_exact_tasks", [10, 0])
def test_mgda_against_reference_qp(num_tasks, max_exact_tasks):
    grads = random_grads(num_tasks, seed=num_tasks)
    gram = grads.astype(np.float64) @ grads.T.astype(np.float64)
    expected = simplex_minimum(lambda w: w @ gram @ w, num_tasks)
    strategy = configured(MGDA(max_exact_tasks=max_exact_tasks), num_tasks)
    direction, weights = graph(strategy)(grads)
    np.testing.assert_allclose(weights, expected, atol=1e-6)
    np.testing.assert_allclose(direction, weights @ grads, atol=1e-5)
    assert_min_norm(weights, gram)


def test_mgda_many_tasks_and_rank_deficient():
    # 14 tasks (more than max_exact_tasks: iterations, then a polish) and 6 tasks in 3 dimensions (origin inside).
    grads = random_grads(14, size=20, seed=3)
    gram = grads.astype(np.float64) @ grads.T.astype(np.float64)
    _, weights = graph(configured(MGDA(), 14))(grads)
    np.testing.assert_allclose(weights, simplex_minimum(lambda w: w @ gram @ w, 14, starts=3), atol=1e-6)
    assert_min_norm(weights, gram)
    direction, weights = aggregate(configured(MGDA(), 6), random_grads(6, size=3, seed=4, shift=0.0))
    np.testing.assert_allclose(direction, 0.0, atol=1e-6)
    assert weights.min() >= 0 and weights.sum() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("normalization", ["none", "l2", "loss", "loss+"])
def test_mgda_normalizations(normalization):
    grads, losses = random_grads(4, seed=11), np.array([0.5, 2.0, 1.0, 4.0], "float32")
    norms = np.linalg.norm(grads.astype(np.float64), axis=1)
    scale = {"none": np.ones(4), "l2": norms, "loss": losses, "loss+": losses * norms}[normalization]
    normalized = grads / scale[:, None]
    gram = normalized @ normalized.T
    expected = simplex_minimum(lambda w: w @ gram @ w, 4)
    direction, weights = aggregate(configured(MGDA(normalization=normalization), 4), grads, losses)
    np.testing.assert_allclose(weights, expected, atol=1e-6)
    np.testing.assert_allclose(direction, expected @ grads, atol=1e-5)  # convex weights on the raw gradients


def test_mgda_identical_and_zero_gradients():
    g = np.array([1.0, -2.0, 0.5])
    direction, weights = aggregate(configured(MGDA(), 2), [g, g])
    np.testing.assert_allclose(direction, g, atol=1e-6)
    # Any split is optimal; ties go to the even one, up to the 1e-12 ridge amplified by the singular Gram matrix.
    np.testing.assert_allclose(weights, [0.5, 0.5], atol=1e-4)
    direction, weights = aggregate(configured(MGDA(normalization="l2"), 2), np.zeros((2, 3)))
    np.testing.assert_array_equal(direction, 0.0)
    assert np.all(np.isfinite(weights))


def test_mgda_ub():
    strategy = mgda_ub(normalization="loss+")
    assert type(strategy) is MGDA and strategy.rep_grad and strategy.normalization == "loss+"


# === PCGrad ===


def pcgrad_reference(grads, orders):
    grads = grads.astype(np.float64)
    projected = []
    for i, order in enumerate(orders):
        g = grads[i].copy()
        for j in order:
            if j != i and g @ grads[j] < 0:
                g -= (g @ grads[j]) / (grads[j] @ grads[j]) * grads[j]
        projected.append(g)
    return np.sum(projected, axis=0)


def all_orders(num_tasks):
    """Every choice of one visiting order of the other tasks for each task."""
    per_task = [list(itertools.permutations([j for j in range(num_tasks) if j != i])) for i in range(num_tasks)]
    return itertools.product(*per_task)


def test_pcgrad_two_tasks_closed_form():
    g1, g2 = np.array([1.0, 2.0, 0.0]), np.array([-2.0, 0.5, 1.0])  # g1 · g2 = -1
    direction, weights = aggregate(configured(PCGrad(seed=0), 2), [g1, g2])
    p1, p2 = g1 - (g1 @ g2) / (g2 @ g2) * g2, g2 - (g1 @ g2) / (g1 @ g1) * g1
    assert p1 @ g2 == pytest.approx(0.0) and p2 @ g1 == pytest.approx(0.0)
    np.testing.assert_allclose(direction, p1 + p2, atol=1e-6)
    np.testing.assert_allclose(weights, [1 - (g1 @ g2) / (g1 @ g1), 1 - (g1 @ g2) / (g2 @ g2)], atol=1e-6)
    direction, weights = aggregate(configured(PCGrad(), 2), [g1, -g2])  # no conflict: the sum
    np.testing.assert_allclose(direction, g1 - g2, atol=1e-6)
    np.testing.assert_array_equal(weights, [1.0, 1.0])


@pytest.mark.parametrize("num_tasks", [3, 4, 5])
def test_pcgrad_in_task_order_matches_reference(num_tasks):
    grads = random_grads(num_tasks, seed=20 + num_tasks, shift=0.0)
    direction, weights = aggregate(configured(PCGrad(shuffle=False), num_tasks), grads)
    orders = [list(range(num_tasks))] * num_tasks
    np.testing.assert_allclose(direction, pcgrad_reference(grads, orders), atol=1e-5)
    np.testing.assert_allclose(weights @ grads, direction, atol=1e-5)


def test_pcgrad_random_orders():
    grads = random_grads(3, seed=5, shift=0.0)
    candidates = {orders: pcgrad_reference(grads, orders) for orders in all_orders(3)}
    strategy = configured(PCGrad(seed=7), 3)
    seen = set()
    for _ in range(12):
        direction, _ = aggregate(strategy, grads)
        matches = [k for k, v in candidates.items() if np.allclose(direction, v, atol=1e-5)]
        assert matches, direction  # every step is PCGrad for some order
        seen.add(tuple(np.round(direction, 4)))
    assert len(seen) > 1  # and the order changes between steps
    again = configured(PCGrad(seed=7), 3)
    np.testing.assert_array_equal(aggregate(again, grads)[0], aggregate(configured(PCGrad(seed=7), 3), grads)[0])


def test_pcgrad_projected_gradients_do_not_conflict():
    # Two conflicting pairs, (0, 1) and (2, 3), whose other inner products are >= 0: in any visiting order, no
    # projected gradient has a negative inner product with another task's original gradient. (In general a task
    # projected on several gradients can come to conflict again with an earlier one; the paper's algorithm allows it.)
    grads = np.array([[1.0, 0.0, 0.0, 0.0], [-1.0, 1.0, 0.0, 0.0], [0.3, 0.3, 1.0, 0.0], [0.0, 0.0, -1.0, 1.0]])
    gram = ops.convert_to_tensor(grads @ grads.T)
    seed = keras.random.SeedGenerator(4)
    for _ in range(6):
        coefficients = ops.convert_to_numpy(pcgrad_coefficients(gram, task_orders(4, seed)))
        inner = (coefficients @ grads) @ grads.T
        assert inner[~np.eye(4, dtype=bool)].min() >= -1e-9
        np.testing.assert_allclose([inner[0, 1], inner[1, 0], inner[2, 3], inner[3, 2]], 0.0, atol=1e-9)  # projected


# === CAGrad ===


def cagrad_objective(gram, radius):
    """The CAGrad dual `F(w) = g_wᵀ g_0 + r ||g_w||` on the Gram matrix."""
    return lambda w: w @ gram.mean(axis=1) + radius * np.sqrt(max(w @ gram @ w, 0.0))


@pytest.mark.parametrize("rescale", [0, 1, 2])
def test_cagrad_without_radius_is_the_mean(rescale):
    grads = random_grads(4, seed=2, shift=0.0)
    direction, weights = aggregate(configured(CAGrad(c=0.0, rescale=rescale), 4), grads)
    np.testing.assert_allclose(direction, grads.mean(axis=0), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(weights, 0.25)


def test_cagrad_origin_in_hull():
    # F(w) = w_3 / 3 + r ||(w_1 - w_2, w_3)|| is least (0) at w = (1/2, 1/2, 0), where g_w = 0 and its direction is
    # undefined: CAGrad steps along g_0 / s only.
    g = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    direction, weights = aggregate(configured(CAGrad(c=0.5), 3), g)
    np.testing.assert_allclose(direction, g.mean(axis=0) / 1.25, atol=1e-6)
    np.testing.assert_allclose(weights, 1 / 3 / 1.25, atol=1e-6)


@pytest.mark.parametrize("num_tasks, c, rescale", [(2, 0.4, 1), (3, 0.4, 0), (4, 0.8, 2), (5, 0.2, 1), (3, 2.0, 0)])
def test_cagrad_against_reference(num_tasks, c, rescale):
    grads = random_grads(num_tasks, seed=30 + num_tasks)
    g = grads.astype(np.float64)
    gram, g0 = g @ g.T, g.mean(axis=0)
    radius = c * np.linalg.norm(g0)
    w = simplex_minimum(cagrad_objective(gram, radius), num_tasks)
    gw = w @ g
    expected = (g0 + radius / np.linalg.norm(gw) * gw) / (1.0, 1.0 + c**2, 1.0 + c)[rescale]
    direction, weights = aggregate(configured(CAGrad(c=c, rescale=rescale), num_tasks), grads)
    np.testing.assert_allclose(direction, expected, atol=1e-5)
    np.testing.assert_allclose(weights @ g, direction, atol=1e-5)
    # Defining property: the unscaled direction lies on the sphere of radius c ||g_0|| around g_0.
    unscaled = direction * (1.0, 1.0 + c**2, 1.0 + c)[rescale]
    assert np.linalg.norm(unscaled - g0) == pytest.approx(radius, rel=1e-5)


def test_cagrad_many_tasks():
    # 14 tasks: above max_exact_tasks, the dual is solved by iterations and a polish; check optimality on F.
    grads = random_grads(14, size=20, seed=8)
    g = grads.astype(np.float64)
    gram = g @ g.T
    objective = cagrad_objective(gram, 0.4 * np.linalg.norm(g.mean(axis=0)))
    reference = simplex_minimum(objective, 14, starts=3)
    _, weights = graph(configured(CAGrad(), 14))(grads)
    dual = weights * (1 + 0.4**2) - 1 / 14  # back from the coefficients to the dual weights (up to a factor)
    assert objective(dual / dual.sum()) <= objective(reference) + 1e-9 * np.abs(gram).max()


# === IMTL-G ===


@pytest.mark.parametrize("num_tasks", [2, 3, 5])
def test_imtlg_equal_projections(num_tasks):
    grads = random_grads(num_tasks, seed=40 + num_tasks)
    direction, weights = aggregate(configured(IMTLG(), num_tasks), grads)
    units = grads / np.linalg.norm(grads, axis=1, keepdims=True)
    projections = units @ direction
    np.testing.assert_allclose(projections, projections[0], rtol=1e-5)
    assert weights.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(weights @ grads, direction, atol=1e-5)
    # The paper's closed form, written out.
    d = grads[0] - grads[1:]
    u = units[0] - units[1:]
    alpha = grads[0] @ u.T @ np.linalg.inv(d @ u.T)
    np.testing.assert_allclose(weights, np.concatenate([[1 - alpha.sum()], alpha]), atol=1e-5)


def test_imtlg_two_tasks_closed_form_and_repeats():
    g1, g2 = np.array([3.0, 0.0]), np.array([0.0, 1.0])
    # Equal projections on e1 and e2 with α1 + α2 = 1: 3 α1 = α2, so α = (1/4, 3/4) and g = (3/4, 3/4).
    direction, weights = aggregate(configured(IMTLG(), 2), [g1, g2])
    np.testing.assert_allclose(weights, [0.25, 0.75], atol=1e-6)
    np.testing.assert_allclose(direction, [0.75, 0.75], atol=1e-6)
    direction, _ = aggregate(configured(IMTLG(), 2), [g1, g1])  # repeated gradients: the ridge keeps it finite
    np.testing.assert_allclose(direction, g1, atol=1e-6)


# === GradDrop ===


def test_graddrop_agreeing_signs_is_the_sum():
    rng = np.random.default_rng(3)
    grads = np.abs(rng.normal(size=(3, 50))) * np.sign(rng.normal(size=50))  # each column has one sign
    direction, weights = aggregate(configured(GradDrop(seed=1), 3), grads)
    np.testing.assert_allclose(direction, grads.sum(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(weights, 1.0)


def test_graddrop_keep_probability():
    # Column: g_1 = +1, g_2 = -3, so P = 0.5 (1 + (-2) / 4) = 0.25: keep the +1 with probability 0.25, else -3.
    n = 4000
    grads = np.stack([np.ones(n), -3.0 * np.ones(n)])
    direction, _ = aggregate(configured(GradDrop(seed=5), 2), grads)
    assert set(np.unique(direction)) <= {1.0, -3.0}
    positive = np.mean(direction == 1.0)
    assert abs(positive - 0.25) < 5 * np.sqrt(0.25 * 0.75 / n)  # 5 standard errors
    # A leak lets a fraction of the dropped component through: l g + (1 - l) M g.
    direction, _ = aggregate(configured(GradDrop(leak=[0.5, 0.0], seed=5), 2), grads)
    assert set(np.round(np.unique(direction), 6)) <= {1.0, -2.5}
    direction, _ = aggregate(configured(GradDrop(leak=1.0, seed=5), 2), grads)
    np.testing.assert_array_equal(direction, -2.0)


def test_graddrop_leak_per_task_must_match_tasks():
    with pytest.raises(ValueError, match="leak.*3 tasks"):
        configured(GradDrop(leak=[0.1, 0.2]), 3)


# === GradVac ===


def test_gradvac_two_tasks_closed_form_and_ema():
    g1, g2 = np.array([1.0, 0.2, 0.0]), np.array([-0.5, 1.0, 0.3])
    cos = g1 @ g2 / np.linalg.norm(g1) / np.linalg.norm(g2)
    beta, target = 0.1, 0.5
    strategy = configured(GradVac(beta=beta, seed=0), 2)
    strategy.targets.assign(np.array([[0.0, target], [target, 0.0]], "float32"))
    direction, weights = aggregate(strategy, [g1, g2])

    def corrected(gi, gj):
        coefficient = np.linalg.norm(gi) * (target * np.sqrt(1 - cos**2) - cos * np.sqrt(1 - target**2))
        return gi + coefficient / (np.linalg.norm(gj) * np.sqrt(1 - target**2)) * gj

    v1, v2 = corrected(g1, g2), corrected(g2, g1)
    assert v1 @ g2 / np.linalg.norm(v1) / np.linalg.norm(g2) == pytest.approx(target)  # the defining property
    np.testing.assert_allclose(direction, v1 + v2, atol=1e-6)
    np.testing.assert_allclose(weights @ np.stack([g1, g2]), direction, atol=1e-6)
    expected = (1 - beta) * target + beta * cos
    np.testing.assert_allclose(strategy.targets.numpy(), [[0.0, expected], [expected, 0.0]], atol=1e-7)
    # Above the target: no correction, the plain sum; the targets still move.
    strategy.targets.assign(np.array([[0.0, -0.9], [-0.9, 0.0]], "float32"))
    direction, _ = aggregate(strategy, [g1, g2])
    np.testing.assert_allclose(direction, g1 + g2, atol=1e-6)
    assert strategy.targets.numpy()[0, 1] == pytest.approx(0.9 * -0.9 + 0.1 * cos, abs=1e-7)


def test_gradvac_starts_as_pcgrad():
    grads = random_grads(4, seed=9, shift=0.0)
    strategy = configured(GradVac(seed=2), 4)
    direction, _ = aggregate(strategy, grads)
    # Targets start at 0: a correction is a projection. Shuffled orders, so compare the defining property:
    # the direction is the sum of rows each built from PCGrad projections in some order.
    candidates = [pcgrad_reference(grads, orders) for orders in all_orders(4)]
    assert min(np.abs(direction - c).max() for c in candidates) < 1e-5


# === GradNorm ===


def test_gradnorm_one_update_by_hand():
    grads = np.array([[3.0, 4.0, 0.0], [0.0, 1.0, 0.0], [1.0, 2.0, 2.0]])  # norms 5, 1, 3
    alpha, lr = 1.5, 0.1
    strategy = configured(GradNorm(alpha=alpha, learning_rate=lr), 3)
    initial = np.array([2.0, 1.0, 4.0])
    direction, weights = aggregate(strategy, grads, initial)  # first step: records L(0), ratios all 1
    np.testing.assert_array_equal(weights, 1.0)
    np.testing.assert_allclose(direction, grads.sum(axis=0), atol=1e-6)
    np.testing.assert_allclose(strategy.initial_losses.numpy(), initial)
    # Step 1 by hand: G = w ||g|| = (5, 1, 3), mean 3, r = 1 so targets 3: signs (+, -, 0).
    w1 = np.array([1 - lr * 5, 1 + lr * 1, 1.0])
    w1 = w1 * 3 / w1.sum()
    np.testing.assert_allclose(strategy.task_weights.numpy(), w1, rtol=1e-6)

    losses = np.array([1.0, 0.9, 1.0])
    direction, weights = aggregate(strategy, grads, losses)
    np.testing.assert_allclose(weights, w1, rtol=1e-6)
    np.testing.assert_allclose(direction, w1 @ grads, rtol=1e-5)
    ratios = losses / initial
    targets = (w1 * [5, 1, 3]).mean() * (ratios / ratios.mean()) ** alpha
    w2 = w1 - lr * np.sign(w1 * [5, 1, 3] - targets) * [5, 1, 3]
    w2 = w2 * 3 / w2.sum()
    np.testing.assert_allclose(strategy.task_weights.numpy(), w2, rtol=1e-5)
    assert strategy.task_weights.numpy().sum() == pytest.approx(3.0, rel=1e-6)
    np.testing.assert_allclose(strategy.initial_losses.numpy(), initial)  # recorded once


def test_gradnorm_weights_stay_positive():
    strategy = configured(GradNorm(learning_rate=10.0), 2)
    for _ in range(3):
        aggregate(strategy, [[100.0, 0.0], [0.0, 0.01]], [1.0, 1.0])
        w = strategy.task_weights.numpy()
        assert w.min() > 0 and w.sum() == pytest.approx(2.0, rel=1e-6)


# === Every strategy ===

STRATEGIES = {
    "pcgrad": lambda: PCGrad(seed=1),
    "pcgrad_ordered": lambda: PCGrad(shuffle=False),
    "graddrop": lambda: GradDrop(leak=0.2, seed=1),
    "mgda": lambda: MGDA(normalization="loss+"),
    "imtl_g": IMTLG,
    "cagrad": lambda: CAGrad(c=0.5),
    "gradvac": lambda: GradVac(beta=0.1, seed=1),
    "gradnorm": lambda: GradNorm(alpha=1.0),
}
RANDOM_DRAWS = ["graddrop"]  # uniform draws may differ between XLA and eager kernels


def graph(strategy, jit_compile=False):
    """`strategy.aggregate` as a `tf.function` (XLA-compiled if asked), on numpy inputs, returning float64 arrays.

    Tests of the iterative solvers use a graph: 500 eager loop steps are slow.
    """
    compiled = tf.function(strategy.aggregate, jit_compile=jit_compile)

    def run(grads, losses=None):
        losses = np.ones(len(grads), "float32") if losses is None else losses
        direction, weights = compiled(tf.constant(grads, tf.float32), tf.constant(losses, tf.float32))
        return direction.numpy().astype(np.float64), weights.numpy().astype(np.float64)

    return run


@pytest.mark.parametrize("key", sorted(STRATEGIES))
def test_xla_matches_eager(key):
    # Same seeds, so the random visiting orders agree too; GradDrop's draws are checked against its two outcomes.
    grads, losses = random_grads(3, seed=50), np.array([0.7, 1.3, 0.4], "float32")
    eager, compiled = configured(STRATEGIES[key](), 3), configured(STRATEGIES[key](), 3)
    run = graph(compiled, jit_compile=True)
    for step in range(2):
        e_direction, e_weights = aggregate(eager, grads, losses * (1 + step))
        c_direction, c_weights = run(grads, losses * (1 + step))
        if key in RANDOM_DRAWS:
            leaked = np.where(grads > 0, 1.0, 0.2) * grads, np.where(grads < 0, 1.0, 0.2) * grads
            outcomes = np.stack([leaked[0].sum(axis=0), leaked[1].sum(axis=0)])
            assert np.all(np.isclose(c_direction[None], outcomes, atol=1e-6).any(axis=0))
            assert np.all(np.isclose(e_direction[None], outcomes, atol=1e-6).any(axis=0))
            continue
        np.testing.assert_allclose(c_direction, e_direction, atol=1e-5)
        np.testing.assert_allclose(c_weights, e_weights, atol=1e-6)
    for e, c in zip(eager.non_trainable_weights, compiled.non_trainable_weights):
        np.testing.assert_allclose(c.numpy(), e.numpy(), atol=1e-6, err_msg=c.path)


@pytest.mark.parametrize("key", sorted(STRATEGIES))
def test_config_round_trip(key):
    strategy = STRATEGIES[key]()
    config = strategy.get_config()
    restored = type(strategy).from_config(config)
    assert restored.get_config() == config
    deserialized = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(strategy))
    assert type(deserialized) is type(strategy) and deserialized.get_config() == config
    with_rep = type(strategy).from_config({**config, "rep_grad": True})
    assert with_rep.rep_grad and with_rep.get_config()["rep_grad"] is True


def test_names():
    gradient_level = {"pcgrad", "graddrop", "mgda", "mgda_ub", "imtl_g", "cagrad", "gradvac", "gradnorm"}
    assert {k: v for k, v in NAMES.items() if k in gradient_level - {"mgda_ub"}} == {
        "pcgrad": PCGrad, "graddrop": GradDrop, "mgda": MGDA, "imtl_g": IMTLG,
        "cagrad": CAGrad, "gradvac": GradVac, "gradnorm": GradNorm,
    }
    assert NAMES["mgda_ub"] is mgda_ub and NAMES["mgda_ub"]().rep_grad
    assert all(NAMES[name]().gradient_level for name in gradient_level)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: PCGrad(shuffle="yes"), r"shuffle.*Received: shuffle='yes'"),
        (lambda: GradDrop(leak=1.5), r"leak.*Received: leak=1.5"),
        (lambda: GradDrop(leak=[]), r"leak.*Received: leak=\[\]"),
        (lambda: MGDA(normalization="max"), r"normalization.*Received: normalization='max'"),
        (lambda: MGDA(max_exact_tasks=20), r"max_exact_tasks.*Received: max_exact_tasks=20"),
        (lambda: CAGrad(c=-0.1), r"`c`.*Received: c=-0.1"),
        (lambda: CAGrad(rescale=3), r"rescale.*Received: rescale=3"),
        (lambda: GradVac(beta=0.0), r"beta.*Received: beta=0.0"),
        (lambda: GradNorm(alpha=-1), r"alpha.*Received: alpha=-1"),
        (lambda: GradNorm(learning_rate=0), r"learning_rate.*Received: learning_rate=0"),
    ],
)
def test_invalid_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# === Inside a model: training and saved state ===


@pytest.mark.parametrize(
    "weighting, state",
    [
        (GradVac(beta=0.5, seed=3), ["targets"]),
        (GradNorm(learning_rate=0.05), ["task_weights", "initial_losses"]),
        (GradDrop(seed=3), []),  # no state, but its random draws resume where they were
    ],
)
def test_state_survives_save_and_load(weighting, state, tmp_path):
    model = tiny_model(weighting, head_units=())
    x, y = tiny_data()
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    assert np.isfinite(history["loss"]).all()
    for name in state:
        assert np.abs(getattr(model.weighting, name).numpy()).max() > 0.01, name  # training moved the state
    if isinstance(weighting, GradNorm):
        np.testing.assert_allclose(history["a_weight"][-1] + history["b_weight"][-1] + history["c_weight"][-1], 3.0)
        assert not np.allclose(model.weighting.task_weights.numpy(), 1.0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert type(restored.weighting) is type(weighting)
    assert restored.weighting.get_config() == model.weighting.get_config()
    for name in state + (["initialized"] if isinstance(weighting, GradNorm) else []):
        np.testing.assert_allclose(
            getattr(restored.weighting, name).numpy(), getattr(model.weighting, name).numpy(), atol=1e-5
        )
    # Training goes on from the saved state: one more epoch on both gives the same state and weights.
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    restored.fit(x, y, batch_size=8, epochs=1, verbose=0)
    for name in state:
        np.testing.assert_allclose(
            getattr(restored.weighting, name).numpy(), getattr(model.weighting, name).numpy(), atol=1e-5
        )
    for v, w in zip(model.trainable_variables, restored.trainable_variables):
        np.testing.assert_allclose(w.numpy(), v.numpy(), atol=1e-5, err_msg=v.path)
