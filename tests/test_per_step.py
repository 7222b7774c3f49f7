"""Tests for per-step (sequence) tasks: `Task(per_step=True)`, its heads, masked losses and metrics over real,
labelled steps only, label validation before training, `.keras` round trips and the TF-Serving export."""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import kmtl
import kmtl.export
from kmtl import Task
from kmtl.heads import task_head
from kmtl.losses import resolve_loss
from kmtl.losses.masked import keras_mask, masked_loss
from kmtl.metrics.nme import NormalizedMeanError
from kmtl.model.task_state import update_metric as _update_metric

ATOL = 1e-6
STAGES = ["awake", "light", "deep"]


def bce(y, p):
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def loss_value(task, loss, y_true, y_pred, sample_weight=None):
    return float(keras.ops.convert_to_numpy(masked_loss(task, resolve_loss(loss), y_true, y_pred, sample_weight)))


# === Task ===


@pytest.mark.parametrize(
    "task",
    [
        Task("alarm", "binary", per_step=True),
        Task("stage", "multiclass", num_classes=3, label_names=STAGES, per_step=True),
        Task("events", "multilabel", num_labels=3, per_step=True),
        Task("vitals", "regression", units=2, target_offset=1.0, target_scale=2.0, per_step=True),
    ],
    ids=lambda t: t.name,
)
def test_per_step_config_round_trip(task):
    config = task.get_config()
    assert config["per_step"] is True
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(task))
    assert restored == task and restored.per_step is True
    assert json.loads(json.dumps(config))["per_step"] is True


def test_old_config_without_per_step_loads_as_whole_example_task():
    config = Task("alarm", "binary", per_step=True).get_config()
    del config["per_step"]
    restored = Task.from_config(config)
    assert restored.per_step is False
    assert restored == Task("alarm", "binary")
    assert Task("alarm", "binary") != Task("alarm", "binary", per_step=True)


def test_per_step_repr_and_invalid_value():
    assert repr(Task("alarm", "binary", per_step=True)) == "Task('alarm', 'binary', per_step=True)"
    with pytest.raises(ValueError, match=r"Task 'alarm'.*`per_step`.*Received: per_step='yes'"):
        Task("alarm", "binary", per_step="yes")


# === Label validation ===

BINARY = Task("alarm", "binary", per_step=True)
MULTICLASS = Task("stage", "multiclass", num_classes=3, per_step=True)
MULTILABEL = Task("events", "multilabel", num_labels=3, per_step=True)
REGRESSION = Task("heart_rate", "regression", per_step=True)
REGRESSION_2 = Task("vitals", "regression", units=2, per_step=True)


@pytest.mark.parametrize(
    "task, shape",
    [
        (BINARY, (None, 5)),
        (BINARY, (None, None)),
        (BINARY, (None, 5, 1)),
        (MULTICLASS, (None, 5)),
        (MULTICLASS, (None, None, 1)),
        (MULTILABEL, (None, 5, 3)),
        (REGRESSION, (None, 5)),
        (REGRESSION, (None, 5, 1)),
        (REGRESSION_2, (None, None, 2)),
    ],
)
def test_valid_per_step_label_shapes(task, shape):
    task.validate_label_spec(shape, "float32")


@pytest.mark.parametrize(
    "task, shape, match",
    [
        (BINARY, (None,), r"Task 'alarm' \(binary, per_step\): labels must have shape \(batch, steps\) or "
                          r"\(batch, steps, 1\)\. Received shape \(batch,\)"),
        (BINARY, (None, 5, 2), r"Task 'alarm'.*per_step.*Received shape \(batch, 5, 2\)"),
        (MULTICLASS, (None, 5, 3), r"Task 'stage'.*per_step.*labels.*\(batch, steps\)"),
        (MULTILABEL, (None, 5), r"Task 'events'.*per_step.*labels.*\(batch, steps, 3\)"),
        (MULTILABEL, (None, 3), r"Task 'events'.*per_step.*labels.*\(batch, steps, 3\)"),
        (REGRESSION_2, (None, 5), r"Task 'vitals'.*per_step.*labels.*\(batch, steps, 2\)"),
        (REGRESSION_2, (None, 5, 2, 1), r"Task 'vitals'.*per_step.*labels"),
        (Task("alarm", "binary"), (None, 5, 1), r"Task 'alarm' \(binary\).*labels.*per_step=True"),
        (Task("vitals", "regression", units=2), (None, 5, 2), r"Task 'vitals'.*labels.*per_step=True"),
    ],
)
def test_wrong_per_step_label_shapes_raise_naming_task_and_field(task, shape, match):
    with pytest.raises(ValueError, match=match):
        task.validate_label_spec(shape, "float32")


