"""Bad data is refused before it trains: per-batch label checks, non-finite inputs, sample weights, empty data.

Each test notes what happened before the checks (issue 10, "Trust the core").
"""

import functools

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from tiny import tiny_data, tiny_model

import kmtl
from kmtl import Task

TASKS = [
    Task("smiling", "binary"),
    Task("hair", "multiclass", num_classes=3),
    Task("attrs", "multilabel", num_labels=2),
    Task("age", "regression"),
]
ROWS, BATCH = 16, 4  # four batches; row 13 is in the last one


# Every kind of task on a 3-feature input with a ReLU trunk (oneDNN's ReLU maps a NaN input to 0), compiled with
# SGD(0.1) and without XLA unless a test asks.
make_model = functools.partial(tiny_model, tasks=TASKS, input_dim=3, trunk_units=4, activation="relu", head_units=(),
                               jit_compile=False)


def make_arrays():
    x, y = tiny_data(TASKS, n=ROWS, input_dim=3, seed=0)
    y["smiling"] = y["smiling"].astype("float32")  # so that a test may plant a NaN
    # Missing markers in every task, which the checks must accept.
    y["smiling"][1], y["hair"][2], y["attrs"][3, 0], y["age"][4] = -1, -1, -1, np.nan
    return x, y


def dataset(x, y):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)


def with_bad_label(task, value, row=13):
    x, y = make_arrays()
    y[task][row] = value
    return x, y


BAD_LABELS = [
    ("smiling", 5.0, r"Task 'smiling' \(binary\) expects labels in \[0, 1\] \(or the missing marker -1\)\. "
                     r"Received: 5\.$"),
    ("hair", 7, r"Task 'hair' \(multiclass\) expects class ids in 0\.\.2 \(or the missing marker -1\)\. Received: 7\.$"),
    ("attrs", 2, r"Task 'attrs' \(multilabel\) expects entries in \[0, 1\] \(or the missing marker -1\)\. "
                 r"Received: 2\.$"),
    ("age", np.inf, r"Task 'age' \(regression\) expects finite values \(or the missing marker nan\)\. Received: inf\.$"),
    ("smiling", np.nan, r"Task 'smiling' \(binary\) .* Received: nan\.$"),
]


def assert_trained_on_first_batches(model, x, y, batches):
    """The model's weights equal those of a fresh model trained on the first `batches` batches only."""
    reference = make_model()
    reference.fit(dataset(x, y).take(batches), epochs=1, verbose=0)
    for trained, expected in zip(model.trainable_variables, reference.trainable_variables):
        np.testing.assert_array_equal(trained.numpy(), expected.numpy())


# === Labels, every batch of a tf.data.Dataset ===


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("task, value, match", BAD_LABELS)
@pytest.mark.slow  # trains, exports or starts a process: several seconds on 2 cores
def test_a_bad_label_in_the_last_batch_is_refused_before_that_batch_trains(jit_compile, task, value, match):
    # Before: a binary 5 trained silently; a class id 7 gave "InvalidArgumentError: Graph execution error" without
    # the task's name (jit off) or a NaN loss (jit on); only the first batch was checked.
    x, y = with_bad_label(task, value)
    model = make_model(jit_compile=jit_compile)
    with pytest.raises(ValueError, match=r"^Invalid data in batch 3 of the training data: " + match):
        model.fit(dataset(x, y), epochs=1, verbose=0)
    if not jit_compile:
        x[13] = 0.0
        y[task][13] = 0
        assert_trained_on_first_batches(model, x, y, 3)


