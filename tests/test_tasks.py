"""Tests for kmtl.Task: defaults, overrides, argument checks, config round trip and label validation."""

import math

import keras
import numpy as np
import pytest

from kmtl import Task
from kmtl.tasks import validate_label_dict

# === Defaults ===


@pytest.mark.parametrize(
    "kwargs, loss, metrics, activation, output_units, label_width",
    [
        ({"kind": "binary"}, "binary_crossentropy", ["accuracy", "auc"], "sigmoid", 1, 1),
        (
            {"kind": "multiclass", "num_classes": 5},
            "sparse_categorical_crossentropy",
            ["accuracy"],
            "softmax",
            5,
            1,
        ),
        ({"kind": "multilabel", "num_labels": 4}, "binary_crossentropy", ["accuracy", "auc"], "sigmoid", 4, 4),
        ({"kind": "regression"}, "mse", ["mae", "rmse"], "linear", 1, 1),
        ({"kind": "regression", "units": 3}, "mse", ["mae", "rmse"], "linear", 3, 3),
    ],
)
def test_defaults_per_kind(kwargs, loss, metrics, activation, output_units, label_width):
    task = Task("t", **kwargs)
    assert task.loss == loss
    assert task.metrics == metrics
    assert task.activation == activation
    assert task.output_units == output_units
    assert task.label_width == label_width
    assert task.loss_weight == 1.0
    assert task.auxiliary is False
    assert task.label_names is None


@pytest.mark.parametrize("kind, extra", [("binary", {}), ("multiclass", {"num_classes": 3}), ("multilabel", {"num_labels": 2})])
def test_default_missing_is_minus_one_for_class_labels(kind, extra):
    task = Task("t", kind, **extra)
    assert task.missing == -1
    assert not task.missing_is_nan


def test_default_missing_is_nan_for_regression():
    task = Task("t", "regression", units=2)
    assert isinstance(task.missing, float) and math.isnan(task.missing)
    assert task.missing_is_nan


def test_defaults_are_not_shared_between_tasks():
    first, second = Task("a", "binary"), Task("b", "binary")
    first.metrics.append("precision")
    assert second.metrics == ["accuracy", "auc"]


# === Overrides ===


def test_every_default_is_overridable():
    loss = keras.losses.BinaryFocalCrossentropy(gamma=3.0)
    metric = keras.metrics.Precision(name="prec")
    task = Task(
        "smiling",
        "binary",
        loss=loss,
        metrics=["accuracy", metric],
        activation="hard_sigmoid",
        loss_weight=0.25,
        auxiliary=True,
        missing=-9,
        label_names=["neutral", "smiling"],
    )
    assert task.loss is loss
    assert task.metrics == ["accuracy", metric]
    assert task.activation == "hard_sigmoid"
    assert task.loss_weight == 0.25
    assert task.auxiliary is True
    assert task.missing == -9
    assert task.label_names == ["neutral", "smiling"]


def test_regression_overrides():
    task = Task("age", "regression", units=2, loss="mae", metrics=["mse"], missing=-999.0, label_names=["x", "y"])
    assert (task.loss, task.metrics, task.missing, task.output_units) == ("mae", ["mse"], -999.0, 2)
    assert not task.missing_is_nan


def test_empty_metrics_list_overrides_defaults():
    assert Task("t", "binary", metrics=[]).metrics == []


def test_loss_weight_accepts_numpy_float():
    # A numpy scalar is a finite number >= 0, which is what the error message asks for.
    assert Task("t", "binary", loss_weight=np.float32(0.5)).loss_weight == 0.5


def test_num_classes_accepts_numpy_int():
    assert Task("t", "multiclass", num_classes=np.int64(4)).output_units == 4