def test_per_step_label_values_are_checked_at_every_step():
    MULTICLASS.validate_labels(np.array([[0, 2, -1], [1, -1, -1]]))
    with pytest.raises(ValueError, match=r"Task 'stage'.*\[3\.0\]"):
        MULTICLASS.validate_labels(np.array([[0, 2, -1], [1, 3, -1]]))
    with pytest.raises(ValueError, match=r"Task 'vitals'.*inf"):
        REGRESSION_2.validate_labels(np.array([[[1.0, np.nan], [np.inf, 0.0]]]))


# === Heads ===


@pytest.mark.parametrize(
    "task, units",
    [(BINARY, 1), (MULTICLASS, 3), (MULTILABEL, 3), (REGRESSION, 1), (REGRESSION_2, 2),
     (Task("scaled", "regression", units=2, target_offset=60.0, target_scale=10.0, per_step=True), 2)],
    ids=lambda v: v.name if isinstance(v, Task) else str(v),
)
def test_per_step_head_shapes(task, units):
    for steps in (None, 7):
        features = keras.Input((steps, 4))
        output = task_head(task, features, hidden_units=[5], dropout=0.1)
        assert tuple(output.shape) == (None, steps, units)
        assert output.dtype == "float32"
    model = keras.Model(features, output)
    x = np.random.default_rng(0).normal(size=(2, 7, 4)).astype("float32")
    prediction = model.predict(x, verbose=0)
    assert prediction.shape == (2, 7, units)
    if task.kind == "multiclass":
        np.testing.assert_allclose(prediction.sum(-1), 1.0, atol=1e-5)
    # The same layers apply at every step: a step's prediction depends on that step's features only.
    shifted = x.copy()
    shifted[:, 3] += 1.0
    changed = np.abs(model.predict(shifted, verbose=0) - prediction).max(axis=(0, 2))
    assert changed[3] > 1e-4 and np.all(np.delete(changed, 3) == 0)


@pytest.mark.parametrize(
    "task, shape, match",
    [
        (BINARY, (4,), r"Task 'alarm' is per_step.*\(batch, steps, features\)"),
        (BINARY, (6, 6, 4), r"Task 'alarm' is per_step"),
        (Task("mortality", "binary"), (None, 4), r"Task 'mortality' is not per_step.*per_step=True"),
    ],
)
def test_head_rejects_features_of_the_wrong_rank(task, shape, match):
    with pytest.raises(ValueError, match=match):
        task_head(task, keras.Input(shape))


# === Losses: hand-computed values on a padded batch with two lengths ===

# Two sequences padded to 3 steps: the first has 3 steps, the second 2 (its step 2 is padding).
P_BINARY = np.array([[[0.9], [0.2], [0.7]], [[0.4], [0.6], [0.99]]], "float32")


def test_binary_loss_is_mean_over_real_steps():
    y = np.array([[1, 0, 1], [0, 1, -1]])
    expected = (bce(1, 0.9) + bce(0, 0.2) + bce(1, 0.7) + bce(0, 0.4) + bce(1, 0.6)) / 5
    assert loss_value(BINARY, "binary_crossentropy", y, P_BINARY) == pytest.approx(expected, abs=ATOL)
    assert loss_value(BINARY, "binary_crossentropy", y[..., None], P_BINARY) == pytest.approx(expected, abs=ATOL)


