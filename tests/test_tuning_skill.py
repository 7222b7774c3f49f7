"""The tuner's score is scale-free: each task's skill over its trivial predictor fitted on the training split."""

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

import kmtl
from kmtl.tuning.objective import MultiTaskObjective

TASKS = [kmtl.Task("smiling", "binary"), kmtl.Task("age", "regression")]
MONTHS = 12.0
METRICS = {"smiling": "accuracy", "age": "mae"}  # accuracy, whose trivial value is not a constant (AUC's is 0.5)


@pytest.fixture(scope="module")
def splits():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    age = (40 + 12 * rng.normal(size=(64, 1))).astype("float32")  # years
    y = {"smiling": (rng.random(64) < 0.7).astype("float32"), "age": age}
    return (x[:40], {k: v[:40] for k, v in y.items()}), (x[40:], {k: v[40:] for k, v in y.items()})


def _in_months(split):
    x, y = split
    return x, {**y, "age": y["age"] * MONTHS}


@pytest.fixture(scope="module")
def objectives(splits):
    """The default objective with references fitted on the labels in years, and on the same labels in months."""
    train, val = splits
    years = MultiTaskObjective(METRICS)
    years.fit_references(TASKS, train, val)
    months = MultiTaskObjective(METRICS)
    months.fit_references(TASKS, _in_months(train), _in_months(val))
    return years, months


def test_references_are_the_trivial_predictors_keras_metrics_on_validation(splits, objectives):
    (_, y_train), (_, y_val) = splits
    years, months = objectives
    prior = y_train["smiling"].mean()  # 0.7-ish: the class prior predicts "smiling" everywhere
    assert years.references["smiling"] == pytest.approx(np.mean(y_val["smiling"] == (prior > 0.5)), abs=1e-6)
    median = np.median(y_train["age"])
    assert years.references["age"] == pytest.approx(np.mean(np.abs(y_val["age"] - median)), rel=1e-5)
    assert months.references["age"] == pytest.approx(MONTHS * years.references["age"], rel=1e-5)
    # Skill by hand: (m - r) / (perfect - r); 0 at the trivial predictor, 1 when perfect.
    r_acc, r_mae = years.references["smiling"], years.references["age"]
    logs = {"val_smiling_accuracy": 0.9, "val_age_mae": r_mae / 2}
    assert years.score(logs) == pytest.approx(((0.9 - r_acc) / (1 - r_acc) + 0.5) / 2, abs=1e-12)
    assert years.score({"val_smiling_accuracy": r_acc, "val_age_mae": r_mae}) == pytest.approx(0.0, abs=1e-12)


trial = st.tuples(st.floats(0.5, 1.0), st.floats(0.1, 3.0).map(lambda m: round(m, 3)))


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(trials=st.lists(trial, min_size=2, max_size=6))
def test_ranking_is_invariant_to_the_units_of_a_regression_task(objectives, trials):
    years, months = objectives
    r = years.references["age"]
    in_years = [years.score({"val_smiling_accuracy": a, "val_age_mae": m * r}) for a, m in trials]
    in_months = [months.score({"val_smiling_accuracy": a, "val_age_mae": m * r * MONTHS}) for a, m in trials]
    np.testing.assert_allclose(in_months, in_years, rtol=1e-5, atol=1e-6)  # the references agree to float32
    order = np.argsort(in_years, kind="stable")
    gaps = np.diff(np.asarray(in_years)[order])
    clear = np.concatenate([[True], gaps > 1e-5])  # rankings compared where scores are not tied
    assert list(np.argsort(in_months, kind="stable")[clear]) == list(order[clear])


def test_the_old_error_mapping_ranked_by_units_and_the_skill_does_not(objectives):
    years, months = objectives
    trials = {"A": (0.9, 1.0), "B": (0.8, 0.5)}  # A: better smiling; B: half A's age error (years)

    def best(objective, scale):
        scores = {k: objective.score({"val_smiling_accuracy": a, "val_age_mae": m * scale}) for k, (a, m) in
                  trials.items()}
        return max(scores, key=scores.get)

    plain = MultiTaskObjective(METRICS, scales={"age": 1.0})  # 1 / (1 + m): the score before skills
    assert (best(plain, 1.0), best(plain, MONTHS)) == ("B", "A")  # the units chose the winner
    assert best(years, 1.0) == best(months, MONTHS)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"references": {"smiling": 0.7}}, "`references` must name every scored task"),
        ({"references": {"smiling": 0.7, "age": float("nan")}}, "Expected a finite number for task 'age'"),
        ({"references": {"smiling": 0.7, "age": 5.0}, "scales": {"age": 2.0}}, "at most one of"),
    ],
)
def test_bad_references(kwargs, fragment):
    with pytest.raises(ValueError) as raised:
        MultiTaskObjective({"smiling": "accuracy", "age": "mae"}, **kwargs)
    assert fragment in str(raised.value)
