"""The facial-attributes recipe: tasks, model, data, training, save/load and export through the public API."""

import keras
import numpy as np
import pytest
from kmtl.recipes import facial_attributes as fa

import kmtl

SIZE = 24


@pytest.fixture(scope="module")
def data():
    return fa.load_data(num_train=64, num_val=32, num_test=32, image_size=SIZE, batch_size=32)


def test_model_outputs_are_the_recipe_tasks():
    model = fa.build_model(image_size=SIZE, filters=(4, 8), fusion_units=8, head_units=(4,))
    assert sorted(model.output) == sorted(t.name for t in fa.TASKS)
    predictions = model.predict({"image": np.zeros((2, SIZE, SIZE, 3), "float32")}, verbose=0)
    for task in fa.TASKS:
        assert predictions[task.name].shape == (2, task.output_units)
    assert model.get_layer("fusion") is not None
    assert any(v.path.startswith("conv1a") for v in model.shared_variables)


def test_data_labels_fit_the_tasks(data):
    train, _, _ = data
    inputs, labels = next(iter(train))
    assert inputs["image"].shape == (32, SIZE, SIZE, 3)
    kmtl.tasks.validate_label_dict(fa.TASKS, {k: v.numpy() for k, v in labels.items()})


def test_single_task_subset():
    age = [t for t in fa.make_tasks() if t.name == "age"]
    model = fa.build_model(image_size=SIZE, filters=(4,), fusion_units=8, tasks=age)
    train, _, _ = fa.load_data(num_train=8, num_val=8, num_test=8, image_size=SIZE, tasks=["age"])
    assert list(model.output) == ["age"] and list(train.element_spec[1]) == ["age"]


def test_regression_heads_work_in_standardised_units():
    age = next(t for t in fa.TASKS if t.name == "age")
    model = fa.build_model(image_size=SIZE, filters=(4,), fusion_units=8, tasks=[age])
    assert model.get_layer("age_standardized") is not None
    rescale = model.get_layer("age")
    assert (rescale.scale, rescale.offset) == (age.target_scale, age.target_offset)
    # The loss of a prediction off by one scale unit is 1 in standardised MSE, not target_scale ** 2.
    y_true = np.array([[50.0]], "float32")
    loss = kmtl.losses.masked_loss(age, kmtl.losses.resolve_loss("mse"), y_true, y_true + age.target_scale)
    assert np.isclose(float(loss), 1.0)


@pytest.mark.slow  # trains, exports or starts a process: several seconds on 2 cores
def test_train_save_load_and_export(data, tmp_path):
    keras.utils.set_random_seed(0)
    train, val, test = data
    model = fa.build_model(image_size=SIZE, filters=(4, 8), fusion_units=8, head_units=(4,))
    fa.compile_model(model, weighting="uncertainty", learning_rate=1e-3)
    history = model.fit(train, validation_data=val, epochs=2, verbose=0, shuffle=False)
    for task in fa.TASKS:
        assert f"val_{task.name}_loss" in history.history
    assert "val_landmarks_nme" in history.history
    path = tmp_path / "fa.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    batch = next(iter(test))[0]
    expected, actual = model.predict(batch, verbose=0), loaded.predict(batch, verbose=0)
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], atol=1e-5)
    np.testing.assert_allclose(loaded.weighting.log_variance.numpy(), model.weighting.log_variance.numpy())
    export = kmtl.export.for_serving(loaded, tmp_path / "serving")
    assert (export / "saved_model.pb").is_file() and export.name == "1"