def test_binary_loss_with_per_example_and_per_step_weights():
    y = np.array([[1, 0, 1], [0, 1, -1]])
    terms = np.array([[bce(1, 0.9), bce(0, 0.2), bce(1, 0.7)], [bce(0, 0.4), bce(1, 0.6), 0.0]])
    per_example = np.array([2.0, 0.5], "float32")
    expected = (2.0 * terms[0].sum() + 0.5 * terms[1].sum()) / 5  # mean over present steps, as Keras does
    assert loss_value(BINARY, "binary_crossentropy", y, P_BINARY, per_example) == pytest.approx(expected, abs=ATOL)
    per_step = np.array([[1.0, 0.0, 3.0], [2.0, 1.0, 9.0]], "float32")
    expected = (terms * per_step).sum() / 5  # the padded step's weight 9 changes nothing
    assert loss_value(BINARY, "binary_crossentropy", y, P_BINARY, per_step) == pytest.approx(expected, abs=ATOL)


def test_multiclass_loss_skips_missing_and_padded_steps():
    y = np.array([[0, 2, 1], [1, -1, -1]])  # second sequence: step 1 unlabelled, step 2 padding
    p = np.array(
        [[[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]], [[0.25, 0.5, 0.25], [0.9, 0.05, 0.05], [1, 0, 0]]],
        "float32",
    )
    expected = -(np.log(0.7) + np.log(0.6) + np.log(0.5) + np.log(0.5)) / 4
    assert loss_value(MULTICLASS, "sparse_categorical_crossentropy", y, p) == pytest.approx(expected, abs=ATOL)


def test_multilabel_and_regression_losses_count_present_entries():
    y = np.array([[[1, 0, -1], [0, 1, 1]], [[-1, -1, 1], [-1, -1, -1]]])
    p = np.full((2, 2, 3), 0.25, "float32")
    present = y != -1
    expected = bce(y[present], p[present]).sum() / 6
    assert present.sum() == 6
    assert loss_value(MULTILABEL, "binary_crossentropy", y, p) == pytest.approx(expected, abs=ATOL)

    y = np.array([[[1.0, np.nan], [0.5, -2.0]], [[3.0, 1.0], [np.nan, np.nan]]], "float32")
    p = np.array([[[0.0, 100.0], [1.5, 1.0]], [[2.0, 3.0], [50.0, 50.0]]], "float32")
    expected = (1.0 + 1.0 + 9.0 + 1.0 + 4.0) / 5
    assert loss_value(REGRESSION_2, "mse", y, p) == pytest.approx(expected, abs=ATOL)
    y1, p1 = np.array([[2.0, np.nan]], "float32"), np.array([[[1.0], [9.0]]], "float32")
    assert loss_value(REGRESSION, "mse", y1, p1) == pytest.approx(1.0, abs=ATOL)


def test_missing_and_padded_steps_get_zero_gradient():
    y = np.array([[1, 0, 1], [0, -1, -1]])
    p = tf.Variable(P_BINARY)
    with tf.GradientTape() as tape:
        loss = masked_loss(BINARY, resolve_loss("binary_crossentropy"), y, p)
    grad = tape.gradient(loss, p).numpy()[..., 0]
    np.testing.assert_array_equal(grad[y == -1], 0.0)
    expected = (-(y / P_BINARY[..., 0]) + (1 - y) / (1 - P_BINARY[..., 0])) / 4  # d bce / dp over 4 present steps
    np.testing.assert_allclose(grad[y != -1], expected[y != -1], rtol=1e-4)


# === A tiny sequence model ===


def sequence_tasks():
    return [
        Task("alarm", "binary", per_step=True),
        Task("stage", "multiclass", num_classes=3, label_names=STAGES, per_step=True),
        Task("events", "multilabel", num_labels=2, per_step=True),
        Task("vitals", "regression", units=2, per_step=True),
        Task("mortality", "binary"),
    ]


