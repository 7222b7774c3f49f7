"""`kmtl.evaluate` and `EvaluationReport`."""

import functools

import keras
import numpy as np
import pytest
from sklearn import metrics as skm
from tiny import tiny_data, tiny_model

import kmtl
from kmtl.evaluation import EvaluationReport, report_from_logs
from kmtl.evaluation.scores import TaskScorer, geometric_mean


# An untrained two-task model: regression `age` and 3-class `age_group` on a ReLU trunk.
_model = functools.partial(
    tiny_model, tasks=[kmtl.Task("age", "regression"), kmtl.Task("age_group", "multiclass", num_classes=3)],
    trunk_units=8, activation="relu", head_units=(), optimizer="sgd",
)


def test_logs_are_grouped_by_task_with_longest_name_first():
    model = _model()
    logs = {"loss": 3.0, "age_loss": 1.0, "age_mae": 0.5, "age_group_loss": 2.0, "age_group_accuracy": 0.25}
    report = report_from_logs(model, logs)
    assert report["age"] == {"loss": 1.0, "mae": 0.5}
    assert report["age_group"] == {"loss": 2.0, "accuracy": 0.25}
    assert report.overall == {"loss": 3.0}
    assert report_from_logs(model, {"val_age_mae": 0.7, "age_mae": 9.0}, prefix="val_")["age"] == {"mae": 0.7}


def test_table_has_a_row_per_task_and_a_dash_for_absent_metrics():
    report = EvaluationReport({"a": {"loss": 1.0, "mae": 0.25}, "b": {"loss": 2.0}}, {"loss": 3.0}, {"a": "regression"})
    lines = report.table(digits=2).splitlines()
    assert lines[0].split() == ["task", "kind", "loss", "mae"]
    assert lines[2].split() == ["a", "regression", "1.00", "0.25"]
    assert lines[3].split() == ["b", "2.00", "-"]
    assert lines[-1] == "overall: loss=3.00"
    assert report.to_dict()["overall"] == {"loss": 3.0}


def test_evaluate_matches_keras_evaluate():
    model = _model(seed=1)
    x, y = tiny_data(model.tasks, n=32, seed=0)
    report = kmtl.evaluate(model, x, y, batch_size=32)
    logs = model.evaluate(x, y, batch_size=32, return_dict=True, verbose=0)
    assert np.isclose(report["age"]["mae"], logs["age_mae"])
    assert np.isclose(report["age_group"]["accuracy"], logs["age_group_accuracy"])
    predictions = model.predict(x, verbose=0)
    expected_mae = np.mean(np.abs(predictions["age"] - y["age"]))
    assert np.isclose(report["age"]["mae"], expected_mae, atol=1e-5)


# === Metrics from predictions, against scikit-learn ===

BINARY_Y = np.array([1, 0, -1, 1, 0, 1, -1, 0, 1, 0])
BINARY_P = np.array([0.9, 0.4, 0.7, 0.3, 0.6, 0.8, 0.1, 0.2, 0.55, 0.5])


def _scores(task, labels, predictions, batches=2):
    """Scores a task's hand-made labels and predictions, fed in `batches` pieces as `evaluate` does."""
    scorer = TaskScorer(task)
    for y, p in zip(np.array_split(labels, batches), np.array_split(predictions, batches)):
        scorer.add(y, p)
    return scorer


def test_binary_scores_equal_sklearn_over_present_labels():
    scores = _scores(kmtl.Task("t", "binary"), BINARY_Y.reshape(-1, 1), BINARY_P.reshape(-1, 1)).scores()
    keep = BINARY_Y != -1
    y, p = BINARY_Y[keep], BINARY_P[keep]
    guess = (p >= 0.5).astype(int)
    assert scores["accuracy"] == pytest.approx(skm.accuracy_score(y, guess))
    assert scores["precision"] == pytest.approx(skm.precision_score(y, guess))
    assert scores["recall"] == pytest.approx(skm.recall_score(y, guess))
    assert scores["f1"] == pytest.approx(skm.f1_score(y, guess))
    assert scores["auroc"] == pytest.approx(skm.roc_auc_score(y, p))
    # By hand: present y = 1 0 1 0 1 0 1 0, guesses 1 0 0 1 1 0 1 1 -> 5/8 right; TP 3, FP 2, FN 1.
    assert scores["accuracy"] == 5 / 8 and scores["precision"] == 3 / 5 and scores["recall"] == 3 / 4


