"""Tests for kmtl.builders.hierarchy and its layers (LabelEmbedding, StopGradient)."""

import importlib

import keras
import numpy as np
import pytest
import tensorflow as tf

import kmtl
import kmtl.export
from kmtl import Task
from kmtl.builders.hierarchy import hierarchy
from kmtl.layers.label_embedding import LabelEmbedding
from kmtl.layers.stop_gradient import StopGradient

# The module itself (kmtl.builders.hierarchy is the function once the package re-exports it).
hierarchy_module = importlib.import_module("kmtl.builders.hierarchy")

RNG = np.random.default_rng(0)
N = 64
TASKS = [
    Task("pos", "multiclass", num_classes=3),
    Task("chunk", "binary"),
    Task("dep", "regression"),
]
LEVELS = {"pos": 1, "chunk": 2, "dep": 3}


def make_data(n=N, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype("float32")
    y = {
        "pos": np.digitize(x[:, 0], [-0.5, 0.5]).astype("int32"),
        "chunk": (x[:, 1] + x[:, 0] > 0).astype("int32"),
        "dep": (x[:, 2:3] * x[:, 0:1]).astype("float32"),
    }
    return x, y


def variable_ids(model, *layer_names):
    return {id(v) for name in layer_names for v in model.get_layer(name).trainable_variables}


def round_trip(model, x, tmp_path):
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    expected, actual = model.predict(x, verbose=0), restored.predict(x, verbose=0)
    if not isinstance(expected, dict):
        expected, actual = {"output": expected}, {"output": actual}
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], atol=1e-6, err_msg=name)


# === LabelEmbedding ===


def test_label_embedding_matches_numpy_and_round_trips(tmp_path):
    probs = keras.ops.softmax(RNG.normal(size=(4, 3))).numpy()
    layer = LabelEmbedding(2, dtype="float64")
    out = layer(probs)
    np.testing.assert_allclose(out.numpy(), probs @ layer.embeddings.numpy(), rtol=1e-12)
    assert layer.compute_output_shape((None, 5, 3)) == (None, 5, 2)

    config = layer.get_config()
    assert LabelEmbedding.from_config(config).get_config() == config
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(LabelEmbedding(4)(inputs)))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    embeddings = model.layers[1].embeddings
    before = embeddings.numpy().copy()
    model.fit(probs.astype("float32"), RNG.normal(size=(4, 1)), epochs=1, verbose=0)
    assert not np.allclose(embeddings.numpy(), before)
    round_trip(model, probs.astype("float32"), tmp_path)


def test_label_embedding_of_a_binary_probability():
    p = np.array([[0.2], [0.9]])
    layer = LabelEmbedding(3, dtype="float64")
    out = layer(p)
    assert layer.embeddings.shape == (2, 3)  # negative and positive class
    np.testing.assert_allclose(out.numpy(), np.hstack([1 - p, p]) @ layer.embeddings.numpy(), rtol=1e-12)


@pytest.mark.parametrize("output_dim", [0, -1, 2.5, True, None])
def test_label_embedding_invalid_output_dim(output_dim):
    with pytest.raises(ValueError, match="Invalid value for `output_dim`"):
        LabelEmbedding(output_dim)


# === StopGradient ===


def test_stop_gradient_identity_forward_zero_gradient_and_round_trip(tmp_path):
    x = tf.Variable(RNG.normal(size=(3, 2)))
    layer = StopGradient(dtype="float64")
    with tf.GradientTape(persistent=True) as tape:
        out = layer(x)
        pair = layer([x, 2 * x])
        loss = keras.ops.sum(out * out)
    np.testing.assert_array_equal(out.numpy(), x.numpy())
    np.testing.assert_array_equal(pair[1].numpy(), 2 * x.numpy())
    assert tape.gradient(loss, x) is None
    assert StopGradient.from_config(layer.get_config()).get_config() == layer.get_config()

    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(StopGradient()(keras.layers.Dense(2)(inputs))))
    round_trip(model, RNG.normal(size=(3, 2)).astype("float32"), tmp_path)