def sequence_model(tasks=None, masking=False, seed=0):
    """`(None, 4)` sequences → LSTM(6) per step → per-step heads; a whole-sequence head on the last LSTM state."""
    keras.utils.set_random_seed(seed)
    tasks = sequence_tasks() if tasks is None else tasks
    inputs = keras.Input((None, 4), name="series")
    x = keras.layers.Masking(0.0, name="padding")(inputs) if masking else inputs
    sequence, state, _ = keras.layers.LSTM(6, return_sequences=True, return_state=True, name="trunk")(x)
    outputs = {t.name: task_head(t, state if not t.per_step else sequence) for t in tasks}
    return kmtl.MultiTaskModel(inputs, outputs, tasks=tasks, name="ward")


def sequence_data(lengths=(5, 3, 4, 2), steps=5, seed=1, whole_sequence_task=True):
    """Padded numpy data: zeros after each sequence's length, padded labels marked missing; a few unlabelled steps."""
    rng = np.random.default_rng(seed)
    n = len(lengths)
    real = np.arange(steps)[None, :] < np.array(lengths)[:, None]  # (n, steps)
    x = rng.normal(size=(n, steps, 4)).astype("float32") * real[..., None]
    y = {
        "alarm": np.where(real, rng.integers(0, 2, (n, steps)), -1),
        "stage": np.where(real, rng.integers(0, 3, (n, steps)), -1),
        "events": np.where(real[..., None], rng.integers(0, 2, (n, steps, 2)), -1),
        "vitals": np.where(real[..., None], rng.normal(size=(n, steps, 2)), np.nan).astype("float32"),
        "mortality": rng.integers(0, 2, n),
    }
    y["alarm"][0, 1] = -1  # unlabelled steps inside sequences
    y["vitals"][2, 0, 1] = np.nan
    if not whole_sequence_task:
        del y["mortality"]
    return x, y


def pad(x, y, extra):
    """Appends `extra` padded steps: zero inputs, missing labels."""
    x = np.concatenate([x, np.zeros((x.shape[0], extra, x.shape[2]), x.dtype)], axis=1)
    out = {}
    for name, value in y.items():
        if value.ndim == 1:
            out[name] = value
            continue
        fill = np.nan if value.dtype.kind == "f" else -1
        widths = [(0, 0), (0, extra)] + [(0, 0)] * (value.ndim - 2)
        out[name] = np.pad(value, widths, constant_values=fill)
    return x, out


def loss_and_gradients(model, x, y):
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x, y, model(x, training=True))
    return float(loss), [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]


def eager_logs(model, x, y):
    """Task losses and metrics of one batch, computed eagerly (no graph to trace for each sequence length)."""
    for metric in model.metrics:
        metric.reset_state()
    predictions = model(x)
    model.compute_loss(x, y, predictions, training=False)
    return {name: float(value) for name, value in model.compute_metrics(x, y, predictions).items()}


@pytest.fixture(scope="module")
def compiled():
    model = sequence_model(tasks=sequence_tasks()[:4])
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    return model


def test_appending_padding_changes_nothing(compiled):
    x, y = sequence_data(whole_sequence_task=False)
    x_pad, y_pad = pad(x, y, extra=3)
    loss, grads = loss_and_gradients(compiled, x, y)
    loss_pad, grads_pad = loss_and_gradients(compiled, x_pad, y_pad)
    assert loss_pad == pytest.approx(loss, abs=ATOL)
    for g, g_pad in zip(grads, grads_pad):
        np.testing.assert_allclose(g_pad, g, atol=ATOL)
    logs, logs_pad = eager_logs(compiled, x, y), eager_logs(compiled, x_pad, y_pad)
    assert set(logs) == set(logs_pad) and {"alarm_auc", "stage_accuracy", "events_auc", "vitals_rmse"} <= set(logs)
    for name in logs:
        assert logs_pad[name] == pytest.approx(logs[name], abs=ATOL), name
    # The check can fail: padding labelled as real steps (0 / class 0 / zero vitals) moves every number.
    y_wrong = {k: np.nan_to_num(np.where(np.equal(v, -1), 0, v)) for k, v in y_pad.items()}
    assert abs(loss_and_gradients(compiled, x_pad, y_wrong)[0] - loss) > 1e-3


