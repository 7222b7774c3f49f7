"""Tests for kmtl.builders.cross_stitch: outputs, training, `.keras` round trip, export, partition and wiring."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kmtl
import kmtl.export
from kmtl import Task
from kmtl.builders.cross_stitch import cross_stitch

N = 64
TASKS = [Task("a", "binary"), Task("b", "regression"), Task("c", "multiclass", num_classes=3)]


def make_data(n=N, d=5, seed=0):
    """Labels that depend on the inputs, so one epoch can lower the loss."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = {
        "a": (x[:, 0] > 0).astype("int32"),
        "b": (x[:, 1:2] - x[:, 2:3]).astype("float32"),
        "c": np.digitize(x[:, 3], [-0.5, 0.5]).astype("int32"),
    }
    return x, y


def assert_builder_contract(model, x, y, tmp_path):
    """Output keys, one epoch lowers the loss, `.keras` round trip to 1e-6, export equal to predict to 1e-5."""
    assert sorted(model.output) == sorted(model.task_names)
    model.compile(optimizer=keras.optimizers.Adam(0.02))
    before = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)["loss"]
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    after = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)["loss"]
    assert after < before

    expected = model.predict(x, verbose=0)
    assert sorted(expected) == sorted(model.task_names)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    actual = restored.predict(x, verbose=0)
    for name in model.task_names:
        np.testing.assert_allclose(actual[name], expected[name], atol=1e-6, err_msg=name)

    export_dir = kmtl.export.for_serving(model, tmp_path / "m")
    serve = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
    served = serve(**{model.input.name: tf.constant(x)})
    for name in model.task_names:
        value = served[name].numpy()
        np.testing.assert_allclose(value, expected[name].reshape(value.shape), atol=1e-5, err_msg=name)


def variable_ids(model, *layer_names):
    return {id(v) for name in layer_names for v in model.get_layer(name).trainable_variables}


# === Contract ===


