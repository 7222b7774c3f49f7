"""Tests for Nash-MTL, UPGrad, DualProj, Aligned-MTL and ConFIG: solvers against references (scipy's NNLS, an
exact active-set enumeration, closed forms), the methods' defining properties, XLA, configs and training."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops
from scipy.optimize import nnls
from tiny import tiny_data, tiny_model

from kmtl import Task
from kmtl.weighting import STRATEGIES as REGISTERED
from kmtl.weighting._dual_cone import dual_cone_weights
from kmtl.weighting.aligned_mtl import AlignedMTL, aligned_weights
from kmtl.weighting.config import ConFIG
from kmtl.weighting.dualproj import DualProj
from kmtl.weighting.nash_mtl import NashMTL, nash_weights
from kmtl.weighting.upgrad import UPGrad


def configured(strategy, num_tasks):
    strategy.configure([Task(f"t{i}", "binary") for i in range(num_tasks)])
    return strategy


def aggregate(strategy, grads):
    grads = np.asarray(grads, "float32")
    direction, weights = strategy.aggregate(ops.convert_to_tensor(grads), ops.ones((len(grads),)))
    return ops.convert_to_numpy(direction).astype("float64"), ops.convert_to_numpy(weights).astype("float64")


def random_grads(seed, num_tasks, dim, scale_spread=0.0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(num_tasks, dim)) * np.exp(scale_spread * rng.normal(size=(num_tasks, 1)))


def conflicting_grads(seed, num_tasks, dim):
    """Random gradients where the mean gradient itself conflicts with task 0 (and some pairs conflict)."""
    grads = random_grads(seed, num_tasks, dim)
    grads[0] = -0.4 * grads[1:].sum(axis=0) + 0.3 * grads[0]
    mean = grads.mean(axis=0)
    assert grads[0] @ mean < 0
    return grads


def non_conflicting_grads(seed, num_tasks, dim):
    grads = np.abs(random_grads(seed, num_tasks, dim))
    assert np.all(grads @ grads.T > 0)
    return grads


def cosines(grads, direction):
    return grads @ direction / (np.linalg.norm(grads, axis=1) * np.linalg.norm(direction))


# === The non-negative QP of the dual-cone projections ===


def nnls_weights(grads, anchor, ridge=0.0):
    """argmin_{v >= u} v^T K v + ridge sum_i K_ii (v_i - u_i)^2 as NNLS in z = v - u >= 0:
    min ||G^T z + G^T u||^2 + ridge ||diag(||g_i||) z||^2."""
    matrix = np.concatenate([grads.T, np.sqrt(ridge) * np.diag(np.linalg.norm(grads, axis=1))])
    target = np.concatenate([-grads.T @ anchor, np.zeros(len(anchor))])
    z, _ = nnls(matrix, target, maxiter=10_000)
    return anchor + z


def enumerated_weights(gram, anchor):
    """The same QP by enumerating which variables are positive and keeping the set that satisfies the KKT
    conditions (z_S = -K_SS^-1 (K u)_S > 0, gradient >= 0 off S)."""
    n = len(anchor)
    linear = gram @ anchor
    for size in range(n + 1):
        for support in itertools.combinations(range(n), size):
            z = np.zeros(n)
            s = list(support)
            if s:
                z[s] = np.linalg.solve(gram[np.ix_(s, s)], -linear[s])
            if np.all(z[s] > 0) and np.all(gram @ z + linear >= -1e-12):
                return anchor + z
    raise AssertionError("no KKT point found")


def solve_qp(gram, anchors, **kwargs):
    weights = dual_cone_weights(ops.convert_to_tensor(gram), ops.convert_to_tensor(anchors), **kwargs)
    return ops.convert_to_numpy(weights)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_qp_matches_exact_enumeration(seed):
    grads = conflicting_grads(seed, 5, 8)
    gram = grads @ grads.T
    weights = solve_qp(gram, np.eye(5), ridge=1e-12)
    for i in range(5):
        expected = enumerated_weights(gram, np.eye(5)[i])
        np.testing.assert_allclose(weights[i] @ grads, expected @ grads, atol=1e-9 * np.linalg.norm(grads[i]))


@pytest.mark.parametrize(
    "num_tasks, dim, spread, seed, kind",
    [
        (2, 6, 0.0, 0, "opposed"),
        (5, 3, 1.0, 1, "opposed"),  # more tasks than dimensions: a singular Gram matrix
        (9, 30, 2.0, 2, "opposed"),  # norms spread over e^(+-4)
        (16, 8, 1.0, 3, "collinear"),
        (16, 16, 2.0, 6, "collinear"),
        (16, 100, 0.5, 5, "duplicated"),
    ],
)
def test_qp_matches_scipy_nnls_in_float64(num_tasks, dim, spread, seed, kind):
    # The reference solves the same (ridged) problem; cases like those that stalled earlier versions of the solver.
    grads = random_grads(seed, num_tasks, dim, spread)
    if kind == "opposed":
        grads[: num_tasks // 2] -= 1.2 * grads[num_tasks // 2 : 2 * (num_tasks // 2)]
    elif kind == "collinear":
        grads[1:] = grads[:1] * np.linspace(-1, 1, num_tasks - 1)[:, None] + 1e-3 * grads[1:]
    else:
        grads[2] = grads[0]
    anchors = np.concatenate([np.eye(num_tasks), np.full((1, num_tasks), 1.0 / num_tasks)])
    weights = solve_qp(grads @ grads.T, anchors)
    for anchor, w in zip(anchors, weights):
        expected = nnls_weights(grads, anchor, ridge=1e-8)
        assert np.linalg.norm((w - expected) @ grads) <= 1e-8 * np.linalg.norm(grads, axis=1).max()
        assert np.all(w >= anchor - 1e-12)


@pytest.mark.parametrize("cls", [UPGrad, DualProj])
@pytest.mark.parametrize("num_tasks, dim, seed", [(3, 10, 0), (8, 40, 1), (16, 64, 2)])
def test_exact_projections_from_float32_gradients(cls, num_tasks, dim, seed):
    grads = random_grads(seed, num_tasks, dim).astype("float32").astype("float64")
    assert (grads @ grads.T).min() < 0  # some tasks conflict
    anchors = np.eye(num_tasks) / num_tasks if cls is UPGrad else np.full((1, num_tasks), 1.0 / num_tasks)
    expected = sum(nnls_weights(grads, anchor) @ grads for anchor in anchors)  # exact projections, no ridge
    direction, _ = aggregate(configured(cls(), num_tasks), grads)
    # float32 gradients and combination; the float64 Gram matrix and solve add nothing measurable.
    assert np.linalg.norm(direction - expected) <= 1e-6 * np.linalg.norm(grads, axis=1).max()


def test_qp_leaves_zero_gradients_alone():
    grads = np.array([[1.0, 0.0], [0.0, 0.0], [-1.0, 1.0]])
    weights = solve_qp(grads @ grads.T, np.eye(3))
    np.testing.assert_allclose(weights[1], [0.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(weights[0] @ grads, [0.5, 0.5], atol=1e-8)  # 1e-8: the ridge's bias


# === UPGrad ===


def test_upgrad_two_tasks_closed_form():
    # With two conflicting gradients each projection is onto the other's half-space (PCGrad's formula), and UPGrad
    # is their mean.
    g1, g2 = random_grads(0, 2, 7)
    g2 = g2 - 2.0 * g1
    assert g1 @ g2 < 0
    p1 = g1 - (g1 @ g2) / (g2 @ g2) * g2
    p2 = g2 - (g1 @ g2) / (g1 @ g1) * g1
    direction, weights = aggregate(configured(UPGrad(), 2), [g1, g2])
    np.testing.assert_allclose(direction, (p1 + p2) / 2, rtol=1e-5, atol=1e-6)
    ratio = (g1 @ g2) / np.array([g1 @ g1, g2 @ g2])
    np.testing.assert_allclose(weights, [(1 - ratio[0]) / 2, (1 - ratio[1]) / 2], rtol=1e-5)  # of g1 and g2
    direction, _ = aggregate(configured(UPGrad(pref_vector=[1.0, 0.0]), 2), [g1, g2])
    np.testing.assert_allclose(direction, p1, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [UPGrad, DualProj])
@pytest.mark.parametrize("num_tasks, dim, seed", [(3, 5, 0), (6, 20, 1), (10, 12, 2), (12, 16, 3)])
def test_no_conflict_with_any_task(cls, num_tasks, dim, seed):
    grads = conflicting_grads(seed, num_tasks, dim)
    direction, weights = aggregate(configured(cls(), num_tasks), grads)
    np.testing.assert_allclose(weights @ grads, direction, rtol=1e-5, atol=1e-6)
    assert np.linalg.norm(direction) > 1e-3 * np.linalg.norm(grads, axis=1).min()
    assert cosines(grads, direction).min() >= -1e-6  # the mean had cosines[0] < 0
    assert np.all(weights >= 1.0 / num_tasks - 1e-6)  # w >= u for each projection


@pytest.mark.parametrize("cls", [UPGrad, DualProj])
def test_equals_the_mean_without_conflict(cls):
    grads = non_conflicting_grads(0, 6, 9)
    direction, weights = aggregate(configured(cls(), 6), grads)
    np.testing.assert_allclose(direction, grads.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(weights, np.full(6, 1 / 6), rtol=1e-6)


def test_dualproj_two_tasks_closed_form():
    g1, g2 = np.array([1.0, 0.0, 0.5]), np.array([-3.0, 1.0, 0.0])
    mean = (g1 + g2) / 2
    assert g1 @ mean < 0 <= g2 @ mean
    expected = mean - (g1 @ mean) / (g1 @ g1) * g1  # onto g1's half-space, which keeps g2 . x >= 0
    assert g2 @ expected >= 0
    direction, weights = aggregate(configured(DualProj(), 2), [g1, g2])
    np.testing.assert_allclose(direction, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(weights, [0.5 - (g1 @ mean) / (g1 @ g1), 0.5], rtol=1e-5)


# === Nash-MTL ===


@pytest.mark.parametrize("num_tasks, dim, seed", [(2, 5, 0), (4, 12, 1), (8, 40, 2), (16, 64, 3)])
def test_nash_weights_solve_the_bargaining_equation(num_tasks, dim, seed):
    grads = random_grads(seed, num_tasks, dim, scale_spread=1.0)
    grads[1] -= 0.8 * grads[0]  # some conflict
    gram = grads @ grads.T
    alpha = ops.convert_to_numpy(nash_weights(ops.convert_to_tensor(gram.astype("float32")))).astype("float64")
    assert np.all(alpha > 0)
    np.testing.assert_allclose(gram @ alpha, 1 / alpha, rtol=1e-5)
    alpha64 = ops.convert_to_numpy(nash_weights(ops.convert_to_tensor(gram)))  # float64: the ridged equation exactly
    np.testing.assert_allclose((gram + 1e-6 * np.diag(np.diag(gram))) @ alpha64, 1 / alpha64, rtol=1e-10)


def test_nash_orthogonal_gradients():
    grads = np.array([[3.0, 0.0, 0.0], [0.0, -0.5, 0.0], [0.0, 0.0, 0.02]])
    direction, weights = aggregate(configured(NashMTL(max_norm=0.0), 3), grads)
    np.testing.assert_allclose(weights, 1 / np.linalg.norm(grads, axis=1), rtol=1e-6)
    np.testing.assert_allclose(direction, [1.0, -1.0, 1.0], rtol=1e-6)


def test_nash_direction_ignores_loss_scales():
    # g_i . d = 1 / alpha_i: rescaling task i's loss rescales alpha_i inversely and leaves d unchanged.
    grads = random_grads(1, 4, 9)
    scales = np.array([[10.0], [0.1], [1.0], [3.0]])
    direction, weights = aggregate(configured(NashMTL(max_norm=0.0), 4), grads)
    scaled_direction, scaled_weights = aggregate(configured(NashMTL(max_norm=0.0), 4), grads * scales)
    np.testing.assert_allclose(scaled_direction, direction, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(scaled_weights * scales[:, 0], weights, rtol=1e-4)
    np.testing.assert_allclose(grads @ direction, 1 / weights, rtol=1e-4)


def test_nash_max_norm_clips_the_direction():
    grads = np.array([[3.0, 0.0], [0.0, 4.0]])  # alpha = (1/3, 1/4), direction (1, 1) of norm sqrt(2)
    direction, weights = aggregate(configured(NashMTL(max_norm=0.5), 2), grads)
    factor = 0.5 / (np.sqrt(2) + 1e-6)
    np.testing.assert_allclose(direction, [factor, factor], rtol=1e-6)
    np.testing.assert_allclose(weights, [factor / 3, factor / 4], rtol=1e-6)
    direction, _ = aggregate(configured(NashMTL(max_norm=5.0), 2), grads)  # under the bound: unchanged
    np.testing.assert_allclose(direction, [1.0, 1.0], rtol=1e-6)


def test_nash_update_weights_every():
    strategy = configured(NashMTL(max_norm=0.0, update_weights_every=3), 2)
    first = np.array([[2.0, 0.0], [0.0, 1.0]])
    second = np.array([[4.0, 0.0], [0.0, 0.5]])
    logged = [aggregate(strategy, grads)[1] for grads in (first, second, second, second)]
    for weights in logged[:3]:  # solved at step 0, reused at steps 1 and 2
        np.testing.assert_allclose(weights, [0.5, 1.0], rtol=1e-6)
    np.testing.assert_allclose(logged[3], [0.25, 2.0], rtol=1e-6)  # solved again at step 3
    np.testing.assert_allclose(strategy.alpha.numpy(), [0.25, 2.0], rtol=1e-6)
    assert int(strategy.steps_seen.numpy()) == 4


def test_nash_degenerate_gradients_stay_finite():
    # Opposite gradients (Pareto-stationary): the ridge keeps alpha finite, 1/sqrt(1e-6) / ||g|| in exact arithmetic
    # (float32 rounding of the cosine -1 moves it by a few percent), and the direction vanishes.
    direction, weights = aggregate(configured(NashMTL(max_norm=0.0), 2), [[1.0, 2.0], [-1.0, -2.0]])
    assert np.all(np.isfinite(weights))
    np.testing.assert_allclose(weights, 1 / np.sqrt(1e-6 * 5), rtol=0.1)
    np.testing.assert_allclose(direction, [0.0, 0.0], atol=1e-3)
    alpha = ops.convert_to_numpy(nash_weights(ops.convert_to_tensor(np.array([[5.0, -5.0], [-5.0, 5.0]]))))
    np.testing.assert_allclose(alpha, 1 / np.sqrt(1e-6 * 5), rtol=1e-8)
    # A zero gradient gets weight 0; the others are solved as if alone.
    _, weights = aggregate(configured(NashMTL(max_norm=0.0), 3), [[2.0, 0.0], [0.0, 0.0], [0.0, 0.5]])
    np.testing.assert_allclose(weights, [0.5, 0.0, 2.0], rtol=1e-5)


# === Aligned-MTL ===


def test_aligned_two_tasks_by_hand():
    # K = [[1, .6], [.6, 1]]: eigenvalues 1.6 (1, 1)/sqrt2 and 0.4 (1, -1)/sqrt2, sigma = sqrt(0.4);
    # B = sigma K^(-1/2) = [[.75, -.25], [-.25, .75]].
    grads = np.array([[1.0, 0.0], [0.6, 0.8]])
    _, alignment = aligned_weights(ops.convert_to_tensor(grads @ grads.T))
    np.testing.assert_allclose(ops.convert_to_numpy(alignment), [[0.75, -0.25], [-0.25, 0.75]], atol=1e-12)
    np.testing.assert_allclose(ops.convert_to_numpy(alignment) @ grads, [[0.6, -0.2], [0.2, 0.6]], atol=1e-12)
    direction, weights = aggregate(configured(AlignedMTL(), 2), grads)
    np.testing.assert_allclose(weights, [0.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(direction, [0.8, 0.4], rtol=1e-6)


@pytest.mark.parametrize("num_tasks, dim, seed", [(3, 8, 0), (5, 12, 1), (8, 30, 2)])
def test_aligned_gradients_are_orthogonal_with_equal_norms(num_tasks, dim, seed):
    grads = random_grads(seed, num_tasks, dim, scale_spread=0.5)
    _, alignment = aligned_weights(ops.convert_to_tensor(grads @ grads.T))
    aligned_grads = ops.convert_to_numpy(alignment) @ grads
    sigma_min = np.linalg.svd(grads, compute_uv=False).min()
    np.testing.assert_allclose(aligned_grads @ aligned_grads.T, sigma_min**2 * np.eye(num_tasks), atol=1e-10)
    direction, _ = aggregate(configured(AlignedMTL(), num_tasks), grads)
    np.testing.assert_allclose(direction, aligned_grads.sum(axis=0), rtol=1e-4, atol=1e-5)


def test_aligned_rank_deficient_system_has_condition_number_one():
    # 5 gradients in 3 dimensions: the paper's claim is about the singular values, all equal to the smallest
    # non-zero one of G; the aligned gradients cannot all be orthogonal.
    grads = random_grads(3, 5, 3)
    _, alignment = aligned_weights(ops.convert_to_tensor(grads @ grads.T))
    singular = np.linalg.svd(ops.convert_to_numpy(alignment) @ grads, compute_uv=False)
    np.testing.assert_allclose(singular, np.linalg.svd(grads, compute_uv=False).min(), rtol=1e-8)


@pytest.mark.parametrize("mode", ["median", "rmse"])
def test_aligned_scale_modes(mode):
    grads = random_grads(4, 4, 10)
    singular = np.linalg.svd(grads, compute_uv=False)  # descending
    # torch.median (the paper's code) takes the lower median: of 4 values, the 3rd largest.
    expected = {"median": singular[2], "rmse": np.sqrt(np.mean(singular**2))}[mode]
    _, alignment = aligned_weights(ops.convert_to_tensor(grads @ grads.T), mode)
    aligned_singular = np.linalg.svd(ops.convert_to_numpy(alignment) @ grads, compute_uv=False)
    np.testing.assert_allclose(aligned_singular, expected, rtol=1e-8)


def test_aligned_orthogonal_equal_gradients_are_summed():
    grads = np.array([[0.0, 2.0, 0.0], [2.0, 0.0, 0.0]])
    direction, weights = aggregate(configured(AlignedMTL(), 2), grads)
    np.testing.assert_allclose(weights, [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(direction, [2.0, 2.0, 0.0], rtol=1e-6)


# === ConFIG ===


@pytest.mark.parametrize("num_tasks, dim, seed", [(2, 4, 0), (4, 10, 1), (7, 9, 2)])
def test_config_equal_positive_cosines(num_tasks, dim, seed):
    grads = conflicting_grads(seed, num_tasks, dim)
    direction, weights = aggregate(configured(ConFIG(), num_tasks), grads)
    cos = cosines(grads, direction)
    assert cos.min() > 0
    np.testing.assert_allclose(cos, cos.mean(), rtol=1e-4)
    unit = direction / np.linalg.norm(direction)
    np.testing.assert_allclose(np.linalg.norm(direction), (grads @ unit).sum(), rtol=1e-5)
    np.testing.assert_allclose(weights @ grads, direction, rtol=1e-5, atol=1e-6)


def test_config_by_hand():
    direction, weights = aggregate(configured(ConFIG(), 2), [[2.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(direction, [1.5, 1.5], rtol=1e-6)
    np.testing.assert_allclose(weights, [0.75, 1.5], rtol=1e-6)
    direction, _ = aggregate(configured(ConFIG(), 3), [[1.0, 2.0], [0.5, 1.0], [3.0, 6.0]])  # parallel: the sum
    np.testing.assert_allclose(direction, [4.5, 9.0], rtol=1e-5)
    direction, weights = aggregate(configured(ConFIG(), 2), [[1.0, 2.0], [-1.0, -2.0]])  # opposite: no direction
    np.testing.assert_allclose(direction, [0.0, 0.0], atol=1e-6)
    assert np.all(np.isfinite(weights))


# === Every strategy: XLA, configs, names, arguments ===


STRATEGIES = [
    lambda: NashMTL(update_weights_every=2),
    lambda: UPGrad(),
    lambda: DualProj(pref_vector=[0.5, 0.2, 0.2, 0.1]),
    lambda: AlignedMTL(scale_mode="median"),
    lambda: ConFIG(),
]


@pytest.mark.parametrize("make", STRATEGIES)
def test_aggregate_under_xla_equals_eager(make):
    grads = tf.constant(conflicting_grads(5, 4, 30), tf.float32)
    losses = tf.ones((4,))
    eager, compiled = configured(make(), 4), configured(make(), 4)
    run = tf.function(compiled.aggregate, jit_compile=True)
    for _ in range(2):  # twice: NashMTL(update_weights_every=2) takes the other branch of its `cond`
        expected, expected_weights = eager.aggregate(grads, losses)
        direction, weights = run(grads, losses)
        np.testing.assert_allclose(direction.numpy(), expected.numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(weights.numpy(), expected_weights.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "make", STRATEGIES + [lambda: NashMTL(max_norm=0.0, iterations=5, rep_grad=True), lambda: UPGrad(ridge=1e-5)]
)
def test_config_round_trip(make):
    strategy = make()
    config = strategy.get_config()
    restored = type(strategy).from_config(config)
    assert restored.get_config() == config
    deserialized = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(strategy))
    assert type(deserialized) is type(strategy) and deserialized.get_config() == config


def test_names():
    names = {"nash_mtl": NashMTL, "upgrad": UPGrad, "dualproj": DualProj, "aligned_mtl": AlignedMTL, "config": ConFIG}
    assert {name: REGISTERED[name] for name in names} == names
    for cls in (NashMTL, UPGrad, DualProj, AlignedMTL, ConFIG):
        assert cls.supports_rep_grad and cls(rep_grad=True).rep_grad


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: NashMTL(max_norm=-1.0), "max_norm=-1.0"),
        (lambda: NashMTL(update_weights_every=0), "update_weights_every=0"),
        (lambda: NashMTL(iterations=2.5), "iterations=2.5"),
        (lambda: UPGrad(pref_vector=[1.0, -0.5]), r"pref_vector=\[1.0, -0.5\]"),
        (lambda: UPGrad(pref_vector=[0.0, 0.0]), r"not all zero.*pref_vector=\[0.0, 0.0\]"),
        (lambda: DualProj(iterations=0), "iterations=0"),
        (lambda: DualProj(ridge=0.0), "ridge=0.0"),
        (lambda: AlignedMTL(scale_mode="max"), "scale_mode='max'"),
        (lambda: configured(UPGrad(pref_vector=[1.0, 1.0]), 3), r"Expected 3 values.*pref_vector=\[1.0, 1.0\]"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# === In a model ===


def make_model(weighting, lr=0.1, **compile_kwargs):
    return tiny_model(weighting, optimizer=keras.optimizers.SGD(learning_rate=lr), **compile_kwargs)


MODEL_STRATEGIES = [NashMTL, UPGrad, DualProj, AlignedMTL, ConFIG]


@pytest.mark.parametrize("cls", MODEL_STRATEGIES)
def test_one_step_moves_the_trunk_along_the_direction(cls):
    x, y = tiny_data()
    lr = 0.1
    model = make_model(cls(), lr)
    shared = model.shared_variables
    with tf.GradientTape(persistent=True) as tape:
        losses = model.task_losses(y, model(x, training=True))
        task_losses = [losses[i] for i in range(3)]
    grads = tf.stack([tf.concat([tf.reshape(g, [-1]) for g in tape.gradient(l, shared)], 0) for l in task_losses])
    del tape
    direction, weights = configured(cls(), 3).aggregate(grads, losses)
    expected = np.concatenate([v.numpy().ravel() for v in shared]) - lr * direction.numpy()

    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    after = np.concatenate([v.numpy().ravel() for v in shared])
    np.testing.assert_allclose(after, expected, rtol=1e-4, atol=1e-5)
    logged = [history[f"{t}_weight"][0] for t in "abc"]
    np.testing.assert_allclose(logged, weights.numpy(), rtol=1e-4)


SLOW_FIT = pytest.mark.slow(reason="one more Keras train-function compilation per strategy (a few seconds each)")


@pytest.mark.parametrize(
    "cls", [UPGrad] + [pytest.param(c, marks=SLOW_FIT) for c in (NashMTL, DualProj, AlignedMTL, ConFIG)]
)
def test_trains_with_representation_gradients(cls):
    x, y = tiny_data()
    model = make_model(cls(rep_grad=True), lr=0.2)
    history = model.fit(x, y, batch_size=16, epochs=4, verbose=0).history
    assert all(np.isfinite(history[f"{t}_weight"][-1]) for t in "abc")
    assert np.all(np.diff(history["loss"]) < 0)  # full-batch steps along a common descent direction


@pytest.mark.slow(reason="XLA-compiles a whole train step per strategy on CPU (about 5-10 s each)")
@pytest.mark.parametrize("cls", MODEL_STRATEGIES)
def test_trains_under_xla(cls):
    x, y = tiny_data()
    model = make_model(cls(), lr=0.2, jit_compile=True)
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0).history
    assert np.all(np.diff(history["loss"]) < 0)


def test_nash_state_is_saved_with_the_model(tmp_path):
    x, y = tiny_data()
    model = make_model(NashMTL(update_weights_every=2))
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert int(model.weighting.steps_seen.numpy()) == 4
    path = tmp_path / "nash.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored.weighting) is NashMTL
    assert restored.weighting.get_config() == model.weighting.get_config()
    np.testing.assert_allclose(restored.weighting.alpha.numpy(), model.weighting.alpha.numpy(), rtol=1e-5)
    assert np.all(model.weighting.alpha.numpy() > 0)
    assert int(restored.weighting.steps_seen.numpy()) == 4