# === Invalid arguments ===


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (("1st", "binary"), {}, r"`name`.*1st"),
        (("has space", "binary"), {}, r"`name`.*has space"),
        (("", "binary"), {}, r"`name`"),
        ((None, "binary"), {}, r"`name`"),
        (("t", "ordinal"), {}, r"Task 't'.*`kind`.*ordinal"),
        (("t", "multiclass"), {}, r"Task 't'.*`num_classes`"),
        (("t", "multiclass"), {"num_classes": 1}, r"Task 't'.*`num_classes`.*num_classes=1"),
        (("t", "multiclass"), {"num_classes": True}, r"Task 't'.*`num_classes`.*True"),
        (("t", "multiclass"), {"num_classes": 3.0}, r"Task 't'.*`num_classes`"),
        (("t", "multilabel"), {}, r"Task 't'.*`num_labels`"),
        (("t", "multilabel"), {"num_labels": 0}, r"Task 't'.*`num_labels`"),
        (("t", "binary"), {"num_labels": 3}, r"Task 't'.*`num_labels`"),
        (("t", "binary"), {"num_classes": 3}, r"Task 't'.*`num_classes`"),
        (("t", "regression"), {"num_classes": 3}, r"Task 't'.*`num_classes`"),
        (("t", "binary"), {"units": 2}, r"Task 't'.*`units`"),
        (("t", "multiclass"), {"num_classes": 3, "units": 3}, r"Task 't'.*`units`"),
        (("t", "regression"), {"units": 0}, r"Task 't'.*`units`"),
        (("t", "regression"), {"units": False}, r"Task 't'.*`units`"),
        (("t", "binary"), {"loss_weight": -0.5}, r"Task 't'.*`loss_weight`.*-0.5"),
        (("t", "binary"), {"loss_weight": float("nan")}, r"Task 't'.*`loss_weight`.*nan"),
        (("t", "binary"), {"loss_weight": float("inf")}, r"Task 't'.*`loss_weight`"),
        (("t", "binary"), {"loss_weight": "1"}, r"Task 't'.*`loss_weight`"),
        (("t", "binary"), {"missing": 0}, r"Task 't'.*`missing`"),
        (("t", "binary"), {"missing": 1}, r"Task 't'.*`missing`"),
        (("t", "multilabel"), {"num_labels": 2, "missing": 1}, r"Task 't'.*`missing`"),
        (("t", "multiclass"), {"num_classes": 3, "missing": 2}, r"Task 't'.*`missing`"),
        (("t", "multiclass"), {"num_classes": 3, "missing": 0}, r"Task 't'.*`missing`"),
        (("t", "binary"), {"missing": float("nan")}, r"Task 't'.*`missing`"),
        (("t", "binary"), {"missing": "none"}, r"Task 't'.*`missing`"),
        (("t", "binary"), {"label_names": ["only"]}, r"Task 't'.*`label_names`"),
        (("t", "multiclass"), {"num_classes": 3, "label_names": ["a", "b"]}, r"Task 't'.*3 `label_names`"),
        (("t", "multilabel"), {"num_labels": 2, "label_names": ["a", "b", "c"]}, r"Task 't'.*2 `label_names`"),
        (("t", "regression"), {"units": 2, "label_names": ["x"]}, r"Task 't'.*2 `label_names`"),
    ],
)
def test_invalid_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Task(*args, **kwargs)


@pytest.mark.parametrize("missing", [-1, 3, 99, -0.5])
def test_missing_outside_class_range_is_accepted(missing):
    assert Task("t", "multiclass", num_classes=3, missing=missing).missing == missing


# === Config round trip ===


