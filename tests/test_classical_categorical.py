"""The classical reference model reads an integer id the model looks up (a subject, a token) as a category."""

import keras
import numpy as np
import pytest

import kmtl
from kmtl.evaluation.classical import categorical_inputs, classical_scores
from kmtl.layers import RandomEffects

TASKS = [kmtl.Task("y", "regression")]


@pytest.fixture(scope="module")
def splits():
    """Each of 20 subjects has its own level (sd 3); y = level + 0.5 day + noise (sd 0.3). Days 0-5 train, 6-7 test."""
    rng = np.random.default_rng(0)
    level = 3.0 * rng.normal(size=20)

    def split(days):
        subject = np.repeat(np.arange(20), len(days)).astype("int32")
        day = np.tile(np.asarray(days, "float32"), 20)[:, None]
        y = level[subject] + 0.5 * day[:, 0] + 0.3 * rng.normal(size=len(subject))
        return {"subject": subject, "day": day}, {"y": y[:, None].astype("float32")}

    return split(range(6)), split([6, 7])


def test_an_id_one_hot_beats_the_id_as_a_number(splits):
    train, test = splits
    number = classical_scores(TASKS, train, test)["y"]
    category = classical_scores(TASKS, train, test, categorical=["subject"])["y"]
    assert number.get("rmse") > 2.0  # the levels are left unexplained (sd 3)
    assert category.get("rmse") < 0.5  # about the noise (0.3)
    assert "subject one-hot (20 categories" in category.detail and "subject flattened" in number.detail


def test_unseen_ids_and_several_ids_per_row():
    train = {"ids": np.array([[0, 1], [1, 1], [2, 0], [2, 2]], "int64")}, {"y": np.array([[1.0], [2.0], [1.0], [0.0]])}
    test = {"ids": np.array([[7, 7], [1, 0]], "int64")}, {"y": np.array([[0.0], [1.0]])}
    score = classical_scores(TASKS, train, test, categorical="ids")["y"]
    assert "ids counts over its 2 values (3 categories" in score.detail
    assert np.isfinite(score.get("mae"))  # the unseen id 7 gets no column, not an error


@pytest.mark.parametrize("bad, fragment", [("days", "not numeric inputs"), ("day", "hold floats")])
def test_bad_categorical_names_the_input(splits, bad, fragment):
    train, test = splits
    with pytest.raises(ValueError, match=fragment):
        classical_scores(TASKS, train, test, categorical=[bad])


def test_categorical_inputs_are_those_the_model_looks_up():
    subject = keras.Input((), dtype="int32", name="subject")
    token = keras.Input((4,), dtype="int32", name="token")
    count = keras.Input((1,), dtype="int32", name="count")  # an integer the model reads as a number
    day = keras.Input((1,), name="day")
    random = RandomEffects(20, name="y_random")([subject, day])
    words = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(50, 2)(token))
    numbers = keras.layers.Dense(1)(keras.layers.Concatenate()([words, keras.ops.cast(count, "float32"), day]))
    model = kmtl.MultiTaskModel({"subject": subject, "token": token, "count": count, "day": day},
                                {"y": keras.layers.Add(name="y")([numbers, random])}, tasks=TASKS)
    assert categorical_inputs(model) == ["subject", "token"]


@pytest.mark.slow  # evaluates a model: a few seconds on 2 cores
def test_evaluate_one_hots_the_ids_the_model_looks_up_and_says_so(splits):
    train, test = splits
    subject, day = keras.Input((), dtype="int32", name="subject"), keras.Input((1,), name="day")
    y = keras.layers.Add(name="y")([keras.layers.Dense(1)(day), RandomEffects(20)(subject)])
    model = kmtl.MultiTaskModel({"subject": subject, "day": day}, {"y": y}, tasks=TASKS)
    model.compile(optimizer="sgd")
    report = kmtl.evaluate(model, *test, train_data=train)
    classical = report.references["y"]["classical"]
    assert classical.get("rmse") < 0.5
    assert "subject one-hot (20 categories, an id read as a category)" in report.table()