def test_multiclass_scores_equal_sklearn_one_vs_rest():
    rng = np.random.default_rng(3)
    y = np.array([0, 1, 2, 2, -1, 1, 0, 2, 1, 0, -1, 2])
    p = rng.dirichlet(np.ones(3), size=len(y))
    scores = _scores(kmtl.Task("t", "multiclass", num_classes=3), y, p).scores()
    keep = y != -1
    guess = p[keep].argmax(axis=1)
    assert scores["accuracy"] == pytest.approx(skm.accuracy_score(y[keep], guess))
    assert scores["f1_macro"] == pytest.approx(skm.f1_score(y[keep], guess, average="macro"))
    precision = skm.precision_score(y[keep], guess, average="macro", zero_division=0)
    assert scores["precision_macro"] == pytest.approx(precision)
    assert scores["recall_macro"] == pytest.approx(skm.recall_score(y[keep], guess, average="macro"))
    assert scores["auroc_ovr"] == pytest.approx(skm.roc_auc_score(y[keep], p[keep], multi_class="ovr"))


def test_multilabel_macro_micro_and_dice_equal_sklearn():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, size=(12, 3))
    p = rng.uniform(size=(12, 3))
    task = kmtl.Task("t", "multilabel", num_labels=3)
    scores = _scores(task, y, p).scores()
    guess = (p >= 0.5).astype(int)
    for average in ("macro", "micro"):
        assert scores[f"f1_{average}"] == pytest.approx(skm.f1_score(y, guess, average=average))
        assert scores[f"precision_{average}"] == pytest.approx(skm.precision_score(y, guess, average=average))
        assert scores[f"recall_{average}"] == pytest.approx(skm.recall_score(y, guess, average=average))
        assert scores[f"auroc_{average}"] == pytest.approx(skm.roc_auc_score(y, p, average=average))
    # Mean per-example Dice is sklearn's sample-averaged F1 (an empty truth and prediction scoring 1).
    assert scores["dice"] == pytest.approx(skm.f1_score(y, guess, average="samples", zero_division=1.0))
    # Missing entries: macro averages each label over its present rows, micro pools the present entries.
    y_missing = y.copy()
    y_missing[[0, 3, 5], [1, 1, 2]] = -1
    scores = _scores(task, y_missing, p).scores()
    present = y_missing != -1
    per_label = [skm.f1_score(y[present[:, k], k], guess[present[:, k], k]) for k in range(3)]
    assert scores["f1_macro"] == pytest.approx(np.mean(per_label))
    assert scores["f1_micro"] == pytest.approx(skm.f1_score(y[present], guess[present]))
    assert scores["accuracy"] == pytest.approx(skm.accuracy_score(y[present], guess[present]))


