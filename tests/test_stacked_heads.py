"""Tests for kmtl.layers.StackedHeads, stacked_task_heads and the stacked_heads_model builder, with many tasks and
mostly missing labels."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from layer_testing import fit_and_round_trip

import kmtl
from kmtl import Task
from kmtl.builders.many_tasks import stacked_heads_model
from kmtl.layers.stacked_heads import StackedHeads, stacked_task_heads

RNG = np.random.default_rng(0)


def run_layer_round_trip(layer, x, tmp_path):
    """Config, symbolic/eager shapes (a dict per task), one fit step and `.keras` round trip."""
    config = layer.get_config()
    assert StackedHeads.from_config(config).get_config() == config

    names = layer.task_names
    expected = (layer.units,)
    symbolic_in = keras.Input(x.shape[1:], name="x")
    symbolic_out = layer(symbolic_in)
    assert list(symbolic_out) == names
    assert {k: tuple(v.shape) for k, v in symbolic_out.items()} == {n: (None,) + expected for n in names}
    assert layer.compute_output_shape((None,) + x.shape[1:]) == {n: (None,) + expected for n in names}
    eager_out = layer(x)
    assert {k: tuple(v.shape) for k, v in eager_out.items()} == {n: (len(x),) + expected for n in names}

    model = keras.Model(symbolic_in, symbolic_out)
    labels = {n: RNG.normal(size=(len(x),) + expected) for n in names}
    fit_and_round_trip(model, x, labels, tmp_path, watched=layer.trainable_weights)


@pytest.mark.parametrize(
    "tasks",
    [
        [Task(f"t{i}", "binary") for i in range(3)],
        [Task("u", "multiclass", num_classes=3), Task("v", "multiclass", num_classes=3)],
        [Task("age", "regression", target_offset=40.0, target_scale=10.0), Task("z", "regression")],
    ],
)
def test_round_trip(tasks, tmp_path):
    layer = StackedHeads(tasks, bias_initializer=keras.initializers.RandomNormal(seed=1))
    run_layer_round_trip(layer, RNG.normal(size=(5, 4)).astype("float32"), tmp_path)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize(
    "tasks, numpy_activation",
    [
        ([Task(f"t{i}", "binary") for i in range(4)], sigmoid),
        ([Task(f"c{i}", "multiclass", num_classes=3) for i in range(3)], softmax),
        ([Task("r0", "regression", units=2), Task("r1", "regression", units=2)], lambda z: z),
    ],
)
def test_equals_separate_numpy_dense_heads(tasks, numpy_activation):
    x = RNG.normal(size=(6, 5))
    layer = StackedHeads(tasks, dtype="float64")
    layer.build(x.shape)
    layer.kernel.assign(RNG.normal(size=layer.kernel.shape))
    layer.bias.assign(RNG.normal(size=layer.bias.shape))
    outputs = layer(x)
    for t, task in enumerate(tasks):
        expected = numpy_activation(x @ layer.kernel.numpy()[t] + layer.bias.numpy()[t])
        np.testing.assert_allclose(outputs[task.name].numpy(), expected, rtol=1e-12)


def test_standardised_regression_heads_rescale_per_task():
    tasks = [Task("age", "regression", target_offset=40.0, target_scale=10.0), Task("z", "regression")]
    x = RNG.normal(size=(3, 2))
    layer = StackedHeads(tasks, dtype="float64")
    layer.build(x.shape)
    layer.kernel.assign(RNG.normal(size=(2, 2, 1)))
    outputs = layer(x)
    raw = np.einsum("bd,tdk->tbk", x, layer.kernel.numpy())
    np.testing.assert_allclose(outputs["age"].numpy(), raw[0] * 10.0 + 40.0, rtol=1e-12)
    np.testing.assert_allclose(outputs["z"].numpy(), raw[1], rtol=1e-12)


def test_kernel_slices_are_initialised_like_dense_kernels():
    layer = StackedHeads([Task(f"t{i}", "multiclass", num_classes=16) for i in range(6)],
                         kernel_initializer=keras.initializers.GlorotUniform(seed=2))
    layer.build((None, 48))
    limit = np.sqrt(6.0 / (48 + 16))  # Glorot for one (48, 16) Dense kernel
    kernel = layer.kernel.numpy()
    assert np.abs(kernel).max() <= limit
    np.testing.assert_allclose(kernel.var(axis=(1, 2)), limit**2 / 3, rtol=0.2)  # uniform variance, 768 draws


@pytest.mark.parametrize(
    "tasks, match",
    [
        ([Task("a", "binary"), Task("b", "regression")], "Expected tasks of one kind, output width and activation"),
        ([Task("a", "multiclass", num_classes=3), Task("b", "multiclass", num_classes=4)], "3 units.*4 units"),
        ([Task("a", "binary"), Task("b", "binary", activation="linear")], "sigmoid.*linear"),
        ([Task("a", "binary"), Task("a", "binary")], "unique"),
        ([], "at least one Task"),
        (Task("a", "binary"), "Expected a list of kmtl.Task"),
        (["a"], "Expected kmtl.Task objects"),
    ],
)
def test_invalid_tasks(tasks, match):
    with pytest.raises(ValueError, match=match):
        StackedHeads(tasks)


def test_stacked_task_heads_groups_alike_tasks():
    tasks = [Task("a", "binary"), Task("r", "regression", units=2), Task("b", "binary"), Task("s", "regression")]
    x = keras.Input((4,))
    outputs = stacked_task_heads(tasks, x, name="heads")
    assert list(outputs) == ["a", "r", "b", "s"]
    groups = {name: out._keras_history.operation for name, out in outputs.items()}
    assert groups["a"] is groups["b"] and groups["a"].name == "heads_1"
    assert groups["r"].name == "heads_2" and groups["s"].name == "heads_3"
    assert groups["a"].dtype_policy.compute_dtype == "float32"
    with pytest.raises(ValueError, match=r"feature vector.*\(None, 2, 4\)"):
        stacked_task_heads(tasks, keras.Input((2, 4)))


# === Builder ===


MIXED = [Task("a", "binary"), Task("b", "binary"), Task("c", "multiclass", num_classes=3)]


def build_mixed():
    keras.utils.set_random_seed(0)
    x = keras.Input((6,), name="x")
    h = keras.layers.Dense(8, activation="relu", name="trunk")(x)
    return stacked_heads_model(x, h, MIXED)


def test_builder_partition():
    model = build_mixed()
    assert isinstance(model, kmtl.MultiTaskModel)
    binary, multiclass = model.get_layer("stacked_heads_1"), model.get_layer("stacked_heads_2")
    # The binary layer feeds two tasks, so the graph counts its kernel as shared (each task's loss only reaches
    # its own slice) and no variable is task a's or b's. The multiclass layer feeds task c alone: c's.
    expected_shared = model.get_layer("trunk").trainable_variables + binary.trainable_variables
    assert {id(v) for v in model.shared_variables} == {id(v) for v in expected_shared}
    assert {id(v) for v in model.task_variables["c"]} == {id(v) for v in multiclass.trainable_variables}
    assert model.task_variables["a"] == [] and model.task_variables["b"] == []


def test_builder_fit_round_trip_and_export(tmp_path):
    model = build_mixed()
    assert sorted(model.output) == ["a", "b", "c"]
    rng = np.random.default_rng(1)
    n = 128
    x = rng.normal(size=(n, 6)).astype("float32")
    y = {"a": (x[:, 0] > 0).astype("int32"), "b": (x[:, 1] + x[:, 2] > 0).astype("int32"),
         "c": np.argmax(x[:, 3:], axis=-1).astype("int32")}
    model.compile(optimizer=keras.optimizers.Adam(0.02))
    before = model.evaluate(x, y, batch_size=n, return_dict=True, verbose=0)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    after = model.evaluate(x, y, batch_size=n, return_dict=True, verbose=0)
    assert after["loss"] < before["loss"]

    path = str(tmp_path / "many.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    expected, got = model.predict(x, verbose=0), restored.predict(x, verbose=0)
    for name in "abc":
        np.testing.assert_allclose(got[name], expected[name], atol=1e-6)

    export = kmtl.export.for_serving(model, tmp_path / "serving")
    served = tf.saved_model.load(str(export)).signatures["serving_default"](x=tf.constant(x[:4]))
    np.testing.assert_allclose(served["a"].numpy(), expected["a"][:4, 0], atol=1e-5)
    np.testing.assert_allclose(served["c"].numpy(), expected["c"][:4], atol=1e-5)
    np.testing.assert_array_equal(served["c_class_id"].numpy(), expected["c"][:4].argmax(axis=-1))


def test_128_binary_tasks_with_mostly_missing_labels():
    """Drug-discovery style: 128 assays, ~90% of labels missing (-1), one assay with no label at all."""
    num_tasks, n = 128, 64
    rng = np.random.default_rng(2)
    keras.utils.set_random_seed(2)
    tasks = [Task(f"assay_{i}", "binary") for i in range(num_tasks)]  # default metrics: accuracy, AUC
    x_in = keras.Input((16,), name="fingerprint")
    h = keras.layers.Dense(8, activation="relu", name="trunk")(x_in)
    model = stacked_heads_model(x_in, h, tasks)
    assert len(model.layers) < 10  # one head layer, not 128

    x = rng.normal(size=(n, 16)).astype("float32")
    y = {}
    for i, task in enumerate(tasks):
        labels = (x[:, i % 16] > 0).astype("int32")
        labels[rng.random(n) < 0.9] = -1
        y[task.name] = labels
    y["assay_7"][:] = -1  # no label for this assay anywhere in the data
    present = np.mean([np.mean(v >= 0) for v in y.values()])
    assert 0.05 < present < 0.15

    heads = model.get_layer("stacked_heads")
    kernel_before, bias_before = heads.kernel.numpy().copy(), heads.bias.numpy().copy()
    # Eagerly: tracing a graph-mode step of 128 tasks' masked losses and metrics costs tens of seconds on 2 cores
    # (see benchmarks/many_tasks.py); the stacked layer itself runs in graph mode in the builder test.
    model.compile(optimizer=keras.optimizers.SGD(0.5), run_eagerly=True)
    with pytest.warns(UserWarning, match="Task 'assay_7' had no labels in the training data"):
        history = model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0).history
    for task in tasks:
        assert f"{task.name}_loss" in history and np.isfinite(history[f"{task.name}_loss"][0]), task.name
    assert history["assay_7_loss"][0] == 0.0
    kernel, bias = heads.kernel.numpy(), heads.bias.numpy()
    # The all-missing task's slice gets no gradient; every task with a label in the data moves.
    np.testing.assert_array_equal(kernel[7], kernel_before[7])
    np.testing.assert_array_equal(bias[7], bias_before[7])
    labelled = [i for i, t in enumerate(tasks) if np.any(y[t.name] >= 0)]
    assert len(labelled) > 100
    unchanged = [i for i in labelled if np.allclose(bias[i], bias_before[i]) or np.allclose(kernel[i], kernel_before[i])]
    assert unchanged == []
