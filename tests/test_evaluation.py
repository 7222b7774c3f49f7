"""`kmtl.evaluate` and `EvaluationReport`."""

import keras
import numpy as np

import kmtl
from kmtl.evaluation import EvaluationReport, report_from_logs


def _model():
    tasks = [kmtl.Task("age", "regression"), kmtl.Task("age_group", "multiclass", num_classes=3)]
    x = keras.Input((4,), name="features")
    h = keras.layers.Dense(8, activation="relu")(x)
    model = kmtl.builders.hard_sharing(x, h, tasks)
    model.compile(optimizer="sgd")
    return model


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
    keras.utils.set_random_seed(1)
    model = _model()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = {"age": rng.normal(size=(32, 1)).astype("float32"), "age_group": rng.integers(0, 3, 32)}
    report = kmtl.evaluate(model, x, y, batch_size=32)
    logs = model.evaluate(x, y, batch_size=32, return_dict=True, verbose=0)
    assert np.isclose(report["age"]["mae"], logs["age_mae"])
    assert np.isclose(report["age_group"]["accuracy"], logs["age_group_accuracy"])
    predictions = model.predict(x, verbose=0)
    expected_mae = np.mean(np.abs(predictions["age"] - y["age"]))
    assert np.isclose(report["age"]["mae"], expected_mae, atol=1e-5)