def test_a_missing_step_counts_for_nothing(compiled):
    x, y = sequence_data(whole_sequence_task=False)
    predictions = compiled(x)
    y["stage"][1, 0] = -1  # unlabel one more step
    losses = keras.ops.convert_to_numpy(compiled.task_losses(y, predictions))
    for i, task in enumerate(compiled.tasks):
        # Independent reference: the Keras loss on the present entries only, picked out with numpy.
        label, pred = np.asarray(y[task.name], "float64"), keras.ops.convert_to_numpy(predictions[task.name])
        if task.kind == "multiclass":
            present = label != -1
            reference = keras.losses.sparse_categorical_crossentropy(label[present], pred[present])
        elif task.kind == "regression":
            present = ~np.isnan(label)
            reference = np.square(label[present] - pred[present])
        else:
            label = label.reshape(pred.shape)
            present = label != -1
            reference = bce(label[present], pred[present])
        assert losses[i] == pytest.approx(float(np.mean(reference)), abs=ATOL), task.name
    # Whatever the prediction at a missing step, loss and metrics stay the same.
    before = eager_logs(compiled, x, y)
    x_changed = x.copy()
    x_changed[1, 3:] = 5.0  # row 1 has 3 steps: steps 3 and 4 are padding, and only their predictions change
    after = eager_logs(compiled, x_changed, y)
    assert not np.allclose(compiled(x_changed)["alarm"].numpy(), predictions["alarm"].numpy(), atol=1e-3)
    for name in before:
        assert after[name] == pytest.approx(before[name], abs=ATOL), name


def test_keras_mask_marks_steps_missing():
    model = sequence_model(tasks=sequence_tasks()[:4], masking=True)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    x, y = sequence_data(whole_sequence_task=False)
    predictions = model(x)
    mask = keras.ops.convert_to_numpy(keras_mask(predictions["alarm"]))
    np.testing.assert_array_equal(mask, np.any(x != 0, axis=-1))
    # Valid-looking labels at the masked (padded) steps: the mask keeps them out, as if they were marked missing.
    y_filled = {k: np.nan_to_num(np.where(np.equal(v, -1), 1, v), nan=7.0) for k, v in y.items()}
    y_filled = {k: np.where(mask.reshape(mask.shape + (1,) * (v.ndim - 2)), y[k], v) for k, v in y_filled.items()}
    masked = keras.ops.convert_to_numpy(model.task_losses(y_filled, predictions))
    marked = keras.ops.convert_to_numpy(model.task_losses(y, predictions))
    np.testing.assert_allclose(masked, marked, atol=ATOL)
    logs = model.evaluate(x, y, batch_size=4, return_dict=True, verbose=0)
    logs_filled = model.evaluate(x, y_filled, batch_size=4, return_dict=True, verbose=0)
    for name in logs:
        assert logs_filled[name] == pytest.approx(logs[name], abs=ATOL), name
    # The check can fail: without the mask (a fresh tensor carries none) the filled-in labels count.
    unmasked = {k: v + 0.0 for k, v in predictions.items()}
    assert keras_mask(unmasked["alarm"]) is None
    assert not np.allclose(keras.ops.convert_to_numpy(model.task_losses(y_filled, unmasked)), masked, atol=1e-3)


