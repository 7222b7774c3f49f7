"""Tests for kmtl.layers.GradientReversal and its schedule callback."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from layer_testing import fit_and_round_trip

from kmtl.layers import GradientReversal
from kmtl.training import GradientReversalSchedule, grl_schedule

RNG = np.random.default_rng(0)


def run_layer_round_trip(layer, x, tmp_path):
    """Config, symbolic/eager shapes, one fit step and `.keras` round trip."""
    config = layer.get_config()
    assert GradientReversal.from_config(config).get_config() == config

    inputs = keras.Input(x.shape[1:], name="x")
    shared = keras.layers.Dense(3, name="shared")(inputs)
    reversed_ = layer(shared)
    assert tuple(reversed_.shape) == (None, 3)
    assert layer.compute_output_shape((None, 3)) == (None, 3)
    assert tuple(layer(np.ones((2, 3), "float32")).shape) == (2, 3)

    head = keras.layers.Dense(1, name="domain")(reversed_)
    model = keras.Model(inputs, {"domain": head})
    labels = {"domain": RNG.normal(size=(len(x), 1))}
    layer.set_strength(0.25)  # The current value is a weight, saved as such.
    restored = fit_and_round_trip(model, x, labels, tmp_path)
    restored_layer = restored.get_layer(layer.name)
    assert float(restored_layer.strength_variable.numpy()) == 0.25
    assert restored_layer.get_config()["strength"] == config["strength"]


@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_round_trip(strength, tmp_path):
    x = RNG.normal(size=(4, 5)).astype("float32")
    run_layer_round_trip(GradientReversal(strength=strength, name="grl"), x, tmp_path)


def test_forward_is_exact_identity():
    x = RNG.normal(size=(3, 4, 2)).astype("float32")
    np.testing.assert_array_equal(GradientReversal(strength=2.0)(x).numpy(), x)


@pytest.mark.parametrize("strength", [0.0, 0.5, 2.0])
def test_gradient_is_minus_strength_times_upstream(strength):
    layer = GradientReversal(strength=strength)
    x = tf.constant(RNG.normal(size=(3, 4)), dtype="float32")
    upstream = tf.constant(RNG.normal(size=(3, 4)), dtype="float32")
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    grad = tape.gradient(y, x, output_gradients=upstream)
    np.testing.assert_allclose(grad.numpy(), -strength * upstream.numpy(), rtol=1e-6)


def test_strength_changes_without_retracing():
    layer = GradientReversal(strength=1.0)
    x = tf.constant(RNG.normal(size=(2, 3)), dtype="float32")
    # Built outside: a tf.function that creates variables is traced twice.
    layer.build(x.shape)
    traces = []

    @tf.function
    def grad_fn(x):
        traces.append(1)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(layer(x) * 3.0)
        return tape.gradient(y, x)

    np.testing.assert_allclose(grad_fn(x).numpy(), np.full((2, 3), -3.0))
    layer.set_strength(0.5)
    np.testing.assert_allclose(grad_fn(x).numpy(), np.full((2, 3), -1.5))
    layer.strength_variable.assign(2.0)
    np.testing.assert_allclose(grad_fn(x).numpy(), np.full((2, 3), -6.0))
    assert len(traces) == 1
    assert grad_fn.experimental_get_tracing_count() == 1
    assert layer.get_config()["strength"] == 1.0  # config keeps the initial value


@pytest.mark.parametrize("strength", [0.0, 1.0])
def test_fit_reverses_the_shared_update(strength):
    # One SGD step: the shared kernel moves by -strength times the step it
    # takes without reversal (strength 0 freezes it), the head is unaffected.
    x = RNG.normal(size=(4, 3)).astype("float32")
    y = RNG.normal(size=(4, 1)).astype("float32")

    def one_step(reverse):
        keras.utils.set_random_seed(1)
        inputs = keras.Input((3,))
        shared = keras.layers.Dense(2, name="shared")(inputs)
        if reverse:
            shared = GradientReversal(strength=strength)(shared)
        model = keras.Model(inputs, {"y": keras.layers.Dense(1, name="head")(shared)})
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        before = [w.numpy().copy() for w in model.trainable_weights]
        model.fit(x, {"y": y}, batch_size=4, epochs=1, verbose=0)
        return [w.numpy() - b for w, b in zip(model.trainable_weights, before)]

    plain, reversed_ = one_step(False), one_step(True)
    shared_kernel, shared_bias, head_kernel, head_bias = range(4)
    for i in (shared_kernel, shared_bias):
        np.testing.assert_allclose(reversed_[i], -strength * plain[i], atol=1e-6)
    for i in (head_kernel, head_bias):
        np.testing.assert_allclose(reversed_[i], plain[i], atol=1e-6)
    assert np.abs(plain[shared_kernel]).max() > 1e-3  # the check is not vacuous


@pytest.mark.parametrize(
    "strength, match",
    [
        (-1.0, r"Invalid value for `strength`.*Received: strength=-1.0"),
        (float("nan"), "Invalid value for `strength`"),
        (float("inf"), "Invalid value for `strength`"),
        (True, "Invalid value for `strength`"),
        ("1", "Invalid value for `strength`"),
    ],
)
def test_invalid_strength(strength, match):
    with pytest.raises(ValueError, match=match):
        GradientReversal(strength=strength)
    built = GradientReversal()
    built.build((None, 2))
    with pytest.raises(ValueError, match=match):
        built.set_strength(strength)


def test_set_strength_before_build():
    with pytest.raises(ValueError, match="must be built"):
        GradientReversal(name="grl").set_strength(0.5)


# === GradientReversalSchedule ===


@pytest.mark.parametrize(
    "p, expected",
    [
        (0.0, 0.0),
        (1.0, 2.0 / (1.0 + np.exp(-10.0)) - 1.0),  # ~0.9999092
        (0.5, 2.0 / (1.0 + np.exp(-5.0)) - 1.0),  # ~0.9866143
    ],
)
def test_grl_schedule_closed_form(p, expected):
    assert grl_schedule(p) == pytest.approx(expected, abs=1e-12)


def test_grl_schedule_values_and_arrays():
    assert grl_schedule(1.0) == pytest.approx(0.99991, abs=1e-5)
    assert grl_schedule(0.5, gamma=0.0) == 0.0
    np.testing.assert_allclose(
        grl_schedule(np.array([0.0, 0.5])), [0.0, np.tanh(2.5)], rtol=1e-12
    )


class _CountingGradientReversal(GradientReversal):
    """Counts Python calls of `call`, i.e. eager calls and graph traces."""

    calls = 0

    def call(self, inputs):
        type(self).calls += 1
        return super().call(inputs)


class _StrengthRecorder(keras.callbacks.Callback):
    """Records the strength at each batch start and the traces at its end."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer
        self.seen = []
        self.traces = []

    def on_train_batch_begin(self, batch, logs=None):
        self.seen.append(float(self.layer.strength_variable.numpy()))

    def on_train_batch_end(self, batch, logs=None):
        self.traces.append(_CountingGradientReversal.calls)


