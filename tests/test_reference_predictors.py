"""Trivial and classical reference predictors, intervals and paired tests: values against hand computation and scipy."""

import math

import numpy as np
import pytest
from scipy import stats

from kmtl import Task
from kmtl.evaluation.arrays import collect_examples
from kmtl.evaluation.classical import classical_scores
from kmtl.evaluation.references import clearly_beats
from kmtl.evaluation.statistics import excludes_zero, mean_interval, paired_p_value
from kmtl.evaluation.trivial import trivial_scores

X4 = np.zeros((4, 1), "float32")


# === Trivial predictors by hand ===


def test_binary_prior_leaves_missing_labels_out():
    task = Task("a", "binary")  # missing marker -1
    train = (np.zeros((6, 1)), {"a": np.array([1, 1, 1, 0, -1, -1])})  # prior 3/4 over the four present labels
    test = (X4, {"a": np.array([1, 0, -1, 1])})
    score = trivial_scores([task], train, test)["a"]
    assert score.name == "class prior"
    # Predicts 0.75 everywhere: positive at 0.5, so accuracy 2/3 over the three present test labels; AUROC 0.5.
    assert score.scores["accuracy"] == pytest.approx(2 / 3)
    assert score.scores["auroc"] == pytest.approx(0.5)
    assert score.scores["recall"] == 1.0


def test_multiclass_prior_predicts_the_majority_class():
    task = Task("c", "multiclass", num_classes=3, missing=-1)
    train = (np.zeros((6, 1)), {"c": np.array([2, 2, 1, -1, -1, -1])})
    test = (X4, {"c": np.array([2, 0, 2, 1])})
    score = trivial_scores([task], train, test)["c"].scores
    assert score["accuracy"] == pytest.approx(0.5)  # class 2 predicted: right on 2 of 4


def test_multilabel_prior_per_label_and_per_step_classes():
    multilabel = Task("m", "multilabel", num_labels=2)
    per_step = Task("s", "multiclass", num_classes=3, per_step=True)
    y_train = {"m": np.array([[1, 0], [1, -1], [0, 0], [1, -1]]),  # label 0: 3/4 positive; label 1: 0/2
               "s": np.array([[0, 0, -1], [1, 0, -1], [0, 2, 2], [0, -1, -1]])}  # class 0 on 5 of 8 steps
    y_test = {"m": np.array([[1, 1], [0, 0], [1, -1], [1, 0]]), "s": np.array([[0, 1, -1], [2, 0, 0], [1, -1, -1], [0, 0, 0]])}
    scores = trivial_scores([multilabel, per_step], (X4, y_train), (X4, y_test))
    # Label 0 predicted positive (0.75), label 1 negative (0.0): entries right 3/4 and 2/3 -> 5 of 7.
    assert scores["m"].scores["accuracy"] == pytest.approx(5 / 7)
    # Class 0 on every step: right on 6 of the 9 present test steps.
    assert scores["s"].scores["accuracy"] == pytest.approx(6 / 9)


def test_regression_median_for_mae_mean_for_rmse():
    train = (np.zeros((5, 1)), {"r": np.array([[1.0], [2.0], [3.0], [10.0], [np.nan]])})
    test = (np.zeros((3, 1)), {"r": np.array([[2.0], [4.0], [np.nan]])})
    median = trivial_scores([Task("r", "regression")], train, test)["r"]
    assert median.name == "median"  # of 1, 2, 3, 10: 2.5
    assert median.scores["mae"] == pytest.approx((0.5 + 1.5) / 2)
    mean = trivial_scores([Task("r", "regression")], train, test, primary_metrics={"r": "rmse"})["r"]
    assert mean.name == "mean"  # 4.0
    assert mean.scores["rmse"] == pytest.approx(math.sqrt((4.0 + 0.0) / 2))


def test_forecasting_last_value_when_it_beats_the_constant_on_training_data():
    task = Task("v", "regression", per_step=True)
    nan = np.nan
    trend = np.array([[1.0, 2.0, 3.0, 4.0], [10.0, 11.0, nan, 13.0], [5.0, 6.0, 7.0, nan]])
    test = np.array([[20.0, 21.0, nan, 23.0]])
    score = trivial_scores([task], (np.zeros((3, 1)), {"v": trend}), (np.zeros((1, 1)), {"v": test}))["v"]
    assert score.name == "last value"
    # Step 0 has no earlier value: the training median, 5.5 (of 1,2,3,4,10,11,13,5,6,7); steps 1 and 3 the last
    # present earlier targets, 20 and 21.
    assert score.scores["mae"] == pytest.approx((abs(20 - 5.5) + 1.0 + 2.0) / 3)
    noise = np.array([[1.0, 9.0, 1.0, 9.0], [9.0, 1.0, 9.0, 1.0]])  # alternating: the last value is worse
    score = trivial_scores([task], (np.zeros((2, 1)), {"v": noise}), (np.zeros((1, 1)), {"v": test}))["v"]
    assert score.name == "median"