def test_valid_labels_with_missing_markers_train_under_the_checks():
    x, y = make_arrays()
    history = make_model(jit_compile=True).fit(dataset(x, y), epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()


def test_a_fractional_class_id_is_refused():
    x, y = make_arrays()
    y["hair"] = y["hair"].astype("float32")
    y["hair"][14] = 1.5
    with pytest.raises(ValueError, match=r"batch 3 of the training data: Task 'hair' .* Received: 1\.5\.$"):
        make_model().fit(dataset(x, y), epochs=1, verbose=0)


def test_a_custom_missing_marker_is_accepted_and_the_default_one_refused():
    tasks = [Task("hair", "multiclass", num_classes=3, missing=-7)]
    x, y = make_arrays()
    y = {"hair": y["hair"]}
    y["hair"][[2, 13]] = -7
    make_model(tasks=tasks).fit(dataset(x, y), epochs=1, verbose=0)
    y["hair"][13] = -1
    with pytest.raises(ValueError, match=r"Task 'hair' \(multiclass\) expects class ids in 0\.\.2 \(or the missing "
                                         r"marker -7\)\. Received: -1\.$"):
        make_model(tasks=tasks).fit(dataset(x, y), epochs=1, verbose=0)


def test_validation_data_batches_are_checked():
    # Before: only the first validation batch was checked; a class id 7 later failed inside the graph.
    x, y = make_arrays()
    bad_x, bad_y = with_bad_label("hair", 7)
    with pytest.raises(ValueError, match=r"^Invalid data in batch 3 of validation_data: Task 'hair'"):
        make_model().fit(dataset(x, y), validation_data=dataset(bad_x, bad_y), epochs=1, verbose=0)


def test_evaluate_checks_every_batch():
    x, y = with_bad_label("smiling", 3.0)
    with pytest.raises(ValueError, match=r"^Invalid data in batch 3 of the evaluation data: Task 'smiling'"):
        make_model().evaluate(dataset(x, y), verbose=0)


@pytest.mark.slow  # trains, exports or starts a process: several seconds on 2 cores
def test_the_gradient_level_train_step_is_covered():
    x, y = with_bad_label("hair", 7)
    with pytest.raises(ValueError, match=r"batch 3 of the training data: Task 'hair'"):
        make_model(weighting="pcgrad").fit(dataset(x, y), epochs=1, verbose=0)


def test_per_step_labels_are_checked_in_every_batch():
    tasks = [Task("tags", "multiclass", num_classes=3, per_step=True)]
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 2), name="seq")
    features = keras.layers.Dense(4, activation="relu")(inputs)
    model = kmtl.MultiTaskModel(inputs, {"tags": kmtl.heads.task_head(tasks[0], features)}, tasks=tasks)
    model.compile(optimizer="sgd")
    x = np.zeros((8, 5, 2), "float32")
    labels = np.zeros((8, 5), "int32")
    labels[:, 4] = -1  # padded steps
    labels[6, 2] = 3
    with pytest.raises(ValueError, match=r"batch 1 of the training data: Task 'tags' \(multiclass\) .* Received: 3\.$"):
        model.fit(tf.data.Dataset.from_tensor_slices((x, {"tags": labels})).batch(4), epochs=1, verbose=0)


@pytest.mark.slow  # a MirroredStrategy fit with the per-batch checks: ~20 s on 2 cores
def test_checks_work_under_mirrored_strategy(mirrored_strategy):
    x, y = with_bad_label("hair", 7)
    with mirrored_strategy.scope():
        model = make_model()
    with pytest.raises(ValueError, match=r"batch 3 of the training data: Task 'hair' .* Received: 7\.$"):
        model.fit(dataset(x, y), epochs=1, verbose=0)


# === Python generators and PyDataset ===


def test_generator_batches_are_checked():
    # Before: generators were not checked at all; a class id 7 failed inside the graph without the task's name.
    x, y = with_bad_label("hair", 7)

    def batches():
        for start in range(0, ROWS, BATCH):
            yield x[start : start + BATCH], {k: v[start : start + BATCH] for k, v in y.items()}

    with pytest.raises(ValueError, match=r"^Invalid data in batch 3 of the training data: Task 'hair': labels contain "
                                         r"\[7\.0\]; expected class ids in 0\.\.2 or -1 for a missing label\.$"):
        make_model().fit(batches(), epochs=1, verbose=0)


