"""Tests for kmtl.layers.CrossStitch."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from layer_testing import fit_and_round_trip

from kmtl.layers import CrossStitch

RNG = np.random.default_rng(0)


def run_layer_round_trip(layer, inputs, tmp_path):
    """Config, symbolic/eager shapes, one fit step and `.keras` round trip."""
    config = layer.get_config()
    assert CrossStitch.from_config(config).get_config() == config

    expected = [(None,) + x.shape[1:] for x in inputs]
    symbolic_in = [keras.Input(x.shape[1:], name=f"x{i}") for i, x in enumerate(inputs)]
    symbolic_out = layer(symbolic_in)
    assert [tuple(o.shape) for o in symbolic_out] == expected
    assert layer.compute_output_shape([x.shape for x in inputs]) == [
        x.shape for x in inputs
    ]
    eager_out = layer(inputs)
    assert [tuple(o.shape) for o in eager_out] == [x.shape for x in inputs]

    heads = {
        f"task_{i}": keras.layers.Dense(1, name=f"task_{i}")(keras.layers.Flatten()(o))
        for i, o in enumerate(symbolic_out)
    }
    model = keras.Model(symbolic_in, heads)
    labels = {name: RNG.normal(size=(len(inputs[0]), 1)) for name in heads}
    fit_and_round_trip(model, inputs, labels, tmp_path, watched=[layer.alpha])  # alpha trains


@pytest.mark.parametrize(
    "kwargs, shape",
    [
        ({}, (3, 4)),
        ({"mode": "channel", "self_weight": 0.7}, (2, 3, 3, 2)),
        ({"initializer": keras.initializers.RandomUniform(0.0, 1.0, seed=1)}, (2, 5)),
    ],
)
def test_round_trip(kwargs, shape, tmp_path):
    inputs = [RNG.normal(size=shape).astype("float32") for _ in range(3)]
    run_layer_round_trip(CrossStitch(**kwargs), inputs, tmp_path)


@pytest.mark.parametrize("num_tasks", [1, 2, 4])
def test_near_identity_initialisation(num_tasks):
    layer = CrossStitch(self_weight=0.7)
    layer.build([(None, 3)] * num_tasks)
    alpha = layer.alpha.numpy()
    if num_tasks == 1:
        expected = np.ones((1, 1))
    else:
        off = 0.3 / (num_tasks - 1)
        expected = np.full((num_tasks, num_tasks), off)
        expected += np.eye(num_tasks) * (0.7 - off)
    np.testing.assert_allclose(alpha, expected, rtol=1e-6)
    np.testing.assert_allclose(alpha.sum(axis=1), 1.0, rtol=1e-6)


def test_channel_mode_initialisation_and_initializer_override():
    layer = CrossStitch(mode="channel", self_weight=0.9)
    layer.build([(None, 5), (None, 5)])
    assert layer.alpha.shape == (5, 2, 2)
    np.testing.assert_allclose(
        layer.alpha.numpy()[3], [[0.9, 0.1], [0.1, 0.9]], rtol=1e-6
    )
    zeros = CrossStitch(initializer="zeros")
    zeros.build([(None, 5), (None, 5)])
    assert not np.any(zeros.alpha.numpy())
    restored = CrossStitch.from_config(zeros.get_config())
    assert isinstance(restored.initializer, keras.initializers.Zeros)


@pytest.mark.parametrize("mode", ["matrix", "channel"])
def test_forward_matches_numpy(mode):
    xs = [RNG.normal(size=(2, 3, 4)) for _ in range(3)]
    layer = CrossStitch(mode=mode, dtype="float64")
    layer.build([x.shape for x in xs])
    alpha = RNG.normal(size=layer.alpha.shape)
    layer.alpha.assign(alpha)
    outputs = layer(xs)
    stacked = np.stack(xs)  # (T, batch, steps, channels)
    if mode == "matrix":
        expected = np.einsum("ij,jbsc->ibsc", alpha, stacked)
    else:
        expected = np.einsum("cij,jbsc->ibsc", alpha, stacked)
    for i in range(3):
        np.testing.assert_allclose(outputs[i].numpy(), expected[i], rtol=1e-12)


def _scalar_loss(layer, xs, weights):
    """A nonlinear scalar function of all outputs: sum_i sum(w_i * tanh(out_i))."""
    return sum(
        keras.ops.sum(w * keras.ops.tanh(out)) for w, out in zip(weights, layer(xs))
    )


@pytest.mark.parametrize("mode", ["matrix", "channel"])
def test_gradients_match_central_differences(mode):
    xs = [tf.constant(RNG.normal(size=(2, 3))) for _ in range(2)]
    weights = [RNG.normal(size=(2, 3)) for _ in range(2)]
    layer = CrossStitch(mode=mode, dtype="float64")
    layer.build([x.shape for x in xs])
    layer.alpha.assign(RNG.normal(size=layer.alpha.shape))
    with tf.GradientTape() as tape:
        tape.watch(xs)
        loss = _scalar_loss(layer, xs, weights)
    grad_alpha, *grad_xs = tape.gradient(loss, [layer.alpha.value, *xs])

    eps = 1e-6  # float64: truncation ~eps**2, round-off ~1e-16 / eps.
    alpha = layer.alpha.numpy()
    numeric_alpha = np.zeros_like(alpha)
    for idx in np.ndindex(alpha.shape):
        for sign in (1, -1):
            shifted = alpha.copy()
            shifted[idx] += sign * eps
            layer.alpha.assign(shifted)
            numeric_alpha[idx] += sign * float(_scalar_loss(layer, xs, weights))
    layer.alpha.assign(alpha)
    np.testing.assert_allclose(grad_alpha.numpy(), numeric_alpha / (2 * eps), atol=1e-8)

    for t, x in enumerate(xs):
        numeric_x = np.zeros(tuple(x.shape))
        for idx in np.ndindex(*numeric_x.shape):
            for sign in (1, -1):
                shifted = [v.numpy().copy() for v in xs]
                shifted[t][idx] += sign * eps
                numeric_x[idx] += sign * float(_scalar_loss(layer, shifted, weights))
        np.testing.assert_allclose(grad_xs[t].numpy(), numeric_x / (2 * eps), atol=1e-8)


@pytest.mark.parametrize("mode", ["matrix", "channel"])
def test_alpha_gradient_closed_form(mode):
    # d(sum_i sum(w_i * out_i)) / d alpha[i, j] = sum(w_i * x_j),
    # summed over all axes but the channels in "channel" mode.
    xs = [RNG.normal(size=(4, 2, 3)) for _ in range(3)]
    weights = [RNG.normal(size=(4, 2, 3)) for _ in range(3)]
    layer = CrossStitch(mode=mode, dtype="float64")
    with tf.GradientTape() as tape:
        outputs = layer(xs)
        loss = sum(keras.ops.sum(w * out) for w, out in zip(weights, outputs))
    grad = tape.gradient(loss, layer.alpha.value).numpy()
    if mode == "matrix":
        expected = np.einsum("ibsc,jbsc->ij", np.stack(weights), np.stack(xs))
    else:
        expected = np.einsum("ibsc,jbsc->cij", np.stack(weights), np.stack(xs))
    np.testing.assert_allclose(grad, expected, rtol=1e-10)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "vector"}, "Invalid value for `mode`.*Received: mode='vector'"),
        ({"self_weight": 1.5}, "Invalid value for `self_weight`.*self_weight=1.5"),
        ({"self_weight": -0.1}, "Invalid value for `self_weight`"),
        ({"self_weight": True}, "Invalid value for `self_weight`"),
        ({"self_weight": "0.9"}, "Invalid value for `self_weight`"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CrossStitch(**kwargs)


@pytest.mark.parametrize(
    "layer, shapes, match",
    [
        (
            CrossStitch(),
            [(None, 3), (None, 4)],
            r"same shape.*\(None, 3\), \(None, 4\)",
        ),
        (CrossStitch(), (None, 3), "list of at least one tensor"),
        (CrossStitch(), [], "list of at least one tensor"),
        (CrossStitch(mode="channel"), [(None, None)] * 2, "known last dimension"),
    ],
)
def test_invalid_inputs(layer, shapes, match):
    with pytest.raises(ValueError, match=match):
        layer.build(shapes)


def test_wrong_number_of_tasks_at_call():
    layer = CrossStitch()
    layer([np.ones((1, 2))] * 2)
    with pytest.raises(ValueError, match="built for a list of 2 tensors"):
        layer([np.ones((1, 2))] * 3)