# === Builder ===


def test_builder_trains_round_trips_and_exports(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = make_data()
    model = hierarchy(
        keras.Input((5,), name="x"),
        TASKS,
        LEVELS,
        units=(8, 6, 4),
        shortcuts=True,
        label_embeddings={"pos": 3, "chunk": 2},
        estimate_links={"dep": ["pos"]},
    )
    assert isinstance(model, kmtl.MultiTaskModel)
    assert sorted(model.output) == ["chunk", "dep", "pos"]
    model.compile(optimizer=keras.optimizers.Adam(0.02))
    before = model.evaluate(x, y, batch_size=N, verbose=0, return_dict=True)["loss"]
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    assert model.evaluate(x, y, batch_size=N, verbose=0, return_dict=True)["loss"] < before
    round_trip(model, x, tmp_path)

    expected = model.predict(x, verbose=0)
    serve = tf.saved_model.load(str(kmtl.export.for_serving(model, tmp_path / "m"))).signatures["serving_default"]
    served = serve(x=tf.constant(x))
    for name in ("pos", "chunk", "dep"):
        np.testing.assert_allclose(served[name].numpy(), expected[name].reshape(served[name].shape), atol=1e-5)


def test_builder_wiring():
    model = hierarchy(
        keras.Input((5,)),
        TASKS,
        LEVELS,
        units=(8, 6, 4),
        shortcuts=True,
        label_embeddings={"pos": 3, "chunk": 2},
        estimate_links={"dep": ["pos", "chunk"]},
    )
    kernel = lambda name: tuple(model.get_layer(name).kernel.shape)  # noqa: E731
    assert kernel("level_1") == (5, 8)
    assert kernel("level_2") == (8 + 5 + 3, 6)  # level 1, shortcut, pos embedding
    assert kernel("level_3") == (6 + 5 + 3 + 2, 4)  # level 2, shortcut, pos and chunk embeddings
    assert tuple(model.get_layer("pos_label_embedding").embeddings.shape) == (3, 3)
    assert tuple(model.get_layer("chunk_label_embedding").embeddings.shape) == (2, 2)  # binary: [1 - p, p]
    assert kernel("dep") == (4 + 3 + 1, 1)  # level 3, pos's and chunk's predictions
    assert kernel("pos") == (8, 3) and kernel("chunk") == (6, 1)
    assert isinstance(model.get_layer("dep_reads_pos"), StopGradient)

    plain = hierarchy(keras.Input((5,)), TASKS, LEVELS, units=4)
    assert [tuple(plain.get_layer(f"level_{i}").kernel.shape) for i in (1, 2, 3)] == [(5, 4), (4, 4), (4, 4)]


def test_partition_lower_levels_shared_top_level_private():
    tasks = [Task("a", "binary"), Task("b", "regression")]
    model = hierarchy(keras.Input((5,)), tasks, {"a": 1, "b": 2}, units=4)
    assert {id(v) for v in model.shared_variables} == variable_ids(model, "level_1")
    assert {id(v) for v in model.task_variables["a"]} == variable_ids(model, "a")
    assert {id(v) for v in model.task_variables["b"]} == variable_ids(model, "level_2", "b")

    tasks = tasks + [Task("c", "binary")]
    model = hierarchy(keras.Input((5,)), tasks, {"a": 1, "b": 2, "c": 2}, units=4)
    assert {id(v) for v in model.shared_variables} == variable_ids(model, "level_1", "level_2")
    assert {id(v) for v in model.task_variables["c"]} == variable_ids(model, "c")


def _b_loss_gradients(model, x, y_b):
    """Gradients of task b's loss (MSE) with respect to every trainable variable, zeros where unconnected."""
    with tf.GradientTape() as tape:
        loss = keras.ops.mean(keras.ops.square(model(x)["b"] - y_b))
    variables = model.trainable_variables
    grads = tape.gradient(loss, [v.value for v in variables])
    return {v.path: np.zeros(v.shape) if g is None else g.numpy() for v, g in zip(variables, grads)}


@pytest.mark.parametrize("stopped", [True, False])
def test_estimate_link_gradient_never_reaches_the_source_task(stopped, monkeypatch):
    if not stopped:  # the same graph with an identity in place of the stop-gradient
        monkeypatch.setattr(hierarchy_module, "StopGradient", keras.layers.Identity)
    keras.utils.set_random_seed(0)
    tasks = [Task("a", "multiclass", num_classes=3), Task("b", "regression")]
    model = hierarchy(
        keras.Input((5,)), tasks, {"a": 1, "b": 2}, units=4, head_units=[3], estimate_links={"b": ["a"]}
    )
    x = RNG.normal(size=(8, 5)).astype("float32")
    grads = _b_loss_gradients(model, x, RNG.normal(size=(8, 1)).astype("float32"))
    a_private = [v.path for name in ("a_hidden_1", "a") for v in model.get_layer(name).trainable_variables]
    assert len(a_private) == 4
    for path in a_private:
        if stopped:
            assert not np.any(grads[path]), path
        else:
            assert np.any(grads[path]), path
    assert np.any(grads["level_1/kernel"])  # b still trains the shared level below it
    # The partition follows the gradient: with the stop-gradient, a's head is a's alone; without it, shared.
    a_head = {id(v) for name in ("a_hidden_1", "a") for v in model.get_layer(name).trainable_variables}
    shared = {id(v) for v in model.shared_variables}
    assert (a_head & shared == set()) if stopped else (a_head <= shared)
    if stopped:
        assert a_head <= {id(v) for v in model.task_variables["a"]}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"levels": {"pos": 1, "chunk": 2}}, r"every task.*missing: \['dep'\]"),
        ({"levels": {**LEVELS, "ner": 1}}, r"Unknown: \['ner'\]"),
        ({"levels": {**LEVELS, "dep": 0}}, "depths >= 1"),
        ({"levels": [1, 2, 3]}, "Invalid value for `levels`"),
        ({"units": (4, 4)}, "Expected an int or 3 ints"),
        ({"units": 0}, "Invalid value for `units`"),
        ({"label_embeddings": {"dep": 2}}, "'dep' is a regression task"),
        ({"label_embeddings": {"ner": 2}}, "unknown task 'ner'"),
        ({"label_embeddings": {"pos": 0}}, r"label_embeddings\['pos'\]"),
        ({"levels": {"pos": 1, "chunk": 3, "dep": 3}, "label_embeddings": {"chunk": 2}}, "top level"),
        ({"estimate_links": {"dep": ["dep"]}}, "cannot read its own prediction"),
        ({"estimate_links": {"dep": ["ner"]}}, r"unknown task\(s\) \['ner'\]"),
        ({"estimate_links": {"pos": ["chunk"], "chunk": ["pos"]}}, "form a cycle"),
        # pos (level 1) feeds its embedding upward but would read dep (level 3), which sits on top of it.
        ({"label_embeddings": {"pos": 2}, "estimate_links": {"pos": "dep"}}, "form a cycle.*pos reads dep"),
    ],
)
def test_invalid_arguments(kwargs, match):
    kwargs = {"levels": LEVELS, **kwargs}
    with pytest.raises(ValueError, match=match):
        hierarchy(keras.Input((5,)), TASKS, kwargs.pop("levels"), **kwargs)


def test_links_without_embeddings_may_read_upward():
    # Without label embeddings a lower task's head may read a higher task's estimate: there is no cycle.
    model = hierarchy(keras.Input((5,)), TASKS, LEVELS, units=4, estimate_links={"pos": ["dep"]})
    assert tuple(model.get_layer("pos").kernel.shape) == (4 + 1, 3)