def _domain_model():
    inputs = keras.Input((3,))
    shared = keras.layers.Dense(2, name="shared")(inputs)
    first = _CountingGradientReversal(name="grl_a")
    second = GradientReversal(name="grl_b")
    outputs = {
        "a": keras.layers.Dense(1, name="a")(first(shared)),
        "b": keras.layers.Dense(1, name="b")(second(shared)),
    }
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    return model, first, second


def test_schedule_follows_closed_form_without_retracing():
    model, first, second = _domain_model()
    schedule = GradientReversalSchedule([first, "grl_b"], max_strength=0.5, gamma=4.0)
    recorders = [_StrengthRecorder(first), _StrengthRecorder(second)]
    x = RNG.normal(size=(6, 3)).astype("float32")
    y = {"a": np.zeros((6, 1)), "b": np.ones((6, 1))}
    model.fit(x, y, batch_size=2, epochs=2, verbose=0, callbacks=[schedule, *recorders])

    # 2 epochs x 3 steps: p = (epoch * 3 + batch) / 6.
    expected = [0.5 * (2 / (1 + np.exp(-4.0 * step / 6)) - 1) for step in range(6)]
    for recorder in recorders:
        np.testing.assert_allclose(recorder.seen, expected, atol=1e-6)
    # The first batch traces the train step (twice: its first trace creates
    # variables); the five strength changes after it trigger no retracing.
    assert len(set(recorders[0].traces)) == 1


@pytest.mark.filterwarnings("ignore:Your input ran out of data")
def test_schedule_uses_steps_per_epoch_when_fit_cannot_tell():
    model, first, _ = _domain_model()
    x = RNG.normal(size=(4, 3)).astype("float32")
    y = {"a": np.zeros((4, 1)), "b": np.ones((4, 1))}
    # filter() hides the cardinality, so fit does not know the steps.
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    dataset = dataset.filter(lambda *_: True).batch(2)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        schedule = GradientReversalSchedule("grl_a")
        model.fit(dataset, epochs=1, verbose=0, shuffle=False, callbacks=[schedule])

    recorder = _StrengthRecorder(first)
    schedule = GradientReversalSchedule("grl_a", steps_per_epoch=2)
    callbacks = [schedule, recorder]
    model.fit(dataset, epochs=1, shuffle=False, verbose=0, callbacks=callbacks)
    # With an unknown length Keras starts a third batch before it finds the
    # data exhausted; progress is clipped to 1 there.
    np.testing.assert_allclose(recorder.seen[:2], [0.0, grl_schedule(0.5)], atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"layers": []}, "Invalid value for `layers`"),
        ({"layers": "grl", "max_strength": -1.0}, "Invalid value for `max_strength`"),
        ({"layers": "grl", "gamma": float("nan")}, "Invalid value for `gamma`"),
        (
            {"layers": "grl", "steps_per_epoch": 0},
            "Invalid value for `steps_per_epoch`",
        ),
    ],
)
def test_schedule_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GradientReversalSchedule(**kwargs)


@pytest.mark.parametrize(
    "layers, match",
    [
        ("missing", "no layer named 'missing'"),
        ("shared", "expects GradientReversal"),
    ],
)
def test_schedule_invalid_layers(layers, match):
    model, _, _ = _domain_model()
    x = np.zeros((2, 3), "float32")
    y = {"a": np.zeros((2, 1)), "b": np.zeros((2, 1))}
    with pytest.raises(ValueError, match=match):
        model.fit(x, y, verbose=0, callbacks=[GradientReversalSchedule(layers)])
