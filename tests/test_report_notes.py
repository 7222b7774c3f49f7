"""The report table explains its `weight` column and a negative overall loss, and refuses to score tiny splits."""

import keras
import numpy as np

import kmtl
from kmtl.evaluation.report import MIN_EXAMPLES, NEGATIVE_LOSS_NOTE, WEIGHT_NOTE, EvaluationReport


def test_weight_column_and_negative_overall_loss_are_explained_in_one_line_each():
    report = EvaluationReport({"a": {"loss": -0.5, "weight": 2.0, "mae": 0.25}}, {"loss": -1.0}, {"a": "regression"})
    lines = report.table(digits=2).splitlines()
    assert lines[-3:] == ["overall: loss=-1.00", WEIGHT_NOTE, NEGATIVE_LOSS_NOTE]
    assert "uncertainty" in NEGATIVE_LOSS_NOTE and "\n" not in WEIGHT_NOTE + NEGATIVE_LOSS_NOTE
    plain = EvaluationReport({"a": {"loss": 0.5, "mae": 0.25}}, {"loss": 0.5}).table()
    assert WEIGHT_NOTE not in plain and NEGATIVE_LOSS_NOTE not in plain


def test_a_task_with_too_few_test_examples_shows_n_a_with_the_counts():
    keras.utils.set_random_seed(0)
    x = keras.Input((2,), name="x")
    tasks = [kmtl.Task("few", "binary"), kmtl.Task("many", "binary")]
    model = kmtl.builders.hard_sharing(x, keras.layers.Dense(2, name="trunk")(x), tasks)
    model.compile("adam", run_eagerly=True)
    n = 2 * MIN_EXAMPLES
    features = np.random.default_rng(0).normal(size=(n, 2)).astype("float32")
    few = np.full(n, -1, "int32")  # missing everywhere but three examples of one class
    few[:3] = 1
    labels = {"few": few, "many": np.arange(n) % 2}
    report = kmtl.evaluate(model, features, labels)
    assert report.too_few == {"few": "3 labelled, 1 class present; scores need at least 10 and 2 classes"}
    assert np.isnan(report["few"]["auroc"])  # the value itself stays
    # An accuracy of 3 examples does not pull the geometric mean: it is the scored task's accuracy alone.
    assert report.overall["geometric_mean_accuracy"] == report["many"]["accuracy"]
    table = report.table(digits=2)
    row = next(line for line in table.splitlines() if line.startswith("few "))
    assert "n/a" in row and "nan" not in row and row.split()[2] != "n/a"  # the loss still shows
    assert "few: n/a (too few examples: 3 labelled, 1 class present; scores need at least 10 and 2 classes)" in table
    assert "n/a" not in next(line for line in table.splitlines() if line.startswith("many "))
