"""Tests for kmtl.regularizers: cross-layer penalties against closed forms, gradients, configs and errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny import tiny_data

import kmtl
from kmtl.regularizers import (
    GroupLasso,
    MeanRegularized,
    Penalty,
    SoftSharingL2,
    TaskCovarianceUpdater,
    TaskRelationshipPrior,
    TraceNorm,
)

RNG = np.random.default_rng(0)
NAMES = ["tower_a_1", "tower_b_1", "tower_c_1"]


def random_weights(shape=(4, 3), num_tasks=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape) for _ in range(num_tasks)]


def nuclear(matrix):
    return np.linalg.svd(matrix, compute_uv=False).sum()


def value(penalty, weights):
    return float(penalty.compute([np.asarray(w, "float64") for w in weights]))


# === Closed forms ===


def test_soft_sharing_l2_is_the_spread_around_the_mean():
    weights = random_weights()
    mean = np.mean(weights, axis=0)
    expected = sum(np.sum((w - mean) ** 2) for w in weights)
    np.testing.assert_allclose(value(SoftSharingL2(NAMES), weights), expected, rtol=1e-12)
    w1, w2 = weights[:2]
    np.testing.assert_allclose(value(SoftSharingL2(NAMES[:2]), [w1, w2]), 0.5 * np.sum((w1 - w2) ** 2), rtol=1e-12)


def test_trace_norm_by_hand():
    # Flattened columns e_1 and 2 e_4: singular values 1 and 2.
    w1 = np.array([[1.0, 0.0], [0.0, 0.0]])
    w2 = np.array([[0.0, 0.0], [0.0, 2.0]])
    assert value(TraceNorm(NAMES[:2]), [w1, w2]) == pytest.approx(3.0, rel=1e-12)


def test_trace_norm_of_a_low_rank_stack_is_the_sum_of_its_singular_values():
    # Five tasks' (4, 3) kernels mixed from two bases: the (12, 5) flattening has rank 2.
    bases = random_weights(num_tasks=2, seed=1)
    mixing = RNG.normal(size=(5, 2))
    weights = [mixing[t, 0] * bases[0] + mixing[t, 1] * bases[1] for t in range(5)]
    flat = np.stack([w.reshape(-1) for w in weights], axis=1)
    singular = np.linalg.svd(flat, compute_uv=False)
    assert singular[2] < 1e-12 * singular[0]
    np.testing.assert_allclose(value(TraceNorm(["l"] * 5), weights), singular.sum(), rtol=1e-10)


def test_trace_norm_tensor_modes_match_numpy_unfoldings():
    weights = random_weights(shape=(4, 3), num_tasks=2)
    tensor = np.stack(weights, axis=-1)  # (d, k, T)
    d, k, t = tensor.shape
    tucker = sum(nuclear(np.moveaxis(tensor, n, 0).reshape(tensor.shape[n], -1)) for n in range(3))
    tt = nuclear(tensor.reshape(d, k * t)) + nuclear(tensor.reshape(d * k, t))
    np.testing.assert_allclose(value(TraceNorm(NAMES[:2], mode="tucker"), weights), tucker, rtol=1e-10)
    np.testing.assert_allclose(value(TraceNorm(NAMES[:2], mode="tt"), weights), tt, rtol=1e-10)


def test_group_lasso_by_hand():
    w1 = np.array([[1.0, 2.0], [0.0, 0.0]])
    w2 = np.array([[2.0, 4.0], [0.0, 0.0]])
    # Feature 0 carries (1, 2, 2, 4) across tasks, feature 1 nothing.
    assert value(GroupLasso(NAMES[:2]), [w1, w2]) == pytest.approx(5.0, rel=1e-12)
    assert value(GroupLasso(NAMES[:2], q="inf"), [w1, w2]) == pytest.approx(4.0, rel=1e-12)
    assert value(GroupLasso(NAMES[:2], q=float("inf")), [w1, w2]) == pytest.approx(4.0, rel=1e-12)


@pytest.mark.parametrize("q", [1.0, 2.0, 3.0, "inf"])
@pytest.mark.parametrize("shape, axis", [((4, 3), 0), ((2, 3, 4), -2)])
def test_group_lasso_matches_numpy(q, shape, axis):
    weights = random_weights(shape=shape)
    stacked = np.stack(weights)  # (T, ...)
    groups = np.moveaxis(stacked, axis % len(shape) + 1, 0).reshape(shape[axis], -1)
    order = np.inf if q == "inf" else q
    expected = np.linalg.norm(groups, ord=order, axis=1).sum()
    np.testing.assert_allclose(value(GroupLasso(NAMES, q=q, axis=axis), weights), expected, rtol=1e-10)


def test_mean_regularized_matches_numpy():
    weights = random_weights()
    mean = np.mean(weights, axis=0)
    spread = sum(np.sum((w - mean) ** 2) for w in weights)
    penalty = MeanRegularized(NAMES, mean_strength=0.3)
    np.testing.assert_allclose(value(penalty, weights), spread + 0.3 * np.sum(mean**2), rtol=1e-12)
    np.testing.assert_allclose(value(MeanRegularized(NAMES), weights), value(SoftSharingL2(NAMES), weights))


def test_clustered_mean_regularized_matches_numpy():
    weights = random_weights(num_tasks=4)
    clusters = ["x", "y", "x", "x"]
    mean = np.mean(weights, axis=0)
    members = {c: [w for w, k in zip(weights, clusters) if k == c] for c in ("x", "y")}
    centres = {c: np.mean(ws, axis=0) for c, ws in members.items()}
    within = sum(np.sum((w - centres[c]) ** 2) for w, c in zip(weights, clusters))
    between = sum(len(ws) * np.sum((centres[c] - mean) ** 2) for c, ws in members.items())
    names = ["l"] * 4
    penalty = MeanRegularized(names, mean_strength=0.5, clusters=clusters, between_strength=0.2)
    expected = within + 0.2 * between + 0.5 * np.sum(mean**2)
    np.testing.assert_allclose(value(penalty, weights), expected, rtol=1e-12)
    # Within + between is the total spread: with between_strength=1 clusters change nothing.
    np.testing.assert_allclose(
        value(MeanRegularized(names, clusters=clusters, between_strength=1.0), weights),
        value(MeanRegularized(names), weights),
        rtol=1e-12,
    )


def random_covariance(num_tasks, seed=3):
    a = np.random.default_rng(seed).normal(size=(num_tasks, num_tasks))
    covariance = a @ a.T + num_tasks * np.eye(num_tasks)
    return covariance / np.trace(covariance)


def test_relationship_prior_is_the_matrix_normal_trace_term():
    weights = random_weights()
    prior = TaskRelationshipPrior(NAMES)
    flat = np.stack([w.reshape(-1) for w in weights])  # (T, D)
    # Starts at Omega = I / T.
    np.testing.assert_allclose(value(prior, weights), 3 * np.sum(flat**2), rtol=1e-6)
    omega = random_covariance(3)
    prior.task_covariance.assign(omega)
    expected = np.trace(flat.T @ np.linalg.inv(omega) @ flat)
    np.testing.assert_allclose(value(prior, weights), expected, rtol=1e-5)  # Omega is stored in float32.


def test_relationship_prior_update_is_the_trace_normalised_square_root():
    weights = random_weights(num_tasks=4)
    flat = np.stack([w.reshape(-1) for w in weights])
    prior = TaskRelationshipPrior(["l"] * 4, epsilon=0.5)
    omega = np.asarray(prior.update_covariance([np.asarray(w) for w in weights]))
    np.testing.assert_allclose(prior.task_covariance.numpy(), omega, rtol=1e-6)
    # Defining properties, checked in numpy: symmetric, unit trace, and (tr S * Omega)^2 = W W^T + eps I.
    np.testing.assert_allclose(omega, omega.T, atol=1e-12)
    assert np.trace(omega) == pytest.approx(1.0, rel=1e-12)
    assert np.linalg.eigvalsh(omega).min() > 0
    target = flat @ flat.T + 0.5 * np.eye(4)
    eigenvalues, vectors = np.linalg.eigh(target)
    root = (vectors * np.sqrt(eigenvalues)) @ vectors.T
    np.testing.assert_allclose(omega, root / np.trace(root), rtol=1e-10)
    scaled = omega * np.trace(root)
    np.testing.assert_allclose(scaled @ scaled, target, rtol=1e-10)


def test_relationship_prior_update_minimises_the_penalty_to_the_squared_trace_norm():
    weights = random_weights(num_tasks=3, shape=(5, 2))
    flat = np.stack([w.reshape(-1) for w in weights])
    prior = TaskRelationshipPrior(NAMES, epsilon=1e-9)
    prior.update_covariance(weights)
    optimum = value(prior, weights)
    np.testing.assert_allclose(optimum, nuclear(flat) ** 2, rtol=1e-4)  # Omega is stored in float32.
    for seed in range(3):  # Any other unit-trace covariance gives a larger penalty.
        prior.task_covariance.assign(random_covariance(3, seed))
        assert value(prior, weights) > optimum


# === Gradients against central differences ===


def numeric_gradient(penalty, weights, eps=1e-6):
    """float64 central differences: truncation ~eps**2, round-off ~1e-16 / eps."""
    grads = []
    for t, w in enumerate(weights):
        grad = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            for sign in (1, -1):
                shifted = [v.copy() for v in weights]
                shifted[t][idx] += sign * eps
                grad[idx] += sign * value(penalty, shifted)
        grads.append(grad / (2 * eps))
    return grads


@pytest.mark.parametrize(
    "penalty",
    [
        SoftSharingL2(NAMES),
        TraceNorm(NAMES),
        TraceNorm(NAMES, mode="tucker"),
        TraceNorm(NAMES, mode="tt"),
        GroupLasso(NAMES),
        GroupLasso(NAMES, q=3.0),
        MeanRegularized(NAMES, mean_strength=0.5, clusters=[0, 1, 0]),
        TaskRelationshipPrior(NAMES),
    ],
    ids=lambda p: f"{type(p).__name__}-{getattr(p, 'mode', getattr(p, 'q', ''))}",
)
def test_gradients_match_central_differences(penalty):
    # Random full-rank weights with distinct singular values and no zero group: away from kinks.
    weights = random_weights(shape=(3, 2), seed=5)
    tensors = [tf.constant(w) for w in weights]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        result = penalty.compute(tensors)
    analytic = tape.gradient(result, tensors)
    for got, expected in zip(analytic, numeric_gradient(penalty, weights)):
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("penalty", [GroupLasso(NAMES[:2]), TraceNorm(NAMES[:2], mode="tucker")])
def test_gradients_are_finite_at_zero_groups_and_rank_deficient_stacks(penalty):
    tensors = [tf.constant(np.zeros((3, 2))), tf.constant(np.zeros((3, 2)))]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        result = penalty.compute(tensors)
    assert all(np.all(np.isfinite(g.numpy())) for g in tape.gradient(result, tensors))


# === Config ===

ALL_PENALTIES = [
    SoftSharingL2(NAMES, strength=0.5),
    TraceNorm(NAMES, strength=0.1, mode="tt"),
    GroupLasso(NAMES, q="inf", axis=-1),
    MeanRegularized(NAMES, mean_strength=0.2, clusters=["x", "y", "x"], between_strength=0.3),
    TaskRelationshipPrior(NAMES, update_every=7, epsilon=1e-2),
]


@pytest.mark.parametrize("penalty", ALL_PENALTIES, ids=lambda p: type(p).__name__)
def test_config_round_trip(penalty):
    config = penalty.get_config()
    restored = type(penalty).from_config(config)
    assert restored.get_config() == config
    serialized = keras.saving.serialize_keras_object(penalty)
    assert serialized["registered_name"] == f"kmtl>{type(penalty).__name__}"
    weights = random_weights()
    assert value(restored, weights) == pytest.approx(value(penalty, weights), rel=1e-12)


def test_public_names():
    from kmtl import regularizers

    assert sorted(regularizers.__all__) == [
        "GroupLasso", "MeanRegularized", "Penalty", "SoftSharingL2", "TaskCovarianceUpdater",
        "TaskRelationshipPrior", "TraceNorm",
    ]


# === Errors ===


@pytest.mark.parametrize(
    "factory, kwargs, match",
    [
        (SoftSharingL2, {"layers": []}, "Invalid value for `layers`"),
        (SoftSharingL2, {"layers": "tower_a_1"}, "Invalid value for `layers`"),
        (SoftSharingL2, {"strength": -1.0}, "Invalid value for `strength`.*strength=-1.0"),
        (SoftSharingL2, {"strength": True}, "Invalid value for `strength`"),
        (TraceNorm, {"mode": "flat"}, "Invalid value for `mode`.*mode='flat'"),
        (GroupLasso, {"q": 0.5}, "Invalid value for `q`.*q=0.5"),
        (GroupLasso, {"q": "max"}, "Invalid value for `q`"),
        (GroupLasso, {"axis": 0.0}, "Invalid value for `axis`"),
        (MeanRegularized, {"mean_strength": -0.1}, "Invalid value for `mean_strength`"),
        (MeanRegularized, {"clusters": [0, 1]}, r"one cluster label per layer \(3\)"),
        (MeanRegularized, {"between_strength": -1}, "Invalid value for `between_strength`"),
        (TaskRelationshipPrior, {"update_every": 0}, "Invalid value for `update_every`"),
        (TaskRelationshipPrior, {"epsilon": 0.0}, "Invalid value for `epsilon`"),
    ],
)
def test_invalid_arguments(factory, kwargs, match):
    kwargs = {"layers": NAMES, **kwargs}
    with pytest.raises(ValueError, match=match):
        factory(**kwargs)


def test_group_lasso_axis_out_of_range():
    with pytest.raises(ValueError, match="`axis`=2 is out of range for weights of shape"):
        GroupLasso(NAMES, axis=2).compute(random_weights())


def test_base_class_needs_compute_and_an_attached_model():
    with pytest.raises(TypeError, match="must implement `compute"):
        Penalty(NAMES).compute(random_weights())
    with pytest.raises(RuntimeError, match="not attached"):
        SoftSharingL2(NAMES).penalty()


# === On a MultiTaskModel ===

TASKS = [kmtl.Task(n, "regression") for n in ("a", "b", "c")]


def make_model(penalties, widths=(4, 4, 4)):
    keras.utils.set_random_seed(0)
    x = keras.Input((3,), name="x")
    outputs = {}
    for task, width in zip(TASKS, widths):
        tower = keras.layers.Dense(width, activation="tanh", name=f"tower_{task.name}_1")(x)
        outputs[task.name] = kmtl.heads.task_head(task, tower)
    return kmtl.MultiTaskModel(x, outputs, tasks=TASKS, penalties=penalties)


def test_attach_to_a_model_without_the_layer_names_it():
    with pytest.raises(ValueError, match="GroupLasso: the model has no layer named 'tower_d_1'"):
        make_model([GroupLasso(["tower_a_1", "tower_d_1"])])


def test_attach_to_layers_of_different_shapes_names_them():
    with pytest.raises(ValueError, match=r"same shape.*tower_a_1: \(3, 4\), tower_b_1: \(3, 5\)"):
        make_model([TraceNorm(NAMES)], widths=(4, 5, 4))


def test_attach_to_a_layer_without_the_weight_names_it():
    with pytest.raises(ValueError, match="layer 'x' has no weight `kernel`"):
        make_model([SoftSharingL2(["tower_a_1", "x"])])


def test_penalty_does_not_own_the_layers_it_reads():
    penalty = SoftSharingL2(NAMES)
    model = make_model([penalty])
    assert penalty.weights == []
    assert len(model.weights) == len({id(v) for v in model.weights}) == 12


def test_penalties_are_added_to_the_loss_and_restored_with_their_state(tmp_path):
    penalties = [
        SoftSharingL2(NAMES, strength=0.5),
        TraceNorm(NAMES, strength=0.1, mode="tucker"),
        GroupLasso(NAMES, strength=0.2),
        MeanRegularized(NAMES, strength=0.3, mean_strength=1.0, clusters=[0, 0, 1]),
        TaskRelationshipPrior(NAMES, strength=0.05, update_every=1),
    ]
    model = make_model(penalties)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    x, y = tiny_data(TASKS, input_dim=3)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[TaskCovarianceUpdater()])
    omega = penalties[-1].task_covariance.numpy()
    assert not np.allclose(omega, np.eye(3) / 3)  # re-estimated during fit

    logs = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    values = [float(p.penalty()) for p in penalties]
    task_sum = sum(logs[f"{t.name}_loss"] for t in TASKS)
    assert logs["loss"] == pytest.approx(task_sum + sum(values), rel=1e-5)

    path = str(tmp_path / "penalties.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert [type(p) for p in restored.penalties] == [type(p) for p in penalties]
    np.testing.assert_allclose([float(p.penalty()) for p in restored.penalties], values, rtol=1e-6)
    np.testing.assert_allclose(restored.penalties[-1].task_covariance.numpy(), omega, rtol=1e-7)


def test_covariance_updater_follows_update_every(monkeypatch):
    prior = TaskRelationshipPrior(NAMES, update_every=2)
    model = make_model([prior])
    model.compile(optimizer="sgd")
    calls = []
    monkeypatch.setattr(prior, "update_covariance", lambda: calls.append(int(model.optimizer.iterations.numpy())))
    x, y = tiny_data(TASKS, n=20, input_dim=3)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[TaskCovarianceUpdater()])  # 5 steps
    assert calls == [2, 4]


def test_covariance_updater_needs_a_prior():
    model = make_model([SoftSharingL2(NAMES)])
    model.compile(optimizer="sgd")
    x, y = tiny_data(TASKS, input_dim=3)
    with pytest.raises(ValueError, match="no TaskRelationshipPrior"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[TaskCovarianceUpdater()])
