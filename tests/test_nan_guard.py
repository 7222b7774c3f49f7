"""`TaskNaNGuard`: training stops at the batch where a task's loss turns NaN or infinite, and names that task."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import kmtl
from kmtl.training.nan_guard import TaskNaNGuard
from kmtl.weighting import Weighting

TASKS = [kmtl.Task("a", "regression"), kmtl.Task("b", "binary"), kmtl.Task("c", "multiclass", num_classes=3)]
ROWS, BATCH = 24, 4


def make_model():
    """A shared trunk on `x`; tasks b and c also read an input of their own (`only_b`, `only_c`)."""
    keras.utils.set_random_seed(0)
    x = keras.Input((3,), name="x")
    only = {name: keras.Input((2,), name=f"only_{name}") for name in ("b", "c")}
    trunk = keras.layers.Dense(4, activation="tanh", name="shared")(x)
    outputs = {"a": kmtl.heads.task_head(TASKS[0], trunk)}
    for task in TASKS[1:]:
        features = keras.layers.Concatenate(name=f"{task.name}_features")([trunk, only[task.name]])
        outputs[task.name] = kmtl.heads.task_head(task, features)
    model = kmtl.MultiTaskModel({"x": x, **{f"only_{k}": v for k, v in only.items()}}, outputs, tasks=TASKS)
    model.compile(optimizer=keras.optimizers.SGD(0.1), weighting="equal")
    return model


def make_data(nan_rows=None, inf_label_row=None):
    """`nan_rows`: {task: row} puts NaN in that task's own input at that row (batch row // 4)."""
    rng = np.random.default_rng(0)
    x = {"x": rng.normal(size=(ROWS, 3)).astype("float32"),
         "only_b": rng.normal(size=(ROWS, 2)).astype("float32"),
         "only_c": rng.normal(size=(ROWS, 2)).astype("float32")}
    y = {"a": rng.normal(size=(ROWS, 1)).astype("float32"),
         "b": rng.integers(0, 2, size=(ROWS, 1)).astype("float32"),
         "c": rng.integers(0, 3, size=(ROWS,)).astype("int32")}
    for task, row in (nan_rows or {}).items():
        x[f"only_{task}"][row] = np.nan
    if inf_label_row is not None:
        y["a"][inf_label_row] = np.inf
    # A dataset: kmtl checks the labels of its first batch only, so a bad label in a later batch reaches training.
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)


class BatchLogs(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.logs = []

    def on_train_batch_end(self, batch, logs=None):
        self.logs.append(dict(logs))


def test_stops_at_the_batch_where_one_task_went_nan_and_names_it():
    data = make_data(nan_rows={"b": 9})  # row 9: batch 2

    # Without the guard: at batch 2 only b's loss is NaN; one update later every task's is (shared layers).
    unguarded = BatchLogs()
    make_model().fit(data, epochs=1, verbose=0, shuffle=False, callbacks=[unguarded], nan_guard=False)
    finite = [[np.isfinite(step[f"{t}_loss"]) for t in "abc"] for step in unguarded.logs]
    assert finite[:4] == [[True, True, True], [True, True, True], [True, False, True], [False, False, False]]

    guard, seen = TaskNaNGuard(), BatchLogs()
    model = make_model()
    with pytest.warns(RuntimeWarning, match=r"epoch 0, batch 2: task 'b' \(nan\)"):
        history = model.fit(data, epochs=3, verbose=0, shuffle=False, callbacks=[seen, guard])
    assert (guard.epoch, guard.batch, guard.nan_tasks) == (0, 2, ["b"])
    assert len(seen.logs) == 3 and int(model.optimizer.iterations.numpy()) == 3  # no step after batch 2
    assert len(history.history["loss"]) == 1  # and no further epoch


def test_fit_adds_a_guard_by_default():
    model = make_model()
    with pytest.warns(RuntimeWarning, match=r"epoch 0, batch 2: task 'b' \(nan\)"):
        model.fit(make_data(nan_rows={"b": 9}), epochs=2, verbose=0, shuffle=False)
    assert int(model.optimizer.iterations.numpy()) == 3


def test_tasks_that_go_at_the_same_batch_are_listed_in_task_order():
    guard = TaskNaNGuard()
    with pytest.warns(RuntimeWarning, match=r"batch 1: tasks 'b' \(nan\), 'c' \(nan\)"):
        make_model().fit(make_data(nan_rows={"c": 4, "b": 7}), epochs=1, verbose=0, shuffle=False, callbacks=[guard])
    assert (guard.batch, guard.nan_tasks) == (1, ["b", "c"])


def test_an_infinite_regression_label_raises_naming_the_task():
    guard = TaskNaNGuard(on_nan="raise")
    model = make_model()
    with pytest.raises(FloatingPointError, match=r"epoch 0, batch 3: task 'a' \(inf\)"):
        model.fit(make_data(inf_label_row=13), epochs=1, verbose=0, shuffle=False, callbacks=[guard])
    assert (guard.batch, guard.nan_tasks) == (3, ["a"])
    assert int(model.optimizer.iterations.numpy()) == 4


@keras.saving.register_keras_serializable(package="kmtl_tests")
class NaNCombination(Weighting):
    """A broken strategy: finite task losses, NaN total."""

    def combine(self, losses, training=True):
        return ops.sum(losses) * float("nan"), ops.ones_like(losses)


def test_a_nan_total_with_finite_task_losses_blames_the_combination():
    model = make_model()
    model.compile(optimizer=keras.optimizers.SGD(0.1), weighting=NaNCombination())
    guard = TaskNaNGuard(on_nan="raise")
    with pytest.raises(FloatingPointError, match="batch 0, but every task loss is finite"):
        model.fit(make_data(), epochs=1, verbose=0, shuffle=False, callbacks=[guard])
    assert guard.nan_tasks == []


def test_finite_training_is_left_alone():
    guard = TaskNaNGuard(on_nan="raise")
    history = make_model().fit(make_data(), epochs=2, verbose=0, shuffle=False, callbacks=[guard])
    assert len(history.history["loss"]) == 2 and guard.message is None


def test_invalid_on_nan():
    with pytest.raises(ValueError, match="on_nan='ignore'"):
        TaskNaNGuard(on_nan="ignore")
