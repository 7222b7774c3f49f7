"""Tests for kmtl.layers.tensor_factorized.TensorFactorizedDense."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from layer_testing import fit_and_round_trip

from kmtl.layers.tensor_factorized import TensorFactorizedDense

RNG = np.random.default_rng(0)


def run_layer_round_trip(layer, inputs, num_tasks, tmp_path):
    """Config, symbolic/eager shapes, one fit step and `.keras` round trip."""
    config = layer.get_config()
    assert TensorFactorizedDense.from_config(config).get_config() == config

    shared = not isinstance(inputs, list)
    listed = [inputs] if shared else inputs
    expected = [(None,) + listed[0].shape[1:-1] + (layer.units,)] * num_tasks
    symbolic_in = [keras.Input(x.shape[1:], name=f"x{i}") for i, x in enumerate(listed)]
    symbolic_out = layer(symbolic_in[0] if shared else symbolic_in)
    assert [tuple(o.shape) for o in symbolic_out] == expected
    input_shape = listed[0].shape if shared else [x.shape for x in listed]
    assert layer.compute_output_shape(input_shape) == [listed[0].shape[:-1] + (layer.units,)] * num_tasks
    eager_out = layer(inputs)
    assert [tuple(o.shape) for o in eager_out] == [listed[0].shape[:-1] + (layer.units,)] * num_tasks

    heads = {
        f"task_{i}": keras.layers.Dense(1, name=f"task_{i}")(keras.layers.Flatten()(o))
        for i, o in enumerate(symbolic_out)
    }
    model = keras.Model(symbolic_in, heads)
    labels = {name: RNG.normal(size=(len(listed[0]), 1)) for name in heads}
    kernel_before = layer.kernel.numpy().copy()
    fit_and_round_trip(model, listed, labels, tmp_path)
    assert not np.allclose(layer.kernel.numpy(), kernel_before)  # the factors train


@pytest.mark.parametrize(
    "kwargs, shapes",
    [
        ({"ranks": (2, 3, 2)}, [(4, 5)] * 3),
        ({"ranks": 2, "factorization": "tt", "activation": "relu"}, [(4, 5)] * 2),
        ({"ranks": (2, 2), "factorization": "tt", "num_tasks": 3, "use_bias": False}, (4, 5)),
        ({"ranks": 4, "num_tasks": 2, "core_initializer": "glorot_normal"}, (4, 2, 5)),
    ],
)
def test_round_trip(kwargs, shapes, tmp_path):
    if isinstance(shapes, list):
        inputs = [RNG.normal(size=s).astype("float32") for s in shapes]
        num_tasks = len(shapes)
    else:
        inputs = RNG.normal(size=shapes).astype("float32")
        num_tasks = kwargs["num_tasks"]
    run_layer_round_trip(TensorFactorizedDense(3, **kwargs), inputs, num_tasks, tmp_path)


def tucker_numpy(core, task, inp, out):
    """Mode-n products G x_1 U_task x_2 U_in x_3 U_out, one mode at a time."""
    w = np.tensordot(task, core, axes=(1, 0))  # (T, r_in, r_out)
    w = np.moveaxis(np.tensordot(inp, w, axes=(1, 1)), 0, 1)  # (T, d, r_out)
    return np.tensordot(w, out, axes=(2, 1))  # (T, d, k)


def tt_numpy(first, middle, last):
    """W[t, i, j] = G_1[t, :] @ G_2[:, i, :] @ G_3[:, j]."""
    t, d, k = first.shape[0], middle.shape[1], last.shape[1]
    w = np.zeros((t, d, k))
    for a, i in np.ndindex(t, d):
        w[a, i] = first[a] @ middle[:, i, :] @ last
    return w


def set_random_factors(layer):
    for variable in layer.trainable_variables:
        variable.assign(RNG.normal(size=variable.shape))


@pytest.mark.parametrize("factorization, ranks", [("tucker", (2, 3, 2)), ("tt", (2, 3))])
def test_kernel_is_the_numpy_reconstruction_and_forward_matches(factorization, ranks):
    layer = TensorFactorizedDense(2, ranks, factorization, dtype="float64")
    xs = [RNG.normal(size=(5, 4)) for _ in range(3)]
    layer.build([x.shape for x in xs])
    set_random_factors(layer)
    if factorization == "tucker":
        expected = tucker_numpy(*(v.numpy() for v in (layer.core, layer.task_factor, layer.input_factor,
                                                       layer.output_factor)))
    else:
        expected = tt_numpy(layer.task_core.numpy(), layer.input_core.numpy(), layer.output_core.numpy())
    np.testing.assert_allclose(layer.kernel.numpy(), expected, rtol=1e-12)
    bias = layer.bias.numpy()
    for t, output in enumerate(layer(xs)):
        np.testing.assert_allclose(output.numpy(), xs[t] @ expected[t] + bias[t], rtol=1e-12)


def test_shared_input_feeds_every_task():
    layer = TensorFactorizedDense(2, (2, 2), "tt", num_tasks=3, dtype="float64")
    x = RNG.normal(size=(5, 4))
    outputs = layer(x)
    kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
    for t, output in enumerate(outputs):
        np.testing.assert_allclose(output.numpy(), x @ kernel[t] + bias[t], rtol=1e-12)


@pytest.mark.parametrize("factorization", ["tucker", "tt"])
def test_full_ranks_represent_any_kernel(factorization):
    keras.utils.set_random_seed(0)  # the starting factors; unseeded starts sometimes needed more steps
    layer = TensorFactorizedDense(2, 100, factorization, num_tasks=3, use_bias=False)  # capped at full ranks
    layer.build((None, 4))
    assert layer.effective_ranks == ((3, 4, 2) if factorization == "tucker" else (3, 2))
    target = np.random.default_rng(1).normal(size=(3, 4, 2)).astype("float32")
    optimizer = keras.optimizers.Adam(0.05)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(layer.kernel - target))
        optimizer.apply_gradients(zip(tape.gradient(loss, layer.trainable_variables), layer.trainable_variables))
        return loss

    for _ in range(600):
        step()
    # Target entries are ~N(0, 1); 600 Adam steps reach ~1e-3 or better in float32.
    np.testing.assert_allclose(layer.kernel.numpy(), target, atol=1e-2)


def test_low_ranks_give_a_low_rank_task_mode():
    layer = TensorFactorizedDense(3, (1, 4, 3), num_tasks=4)
    layer.build((None, 4))
    task_unfolding = layer.kernel.numpy().reshape(4, -1)  # (T, d*k)
    singular = np.linalg.svd(task_unfolding, compute_uv=False)
    assert singular[1] < 1e-5 * singular[0]  # every task's kernel is a multiple of one kernel


def test_default_initialisation_has_glorot_variance():
    layer = TensorFactorizedDense(32, (4, 64, 32), num_tasks=4)
    layer.build((None, 64))
    # 4 * 64 * 32 entries: the sample variance is within a few percent of 2 / (d + k).
    assert np.var(layer.kernel.numpy()) == pytest.approx(2 / 96, rel=0.1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"units": 0, "ranks": 2}, "Invalid value for `units`.*units=0"),
        ({"units": 2, "ranks": 2, "factorization": "cp"}, "Invalid value for `factorization`.*'cp'"),
        ({"units": 2, "ranks": (2, 2)}, r"Invalid value for `ranks`. Expected a positive int or 3"),
        ({"units": 2, "ranks": (2, 2, 2), "factorization": "tt"}, "or 2 positive ints"),
        ({"units": 2, "ranks": 0}, "Invalid value for `ranks`"),
        ({"units": 2, "ranks": 2, "num_tasks": 0}, "Invalid value for `num_tasks`"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TensorFactorizedDense(**kwargs)


@pytest.mark.parametrize(
    "layer, shapes, match",
    [
        (TensorFactorizedDense(2, 2), [(None, 3), (None, 4)], "same shape"),
        (TensorFactorizedDense(2, 2), [(None, None)] * 2, "known last dimension"),
        (TensorFactorizedDense(2, 2), (None, 3), "needs `num_tasks`"),
        (TensorFactorizedDense(2, 2, num_tasks=3), [(None, 3)] * 2, "num_tasks=3 but was called on 2"),
    ],
)
def test_invalid_inputs(layer, shapes, match):
    with pytest.raises(ValueError, match=match):
        layer.build(shapes)


def test_wrong_inputs_at_call():
    layer = TensorFactorizedDense(2, 2)
    layer([np.ones((1, 3))] * 2)
    with pytest.raises(ValueError, match="built for a list of 2 tensors"):
        layer([np.ones((1, 3))] * 3)
    with pytest.raises(ValueError, match="built for a list of 2 tensors"):
        layer(np.ones((1, 3)))