@pytest.mark.parametrize(
    "task",
    [
        Task("smiling", "binary", label_names=["no", "yes"], loss_weight=0.5),
        Task("hair", "multiclass", num_classes=3, metrics=["accuracy", "top_2_accuracy"], missing=-2),
        Task("attrs", "multilabel", num_labels=2, auxiliary=True),
        Task("age", "regression"),
        Task("pose", "regression", units=3, missing=-999.0, activation="tanh", label_names=["yaw", "pitch", "roll"]),
    ],
    ids=lambda t: t.name,
)
def test_config_round_trip(task):
    config = task.get_config()
    restored = Task.from_config(config)
    assert restored == task
    assert restored.get_config() == config  # NaN is stored as "nan", so configs compare equal
    for field in ("name", "kind", "num_classes", "num_labels", "units", "loss", "metrics", "activation",
                  "loss_weight", "auxiliary", "label_names"):
        assert getattr(restored, field) == getattr(task, field), field
    assert restored.missing_is_nan == task.missing_is_nan
    if not task.missing_is_nan:
        assert restored.missing == task.missing


def test_config_round_trip_through_keras_serialization():
    task = Task("age", "regression", units=2)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(task))
    assert isinstance(restored, Task) and restored == task
    assert math.isnan(restored.missing)


def test_nan_missing_survives_json():
    import json

    task = Task("age", "regression")
    restored = Task.from_config(json.loads(json.dumps(task.get_config())))
    assert isinstance(restored.missing, float) and math.isnan(restored.missing)


def test_loss_and_metric_objects_survive_round_trip():
    import json

    loss = keras.losses.BinaryFocalCrossentropy(gamma=3.0, alpha=0.3, apply_class_balancing=True)
    metric = keras.metrics.AUC(curve="PR", num_thresholds=50, name="pr_auc")
    task = Task("smiling", "binary", loss=loss, metrics=["accuracy", metric])
    restored = Task.from_config(json.loads(json.dumps(task.get_config())))
    assert restored == task
    assert isinstance(restored.loss, keras.losses.BinaryFocalCrossentropy)
    assert restored.loss.get_config() == loss.get_config()
    assert restored.metrics[0] == "accuracy"
    assert isinstance(restored.metrics[1], keras.metrics.AUC)
    assert restored.metrics[1].get_config() == metric.get_config()
    assert restored.metrics[1].curve.name == "PR" and restored.metrics[1].num_thresholds == 50


def test_equality_distinguishes_fields():
    base = Task("t", "multiclass", num_classes=3)
    assert base == Task("t", "multiclass", num_classes=3)
    assert base != Task("t", "multiclass", num_classes=4)
    assert base != Task("u", "multiclass", num_classes=3)
    assert base != Task("t", "multiclass", num_classes=3, loss_weight=2.0)
    assert Task("t", "binary", loss=keras.losses.BinaryFocalCrossentropy(gamma=2.0)) != Task(
        "t", "binary", loss=keras.losses.BinaryFocalCrossentropy(gamma=3.0)
    )


# === Label validation ===

BINARY = Task("smiling", "binary")
HAIR = Task("hair", "multiclass", num_classes=3)
ATTRS = Task("attrs", "multilabel", num_labels=2)
POSE = Task("pose", "regression", units=2)
AGE = Task("age", "regression")


@pytest.mark.parametrize(
    "task, labels",
    [
        (BINARY, np.array([0, 1, -1, 1])),
        (BINARY, np.array([[0], [1], [-1], [1]], dtype="float32")),
        (BINARY, np.array([True, False])),
        (HAIR, np.array([0, 2, 1, -1], dtype="int8")),
        (HAIR, np.array([[0.0], [2.0], [-1.0]])),
        (ATTRS, np.array([[0, 1], [-1, 1], [1, -1]])),
        (POSE, np.array([[0.5, np.nan], [np.nan, np.nan], [1e6, -3.0]], dtype="float32")),
        (AGE, np.array([1, 2, 3], dtype="uint8")),  # NaN marker: unsigned regression labels are fine
        (AGE, np.array([[30.0], [np.nan]])),
    ],
)
def test_valid_labels_pass(task, labels):
    task.validate_labels(labels, num_examples=len(labels))


