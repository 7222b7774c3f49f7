"""Tests for the sluice layers (SubspaceMixing, LayerMixture) and kmtl.builders.sluice."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from layer_testing import fit_and_round_trip

import kmtl
import kmtl.export
from kmtl import Task
from kmtl.builders.sluice import sluice
from kmtl.layers.sluice import LayerMixture, SubspaceMixing

RNG = np.random.default_rng(0)
N = 64
TASKS = [Task("a", "binary"), Task("b", "regression")]


# === Helpers ===


def run_layer_round_trip(layer, inputs, weight, tmp_path):
    """Config, symbolic/eager shapes, one fit step (the weight trains) and `.keras` round trip to 1e-6."""
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
    symbolic_in = [keras.Input(x.shape[1:], name=f"x{i}") for i, x in enumerate(inputs)]
    symbolic_out = keras.tree.flatten(layer(symbolic_in))
    assert [tuple(o.shape) for o in symbolic_out] == [(None,) + inputs[0].shape[1:]] * len(symbolic_out)
    eager_out = keras.tree.flatten(layer(inputs))
    assert [tuple(o.shape) for o in eager_out] == [inputs[0].shape] * len(eager_out)

    heads = {
        f"t{i}": keras.layers.Dense(1, name=f"t{i}")(keras.layers.Flatten()(o)) for i, o in enumerate(symbolic_out)
    }
    model = keras.Model(symbolic_in, heads)
    labels = {name: RNG.normal(size=(len(inputs[0]), 1)) for name in heads}
    fit_and_round_trip(model, inputs, labels, tmp_path, watched=[getattr(layer, weight)])


def numpy_mixing(xs, alpha, subspaces):
    """Reference: split each task into subspaces (task-major order), mix with alpha, put back together."""
    pieces = [p for x in xs for p in np.split(x, subspaces, axis=-1)]
    mixed = [sum(alpha[k, l] * pieces[l] for l in range(len(pieces))) for k in range(len(pieces))]
    return [np.concatenate(mixed[t * subspaces : (t + 1) * subspaces], axis=-1) for t in range(len(xs))]


def numpy_penalty(xs, subspaces):
    """sum_t sum_{s<r} ||G_{t,s}^T G_{t,r}||_F^2 with rows = all axes but the last."""
    total = 0.0
    for x in xs:
        pieces = [p.reshape(-1, p.shape[-1]) for p in np.split(x, subspaces, axis=-1)]
        for s, r in itertools.combinations(range(subspaces), 2):
            total += np.sum((pieces[s].T @ pieces[r]) ** 2)
    return total


def make_data(n=N, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype("float32")
    return x, {"a": (x[:, 0] > 0).astype("int32"), "b": (x[:, 1:2] - x[:, 2:3]).astype("float32")}


def variable_ids(model, *layer_names):
    return {id(v) for name in layer_names for v in model.get_layer(name).trainable_variables}


# === SubspaceMixing ===


@pytest.mark.parametrize(
    "kwargs, shape",
    [({}, (3, 4)), ({"subspaces": 3, "orthogonality": 0.0}, (2, 3, 6)), ({"initializer": "glorot_uniform"}, (2, 4))],
)
def test_subspace_mixing_round_trip(kwargs, shape, tmp_path):
    inputs = [RNG.normal(size=shape).astype("float32") for _ in range(2)]
    run_layer_round_trip(SubspaceMixing(**kwargs), inputs, "alpha", tmp_path)


@pytest.mark.parametrize("num_tasks, subspaces", [(1, 1), (2, 2), (3, 2)])
def test_subspace_mixing_near_identity(num_tasks, subspaces):
    layer = SubspaceMixing(subspaces=subspaces, self_weight=0.7)
    layer.build([(None, 4)] * num_tasks)
    size = num_tasks * subspaces
    alpha = layer.alpha.numpy()
    expected = np.ones((1, 1)) if size == 1 else np.full((size, size), 0.3 / (size - 1)) + np.eye(size) * (
        0.7 - 0.3 / (size - 1)
    )
    np.testing.assert_allclose(alpha, expected, rtol=1e-6)


@pytest.mark.parametrize("subspaces, shape", [(1, (4, 6)), (2, (4, 6)), (3, (2, 3, 6))])
def test_subspace_mixing_forward_and_penalty_match_numpy(subspaces, shape):
    xs = [RNG.normal(size=shape) for _ in range(3)]
    layer = SubspaceMixing(subspaces=subspaces, orthogonality=0.25, dtype="float64")
    layer.build([x.shape for x in xs])
    alpha = RNG.normal(size=layer.alpha.shape)
    layer.alpha.assign(alpha)
    outputs = layer(xs)
    for actual, expected in zip(outputs, numpy_mixing(xs, alpha, subspaces)):
        np.testing.assert_allclose(actual.numpy(), expected, rtol=1e-12)
    if subspaces == 1:
        assert layer.losses == []  # no pair of subspaces, no penalty
    else:
        (penalty,) = layer.losses
        # The penalty is computed in float32 (like every kmtl loss): relative tolerance of float32.
        np.testing.assert_allclose(float(penalty), 0.25 * numpy_penalty(xs, subspaces), rtol=1e-5)


def test_subspace_mixing_penalty_is_zero_for_orthogonal_subspaces():
    x = np.zeros((4, 4), "float32")
    x[:2, :2] = 1.0  # subspace 1 active on rows 0-1, subspace 2 on rows 2-3
    x[2:, 2:] = 1.0
    layer = SubspaceMixing(orthogonality=1.0)
    layer([x, x])
    assert float(layer.losses[0]) == 0.0
    layer = SubspaceMixing(orthogonality=0.0)
    layer([x, np.ones((4, 4))])
    assert layer.losses == []


def test_subspace_mixing_penalty_gradient_matches_closed_form():
    # d/dG1 ||G1^T G2||^2 = 2 G2 (G2^T G1)
    x = tf.constant(RNG.normal(size=(5, 4)))
    layer = SubspaceMixing(orthogonality=1.0, dtype="float64")
    with tf.GradientTape() as tape:
        tape.watch(x)
        layer([x])
        penalty = layer.losses[0]
    g1, g2 = x.numpy()[:, :2], x.numpy()[:, 2:]
    expected = np.concatenate([2 * g2 @ (g2.T @ g1), 2 * g1 @ (g1.T @ g2)], axis=-1)
    np.testing.assert_allclose(tape.gradient(penalty, x).numpy(), expected, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"subspaces": 0}, "Invalid value for `subspaces`.*subspaces=0"),
        ({"subspaces": True}, "Invalid value for `subspaces`"),
        ({"orthogonality": -1.0}, "Invalid value for `orthogonality`.*orthogonality=-1.0"),
        ({"self_weight": 2.0}, "Invalid value for `self_weight`.*self_weight=2.0"),
    ],
)
def test_subspace_mixing_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SubspaceMixing(**kwargs)


def test_subspace_mixing_invalid_inputs():
    with pytest.raises(ValueError, match="multiple of `subspaces`"):
        SubspaceMixing(subspaces=3).build([(None, 4), (None, 4)])
    with pytest.raises(ValueError, match="same shape"):
        SubspaceMixing().build([(None, 4), (None, 6)])
    layer = SubspaceMixing()
    layer([np.ones((1, 2))] * 2)
    with pytest.raises(ValueError, match="built for a list of 2 tensors"):
        layer([np.ones((1, 2))] * 3)


# === LayerMixture ===


def test_layer_mixture_round_trip(tmp_path):
    inputs = [RNG.normal(size=(3, 4)).astype("float32") for _ in range(3)]
    run_layer_round_trip(LayerMixture(), inputs, "beta", tmp_path)


def test_layer_mixture_matches_numpy_softmax():
    xs = [RNG.normal(size=(2, 3, 4)) for _ in range(3)]
    layer = LayerMixture(dtype="float64")
    layer.build([x.shape for x in xs])
    np.testing.assert_allclose(layer.mixture_weights().numpy(), [1 / 3] * 3, rtol=1e-12)  # even at first
    beta = np.array([0.5, -1.0, 2.0])
    layer.beta.assign(beta)
    weights = np.exp(beta) / np.exp(beta).sum()
    np.testing.assert_allclose(layer.mixture_weights().numpy(), weights, rtol=1e-12)
    np.testing.assert_allclose(layer(xs).numpy(), sum(w * x for w, x in zip(weights, xs)), rtol=1e-12)


def test_layer_mixture_invalid_inputs():
    with pytest.raises(ValueError, match="same shape"):
        LayerMixture().build([(None, 4), (None, 3)])
    with pytest.raises(ValueError, match="list of at least one tensor"):
        LayerMixture().build((None, 4))


# === Builder ===


def test_builder_trains_round_trips_and_exports(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = make_data()
    model = sluice(keras.Input((5,), name="x"), TASKS, units=(8, 8), subspaces=2)
    assert isinstance(model, kmtl.MultiTaskModel)
    assert sorted(model.output) == ["a", "b"]
    model.compile(optimizer=keras.optimizers.Adam(0.02))
    before = model.evaluate(x, y, batch_size=N, verbose=0, return_dict=True)["loss"]
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    after = model.evaluate(x, y, batch_size=N, verbose=0, return_dict=True)
    assert after["loss"] < before

    # The training loss includes both alpha units' orthogonality penalties on this batch.
    layers = {name: model.get_layer(name) for name in ("tower_a_1", "tower_b_1", "alpha_1", "tower_a_2", "tower_b_2")}
    h1 = [layers["tower_a_1"](x), layers["tower_b_1"](x)]
    mixed = layers["alpha_1"](h1)
    h2 = [layers["tower_a_2"](mixed[0]), layers["tower_b_2"](mixed[1])]
    penalty = 1e-3 * (numpy_penalty([h.numpy() for h in h1], 2) + numpy_penalty([h.numpy() for h in h2], 2))
    np.testing.assert_allclose(after["loss"], after["a_loss"] + after["b_loss"] + penalty, rtol=1e-4)

    expected = model.predict(x, verbose=0)
    path = tmp_path / "sluice.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    actual = restored.predict(x, verbose=0)
    for name in ("a", "b"):
        np.testing.assert_allclose(actual[name], expected[name], atol=1e-6)

    serve = tf.saved_model.load(str(kmtl.export.for_serving(model, tmp_path / "m"))).signatures["serving_default"]
    served = serve(x=tf.constant(x))
    for name in ("a", "b"):
        np.testing.assert_allclose(served[name].numpy(), expected[name].ravel(), atol=1e-5)


def test_builder_partition_alphas_and_towers_shared_betas_and_heads_per_task():
    model = sluice(keras.Input((5,)), TASKS, units=(4, 4))
    shared = variable_ids(model, "alpha_1", "alpha_2", "tower_a_1", "tower_b_1", "tower_a_2", "tower_b_2")
    assert {id(v) for v in model.shared_variables} == shared
    for name in ("a", "b"):
        assert {id(v) for v in model.task_variables[name]} == variable_ids(model, f"beta_{name}", name)


def test_builder_wiring():
    model = sluice(keras.Input((5,)), TASKS + [Task("c", "binary")], units=(6, 6), subspaces=3)
    assert model.get_layer("alpha_2").alpha.shape == (9, 9)
    assert model.get_layer("beta_c").beta.shape == (2,)
    assert model.get_layer("alpha_1").orthogonality == 1e-3
    plain = sluice(keras.Input((5,)), TASKS, units=(6, 4), layer_mixture=False)
    assert not any(layer.name.startswith("beta_") for layer in plain.layers)
    assert plain.get_layer("a").kernel.shape == (4, 1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"units": (5, 5)}, r"multiple of subspaces=2.*units=\(5, 5\)"),
        ({"units": (4, 6)}, "same width"),
        ({"subspaces": 0}, "Invalid value for `subspaces`"),
        ({"orthogonality": -0.1}, "Invalid value for `orthogonality`"),
        ({"self_weight": 1.1}, "Invalid value for `self_weight`"),
        ({"units": []}, "Invalid value for `units`"),
    ],
)
def test_builder_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sluice(keras.Input((5,)), TASKS, **{"units": (4, 4), **kwargs})