def test_regression_and_landmark_scores_by_hand():
    y = np.array([[1.0, 2.0], [np.nan, 0.0], [3.0, -1.0]])
    p = np.array([[1.5, 2.0], [9.0, 1.0], [1.0, 0.0]])
    scores = _scores(kmtl.Task("t", "regression", units=2), y, p).scores()
    errors = np.array([0.5, 0.0, 1.0, 2.0, 1.0])  # the NaN entry is left out
    assert scores["mae"] == pytest.approx(errors.mean())
    assert scores["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y[~np.isnan(y)], p[~np.isnan(y)])))
    task = kmtl.Task("lm", "regression", units=4, metrics=[kmtl.metrics.NormalizedMeanError()])
    # Eyes at (0, 0) and (2, 0): inter-ocular distance 2; point errors 1 and 0 -> NME (1 + 0) / 2 / 2 = 0.25.
    # The second example has a missing coordinate and is left out.
    truth = np.array([[0.0, 0.0, 2.0, 0.0], [0.0, np.nan, 1.0, 0.0]])
    guess = np.array([[0.0, 1.0, 2.0, 0.0], [5.0, 5.0, 5.0, 5.0]])
    assert _scores(task, truth, guess, batches=1).scores()["nme"] == pytest.approx(0.25)


def test_per_step_labels_are_flattened_to_present_steps():
    task = kmtl.Task("t", "binary", per_step=True)
    labels = np.array([[1, 0, -1, -1], [0, 1, 1, -1]])  # padded steps marked -1
    predictions = np.array([[0.8, 0.6, 0.9, 0.9], [0.1, 0.7, 0.2, 0.0]])[..., None]
    scores = _scores(task, labels, predictions).scores()
    keep = labels != -1
    assert scores["accuracy"] == pytest.approx(skm.accuracy_score(labels[keep], predictions[..., 0][keep] >= 0.5))
    assert scores["auroc"] == pytest.approx(skm.roc_auc_score(labels[keep], predictions[..., 0][keep]))
    # Dice per sequence: [1, 0] vs [1, 1] -> 2/3; [0, 1, 1] vs [0, 1, 0] -> 2/3.
    assert scores["dice"] == pytest.approx(2 / 3)
    multiclass = kmtl.Task("m", "multiclass", num_classes=3, per_step=True)
    probabilities = np.eye(3)[[[0, 1, 2], [2, 2, 0]]]  # predicts 0 1 2 / 2 2 0
    scores = _scores(multiclass, np.array([[0, 1, -1], [2, 0, -1]]), probabilities, batches=1).scores()
    assert scores["accuracy"] == pytest.approx(3 / 4)


@pytest.fixture(scope="module")
def trained_report():
    """An untrained 4-task model (one auxiliary), labels with missing entries and its report, made once."""
    tasks = [
        kmtl.Task("smile", "binary", label_names=["no", "yes"]),
        kmtl.Task("hair", "multiclass", num_classes=3, label_names=["black", "blond", "brown"]),
        kmtl.Task("age", "regression"),
        kmtl.Task("domain", "binary", auxiliary=True),
    ]
    model = _model(tasks=tasks, seed=2, run_eagerly=True)
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(24, 4)).astype("float32")
    labels = {
        "smile": np.array([1, 0] * 12).reshape(-1, 1),
        "hair": np.array([0, 1, 2] * 8),
        "age": rng.normal(size=(24, 1)).astype("float32"),
        "domain": np.array([0, 1, 1] * 8),
    }
    labels["smile"][:4] = -1
    labels["hair"][-3:] = -1
    labels["age"][5] = np.nan
    return model, inputs, labels, kmtl.evaluate(model, inputs, labels, batch_size=8)