@pytest.mark.parametrize(
    "task, labels, match",
    [
        (POSE, np.zeros((4, 3), "float32"), r"Task '?pose'?.*shape"),
        (POSE, np.zeros((4,), "float32"), r"Task '?pose'?.*shape"),
        (AGE, np.zeros((4, 2), "float32"), r"Task '?age'?.*shape"),
        (HAIR, np.zeros((4, 3), "int32"), r"Task '?hair'?.*shape"),
        (ATTRS, np.zeros((4,), "int32"), r"Task '?attrs'?.*shape"),
        (BINARY, np.zeros((4, 1, 1), "int32"), r"Task '?smiling'?.*shape"),
        (BINARY, np.array(1), r"Task 'smiling'.*batch axis"),
        (HAIR, np.array([0, 3, 1]), r"Task 'hair'.*3"),
        (HAIR, np.array([0, -2, 1]), r"Task 'hair'.*-2"),
        (HAIR, np.array([0.0, 1.5, 1.0]), r"Task 'hair'.*1\.5"),
        (BINARY, np.array([0, 2, 1]), r"Task 'smiling'.*2"),
        (ATTRS, np.array([[0, 1], [1, 2]]), r"Task 'attrs'.*2"),
        (BINARY, np.array([0.0, np.nan, 1.0]), r"Task 'smiling'.*nan"),
        (HAIR, np.array([0.0, np.nan]), r"Task 'hair'.*nan"),
        (ATTRS, np.array([[0.0, np.nan]]), r"Task 'attrs'.*nan"),
        (POSE, np.array([[0.0, np.inf]]), r"Task 'pose'.*inf"),
        (AGE, np.array([1.0, -np.inf]), r"Task 'age'.*inf"),
        (BINARY, np.array([0, 1], dtype="uint8"), r"Task 'smiling'.*unsigned"),
        (HAIR, np.array([0, 1], dtype="uint16"), r"Task 'hair'.*unsigned"),
        (BINARY, np.array(["0", "1"]), r"Task 'smiling'.*numeric"),
    ],
)
def test_invalid_labels(task, labels, match):
    with pytest.raises(ValueError, match=match):
        task.validate_labels(labels)


def test_row_count_mismatch_names_task():
    with pytest.raises(ValueError, match=r"Task 'smiling'.*3 rows.*5"):
        BINARY.validate_labels(np.array([0, 1, 0]), num_examples=5)


def test_custom_missing_marker_is_respected():
    task = Task("hair", "multiclass", num_classes=3, missing=-7)
    task.validate_labels(np.array([0, -7, 2]))
    with pytest.raises(ValueError, match=r"Task 'hair'.*-1"):
        task.validate_labels(np.array([0, -1, 2]))  # -1 is not the marker here
    regression = Task("age", "regression", missing=-999.0)
    regression.validate_labels(np.array([1.0, -999.0]))
    with pytest.raises(ValueError, match=r"Task 'age'.*nan"):
        regression.validate_labels(np.array([1.0, np.nan]))


@pytest.mark.parametrize(
    "shape, dtype, match",
    [
        ((None, 3), "float32", r"Task '?pose'?.*shape \(batch, 2\).*Received shape \(batch, 3\)"),
        ((None,), "float32", r"Task '?pose'?.*shape"),
        ((None, 2), np.str_, r"Task 'pose'.*numeric"),
    ],
)
def test_validate_label_spec_errors(shape, dtype, match):
    with pytest.raises(ValueError, match=match):
        POSE.validate_label_spec(shape, dtype)


def test_validate_label_spec_accepts_tf_dtypes_and_unknown_batch():
    import tensorflow as tf

    POSE.validate_label_spec((None, 2), tf.float32)
    HAIR.validate_label_spec((None,), tf.int64)
    HAIR.validate_label_spec((None, 1), tf.int32)
    with pytest.raises(ValueError, match=r"Task 'hair'.*unsigned"):
        HAIR.validate_label_spec((None,), tf.uint8)


TASKS = [BINARY, HAIR, POSE]


