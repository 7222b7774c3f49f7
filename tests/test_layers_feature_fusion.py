"""Tests for kmtl.layers.FeatureFusion."""

import keras
import numpy as np
import pytest
from layer_testing import fit_and_round_trip

from kmtl.layers import FeatureFusion

RNG = np.random.default_rng(0)


def run_layer_round_trip(layer, inputs, expected_width, tmp_path):
    """Config, symbolic/eager shapes, one fit step and `.keras` round trip."""
    config = layer.get_config()
    assert FeatureFusion.from_config(config).get_config() == config

    symbolic_in = [keras.Input(x.shape[1:], name=f"x{i}") for i, x in enumerate(inputs)]
    fused = layer(symbolic_in)
    assert tuple(fused.shape) == (None, expected_width)
    assert layer.compute_output_shape([x.shape for x in inputs]) == (
        len(inputs[0]),
        expected_width,
    )
    assert tuple(layer(inputs).shape) == (len(inputs[0]), expected_width)

    head = keras.layers.Dense(1, name="task")(fused)
    model = keras.Model(symbolic_in, {"task": head})
    labels = {"task": RNG.normal(size=(len(inputs[0]), 1))}
    fit_and_round_trip(model, inputs, labels, tmp_path)


def _features():
    return [
        RNG.normal(size=(2, 6, 6, 3)).astype("float32"),
        RNG.normal(size=(2, 3, 3, 4)).astype("float32"),
        RNG.normal(size=(2, 5)).astype("float32"),
    ]


@pytest.mark.parametrize(
    "kwargs, width",
    [
        ({}, 12),
        ({"units": 4, "activation": "relu"}, 4),
        ({"units": 2, "pooling": "max"}, 2),
    ],
)
def test_round_trip(kwargs, width, tmp_path):
    run_layer_round_trip(FeatureFusion(**kwargs), _features(), width, tmp_path)


@pytest.mark.parametrize("pooling, reduce", [("avg", np.mean), ("max", np.max)])
def test_pooling_and_concatenation(pooling, reduce):
    maps, deep, vector = _features()
    fused = FeatureFusion(pooling=pooling)([maps, deep, vector]).numpy()
    expected = np.concatenate(
        [reduce(maps, axis=(1, 2)), reduce(deep, axis=(1, 2)), vector], axis=-1
    )
    np.testing.assert_allclose(fused, expected, rtol=1e-6)


def test_projection_is_dense_of_concatenation():
    features = _features()
    layer = FeatureFusion(units=3, activation="tanh")
    fused = layer(features).numpy()
    kernel, bias = (w.numpy() for w in layer.projection.weights)
    concat = FeatureFusion()(features).numpy()
    np.testing.assert_allclose(fused, np.tanh(concat @ kernel + bias), rtol=1e-5)
    assert layer.projection.kernel.shape == (12, 3)


def test_sequence_inputs_are_pooled_over_time():
    steps = RNG.normal(size=(2, 7, 3)).astype("float32")
    fused = FeatureFusion()([steps]).numpy()
    np.testing.assert_allclose(fused, steps.mean(axis=1), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"units": 0}, r"Invalid value for `units`.*Received: units=0"),
        ({"units": 2.5}, "Invalid value for `units`"),
        ({"units": True}, "Invalid value for `units`"),
        ({"pooling": "sum"}, r"Invalid value for `pooling`.*Received: pooling='sum'"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FeatureFusion(**kwargs)


@pytest.mark.parametrize(
    "shapes, match",
    [
        ((None, 4, 4, 3), "list of at least one tensor"),
        ([], "list of at least one tensor"),
        ([(None, 4, 4, None)], "known last dimension"),
        ([(None,)], "rank >= 2"),
    ],
)
def test_invalid_inputs(shapes, match):
    with pytest.raises(ValueError, match=match):
        FeatureFusion(units=2).build(shapes)
