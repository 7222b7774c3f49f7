"""Tests for kmtl.MultiTaskModel built by kmtl.builders.hard_sharing: outputs, variable partition, compile, logs,
missing labels and data validation before training."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny import tiny_data, tiny_model, tiny_tasks

import kmtl
from kmtl import Task

N = 12
TASKS = tiny_tasks()


def bce(y, p):
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def weights_of(variables):
    return [np.array(v.numpy()) for v in variables]


def assert_same(before, after):
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b)


# === Outputs ===


def test_output_keys_and_shapes():
    model = tiny_model(tasks=TASKS, compile=False)
    assert isinstance(model, kmtl.MultiTaskModel)
    assert sorted(model.output) == ["a", "b", "c"]
    assert model.task_names == ["a", "b", "c"]
    assert [t.name for t in model.tasks] == ["a", "b", "c"]
    assert model.task("b") is TASKS[1]
    x, _ = tiny_data(TASKS, n=N)
    pred = model.predict(x, verbose=0)
    assert sorted(pred) == ["a", "b", "c"]
    assert pred["a"].shape == (N, 1) and pred["b"].shape == (N, 2) and pred["c"].shape == (N, 3)
    assert np.all((pred["a"] > 0) & (pred["a"] < 1))
    np.testing.assert_allclose(pred["c"].sum(axis=-1), 1.0, atol=1e-6)
    with pytest.raises(KeyError, match="d"):
        model.task("d")


# === Variable partition ===


def test_partition_of_hard_sharing():
    model = tiny_model(tasks=TASKS, compile=False)
    trunk = model.get_layer("trunk")
    assert {id(v) for v in model.shared_variables} == {id(v) for v in trunk.trainable_variables}
    assert sorted(model.task_variables) == ["a", "b", "c"]
    for name in "abc":
        expected = model.get_layer(f"{name}_hidden_1").trainable_variables + model.get_layer(name).trainable_variables
        assert {id(v) for v in model.task_variables[name]} == {id(v) for v in expected}


def test_partition_with_a_layer_feeding_two_of_three_tasks():
    keras.utils.set_random_seed(0)
    tasks = [Task("a", "binary"), Task("b", "regression"), Task("c", "multiclass", num_classes=3)]
    x = keras.Input((4,), name="x")
    trunk = keras.layers.Dense(5, name="trunk")(x)
    ab = keras.layers.Dense(4, name="ab")(trunk)
    outputs = {
        "a": kmtl.heads.task_head(tasks[0], ab, [3]),
        "b": kmtl.heads.task_head(tasks[1], ab),
        "c": kmtl.heads.task_head(tasks[2], trunk, [2]),
    }
    model = kmtl.MultiTaskModel(x, outputs, tasks=tasks)
    ids = lambda variables: [id(v) for v in variables]  # noqa: E731
    layer_vars = lambda *names: [v for n in names for v in model.get_layer(n).trainable_variables]  # noqa: E731

    assert sorted(ids(model.shared_variables)) == sorted(ids(layer_vars("trunk", "ab")))
    assert sorted(ids(model.task_variables["a"])) == sorted(ids(layer_vars("a_hidden_1", "a")))
    assert sorted(ids(model.task_variables["b"])) == sorted(ids(layer_vars("b")))
    assert sorted(ids(model.task_variables["c"])) == sorted(ids(layer_vars("c_hidden_1", "c")))

    partition = ids(model.shared_variables) + [i for n in "abc" for i in ids(model.task_variables[n])]
    graph = ids(v for layer in model.layers for v in layer.trainable_variables)
    assert len(partition) == len(set(partition))  # each exactly once
    assert sorted(partition) == sorted(graph)


def test_partition_excludes_weighting_variables():
    model = tiny_model(tasks=TASKS, compile=False)
    model.compile(optimizer="sgd", weighting="uncertainty")
    partition = {id(v) for v in model.shared_variables}
    for variables in model.task_variables.values():
        partition |= {id(v) for v in variables}
    assert id(model.weighting.log_variance) not in partition
    assert id(model.weighting.log_variance) in {id(v) for v in model.trainable_variables}


# === Constructor errors ===


def _symbolic():
    x = keras.Input((4,), name="x")
    return x, {t.name: keras.layers.Dense(t.output_units, name=t.name)(x) for t in TASKS}


def test_outputs_must_be_a_dict():
    x, outputs = _symbolic()
    with pytest.raises(ValueError, match=r"`outputs` must be a dict.*list"):
        kmtl.MultiTaskModel(x, list(outputs.values()), tasks=TASKS)


def test_output_keys_must_equal_task_names():
    x, outputs = _symbolic()
    outputs["d"] = outputs.pop("c")
    with pytest.raises(ValueError, match=r"keys \['a', 'b', 'd'\].*task names \['a', 'b', 'c'\]"):
        kmtl.MultiTaskModel(x, outputs, tasks=TASKS)


def test_output_width_must_match_task():
    x, outputs = _symbolic()
    outputs["c"] = keras.layers.Dense(4, name="c")(x)
    with pytest.raises(ValueError, match=r"Output 'c' has 4 units.*expects 3"):
        kmtl.MultiTaskModel(x, outputs, tasks=TASKS)


@pytest.mark.parametrize(
    "tasks, match",
    [
        ([], "at least one"),
        ([Task("a", "binary"), Task("a", "regression")], r"unique.*\['a'\]"),
        (["a"], "Task objects"),
    ],
)
def test_invalid_task_lists(tasks, match):
    x = keras.Input((4,))
    with pytest.raises(ValueError, match=match):
        kmtl.builders.hard_sharing(x, x, tasks)


# === Compile and logs ===

METRIC_KEYS = {"a_accuracy", "a_auc", "b_mae", "b_rmse", "c_accuracy"}
TASK_KEYS = {f"{n}_{k}" for n in "abc" for k in ("loss", "weight")} | METRIC_KEYS | {"loss"}


def test_logs_contain_task_losses_weights_and_metrics():
    model = tiny_model(tasks=TASKS, compile=False)
    model.compile(optimizer="sgd")
    x, y = tiny_data(TASKS, n=N)
    logs = model.evaluate(x, y, return_dict=True, verbose=0)
    assert set(logs) == TASK_KEYS
    history = model.fit(x, y, validation_data=(x, y), epochs=1, batch_size=N, verbose=0).history
    assert set(history) == TASK_KEYS | {f"val_{k}" for k in TASK_KEYS}


def test_task_losses_match_hand_computed_values():
    model = tiny_model(tasks=TASKS, compile=False)
    model.compile(optimizer="sgd", weighting="equal")
    x, y = tiny_data(TASKS, n=N)
    y["a"][[0, 3]] = -1
    y["b"][1, 0] = np.nan
    pred = model.predict(x, verbose=0)
    keep = y["a"] != -1
    expected_a = bce(y["a"][keep], pred["a"][keep, 0]).mean()
    present = ~np.isnan(y["b"])
    expected_b = ((y["b"] - pred["b"])[present] ** 2).mean()
    expected_c = -np.log(pred["c"][np.arange(N), y["c"]]).mean()
    logs = model.evaluate(x, y, batch_size=N, return_dict=True, verbose=0)
    assert logs["a_loss"] == pytest.approx(expected_a, abs=1e-5)
    assert logs["b_loss"] == pytest.approx(expected_b, abs=1e-5)
    assert logs["c_loss"] == pytest.approx(expected_c, abs=1e-5)
    assert logs["b_mae"] == pytest.approx(np.abs(y["b"] - pred["b"])[present].mean(), abs=1e-5)
    assert logs["a_accuracy"] == pytest.approx(((pred["a"][keep, 0] > 0.5) == y["a"][keep]).mean(), abs=1e-6)


def test_equal_weighting_loss_is_sum_of_task_losses():
    model = tiny_model(tasks=TASKS, compile=False)
    model.compile(optimizer="sgd", weighting="equal")
    x, y = tiny_data(TASKS, n=N)
    logs = model.evaluate(x, y, batch_size=N, return_dict=True, verbose=0)
    assert logs["loss"] == pytest.approx(logs["a_loss"] + logs["b_loss"] + logs["c_loss"], abs=1e-5)
    assert logs["a_weight"] == logs["b_weight"] == logs["c_weight"] == 1.0


def test_equal_weighting_loss_is_sum_of_task_losses_with_a_partial_last_batch():
    # 10 rows in batches of 4, 4 and 2: the logged `loss` and the logged task losses must average over batches
    # the same way, so that `loss` is still the sum of the task losses.
    model = tiny_model(tasks=TASKS, compile=False)
    model.compile(optimizer="sgd", weighting="equal")
    x, y = tiny_data(TASKS, n=10)
    logs = model.evaluate(x, y, batch_size=4, return_dict=True, verbose=0)
    assert logs["loss"] == pytest.approx(logs["a_loss"] + logs["b_loss"] + logs["c_loss"], abs=1e-5)


def test_static_weighting_uses_task_loss_weights():
    tasks = [
        Task("a", "binary", loss_weight=0.25),
        Task("b", "regression", units=2, loss_weight=2.0),
        Task("c", "multiclass", num_classes=3, loss_weight=0.0),
    ]
    model = tiny_model(tasks=tasks, compile=False)
    model.compile(optimizer="sgd", weighting="static")
    x, y = tiny_data(TASKS, n=N)
    logs = model.evaluate(x, y, batch_size=N, return_dict=True, verbose=0)
    assert (logs["a_weight"], logs["b_weight"], logs["c_weight"]) == (0.25, 2.0, 0.0)
    expected = 0.25 * logs["a_loss"] + 2.0 * logs["b_loss"]
    assert logs["loss"] == pytest.approx(expected, abs=1e-5)


# === Missing labels ===


def test_missing_labels_change_nothing():
    model = tiny_model(tasks=TASKS, compile=False)
    model.compile(optimizer="sgd")
    x, y = tiny_data(TASKS, n=N)
    rows = np.array([0, 2, 5, 6, 9])  # rows where a's and b's labels are missing
    y["a"][rows] = -1
    y["b"][rows] = np.nan
    keep = np.setdiff1d(np.arange(N), rows)
    full = model.evaluate(x, y, batch_size=N, return_dict=True, verbose=0)
    subset = model.evaluate(x[keep], {k: v[keep] for k, v in y.items()}, batch_size=N, return_dict=True, verbose=0)
    for key in ("a_loss", "a_accuracy", "b_loss", "b_mae", "b_rmse"):
        assert full[key] == pytest.approx(subset[key], abs=1e-6), key


def test_missing_label_entries_in_one_unit_of_a_regression_task():
    model = tiny_model(tasks=TASKS, compile=False)
    model.compile(optimizer="sgd")
    x, y = tiny_data(TASKS, n=N)
    y["b"][:, 1] = np.nan  # only the first unit is labelled
    pred = model.predict(x, verbose=0)
    logs = model.evaluate(x, y, batch_size=N, return_dict=True, verbose=0)
    assert logs["b_mae"] == pytest.approx(np.abs(y["b"][:, 0] - pred["b"][:, 0]).mean(), abs=1e-5)
    assert logs["b_loss"] == pytest.approx(((y["b"][:, 0] - pred["b"][:, 0]) ** 2).mean(), abs=1e-5)


def test_all_labels_of_a_task_missing():
    model = tiny_model(tasks=TASKS, compile=False)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1, momentum=0.0))
    x, y = tiny_data(TASKS, n=N)
    y["a"][:] = -1
    logs = model.evaluate(x, y, batch_size=N, return_dict=True, verbose=0)
    assert logs["a_loss"] == 0.0
    assert np.isfinite(logs["loss"])
    assert logs["loss"] == pytest.approx(logs["b_loss"] + logs["c_loss"], abs=1e-5)

    head_a = weights_of(model.task_variables["a"])
    head_b = weights_of(model.task_variables["b"])
    trunk = weights_of(model.shared_variables)
    with pytest.warns(UserWarning, match="Task 'a' had no labels in the training data"):
        history = model.fit(x, y, batch_size=N, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    assert_same(head_a, weights_of(model.task_variables["a"]))  # no gradient reached task a's head
    assert not np.allclose(head_b[0], model.task_variables["b"][0].numpy())
    assert not np.allclose(trunk[0], model.shared_variables[0].numpy())
    for v in model.trainable_variables:
        assert np.all(np.isfinite(v.numpy())), v.path


# === Validation before training ===


def _bad_labels(case):
    x, y = tiny_data(TASKS, n=N)
    if case == "missing_task":
        del y["c"]
        match = r"missing for task\(s\) \['c'\]"
    elif case == "unknown_key":
        y["d"] = y["a"].copy()
        match = r"unknown task\(s\) \['d'\].*\['a', 'b', 'c'\]"
    elif case == "out_of_range":
        y["c"][0] = 3  # first batch too, so a dataset's first-batch check sees it
        match = r"Task 'c'.*3"
    elif case == "wrong_shape":
        y["b"] = np.zeros((N, 3), "float32")
        match = r"Task '?b'?.*shape"
    return x, y, match


CASES = ["missing_task", "unknown_key", "out_of_range", "wrong_shape"]


@pytest.fixture(scope="module")
def compiled_model():
    model = tiny_model(tasks=TASKS, compile=False)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    return model


@pytest.mark.parametrize("case", CASES)
def test_fit_validates_numpy_labels_before_training(compiled_model, case):
    x, y, match = _bad_labels(case)
    before = weights_of(compiled_model.trainable_variables)
    with pytest.raises(ValueError, match=match):
        compiled_model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert_same(before, weights_of(compiled_model.trainable_variables))


@pytest.mark.parametrize("case", CASES)
def test_fit_validates_dataset_labels_before_training(compiled_model, case):
    x, y, match = _bad_labels(case)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    before = weights_of(compiled_model.trainable_variables)
    with pytest.raises(ValueError, match=match):
        compiled_model.fit(dataset, epochs=1, verbose=0)
    assert_same(before, weights_of(compiled_model.trainable_variables))


@pytest.mark.parametrize("as_dataset", [False, True])
def test_fit_validates_validation_data_before_training(compiled_model, as_dataset):
    x, y = tiny_data(TASKS, n=N)
    vx, vy, match = _bad_labels("out_of_range")
    validation = tf.data.Dataset.from_tensor_slices((vx, vy)).batch(4) if as_dataset else (vx, vy)
    before = weights_of(compiled_model.trainable_variables)
    with pytest.raises(ValueError, match="validation_data.*" + match):
        compiled_model.fit(x, y, validation_data=validation, epochs=1, batch_size=4, verbose=0)
    assert_same(before, weights_of(compiled_model.trainable_variables))


def test_evaluate_validates_labels(compiled_model):
    x, y, match = _bad_labels("out_of_range")
    with pytest.raises(ValueError, match=match):
        compiled_model.evaluate(x, y, verbose=0)


def test_labels_as_a_list_are_rejected(compiled_model):
    x, y = tiny_data(TASKS, n=N)
    with pytest.raises(ValueError, match="dict keyed by task name"):
        compiled_model.fit(x, [y["a"], y["b"], y["c"]], epochs=1, verbose=0)


# === Compile arguments ===


def test_compile_rejects_loss_weights():
    model = tiny_model(tasks=TASKS, compile=False)
    with pytest.raises(ValueError, match=r"`loss_weights`.*loss_weight.*static"):
        model.compile(optimizer="sgd", loss_weights={"a": 1.0, "b": 1.0, "c": 1.0})


@pytest.mark.parametrize("field", ["loss", "metrics"])
def test_compile_overrides_with_unknown_task_names(field):
    model = tiny_model(tasks=TASKS, compile=False)
    value = {"a": "mse", "zz": "mse"} if field == "loss" else {"zz": ["mae"]}
    with pytest.raises(ValueError, match=rf"`{field}` names unknown task\(s\) \['zz'\].*\['a', 'b', 'c'\]"):
        model.compile(optimizer="sgd", **{field: value})


def test_compile_rejects_unknown_weighting():
    model = tiny_model(tasks=TASKS, compile=False)
    with pytest.raises(ValueError, match=r"weighting.*'equal'.*'static'.*'uncertainty'.*nope"):
        model.compile(optimizer="sgd", weighting="nope")


def test_compile_rejects_metric_of_the_wrong_kind():
    model = tiny_model(tasks=TASKS, compile=False)
    with pytest.raises(ValueError, match=r"Task 'a'.*'mae'"):
        model.compile(optimizer="sgd", metrics={"a": ["mae"]})


def test_compile_loss_and_metric_overrides():
    model = tiny_model(tasks=TASKS, compile=False)
    model.compile(
        optimizer="sgd",
        loss={"b": "mae"},
        metrics={"b": ["mse"], "a": [keras.metrics.Precision(name="prec")]},
    )
    x, y = tiny_data(TASKS, n=N)
    y["a"][:4] = 1
    pred = model.predict(x, verbose=0)
    logs = model.evaluate(x, y, batch_size=N, return_dict=True, verbose=0)
    assert "b_mse" in logs and "b_mae" not in logs and "b_rmse" not in logs
    assert "a_prec" in logs and "a_accuracy" not in logs and "a_auc" not in logs
    assert "c_accuracy" in logs  # untouched task keeps its defaults
    assert logs["b_loss"] == pytest.approx(np.abs(y["b"] - pred["b"]).mean(), abs=1e-5)
    assert logs["b_mse"] == pytest.approx(((y["b"] - pred["b"]) ** 2).mean(), abs=1e-5)
    positive = pred["a"][:, 0] > 0.5
    assert positive.any()
    assert logs["a_prec"] == pytest.approx((y["a"][positive] == 1).mean(), abs=1e-6)


def test_recompiling_with_another_weighting_leaves_no_stale_variables():
    model = tiny_model(tasks=TASKS, compile=False)
    model.compile(optimizer="sgd", weighting="uncertainty")
    model.compile(optimizer="sgd", weighting="equal")
    assert not [v.path for v in model.trainable_variables if "log_variance" in v.path]
    assert len(model.trainable_variables) == len(model.shared_variables) + sum(
        len(v) for v in model.task_variables.values()
    )


def test_recompiling_uncertainty_twice_keeps_one_log_variance():
    model = tiny_model(tasks=TASKS, compile=False)
    model.compile(optimizer="sgd", weighting="uncertainty")
    model.compile(optimizer="sgd", weighting="uncertainty")
    stale = [v for v in model.trainable_variables if "log_variance" in v.path]
    assert len(stale) == 1 and stale[0] is model.weighting.log_variance


def test_task_losses_require_compile():
    model = tiny_model(tasks=TASKS, compile=False)
    x, y = tiny_data(TASKS, n=N)
    with pytest.raises(RuntimeError, match="not compiled"):
        model.task_losses(y, model(x))


# === Learning ===


def test_one_epoch_decreases_every_task_loss():
    rng = np.random.default_rng(7)
    n = 256
    x = rng.normal(size=(n, 4)).astype("float32")
    y = {
        "a": (x[:, 0] + x[:, 1] > 0).astype("int32"),
        "b": np.stack([x[:, 2], x[:, 0] - x[:, 3]], axis=-1).astype("float32"),
        "c": np.argmax(x[:, :3], axis=-1).astype("int32"),
    }
    model = tiny_model(tasks=TASKS, head_units=(8,), trunk_units=16, compile=False)
    model.compile(optimizer=keras.optimizers.Adam(0.02), weighting="equal")
    before = model.evaluate(x, y, batch_size=n, return_dict=True, verbose=0)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    after = model.evaluate(x, y, batch_size=n, return_dict=True, verbose=0)
    for name in "abc":
        assert after[f"{name}_loss"] < before[f"{name}_loss"], name
    assert after["loss"] < before["loss"]
