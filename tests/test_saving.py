"""`.keras` save/load round trips of MultiTaskModel with `safe_mode=True` and no custom_objects."""

import keras
import numpy as np
import pytest

import kmtl
from kmtl import Task
from kmtl.weighting import Equal, Static, Uncertainty

N = 16


def make_tasks():
    return [
        Task(
            "smiling",
            "binary",
            label_names=["neutral", "smiling"],
            loss=keras.losses.BinaryFocalCrossentropy(gamma=3.0, alpha=0.3, apply_class_balancing=True),
            loss_weight=0.5,
        ),
        Task("hair", "multiclass", num_classes=3, label_names=["black", "blond", "brown"], loss_weight=2.0),
        Task("attrs", "multilabel", num_labels=2, metrics=["accuracy", keras.metrics.AUC(curve="PR", name="pr")]),
        Task("age", "regression", units=2, label_names=["years", "months"]),
        Task("domain", "binary", auxiliary=True),
    ]


def make_model(seed=0):
    keras.utils.set_random_seed(seed)
    x = keras.Input((4,), name="x")
    h = keras.layers.Dense(6, activation="tanh", name="trunk")(x)
    return kmtl.builders.hard_sharing(x, h, make_tasks(), head_units={"hair": [3], "age": [2]})


def make_data(n=N, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = {
        "smiling": rng.integers(0, 2, n).astype("int32"),
        "hair": rng.integers(0, 3, n).astype("int32"),
        "attrs": rng.integers(0, 2, (n, 2)).astype("int32"),
        "age": rng.normal(size=(n, 2)).astype("float32"),
        "domain": rng.integers(0, 2, n).astype("int32"),
    }
    y["smiling"][[1, 5]] = -1
    y["attrs"][2, 1] = -1
    y["age"][[3, 4], 0] = np.nan
    return x, y


def save_and_load(model, tmp_path, name="model.keras"):
    path = str(tmp_path / name)
    model.save(path)
    return keras.saving.load_model(path, safe_mode=True)


def by_path(variables):
    return {v.path: np.array(v.numpy()) for v in variables}


def assert_predictions_equal(model, restored, x):
    expected, actual = model.predict(x, verbose=0), restored.predict(x, verbose=0)
    assert sorted(actual) == sorted(expected)
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], atol=1e-6, err_msg=name)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model compiled with uncertainty weighting, Adam and loss/metric overrides, trained a few steps, saved and
    loaded back."""
    model = make_model()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.01),
        weighting="uncertainty",
        loss={"attrs": keras.losses.BinaryCrossentropy(label_smoothing=0.2)},
        metrics={"age": ["mse", keras.metrics.MeanAbsoluteError(name="abs")]},
    )
    x, y = make_data()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)  # 4 steps: optimizer moments are non-trivial
    model.weighting.log_variance.assign(np.array([0.3, -0.2, 0.7, -1.1, 0.05], "float32"))
    restored = save_and_load(model, tmp_path_factory.mktemp("saving"))
    return model, restored, x, y


def test_restored_model_class_and_tasks(trained):
    model, restored, _, _ = trained
    assert isinstance(restored, kmtl.MultiTaskModel)
    assert restored.tasks == model.tasks
    assert restored.task_names == ["smiling", "hair", "attrs", "age", "domain"]
    assert restored.task("domain").auxiliary is True
    assert restored.task("hair").label_names == ["black", "blond", "brown"]
    assert restored.task("age").missing_is_nan
    loss = restored.task("smiling").loss
    assert isinstance(loss, keras.losses.BinaryFocalCrossentropy)
    assert loss.get_config() == model.task("smiling").loss.get_config()
    assert isinstance(restored.task("attrs").metrics[1], keras.metrics.AUC)


def test_restored_predictions(trained):
    model, restored, x, _ = trained
    assert_predictions_equal(model, restored, x)


def test_restored_weighting_state(trained):
    model, restored, _, _ = trained
    assert type(restored.weighting) is Uncertainty
    assert restored.weighting.get_config() == model.weighting.get_config()
    expected = np.array([0.3, -0.2, 0.7, -1.1, 0.05], "float32")
    np.testing.assert_array_equal(model.weighting.log_variance.numpy(), expected)
    np.testing.assert_array_equal(restored.weighting.log_variance.numpy(), expected)
    assert restored.weighting.task_names == model.weighting.task_names
    assert restored.weighting.log_variance.path in {v.path for v in restored.trainable_variables}


def test_restored_losses_and_metrics(trained):
    # Same logs on the same data: the compile-time loss override (label smoothing), the Task's focal loss, the
    # metric overrides and the uncertainty weights all came back.
    model, restored, x, y = trained
    expected = model.evaluate(x, y, batch_size=N, return_dict=True, verbose=0)
    actual = restored.evaluate(x, y, batch_size=N, return_dict=True, verbose=0)
    assert sorted(actual) == sorted(expected)
    assert {"age_mse", "age_abs", "attrs_pr", "smiling_weight"} <= set(actual)
    for key in expected:
        assert actual[key] == pytest.approx(expected[key], abs=1e-5), key


def test_training_continues_after_loading(trained):
    model, restored, x, y = trained
    assert int(restored.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy()) == 4
    batch = (x[:8], {k: v[:8] for k, v in y.items()})
    model.train_on_batch(*batch)
    restored.train_on_batch(*batch)
    expected, actual = by_path(model.trainable_variables), by_path(restored.trainable_variables)
    assert sorted(actual) == sorted(expected)
    for path in expected:
        np.testing.assert_allclose(actual[path], expected[path], atol=1e-5, err_msg=path)


@pytest.mark.parametrize("weighting, cls", [("equal", Equal), ("static", Static)])
def test_round_trip_of_stateless_strategies(weighting, cls, tmp_path):
    model = make_model()
    model.compile(optimizer="sgd", weighting=weighting)
    x, y = make_data()
    restored = save_and_load(model, tmp_path)
    assert type(restored.weighting) is cls
    assert restored.weighting.loss_weights == (0.5, 2.0, 1.0, 1.0, 1.0)
    assert_predictions_equal(model, restored, x)
    logs = restored.evaluate(x, y, batch_size=N, return_dict=True, verbose=0)
    assert logs["hair_weight"] == (2.0 if weighting == "static" else 1.0)


def test_round_trip_of_an_uncompiled_model(tmp_path):
    model = make_model()
    restored = save_and_load(model, tmp_path)
    assert isinstance(restored, kmtl.MultiTaskModel) and restored.tasks == model.tasks
    assert_predictions_equal(model, restored, make_data()[0])
    restored.compile(optimizer="sgd", weighting="uncertainty")
    x, y = make_data()
    assert np.isfinite(restored.evaluate(x, y, return_dict=True, verbose=0)["loss"])


def test_config_round_trip():
    model = make_model()
    clone = kmtl.MultiTaskModel.from_config(model.get_config())
    assert isinstance(clone, kmtl.MultiTaskModel)
    assert clone.tasks == model.tasks
    assert sorted(clone.output) == sorted(model.output)
    assert {v.path for v in clone.shared_variables} == {"trunk/kernel", "trunk/bias"}


def test_reading_the_variable_partition_does_not_change_what_is_saved(tmp_path):
    """The cached partition must not be adopted by Keras as the model's own variables."""
    keras.utils.set_random_seed(0)
    tasks = [kmtl.Task("a", "binary"), kmtl.Task("b", "regression")]
    x = keras.Input((3,), name="f")
    h = keras.layers.Dense(4, name="shared")(x)
    model = kmtl.builders.hard_sharing(x, h, tasks)
    count = len(model.weights)
    assert len(model.shared_variables) == 2 and len(model.task_variables["a"]) == 2
    assert len(model.weights) == count
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    data = np.ones((2, 3), "float32")
    np.testing.assert_allclose(loaded.predict(data, verbose=0)["b"], model.predict(data, verbose=0)["b"], atol=1e-6)