def test_batches_padded_to_different_lengths_are_collected_with_missing_labels():
    task = Task("s", "binary", per_step=True)
    batches = [({"x": np.ones((2, 3, 1))}, {"s": np.array([[1, 0, 1], [0, 0, -1]])}),
               ({"x": np.ones((1, 5, 1))}, {"s": np.array([[1, 1, 1, 1, 1]])})]
    inputs, labels = collect_examples(batches, [task])
    assert inputs["x"].shape == (3, 5, 1) and inputs["x"][0, 3:].sum() == 0
    np.testing.assert_array_equal(labels["s"][1], [0, 0, -1, -1, -1])


# === Classical models ===


def test_classical_models_learn_a_linear_signal_and_skip_string_inputs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = {"a": (x[:, 0] > 0).astype(int), "r": 3.0 * x[:, 1:2], "s": np.full((300,), -1)}
    y["s"][:150] = (x[:150, 2] > 0)
    tasks = [Task("a", "binary"), Task("r", "regression"), Task("s", "binary")]
    scores = classical_scores(tasks, (x[:200], {k: v[:200] for k, v in y.items()}),
                              (x[200:], {k: v[200:] for k, v in y.items()}))
    assert scores["a"].name == "logistic" and scores["a"].scores["auroc"] > 0.98
    assert scores["r"].name == "ridge" and scores["r"].scores["mae"] < 0.1
    assert "fitted on 150 of 150 labelled" in scores["s"].detail  # the missing labels left out
    tokens = {"tokens": np.array([["a", "b"]] * 4)}
    skipped = classical_scores([Task("a", "binary")], (tokens, {"a": np.array([0, 1, 0, 1])}),
                               (tokens, {"a": np.array([0, 1, 0, 1])}))["a"]
    assert skipped.skipped and "no numeric input (tokens hold strings)" in skipped.detail


def test_classical_images_are_pooled_to_a_coarse_grid():
    rng = np.random.default_rng(1)
    images = rng.normal(size=(120, 40, 40, 3)).astype("float32")
    label = (images[:, :20, :, 0].mean(axis=(1, 2)) > 0).astype(int)  # bright top half of the red channel
    images[:, :20, :, 0] += np.where(label, 0.5, -0.5)[:, None, None]
    score = classical_scores([Task("a", "binary")], ({"image": images[:80]}, {"a": label[:80]}),
                             ({"image": images[80:]}, {"a": label[80:]}))["a"]
    assert "9x9 block means" in score.detail and score.scores["auroc"] > 0.95


# === Clearly better, intervals and the paired test ===


def test_clearly_beats_by_margin_and_interval():
    assert clearly_beats(0.53, 0.5, False) and not clearly_beats(0.52, 0.5, False)
    assert clearly_beats(9.0, 10.0, True) and not clearly_beats(9.8, 10.0, True)
    assert clearly_beats([0.6, 0.62, 0.61], 0.5, False)
    assert not clearly_beats([0.7, 0.45, 0.6], 0.5, False)  # mean +17%, but the interval reaches below 0
    assert clearly_beats([float("nan")], 0.5, False) is None


def test_interval_and_paired_test_against_scipy():
    mtl, single = np.array([0.81, 0.79, 0.84, 0.80, 0.83]), np.array([0.78, 0.80, 0.79, 0.77, 0.80])
    mean, low, high = mean_interval(mtl - single)
    expected = stats.t.interval(0.95, 4, loc=np.mean(mtl - single), scale=stats.sem(mtl - single))
    assert (low, high) == pytest.approx(expected) and mean == pytest.approx(0.026)
    assert paired_p_value(mtl - single) == pytest.approx(stats.ttest_rel(mtl, single).pvalue)
    assert math.isnan(mean_interval([1.0])[1]) and math.isnan(paired_p_value([0.1]))
    assert excludes_zero(0.01, 0.2) and excludes_zero(-0.3, -0.01) and not excludes_zero(-0.01, 0.2)
    assert not excludes_zero(float("nan"), float("nan"))


# === In reports ===


@pytest.mark.slow  # evaluates a tiny model (Keras evaluate and predict): 3-8 s on the shared 2 cores
def test_evaluate_with_training_data_shows_the_reference_predictors():
    import keras
    from tiny import tiny_data, tiny_model

    import kmtl

    tasks = [Task("a", "binary"), Task("b", "regression", units=2)]
    x, y = tiny_data(tasks, n=60, seed=1)
    model = tiny_model(tasks=tasks, run_eagerly=True)  # untrained: no better than the prior; eager: no tracing
    train, test = (x[20:], {k: v[20:] for k, v in y.items()}), (x[:20], {k: v[:20] for k, v in y.items()})
    report = kmtl.evaluate(model, *test, train_data=train, classical=False)
    expected = trivial_scores(tasks, train, test)
    assert report.references["a"]["trivial"].scores == expected["a"].scores
    assert report.references["b"]["metric"] == "mae" and report.references["b"]["classical"] is None
    table = report.table()
    assert "Reference predictors fitted on the training split" in table
    row = next(line for line in table.splitlines() if line.startswith("b ") and "median" in line)
    assert f"{expected['b'].scores['mae']:.4f} median" in row
    assert "Not clearly better than the trivial predictor:" in table
    assert kmtl.evaluate(model, *test).references is None
    keras.backend.clear_session()