class Batches(keras.utils.PyDataset):
    def __init__(self, x, y, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y = x, y

    def __len__(self):
        return ROWS // BATCH

    def __getitem__(self, index):
        rows = slice(index * BATCH, (index + 1) * BATCH)
        return self.x[rows], {k: v[rows] for k, v in self.y.items()}


def test_py_dataset_batches_are_checked():
    x, y = with_bad_label("smiling", 4.0, row=6)
    with pytest.raises(ValueError, match=r"^Invalid data in batch 1 of the training data: Task 'smiling': labels "
                                         r"contain \[4\.0\]"):
        make_model().fit(Batches(x, y), epochs=1, verbose=0)
    x, y = make_arrays()
    assert len(make_model().fit(Batches(x, y), epochs=1, verbose=0).history["loss"]) == 1


# === Non-finite inputs ===


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_non_finite_numpy_feature_is_refused_naming_the_input_and_row(value):
    # Before: a NaN trained silently (oneDNN's ReLU maps it to 0; the shared kernel became NaN).
    x, y = make_arrays()
    x[5, 2] = value
    with pytest.raises(ValueError, match=rf"^Invalid training data: input 'x' holds {value} in row 5; "
                                         r"expected finite values\."):
        make_model().fit(x, y, epochs=1, verbose=0)


def test_non_finite_inputs_are_named_in_dicts_dataframes_validation_and_evaluate():
    x, y = make_arrays()
    bad = x.copy()
    bad[7, 0] = np.nan
    model = make_model()
    with pytest.raises(ValueError, match=r"^Invalid training data: input 'x' holds nan in row 7"):
        model.fit({"x": bad}, y, epochs=1, verbose=0)
    frame = pd.DataFrame(bad, columns=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"input 'x' \(column 'a'\) holds nan in row 7"):
        model.fit(frame, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"^Invalid validation_data: input 'x' holds nan in row 7"):
        model.fit(x, y, validation_data=(bad, y), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"^Invalid evaluation data: input 'x' holds nan in row 7"):
        model.evaluate(bad, y, verbose=0)


# === Sample weights, label containers, empty data ===


@pytest.mark.parametrize(
    "sample_weight, match",
    [
        ({"agee": np.ones(ROWS)}, r"`sample_weight` names unknown task\(s\) \['agee'\]\. Valid task names: "
                                  r"\['smiling', 'hair', 'attrs', 'age'\]\."),
        ({"age": np.ones(ROWS)}, r"`sample_weight` has no entry for task\(s\) \['smiling', 'hair', 'attrs'\]"),
        (np.ones(ROWS - 1), r"`sample_weight` must have one weight per example \(16 rows\)\. Received shape \(15,\)"),
        (np.r_[np.ones(ROWS - 1), -1.0], r"`sample_weight` must be finite and >= 0\. Received: \[-1\.0\]"),
    ],
)
def test_bad_sample_weights_are_refused(sample_weight, match):
    # Before: an unknown key gave Keras's "one `sample_weight` array per output" with a dump of every array.
    x, y = make_arrays()
    with pytest.raises(ValueError, match=r"^Invalid training data: " + match):
        make_model().fit(x, y, sample_weight=sample_weight, epochs=1, verbose=0)


def test_sample_weight_keys_of_a_dataset_are_checked():
    x, y = make_arrays()
    data = tf.data.Dataset.from_tensor_slices((x, y, {"agee": np.ones(ROWS, "float32")})).batch(BATCH)
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['agee'\]"):
        make_model().fit(data, epochs=1, verbose=0)


def test_labels_given_as_a_python_list_are_refused():
    # Before: Keras's "Unrecognized data type: x=..." with the whole input array printed.
    x, y = make_arrays()
    y["age"] = y["age"].ravel().tolist()
    with pytest.raises(ValueError, match=r"^Invalid training data: Task 'age': labels must be an array \(numpy, "
                                         r"pandas or a tensor\) with one row per example\. Received: a Python list "
                                         r"of 16 items"):
        make_model().fit(x, y, epochs=1, verbose=0)


@pytest.mark.parametrize(
    "make_empty",
    [lambda d: d.take(0), lambda d: d.filter(lambda x, y: False)],  # known and unknown cardinality
    ids=["take0", "filter"],
)
def test_an_empty_dataset_is_refused(make_empty):
    # Before: Keras warned "Your input ran out of data" and fit returned an empty history.
    x, y = make_arrays()
    with pytest.raises(ValueError, match=r"^Invalid training data: the dataset is empty: it yields no batches\."):
        make_model().fit(make_empty(dataset(x, y)), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"^Invalid validation_data: the dataset is empty"):
        make_model().fit(dataset(x, y), validation_data=make_empty(dataset(x, y)), epochs=1, verbose=0)


def test_empty_arrays_are_refused():
    x, y = make_arrays()
    with pytest.raises(ValueError, match=r"^Invalid training data: the inputs have 0 rows; expected at least one"):
        make_model().fit(x[:0], {k: v[:0] for k, v in y.items()}, epochs=1, verbose=0)
