"""The classical reference of a task that a model reads at a fixed step sees only the steps up to it, as the model
does (the clinical recipe's mortality, read at hour 48 of a stay); and `compare` fits the same references as
`kmtl.evaluate`, ids one-hot encoded and read-out windows applied."""

import keras
import numpy as np
import pytest

import kmtl
from kmtl.evaluation.baselines import compare_single_task
from kmtl.evaluation.classical import categorical_inputs, classical_scores
from kmtl.evaluation.windows import input_windows
from kmtl.layers import RandomEffects, SequenceMean, SequenceReadout

STEPS, READ_AT = 10, 4
EARLY = kmtl.Task("early", "binary")  # read at step READ_AT: sees steps 0..4
LAST = kmtl.Task("last", "binary")  # read at the last real step: sees the whole sequence
BOTH = kmtl.Task("both", "binary")  # step READ_AT's read-out and the mean over the sequence: sees it all
HOURLY = kmtl.Task("hourly", "binary", per_step=True)


def sequences(n, seed):
    """`n` sequences of noise (10 steps, 2 channels) and a static input; each whole-sequence label is whether
    the first channel's mean over steps 5-9, after the read-out step, is positive: the steps up to the read-out
    say nothing of it."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, STEPS, 2)).astype("float32")
    late = (x[:, READ_AT + 1 :, 0].mean(axis=1) > 0).astype("float32")[:, None]
    inputs = {"x": x, "mask": np.ones((n, STEPS), "float32"), "static": rng.normal(size=(n, 3)).astype("float32")}
    labels = {"early": late, "last": late, "both": late, "hourly": (x[:, :, 1:] > 0).astype("float32")}
    return inputs, labels


def sequence_model():
    x = keras.Input((None, 2), name="x")
    mask = keras.Input((None,), name="mask")
    static = keras.Input((3,), name="static")
    h = keras.layers.Dense(4, activation="tanh")(x)  # per step: causal
    at = SequenceReadout(READ_AT)([h, mask])
    outputs = {
        "early": keras.layers.Dense(1, activation="sigmoid")(keras.layers.Concatenate()([at, static])),
        "last": keras.layers.Dense(1, activation="sigmoid")(SequenceReadout()([h, mask])),
        "both": keras.layers.Dense(1, activation="sigmoid")(
            keras.layers.Concatenate()([at, SequenceMean()([h, mask])])),
        "hourly": keras.layers.Dense(1, activation="sigmoid")(h),
    }
    model = kmtl.MultiTaskModel({"x": x, "mask": mask, "static": static}, outputs, tasks=[EARLY, LAST, BOTH, HOURLY])
    model.compile(optimizer="sgd", run_eagerly=True)
    return model


def test_a_task_read_at_a_step_sees_its_sequence_inputs_up_to_that_step():
    # The static input is read whole; the last-step and mean read-outs and per-step tasks have no window.
    assert input_windows(sequence_model()) == {"early": {"mask": READ_AT + 1, "x": READ_AT + 1}}


@pytest.fixture(scope="module")
def splits():
    return sequences(600, 0), sequences(600, 1)


def test_the_reference_does_not_read_the_steps_after_the_read_out(splits):
    train, test = splits
    whole = classical_scores([EARLY, LAST], train, test)
    assert whole["early"].get("auroc") > 0.75  # pooled over the whole sequence, the late steps give it away
    windowed = classical_scores([EARLY, LAST], train, test, windows={"early": {"x": READ_AT + 1, "mask": READ_AT + 1}})
    assert abs(windowed["early"].get("auroc") - 0.5) < 0.06  # the first 5 steps hold nothing of the label
    assert "x, mask up to step 4" in windowed["early"].detail
    assert windowed["last"].get("auroc") == whole["last"].get("auroc")  # other tasks keep the whole sequence


@pytest.mark.slow  # evaluates a model: about 1 s
def test_evaluate_fits_the_reference_on_the_window_the_model_reads(splits):
    train, test = splits
    report = kmtl.evaluate(sequence_model(), *test, batch_size=600, train_data=train)
    whole = classical_scores([EARLY], train, test)["early"].get("auroc")
    assert abs(report.references["early"]["classical"].get("auroc") - 0.5) < 0.06
    assert report.references["both"]["classical"].get("auroc") == whole  # reads the mean too: the whole sequence


@pytest.mark.parametrize("windows, fragment", [
    ({"nope": {"x": 3}}, "unknown task"),
    ({"early": {"y": 3}}, "not inputs of the data"),
    ({"early": {"x": 0}}, "positive int"),
    ({"hourly": {"x": 3}}, "per-step"),
])
def test_bad_windows_name_the_task_and_the_field(windows, fragment):
    data = sequences(8, 0)
    with pytest.raises(ValueError, match=fragment):
        classical_scores([EARLY, HOURLY], data, data, windows=windows)


# === compare and evaluate fit the same references ===


def subjects(days, seed):
    """Each of 12 subjects has its own level; y = level + 0.5 day + noise."""
    rng = np.random.default_rng(seed)
    level = 3.0 * np.random.default_rng(99).normal(size=12)
    subject = np.repeat(np.arange(12), len(days)).astype("int32")
    day = np.tile(np.asarray(days, "float32"), 12)[:, None]
    y = level[subject] + 0.5 * day[:, 0] + 0.3 * rng.normal(size=len(subject))
    return {"subject": subject, "day": day}, {"y": y[:, None].astype("float32")}


def mixed_effects_model(tasks):
    subject = keras.Input((), dtype="int32", name="subject")
    day = keras.Input((1,), name="day")
    random = RandomEffects(12, name="y_random")([subject, day])
    outputs = {"y": keras.layers.Add()([keras.layers.Dense(1)(day), random])}
    return kmtl.MultiTaskModel({"subject": subject, "day": day}, outputs, tasks=tasks)


@pytest.mark.slow  # trains two tiny models: about 2 s
def test_compare_one_hot_encodes_ids_as_evaluate_does():
    tasks = [kmtl.Task("y", "regression")]
    train, test = subjects(range(6), 0), subjects([6, 7], 1)
    model = mixed_effects_model(tasks)
    model.compile(optimizer="sgd", run_eagerly=True)
    assert categorical_inputs(model) == ["subject"]
    expected = kmtl.evaluate(model, *test, train_data=train).references["y"]["classical"]
    result = compare_single_task(
        mixed_effects_model, lambda m: m.compile(optimizer="sgd", run_eagerly=True), train, None, test, tasks,
        fit_kwargs={"epochs": 1, "steps_per_epoch": 1, "verbose": 0})
    row = result.rows[0]
    assert row.classical == [expected.get("mae")] and expected.get("mae") < 0.5  # the levels learned: ~ the noise
    assert "subject one-hot" in row.references["classical"][1]