def test_fit_and_evaluate_on_padded_batches_of_variable_length(compiled):
    rng = np.random.default_rng(3)
    examples = [
        (
            rng.normal(size=(n, 4)).astype("float32"),
            {
                "alarm": rng.integers(0, 2, n),
                "stage": rng.integers(0, 3, n),
                "events": rng.integers(0, 2, (n, 2)),
                "vitals": rng.normal(size=(n, 2)).astype("float32"),
            },
        )
        for n in (2, 5, 3, 4, 6, 1)
    ]
    label_specs = {k: tf.TensorSpec((None,) + v.shape[1:], tf.as_dtype(v.dtype)) for k, v in examples[0][1].items()}
    signature = (tf.TensorSpec((None, 4), tf.float32), label_specs)
    padding = (0.0, {t.name: tf.constant(t.missing, signature[1][t.name].dtype) for t in compiled.tasks})
    dataset = tf.data.Dataset.from_generator(lambda: iter(examples), output_signature=signature)
    dataset = dataset.padded_batch(3, padding_values=padding)
    batches = [(x.numpy(), {k: v.numpy() for k, v in y.items()}) for x, y in dataset]
    assert [x.shape[1] for x, _ in batches] == [5, 6]  # each batch padded to its own longest sequence
    history = compiled.fit(dataset, epochs=1, shuffle=False, verbose=0).history
    assert all(math.isfinite(v[0]) for v in history.values())
    logs = compiled.evaluate(dataset, return_dict=True, verbose=0)
    # Keras averages task losses over batches weighted by batch size; each batch's loss counts real steps only.
    per_batch = [keras.ops.convert_to_numpy(compiled.task_losses(y, compiled(x))) for x, y in batches]
    expected = np.average(per_batch, axis=0, weights=[len(x) for x, _ in batches])
    for i, task in enumerate(compiled.tasks):
        assert logs[f"{task.name}_loss"] == pytest.approx(expected[i], abs=1e-5), task.name


# === Metrics ===


def test_whole_vector_metric_sees_one_row_per_example_and_step():
    task = Task("landmarks", "regression", units=4, per_step=True, metrics=[NormalizedMeanError()])
    nan = np.nan
    y = np.array(
        [[[0, 0, 1, 0], [0, 0, 2, 0]], [[0, 0, 1, 0], [nan, nan, nan, nan]], [[0, 0, 1, nan], [0, 0, 4, 0]]],
        "float32",
    )
    p = np.array(
        [[[0, 0.1, 1, 0.1], [0, 0, 2, 1]], [[0.3, 0, 1, 0.4], [9, 9, 9, 9]], [[5, 5, 5, 5], [0, 0, 4, 2]]],
        "float32",
    )
    metric = kmtl.metrics.resolve_metrics(task)[0]
    assert metric.name == "landmarks_nme"
    _update_metric(task, metric, y, p, None)
    # Rows with every entry present: (0,0), (0,1), (1,0), (2,1); row (1,1) is padding, (2,0) half labelled.
    per_row = [(0.1 + 0.1) / 2 / 1, (0 + 1) / 2 / 2, (0.3 + 0.4) / 2 / 1, (0 + 2) / 2 / 4]
    assert float(metric.result()) == pytest.approx(np.mean(per_row), abs=ATOL)


def test_metric_names_stay_task_metric(compiled):
    x, y = sequence_data(whole_sequence_task=False)
    logs = compiled.evaluate(x, y, batch_size=4, return_dict=True, verbose=0)
    assert {"alarm_accuracy", "alarm_auc", "stage_accuracy", "events_accuracy", "vitals_mae", "vitals_rmse",
            "alarm_loss", "vitals_loss"} <= set(logs)
    # alarm accuracy by hand over labelled steps.
    p = compiled(x)["alarm"].numpy()[..., 0]
    present = y["alarm"] != -1
    expected = np.mean((p[present] > 0.5) == (y["alarm"][present] == 1))
    assert logs["alarm_accuracy"] == pytest.approx(expected, abs=ATOL)


# === Validation before training ===


def _bad_sequence_data(case):
    x, y = sequence_data(whole_sequence_task=False)
    if case == "too_few_steps":
        y["alarm"] = y["alarm"][:, :4]
        match = r"Task 'alarm': labels have 4 steps but the model predicts 5 steps"
    elif case == "no_time_axis":
        y["stage"] = y["stage"][:, 0]
        match = r"Task 'stage'.*per_step.*labels must have shape \(batch, steps\)"
    elif case == "wrong_width":
        y["vitals"] = y["vitals"][..., :1]
        match = r"Task 'vitals'.*per_step.*\(batch, steps, 2\)"
    elif case == "out_of_range":
        y["stage"][0, 2] = 3
        match = r"Task 'stage'.*3"
    return x, y, match