@pytest.mark.slow  # trains, exports or starts a process: several seconds on 2 cores
def test_builds_trains_round_trips_and_exports(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = make_data()
    model = cross_stitch(keras.Input((5,), name="x"), TASKS, units=(8, 8))
    assert isinstance(model, kmtl.MultiTaskModel)
    assert model.task_names == ["a", "b", "c"]
    assert_builder_contract(model, x, y, tmp_path)


# === Partition ===


def test_partition_stitch_units_shared_towers_after_the_last_unit_per_task():
    model = cross_stitch(keras.Input((5,)), TASKS, units=(4, 4), stitch_after=[1])
    # Every task's loss reaches the first tower layers through cross_stitch_1, so the graph counts them as shared.
    shared = variable_ids(model, "cross_stitch_1", "tower_a_1", "tower_b_1", "tower_c_1")
    assert {id(v) for v in model.shared_variables} == shared
    for name in "abc":
        assert {id(v) for v in model.task_variables[name]} == variable_ids(model, f"tower_{name}_2", name)


def test_partition_with_a_unit_after_every_layer():
    model = cross_stitch(keras.Input((5,)), TASKS, units=(4, 4))
    towers = [f"tower_{t}_{i}" for t in "abc" for i in (1, 2)]
    shared = variable_ids(model, "cross_stitch_1", "cross_stitch_2", *towers)
    assert {id(v) for v in model.shared_variables} == shared
    for name in "abc":
        assert {id(v) for v in model.task_variables[name]} == variable_ids(model, name)


# === Wiring ===


def test_layers_named_after_tasks_and_unit_options():
    model = cross_stitch(
        keras.Input((5,)), TASKS, units=(4, 3), stitch_after=[2], mode="channel", self_weight=0.6, head_units=[2]
    )
    names = {layer.name for layer in model.layers}
    assert {"tower_a_1", "tower_b_2", "tower_c_2", "cross_stitch_2", "a_hidden_1"} <= names
    assert "cross_stitch_1" not in names
    alpha = model.get_layer("cross_stitch_2").alpha.numpy()
    assert alpha.shape == (3, 3, 3)  # (channels, T, T)
    np.testing.assert_allclose(alpha[0], np.full((3, 3), 0.2) + np.eye(3) * 0.4, rtol=1e-6)


def test_forward_matches_numpy():
    keras.utils.set_random_seed(1)
    tasks = [Task("a", "regression"), Task("b", "regression", units=2)]
    model = cross_stitch(keras.Input((3,)), tasks, units=(4, 2), activation="tanh", stitch_after=[1])
    stitch = model.get_layer("cross_stitch_1")
    stitch.alpha.assign(np.random.default_rng(2).normal(size=(2, 2)))
    x = np.random.default_rng(3).normal(size=(5, 3))

    def dense(name, h, activation=np.tanh):
        kernel, bias = model.get_layer(name).get_weights()
        return activation(h @ kernel + bias)

    h1 = [dense("tower_a_1", x), dense("tower_b_1", x)]
    alpha = stitch.alpha.numpy()
    mixed = [alpha[i, 0] * h1[0] + alpha[i, 1] * h1[1] for i in range(2)]
    expected = {
        t: dense(t, dense(f"tower_{t}_2", mixed[i]), activation=lambda v: v) for i, t in enumerate(["a", "b"])
    }
    actual = model(x.astype("float32"))
    for name in expected:
        np.testing.assert_allclose(actual[name].numpy(), expected[name], rtol=1e-5, atol=1e-6)


def test_dict_inputs_are_concatenated():
    inputs = {"p": keras.Input((2,), name="p"), "q": keras.Input((3,), name="q")}
    model = cross_stitch(inputs, TASKS[:2], units=(4,))
    assert model.get_layer("tower_a_1").kernel.shape == (5, 4)
    pred = model({"p": np.ones((2, 2)), "q": np.ones((2, 3))})
    assert pred["a"].shape == (2, 1)


def test_input_features_from_shared_layers():
    image = keras.Input((4, 4, 3), name="image")
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(keras.layers.Conv2D(2, 3, name="conv")(image))
    model = cross_stitch(image, TASKS[:2], units=(4,), input_features=pooled)
    assert model.get_layer("tower_a_1").kernel.shape == (2, 4)
    assert variable_ids(model, "conv") <= {id(v) for v in model.shared_variables}


# === Invalid arguments ===


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"units": ()}, r"Invalid value for `units`.*Received: units=\(\)"),
        ({"units": (4, 0)}, "Invalid value for `units`"),
        ({"units": 4}, "Invalid value for `units`"),
        ({"stitch_after": [3]}, r"`stitch_after`.*1\.\.2.*stitch_after=\[3\]"),
        ({"stitch_after": [1, 1]}, "`stitch_after`"),
        ({"stitch_after": 1}, "`stitch_after`"),
        ({"mode": "vector"}, "Invalid value for `mode`.*mode='vector'"),
        ({"self_weight": 1.5}, "Invalid value for `self_weight`.*self_weight=1.5"),
        ({"activation": "nope"}, "Invalid value for `activation`.*'nope'"),
        ({"head_units": [0]}, "Invalid value for `head_units`"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cross_stitch(keras.Input((5,)), TASKS, **{"units": (4, 4), **kwargs})


def test_invalid_inputs_and_tasks():
    with pytest.raises(ValueError, match=r"vector inputs.*\(None, 4, 4, 3\)"):
        cross_stitch(keras.Input((4, 4, 3)), TASKS)
    with pytest.raises(ValueError, match="Keras input tensors"):
        cross_stitch(np.ones((2, 5)), TASKS)
    with pytest.raises(ValueError, match="`input_features`"):
        cross_stitch(keras.Input((4, 4, 3)), TASKS, input_features=keras.Input((4, 4, 3)))
    with pytest.raises(ValueError, match="unique"):
        cross_stitch(keras.Input((5,)), [Task("a", "binary"), Task("a", "regression")])