def _labels(n=4):
    return {
        "smiling": np.array([0, 1, -1, 1])[:n],
        "hair": np.array([2, 0, 1, -1])[:n],
        "pose": np.zeros((n, 2), "float32"),
    }


def test_validate_label_dict_accepts_valid_labels():
    validate_label_dict(TASKS, _labels(), num_examples=4)


def test_validate_label_dict_unknown_key_lists_valid_names():
    labels = {**_labels(), "hiar": np.zeros(4)}
    with pytest.raises(ValueError, match=r"unknown task.*'hiar'.*Valid task names: \['smiling', 'hair', 'pose'\]"):
        validate_label_dict(TASKS, labels)


def test_validate_label_dict_missing_task_named():
    labels = _labels()
    del labels["hair"]
    with pytest.raises(ValueError, match=r"missing for task\(s\) \['hair'\]"):
        validate_label_dict(TASKS, labels)


def test_validate_label_dict_not_a_dict():
    with pytest.raises(ValueError, match=r"dict keyed by task name"):
        validate_label_dict(TASKS, [np.zeros(4)] * 3)


@pytest.mark.parametrize(
    "task_name, bad, match",
    [
        ("pose", np.zeros((4, 3), "float32"), r"Task '?pose'?.*shape"),
        ("hair", np.array([0, 1, 5, 2]), r"Task 'hair'.*5"),
        ("smiling", np.array([0, 1, 2, 1]), r"Task 'smiling'.*2"),
        ("smiling", np.array([0, 1, 1]), r"Task 'smiling'.*3 rows"),
        ("pose", np.array([[0.0, 1.0]] * 3 + [[np.inf, 0.0]], "float32"), r"Task 'pose'.*inf"),
    ],
)
def test_validate_label_dict_names_the_bad_task(task_name, bad, match):
    labels = {**_labels(), task_name: bad}
    with pytest.raises(ValueError, match=match):
        validate_label_dict(TASKS, labels, num_examples=4)


# --- Standardised regression targets -------------------------------------------------------------------------


def test_target_offset_and_scale_round_trip_and_flag():
    task = Task("age", "regression", target_offset=45.0, target_scale=20.0)
    assert task.standardizes_targets
    assert not Task("age", "regression").standardizes_targets
    restored = Task.from_config(task.get_config())
    assert (restored.target_offset, restored.target_scale) == (45.0, 20.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "binary", "target_scale": 2.0}, "apply to regression tasks only"),
        ({"kind": "regression", "target_scale": 0.0}, "target_scale"),
        ({"kind": "regression", "target_scale": float("inf")}, "target_scale"),
        ({"kind": "regression", "target_offset": float("nan")}, "target_offset"),
    ],
)
def test_target_standardisation_errors_name_task_and_field(kwargs, match):
    kind = kwargs.pop("kind")
    with pytest.raises(ValueError, match=match) as raised:
        Task("age", kind, **kwargs)
    assert "'age'" in str(raised.value)


def test_standardised_loss_and_rescaled_head():
    import keras

    from kmtl.heads import task_head
    from kmtl.losses import masked_loss, resolve_loss

    task = Task("age", "regression", target_offset=40.0, target_scale=10.0)
    y_true = np.array([[40.0], [60.0]], "float32")
    y_pred = np.array([[50.0], [60.0]], "float32")
    # Errors of 1 and 0 scale units: standardised MSE is (1 + 0) / 2.
    assert np.isclose(float(masked_loss(task, resolve_loss("mse"), y_true, y_pred)), 0.5)
    x = keras.Input((3,))
    model = keras.Model(x, task_head(task, x))
    dense = model.get_layer("age_standardized")
    dense.set_weights([np.ones((3, 1), "float32"), np.array([0.5], "float32")])
    out = model.predict(np.array([[1.0, 0.0, 1.0]], "float32"), verbose=0)
    assert np.isclose(out[0, 0], (2.0 + 0.5) * 10.0 + 40.0)