@pytest.mark.parametrize("case", ["too_few_steps", "no_time_axis", "wrong_width", "out_of_range"])
@pytest.mark.parametrize("as_dataset", [False, True], ids=["numpy", "dataset"])
def test_fit_validates_per_step_labels_before_training(compiled, case, as_dataset):
    x, y, match = _bad_sequence_data(case)
    before = [v.numpy().copy() for v in compiled.trainable_variables]
    data = (tf.data.Dataset.from_tensor_slices((x, y)).batch(4),) if as_dataset else (x, y)
    with pytest.raises(ValueError, match=match):
        compiled.fit(*data, epochs=1, verbose=0)
    for old, variable in zip(before, compiled.trainable_variables):
        np.testing.assert_array_equal(variable.numpy(), old)


@pytest.mark.parametrize("per_step", [True, False])
def test_fit_rejects_an_output_rank_that_does_not_fit_the_task(per_step):
    task = Task("alarm", "binary", per_step=per_step)
    inputs = keras.Input((None, 4))
    # A head built by hand, past task_head's checks: a vector for a per-step task, a sequence for the other.
    features = keras.layers.GlobalAveragePooling1D()(inputs) if per_step else inputs
    output = keras.layers.Dense(1, activation="sigmoid", name="alarm")(features)
    model = kmtl.MultiTaskModel(inputs, {"alarm": output}, tasks=[task])
    model.compile()
    x = np.zeros((2, 3, 4), "float32")
    y = {"alarm": np.zeros((2, 3), "int32") if per_step else np.zeros(2, "int32")}
    match = r"Task 'alarm' is per_step but its output" if per_step else r"Task 'alarm' is not per_step.*time axis"
    with pytest.raises(ValueError, match=match):
        model.fit(x, y, epochs=1, verbose=0)


# === Training, saving and export ===


@pytest.fixture(scope="module")
def trained():
    model = sequence_model()
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    x, y = sequence_data()
    before = [v.numpy().copy() for v in model.trainable_variables]
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0).history
    return model, history, before


def test_one_epoch_fit_on_padded_data(trained):
    model, history, before = trained
    assert all(math.isfinite(v[0]) for v in history.values())
    assert {"alarm_loss", "stage_loss", "events_loss", "vitals_loss", "mortality_loss", "mortality_auc"} <= set(history)
    changed = [not np.allclose(v.numpy(), old) for v, old in zip(model.trainable_variables, before)]
    assert all(changed)


def test_keras_round_trip(trained, tmp_path):
    model = trained[0]
    path = tmp_path / "ward.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(restored, kmtl.MultiTaskModel)
    assert [t.per_step for t in restored.tasks] == [True, True, True, True, False]
    assert restored.tasks == model.tasks
    for steps in (3, 6):
        x = np.random.default_rng(steps).normal(size=(2, steps, 4)).astype("float32")
        expected, actual = model(x), restored(x)  # inference mode, as predict, without tracing a graph per length
        for name in expected:
            np.testing.assert_allclose(actual[name].numpy(), expected[name].numpy(), atol=1e-5, err_msg=name)


@pytest.fixture(scope="module")
def export(trained, tmp_path_factory):
    return kmtl.export.for_serving(trained[0], tmp_path_factory.mktemp("exports") / "ward")


def test_export_signature_has_open_time_axis_and_per_step_outputs(export):
    serve = tf.saved_model.load(str(export)).signatures["serving_default"]
    assert tuple(serve.structured_input_signature[1]["series"].shape) == (None, None, 4)
    expected = {
        "alarm": (tf.float32, (None, None)),
        "stage": (tf.float32, (None, None, 3)),
        "stage_class_id": (tf.int64, (None, None)),
        "stage_class_name": (tf.string, (None, None)),
        "events": (tf.float32, (None, None, 2)),
        "vitals": (tf.float32, (None, None, 2)),
        "mortality": (tf.float32, (None,)),
    }
    assert set(serve.structured_outputs) == set(expected)
    for name, (dtype, shape) in expected.items():
        assert serve.structured_outputs[name].dtype == dtype, name
        assert tuple(serve.structured_outputs[name].shape) == shape, name