def test_evaluate_scores_predictions_and_takes_losses_from_keras(trained_report):
    model, inputs, labels, report = trained_report
    predictions = model.predict(inputs, verbose=0)
    keep = labels["smile"][:, 0] != -1
    y, p = labels["smile"][keep, 0], predictions["smile"][keep, 0]
    assert report["smile"]["auroc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert report["smile"]["f1"] == pytest.approx(skm.f1_score(y, p >= 0.5))
    hair_kept = labels["hair"] != -1
    guess = predictions["hair"][hair_kept].argmax(axis=1)
    assert report["hair"]["accuracy"] == pytest.approx(skm.accuracy_score(labels["hair"][hair_kept], guess))
    keep = ~np.isnan(labels["age"][:, 0])
    assert report["age"]["mae"] == pytest.approx(skm.mean_absolute_error(labels["age"][keep], predictions["age"][keep]))
    logs = model.evaluate(inputs, labels, batch_size=8, return_dict=True, verbose=0)
    for task in ("smile", "hair", "age", "domain"):
        assert report[task]["loss"] == pytest.approx(logs[f"{task}_loss"])
    assert "auc" not in report["smile"]  # replaced by the exact AUROC
    # Geometric mean of the main classification tasks' accuracies (the auxiliary task is left out).
    expected = np.sqrt(report["smile"]["accuracy"] * report["hair"]["accuracy"])
    assert report.overall["geometric_mean_accuracy"] == pytest.approx(expected)
    assert report.overall["loss"] == pytest.approx(logs["loss"])
    # Confusion matrix by hand, labelled with the task's label names.
    matrix = report.confusion_matrix("hair")
    assert matrix.classes == ["black", "blond", "brown"]
    expected = np.zeros((3, 3), int)
    for true, guessed in zip(labels["hair"][hair_kept], guess):
        expected[true, guessed] += 1
    np.testing.assert_array_equal(matrix.matrix, expected)
    assert report.confusion_matrix("smile").classes == ["no", "yes"]
    assert report.confusion_matrix("smile").matrix.sum() == 20
    with pytest.raises(ValueError, match="Received: task='age'"):
        report.confusion_matrix("age")


def test_evaluate_reads_a_dataset_in_the_order_it_predicts(trained_report):
    import tensorflow as tf

    model, inputs, labels, report = trained_report
    dataset = tf.data.Dataset.from_tensor_slices((inputs, labels)).shuffle(24, seed=1).batch(5)
    from_dataset = kmtl.evaluate(model, dataset)
    for task in report.tasks:
        # Keras's loss is a mean of per-batch means, so it depends on the batching; the scores do not.
        for name, value in [(k, v) for k, v in report[task].items() if k not in ("loss", "weight")]:
            assert from_dataset[task][name] == pytest.approx(value, rel=1e-5, nan_ok=True), (task, name)
    with pytest.raises(ValueError, match="one-shot iterator"):
        kmtl.evaluate(model, iter(dataset))


def test_geometric_mean_by_hand():
    assert geometric_mean([0.5, 0.8, 0.9]) == pytest.approx((0.5 * 0.8 * 0.9) ** (1 / 3))
    assert geometric_mean([0.5, 0.0]) == 0.0
    assert np.isnan(geometric_mean([]))


def test_dict_dataframe_and_wide_tables():
    report = EvaluationReport(
        {"a": {"loss": 1.0, "accuracy": 0.5}, "b": {"loss": 2.0, "mae": 0.25}},
        {"loss": 3.0, "geometric_mean_accuracy": 0.5},
        {"a": "binary", "b": "regression"},
    )
    assert report.to_dict() == {
        "a": {"loss": 1.0, "accuracy": 0.5},
        "b": {"loss": 2.0, "mae": 0.25},
        "overall": {"loss": 3.0, "geometric_mean_accuracy": 0.5},
    }
    frame = report.to_dataframe()
    assert list(frame.index) == ["a", "b", "overall"]
    assert frame.loc["b", "mae"] == 0.25 and np.isnan(frame.loc["a", "mae"])
    assert frame.loc["a", "kind"] == "binary" and frame.loc["overall", "loss"] == 3.0
    blocks = report.table(digits=2, width=36).split("\n\n")
    assert len(blocks) == 2 and all(block.startswith("task") for block in blocks)
    assert "accuracy" in blocks[0] and "mae" in blocks[1]


def test_to_dataframe_without_pandas_names_the_package(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        EvaluationReport({"a": {"loss": 1.0}}, {}).to_dataframe()


def test_evaluate_per_step_tasks_on_batches_of_different_lengths():
    import tensorflow as tf

    from kmtl.heads import task_head

    tasks = [
        kmtl.Task("alarm", "binary", per_step=True),
        kmtl.Task("stage", "multiclass", num_classes=3, per_step=True),
    ]
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, 4), name="series")
    features = keras.layers.Dense(6, activation="relu", name="trunk")(inputs)
    model = kmtl.MultiTaskModel(inputs, {t.name: task_head(t, features) for t in tasks}, tasks=tasks)
    model.compile(optimizer="sgd", run_eagerly=True)
    rng = np.random.default_rng(5)
    examples = [
        (rng.normal(size=(n, 4)).astype("float32"), {"alarm": rng.integers(0, 2, n), "stage": rng.integers(0, 3, n)})
        for n in (2, 5, 3, 4, 6)
    ]
    label_spec = {k: tf.TensorSpec((None,), tf.int64) for k in ("alarm", "stage")}
    signature = (tf.TensorSpec((None, 4), tf.float32), label_spec)
    padding = (0.0, {k: tf.constant(-1, tf.int64) for k in ("alarm", "stage")})
    dataset = tf.data.Dataset.from_generator(lambda: iter(examples), output_signature=signature)
    dataset = dataset.padded_batch(3, padding_values=padding)  # batches padded to 5 and 6 steps
    report = kmtl.evaluate(model, dataset)
    truth = {"alarm": [], "stage": []}
    scores = {"alarm": [], "stage": []}
    for x, y in examples:  # each sequence on its own: no padding at all
        predictions = model(x[None])
        for name, values in truth.items():
            values.append(y[name])
            scores[name].append(keras.ops.convert_to_numpy(predictions[name])[0])
    alarm_y, alarm_p = np.concatenate(truth["alarm"]), np.concatenate(scores["alarm"])[:, 0]
    assert report["alarm"]["auroc"] == pytest.approx(skm.roc_auc_score(alarm_y, alarm_p), rel=1e-5)
    assert report["alarm"]["accuracy"] == pytest.approx(skm.accuracy_score(alarm_y, alarm_p >= 0.5))
    stage_y, stage_p = np.concatenate(truth["stage"]), np.concatenate(scores["stage"])
    assert report["stage"]["accuracy"] == pytest.approx(skm.accuracy_score(stage_y, stage_p.argmax(axis=1)))
    assert report.confusion_matrix("stage").matrix.sum() == 20  # real steps only


