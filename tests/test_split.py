"""Tests for kmtl.builders.split: split layers, primary and supplementary targets."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kmtl
import kmtl.export
from kmtl import Task
from kmtl.builders.split import split

N = 64
TASKS = [Task("load", "regression"), Task("price", "regression"), Task("temp", "regression", units=2)]


def make_data(n=N, window=6, seed=0):
    """Three series; inputs are a flattened window of past values, targets the next values."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, window)).astype("float32")
    y = {
        "load": x[:, -1:] + 0.5 * x[:, -2:-1],
        "price": x[:, -1:] - x[:, :1],
        "temp": np.hstack([x[:, 1:2], -x[:, 2:3]]),
    }
    return x, {k: v.astype("float32") for k, v in y.items()}


def variable_ids(model, *layer_names):
    return {id(v) for name in layer_names for v in model.get_layer(name).trainable_variables}


def kernel_shape(model, name):
    return tuple(model.get_layer(name).kernel.shape)


# === Contract ===


def test_builder_trains_round_trips_and_exports(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = make_data()
    model = split(keras.Input((6,), name="window"), TASKS, units=(8, 8), primary="load")
    assert isinstance(model, kmtl.MultiTaskModel)
    assert sorted(model.output) == ["load", "price", "temp"]
    model.compile(optimizer=keras.optimizers.Adam(0.02), weighting="static")
    before = model.evaluate(x, y, batch_size=N, verbose=0, return_dict=True)
    # Static weighting: the loss is the primary loss plus 0.1 times the supplementary losses.
    np.testing.assert_allclose(
        before["loss"], before["load_loss"] + 0.1 * (before["price_loss"] + before["temp_loss"]), rtol=1e-5
    )
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    assert model.evaluate(x, y, batch_size=N, verbose=0, return_dict=True)["loss"] < before["loss"]

    expected = model.predict(x, verbose=0)
    path = tmp_path / "split.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert [t.loss_weight for t in restored.tasks] == [1.0, 0.1, 0.1]
    actual = restored.predict(x, verbose=0)
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], atol=1e-6)

    serve = tf.saved_model.load(str(kmtl.export.for_serving(model, tmp_path / "m"))).signatures["serving_default"]
    served = serve(window=tf.constant(x))
    for name in expected:
        np.testing.assert_allclose(served[name].numpy(), expected[name].reshape(served[name].shape), atol=1e-5)


# === Primary and supplementary tasks ===


def test_supplementary_weights():
    model = split(keras.Input((6,)), TASKS, units=(4,), primary=["load", "temp"], supplementary_weight=0.25)
    assert [t.loss_weight for t in model.tasks] == [1.0, 0.25, 1.0]
    assert model.task("load") is TASKS[0]  # primary tasks are kept as they are
    assert model.task("price") == Task("price", "regression", loss_weight=0.25)
    assert TASKS[1].loss_weight == 1.0  # the caller's task is not modified
    kept = split(keras.Input((6,)), TASKS, units=(4,), primary="load", supplementary_weight=None)
    assert [t.loss_weight for t in kept.tasks] == [1.0, 1.0, 1.0]
    everyone = split(keras.Input((6,)), TASKS, units=(4,))
    assert list(everyone.tasks) == TASKS


# === Wiring and partition ===


def test_shared_units_read_everything_task_units_read_shared_and_their_own():
    model = split(keras.Input((6,)), TASKS, units=(8, 6), shared_fraction=0.5)
    assert kernel_shape(model, "split_shared_1") == (6, 4)
    assert kernel_shape(model, "split_load_1") == (6, 4)
    assert kernel_shape(model, "split_shared_2") == (4 + 3 * 4, 3)  # shared and all tasks' units
    assert kernel_shape(model, "split_price_2") == (4 + 4, 3)  # shared and its own units
    assert kernel_shape(model, "temp") == (3 + 3, 2)  # head: last shared and own units
    # The layers each Concatenate reads from, read off the graph.
    def reads(layer_name):
        upstream = keras.Model(model.input, model.get_layer(layer_name).input)
        return {layer.name for layer in upstream.layers if layer.name.startswith("split_") and layer.name[-2:] == "_1"}

    assert reads("split_price_2_inputs") == {"split_shared_1", "split_price_1"}
    assert reads("split_shared_2_inputs") == {"split_shared_1", "split_load_1", "split_price_1", "split_temp_1"}


def test_partition():
    model = split(keras.Input((6,)), TASKS, units=(4, 4))
    # Task units below the last layer feed the shared units above, so the graph counts them as shared.
    shared = variable_ids(model, "split_shared_1", "split_shared_2", "split_load_1", "split_price_1", "split_temp_1")
    assert {id(v) for v in model.shared_variables} == shared
    for name in ("load", "price", "temp"):
        assert {id(v) for v in model.task_variables[name]} == variable_ids(model, f"split_{name}_2", name)


def test_fraction_one_is_hard_sharing_and_zero_is_independent_networks():
    hard = split(keras.Input((6,)), TASKS, units=(4, 4), shared_fraction=1.0)
    assert not any(layer.name.startswith(("split_load", "split_price", "split_temp")) for layer in hard.layers)
    assert {id(v) for v in hard.shared_variables} == variable_ids(hard, "split_shared_1", "split_shared_2")

    independent = split(keras.Input((6,)), TASKS, units=(4, 4), shared_fraction=0.0)
    assert not any(layer.name.startswith("split_shared") for layer in independent.layers)
    assert independent.shared_variables == []
    assert {id(v) for v in independent.task_variables["load"]} == variable_ids(
        independent, "split_load_1", "split_load_2", "load"
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"shared_fraction": 1.5}, "Invalid value for `shared_fraction`.*shared_fraction=1.5"),
        ({"shared_fraction": True}, "Invalid value for `shared_fraction`"),
        ({"units": (1,), "shared_fraction": 0.5}, "cannot have both shared and task-specific units"),
        ({"units": (4, -1)}, "Invalid value for `units`"),
        ({"primary": "wind"}, r"Invalid value for `primary`.*\['wind'\]"),
        ({"primary": []}, "Invalid value for `primary`"),
        ({"primary": "load", "supplementary_weight": -1.0}, "Invalid value for `supplementary_weight`"),
        ({"primary": "load", "supplementary_weight": float("nan")}, "Invalid value for `supplementary_weight`"),
        ({"activation": "bogus"}, "Invalid value for `activation`"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        split(keras.Input((6,)), TASKS, **kwargs)