@pytest.mark.parametrize("steps", [3, 7])
def test_export_equals_predict_for_two_lengths(trained, export, steps):
    model = trained[0]
    serve = tf.saved_model.load(str(export)).signatures["serving_default"]
    x = np.random.default_rng(steps).normal(size=(3, steps, 4)).astype("float32")
    served = {k: v.numpy() for k, v in serve(series=tf.constant(x)).items()}
    predicted = model.predict(x, verbose=0)
    expected = {
        "alarm": predicted["alarm"][..., 0],
        "stage": predicted["stage"],
        "events": predicted["events"],
        "vitals": predicted["vitals"],
        "mortality": predicted["mortality"][:, 0],
    }
    for name, value in expected.items():
        assert served[name].shape == value.shape, name
        np.testing.assert_allclose(served[name], value, rtol=1e-5, atol=1e-5, err_msg=name)
    ids = np.argmax(predicted["stage"], axis=-1)
    np.testing.assert_array_equal(served["stage_class_id"], ids)
    names = np.vectorize(lambda b: b.decode("utf-8"))(served["stage_class_name"])
    np.testing.assert_array_equal(names, np.array(STAGES)[ids])
    assert served["stage_class_id"].shape == (3, steps)


def test_default_examples_are_valid_sequences(export):
    from tensorflow_serving.apis import prediction_log_pb2

    body = json.loads((export / "assets.extra" / "rest_request.json").read_text())
    series = np.array(body["instances"][0]["series"], "float32")
    assert series.shape == (kmtl.export.serving.DEFAULT_EXAMPLE_STEPS, 4)
    records = list(tf.data.TFRecordDataset(str(export / "assets.extra" / "tf_serving_warmup_requests")))
    request = prediction_log_pb2.PredictionLog.FromString(records[0].numpy()).predict_log.request
    array = tf.make_ndarray(request.inputs["series"])
    assert array.shape == (1, kmtl.export.serving.DEFAULT_EXAMPLE_STEPS, 4)
    outputs = tf.saved_model.load(str(export)).signatures["serving_default"](series=tf.constant(array))
    assert tuple(outputs["alarm"].shape) == (1, kmtl.export.serving.DEFAULT_EXAMPLE_STEPS)


def test_examples_may_be_sequences_of_different_lengths(trained, tmp_path):
    rng = np.random.default_rng(2)
    examples = [rng.normal(size=(3, 4)), rng.normal(size=(6, 4))]  # a ragged list: the first one is used
    path = kmtl.export.for_serving(trained[0], tmp_path / "ward", examples=examples, warmup=False)
    body = json.loads((path / "assets.extra" / "rest_request.json").read_text())
    np.testing.assert_allclose(body["instances"][0]["series"], examples[0], rtol=1e-6)
    with pytest.raises(ValueError, match=r"examples\['series'\].*\(batch, any, 4\).*Received shape \(1, 3, 5\)"):
        kmtl.export.for_serving(trained[0], tmp_path / "bad", examples=[np.ones((3, 5))])
    assert not (tmp_path / "bad").exists()


def test_examples_that_do_not_run_are_refused(tmp_path):
    task = Task("alarm", "binary", per_step=True)
    inputs = keras.Input((None, 4), name="series")
    features = keras.layers.Conv1D(3, 5, name="conv")(inputs)  # "valid" padding: needs 5 steps or more
    model = kmtl.MultiTaskModel(inputs, {"alarm": task_head(task, features)}, tasks=[task])
    with pytest.raises(ValueError, match="do not run through the model"):
        kmtl.export.for_serving(model, tmp_path / "conv", examples=np.ones((1, 2, 4)))
    assert not (tmp_path / "conv").exists() or not list((tmp_path / "conv").iterdir())
    path = kmtl.export.for_serving(model, tmp_path / "conv", examples=np.ones((1, 6, 4)), warmup=False)
    assert (path / "saved_model.pb").is_file()