# === Data given the wrong way ===


@pytest.mark.parametrize(
    "data, y, match",
    [
        # (x, y) as one argument, as `model.fit(validation_data=(x, y))` takes it.
        ("tuple", None, r"Received: data=a tuple of 2.*kmtl\.evaluate\(model, x, y\)"),
        ("list", None, r"Received: data=a list of 2.*kmtl\.evaluate\(model, x, y\)"),
        # Labels as an array where a dict keyed by task names is expected.
        ("x", "array", r"Invalid value for `y`\. Expected a dict keyed by task names \['age', 'age_group'\]"),
        # A labels dict naming an unknown task.
        ("x", "unknown", r"Invalid value for `y`.*unknown task\(s\) \['height'\].*\['age', 'age_group'\]"),
    ],
)
def test_evaluate_says_what_to_pass(data, y, match):
    model = _model()
    x = np.zeros((4, 4), "float32")
    labels = {"age": np.zeros((4, 1), "float32"), "age_group": np.zeros(4, "int32")}
    data = {"tuple": (x, labels), "list": [x, labels], "x": x}[data]
    y = {None: None, "array": np.zeros(4), "unknown": {**labels, "height": np.zeros(4)}}[y]
    with pytest.raises(ValueError, match=match):
        kmtl.evaluate(model, data, y)


def test_evaluate_refuses_a_model_without_tasks():
    x = keras.Input((4,), name="features")
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match=r"Expected a kmtl\.MultiTaskModel.*Received: model=Sequential"):
        kmtl.evaluate(plain, np.zeros((2, 4), "float32"), {"a": np.zeros(2)})
    del x
