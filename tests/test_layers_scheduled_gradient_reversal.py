"""Tests for kmtl.layers.ScheduledGradientReversal: the schedule counted inside the model."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from layer_testing import fit_and_round_trip

from kmtl.layers import ScheduledGradientReversal
from kmtl.training import grl_schedule

RNG = np.random.default_rng(0)


@pytest.mark.slow  # ~0.5 s (4 s on crowded cores): traces and runs a compiled train step
def test_strength_follows_the_schedule_one_step_per_fit_batch():
    """In `fit` (a compiled train step) the s-th batch uses max_strength * grl_schedule(s / total_steps)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,), name="x")
    layer = ScheduledGradientReversal(total_steps=8, max_strength=0.5, name="grl")
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(layer(keras.layers.Dense(2)(inputs))))
    model.compile(optimizer="sgd", loss="mse")
    seen = []
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(
        float(layer.strength_variable.numpy())))
    x, y = RNG.normal(size=(12, 3)).astype("float32"), RNG.normal(size=(12, 1)).astype("float32")
    model.fit(x, y, batch_size=4, epochs=4, verbose=0, callbacks=[record])  # 12 steps, past total_steps
    expected = [0.5 * grl_schedule(min(s / 8, 1.0)) for s in range(12)]
    np.testing.assert_allclose(seen, expected, rtol=1e-6, atol=1e-7)
    assert int(layer.step.numpy()) == 12
    model.predict(x, verbose=0)
    model.evaluate(x, y, verbose=0)  # inference leaves the schedule alone
    assert int(layer.step.numpy()) == 12


def test_gradient_is_minus_the_current_strength_times_upstream():
    layer = ScheduledGradientReversal(total_steps=4, gamma=3.0)
    x = tf.constant(RNG.normal(size=(3, 4)), dtype="float32")
    upstream = tf.constant(RNG.normal(size=(3, 4)), dtype="float32")
    for step in range(3):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
        np.testing.assert_array_equal(y.numpy(), x.numpy())
        grad = tape.gradient(y, x, output_gradients=upstream)
        np.testing.assert_allclose(grad.numpy(), -grl_schedule(step / 4, 3.0) * upstream.numpy(), rtol=1e-6)
    # Inference reverses with the strength last used; the count does not move.
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    np.testing.assert_allclose(tape.gradient(y, x, output_gradients=upstream).numpy(),
                               -grl_schedule(2 / 4, 3.0) * upstream.numpy(), rtol=1e-6)
    assert int(layer.step.numpy()) == 3


@pytest.mark.slow  # ~0.4 s: one fit step and a .keras save/load
def test_round_trip_keeps_config_and_the_schedule_state(tmp_path):
    layer = ScheduledGradientReversal(total_steps=5, max_strength=2.0, gamma=4.0, name="grl")
    config = layer.get_config()
    assert ScheduledGradientReversal.from_config(config).get_config() == config
    inputs = keras.Input((4,), name="x")
    reversed_ = layer(keras.layers.Dense(3, name="shared")(inputs))
    assert tuple(reversed_.shape) == (None, 3)
    model = keras.Model(inputs, {"domain": keras.layers.Dense(1, name="domain")(reversed_)})
    x = RNG.normal(size=(4, 4)).astype("float32")
    restored = fit_and_round_trip(model, x, {"domain": RNG.normal(size=(4, 1))}, tmp_path)
    restored_layer = restored.get_layer("grl")
    assert int(restored_layer.step.numpy()) == 1 and restored_layer.get_config() == config
    assert float(restored_layer.strength_variable.numpy()) == 0.0  # the first step's strength: p = 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"total_steps": 0}, "total_steps"),
        ({"total_steps": 2.0}, "total_steps"),
        ({"total_steps": 3, "max_strength": -1.0}, "max_strength"),
        ({"total_steps": 3, "gamma": float("nan")}, "gamma"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ScheduledGradientReversal(**kwargs)
