"""Tests for kmtl.losses.masked_loss against values computed by hand from the loss formulas."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kmtl import Task
from kmtl.losses import masked_loss, present_mask, resolve_loss

# Predictions stay well inside (1e-7, 1 - 1e-7), so Keras's epsilon clipping changes nothing measurable.
ATOL = 1e-6


def bce(y, p):
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def value(task, loss, y_true, y_pred, sample_weight=None):
    out = masked_loss(task, resolve_loss(loss), y_true, y_pred, sample_weight)
    return float(keras.ops.convert_to_numpy(out))


# === Binary ===


def test_binary_all_present():
    y = np.array([1, 0, 1, 0])
    p = np.array([[0.9], [0.2], [0.3], [0.6]], "float32")
    expected = np.mean(bce([1, 0, 1, 0], [0.9, 0.2, 0.3, 0.6]))
    assert value(Task("t", "binary"), "binary_crossentropy", y, p) == pytest.approx(expected, abs=ATOL)


def test_binary_missing_labels_are_excluded_from_the_mean():
    y = np.array([1, -1, 0, -1, 1])
    p = np.array([[0.8], [0.01], [0.3], [0.99], [0.6]], "float32")
    # Only rows 0, 2 and 4 count; the mean divides by 3, not 5.
    expected = (bce(1, 0.8) + bce(0, 0.3) + bce(1, 0.6)) / 3
    assert value(Task("t", "binary"), "binary_crossentropy", y, p) == pytest.approx(expected, abs=ATOL)


def test_binary_equals_loss_on_present_rows_only():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 12)
    y[[1, 4, 5, 9]] = -1
    p = rng.uniform(0.05, 0.95, (12, 1)).astype("float32")
    keep = y != -1
    task = Task("t", "binary")
    assert value(task, "binary_crossentropy", y, p) == pytest.approx(
        value(task, "binary_crossentropy", y[keep], p[keep]), abs=ATOL
    )


def test_binary_custom_missing_marker():
    task = Task("t", "binary", missing=7)
    y = np.array([7, 1, 0])
    p = np.array([[0.5], [0.7], [0.4]], "float32")
    expected = (bce(1, 0.7) + bce(0, 0.4)) / 2
    assert value(task, "binary_crossentropy", y, p) == pytest.approx(expected, abs=ATOL)


@pytest.mark.parametrize("y", [np.array([1, 0, -1]), np.array([[1], [0], [-1]]), np.array([1.0, 0.0, -1.0], "float32")])
def test_binary_label_shapes_and_dtypes_agree(y):
    p = np.array([[0.7], [0.4], [0.5]], "float32")
    expected = (bce(1, 0.7) + bce(0, 0.4)) / 2
    assert value(Task("t", "binary"), "binary_crossentropy", y, p) == pytest.approx(expected, abs=ATOL)


# === Multiclass ===


def test_multiclass_sparse_crossentropy_with_missing():
    task = Task("t", "multiclass", num_classes=3)
    y = np.array([0, 2, -1, 1])
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.2, 0.6], [0.25, 0.5, 0.25]], "float32")
    expected = -(np.log(0.7) + np.log(0.6) + np.log(0.5)) / 3
    assert value(task, "sparse_categorical_crossentropy", y, p) == pytest.approx(expected, abs=ATOL)
    assert value(task, "sparse_categorical_crossentropy", y.reshape(-1, 1), p) == pytest.approx(expected, abs=ATOL)


def test_multiclass_float_class_ids():
    task = Task("t", "multiclass", num_classes=3)
    y = np.array([2.0, -1.0], "float32")
    p = np.array([[0.1, 0.1, 0.8], [0.9, 0.05, 0.05]], "float32")
    assert value(task, "sparse_categorical_crossentropy", y, p) == pytest.approx(-np.log(0.8), abs=ATOL)


# === Multilabel ===


def test_multilabel_mean_over_present_entries():
    task = Task("t", "multilabel", num_labels=3)
    y = np.array([[1, 0, -1], [-1, -1, 1], [0, 1, 1]])
    p = np.array([[0.9, 0.2, 0.5], [0.3, 0.3, 0.4], [0.1, 0.6, 0.8]], "float32")
    present = y != -1
    expected = bce(y[present], p[present]).sum() / present.sum()  # 6 entries, not 3 rows nor 9 entries
    assert present.sum() == 6
    assert value(task, "binary_crossentropy", y, p) == pytest.approx(expected, abs=ATOL)


# === Regression ===


def test_regression_units_2_with_nan_entries():
    task = Task("t", "regression", units=2)
    y = np.array([[1.0, np.nan], [np.nan, np.nan], [0.5, -2.0]], "float32")
    p = np.array([[0.0, 100.0], [7.0, 7.0], [1.5, 1.0]], "float32")
    expected = ((1.0 - 0.0) ** 2 + (0.5 - 1.5) ** 2 + (-2.0 - 1.0) ** 2) / 3
    assert value(task, "mse", y, p) == pytest.approx(expected, abs=ATOL)
    expected_mae = (1.0 + 1.0 + 3.0) / 3
    assert value(task, "mae", y, p) == pytest.approx(expected_mae, abs=ATOL)


def test_regression_numeric_missing_marker():
    task = Task("t", "regression", missing=-999.0)
    y = np.array([2.0, -999.0, 4.0], "float32")
    p = np.array([[1.0], [0.0], [1.0]], "float32")
    assert value(task, "mse", y, p) == pytest.approx((1.0 + 9.0) / 2, abs=ATOL)


def test_regression_integer_labels_have_no_nan_marker():
    task = Task("t", "regression")
    y = np.array([1, 3], "int32")
    p = np.array([[0.0], [1.0]], "float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(present_mask(task, y)), [True, True])
    assert value(task, "mse", y, p) == pytest.approx((1.0 + 4.0) / 2, abs=ATOL)


@pytest.mark.parametrize("shape", [(4,), (4, 1)])
def test_regression_shapes_agree(shape):
    task = Task("t", "regression")
    y = np.array([1.0, np.nan, 3.0, 0.0], "float32").reshape(shape)
    p = np.array([[0.0], [5.0], [1.0], [0.5]], "float32")
    assert value(task, "mse", y, p) == pytest.approx((1.0 + 4.0 + 0.25) / 3, abs=ATOL)


# === All missing ===


@pytest.mark.parametrize(
    "task, loss, y, p",
    [
        (Task("t", "binary"), "binary_crossentropy", np.array([-1, -1, -1]), np.array([[0.3], [0.999], [0.5]])),
        (Task("t", "multiclass", num_classes=3), "sparse_categorical_crossentropy", np.array([-1, -1]),
         np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])),
        (Task("t", "multilabel", num_labels=2), "binary_crossentropy", -np.ones((2, 2), "int32"),
         np.array([[0.2, 1.0], [0.0, 0.5]])),
        (Task("t", "regression", units=2), "mse", np.full((2, 2), np.nan), np.array([[1.0, 2.0], [3.0, 4.0]])),
    ],
)
def test_all_missing_gives_zero_and_finite_gradient(task, loss, y, p):
    logits = tf.Variable(np.asarray(p, "float32"))
    with tf.GradientTape() as tape:
        out = masked_loss(task, resolve_loss(loss), y, logits * 1.0)
    grad = tape.gradient(out, logits)
    assert float(out) == 0.0
    assert grad is not None
    assert np.all(np.isfinite(grad.numpy()))
    np.testing.assert_array_equal(grad.numpy(), 0.0)


def test_gradient_is_finite_when_some_labels_missing():
    task = Task("t", "regression", units=2)
    y = np.array([[1.0, np.nan], [np.nan, 2.0]], "float32")
    pred = tf.Variable(np.array([[0.0, 5.0], [5.0, 1.0]], "float32"))
    with tf.GradientTape() as tape:
        out = masked_loss(task, resolve_loss("mse"), y, pred * 1.0)
    grad = tape.gradient(out, pred).numpy()
    # d/dp of ((p00 - 1)^2 + (p11 - 2)^2) / 2; missing entries get exactly 0.
    np.testing.assert_allclose(grad, [[-1.0, 0.0], [0.0, -1.0]], atol=1e-6)


# === Sample weights ===


def test_sample_weight_binary():
    task = Task("t", "binary")
    y = np.array([1, 0, -1, 1])
    p = np.array([[0.8], [0.4], [0.5], [0.3]], "float32")
    w = np.array([2.0, 0.5, 3.0, 1.0], "float32")
    # Keras convention (sum_over_batch_size): sum of weighted values over the number of present entries.
    expected = (2.0 * bce(1, 0.8) + 0.5 * bce(0, 0.4) + 1.0 * bce(1, 0.3)) / 3
    assert value(task, "binary_crossentropy", y, p, w) == pytest.approx(expected, abs=ATOL)


def test_sample_weight_broadcasts_over_regression_units():
    task = Task("t", "regression", units=2)
    y = np.array([[1.0, np.nan], [0.0, 0.0]], "float32")
    p = np.array([[0.0, 0.0], [1.0, 2.0]], "float32")
    w = np.array([3.0, 0.5], "float32")
    expected = (3.0 * 1.0 + 0.5 * 1.0 + 0.5 * 4.0) / 3
    assert value(task, "mse", y, p, w) == pytest.approx(expected, abs=ATOL)


def test_sample_weight_multiclass():
    task = Task("t", "multiclass", num_classes=2)
    y = np.array([0, 1])
    p = np.array([[0.5, 0.5], [0.2, 0.8]], "float32")
    w = np.array([[4.0], [1.0]], "float32")
    expected = (4.0 * -np.log(0.5) + 1.0 * -np.log(0.8)) / 2
    assert value(task, "sparse_categorical_crossentropy", y, p, w) == pytest.approx(expected, abs=ATOL)


def test_sample_weight_is_continuous_at_zero():
    # A tiny weight and a zero weight must give (almost) the same loss; a zero weight must not turn the
    # example into a missing label and change the denominator.
    task = Task("t", "regression")
    y = np.array([0.0, 1.0, 3.0], "float32")
    p = np.array([[10.0], [0.0], [0.0]], "float32")
    tiny = value(task, "mse", y, p, np.array([1e-7, 1.0, 1.0], "float32"))
    zero = value(task, "mse", y, p, np.array([0.0, 1.0, 1.0], "float32"))
    assert tiny == pytest.approx((1e-7 * 100.0 + 1.0 + 9.0) / 3, abs=1e-5)
    assert zero == pytest.approx(tiny, abs=1e-4)


# === Loss objects and functions ===


def test_user_loss_object_is_applied_per_entry():
    gamma, alpha = 2.0, 0.25
    loss = keras.losses.BinaryFocalCrossentropy(gamma=gamma, alpha=alpha, apply_class_balancing=True)
    task = Task("t", "multilabel", num_labels=2, loss=loss)
    y = np.array([[1, -1], [0, 1], [-1, 0]])
    p = np.array([[0.7, 0.1], [0.2, 0.4], [0.9, 0.6]], "float32")
    present = y != -1
    yt, pp = y[present].astype(np.float64), p[present].astype(np.float64)
    p_t = yt * pp + (1 - yt) * (1 - pp)
    balance = yt * alpha + (1 - yt) * (1 - alpha)
    expected = np.mean(balance * (1 - p_t) ** gamma * bce(yt, pp))
    assert value(task, task.loss, y, p) == pytest.approx(expected, abs=ATOL)


@pytest.mark.parametrize("reduction", ["sum", "mean_with_sample_weight", None])
def test_a_loss_object_with_another_reduction_is_refused(reduction):
    # Before: `resolve_loss` called `Loss.call`, silently replacing a "sum" reduction with the masked mean.
    loss = keras.losses.MeanSquaredError(reduction=reduction)
    with pytest.raises(ValueError, match=rf"reduction must be one of \['sum_over_batch_size', 'mean'\] \(the "
                                         rf"default\)\. Received: MeanSquaredError\(reduction={reduction!r}\)"):
        resolve_loss(loss)
    with pytest.raises(ValueError, match=r"^Task 'age': invalid value for `loss`"):
        Task("age", "regression", loss=loss)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "mean"])
def test_a_loss_object_with_a_mean_reduction_is_the_masked_mean(reduction):
    task = Task("t", "regression")
    y = np.array([1.0, 2.0], "float32")
    p = np.array([[0.0], [0.0]], "float32")
    loss = keras.losses.MeanSquaredError(reduction=reduction)
    assert value(task, loss, y, p) == pytest.approx((1.0 + 4.0) / 2, abs=ATOL)


def test_plain_function_loss():
    def cubic(y_true, y_pred):
        return keras.ops.mean(keras.ops.abs(y_true - y_pred) ** 3, axis=-1)

    task = Task("t", "regression", units=2)
    y = np.array([[1.0, np.nan], [2.0, 0.0]], "float32")
    p = np.zeros((2, 2), "float32")
    assert value(task, cubic, y, p) == pytest.approx((1.0 + 8.0 + 0.0) / 3, abs=ATOL)


def test_resolve_loss_rejects_non_loss():
    with pytest.raises(ValueError, match="loss"):
        resolve_loss(3)
