"""`TaskNaNGuard`: training stops at the batch where a task's loss turns NaN or infinite, and names that task."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops
from tiny import tiny_data, tiny_model

import kmtl
from kmtl.training import TaskNaNGuard
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
    # A dataset: kmtl checks its labels batch by batch as they are read.
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


def test_on_nan_raise_raises_naming_the_task():
    guard = TaskNaNGuard(on_nan="raise")
    model = make_model()
    with pytest.raises(FloatingPointError, match=r"epoch 0, batch 2: task 'b' \(nan\)"):
        model.fit(make_data(nan_rows={"b": 9}), epochs=1, verbose=0, shuffle=False, callbacks=[guard])
    assert (guard.batch, guard.nan_tasks) == (2, ["b"])
    assert int(model.optimizer.iterations.numpy()) == 3


def test_an_infinite_regression_label_in_a_later_batch_is_refused_before_that_batch_trains():
    # Before: the first batch only was checked, and the guard reported task 'a' after batch 3 had trained.
    model = make_model()
    with pytest.raises(ValueError, match=r"batch 3 of the training data: Task 'a' \(regression\) expects finite "
                       r"values \(or the missing marker nan\)\. Received: inf\.$"):
        model.fit(make_data(inf_label_row=13), epochs=1, verbose=0, shuffle=False)
    reference = make_model()
    reference.fit(make_data().take(3), epochs=1, verbose=0, shuffle=False)
    # The weights are those after batches 0-2. (`optimizer.iterations` reads 4: TensorFlow runs its increment,
    # which needs no data, before the failed fetch stops the step.)
    for trained, expected in zip(model.trainable_variables, reference.trainable_variables):
        np.testing.assert_array_equal(trained.numpy(), expected.numpy())


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


def test_the_default_guard_reports_nan_weights_by_the_end_of_the_epoch_at_the_latest():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, 3)).astype("float32")
    x[9, 1] = np.nan
    y = {"a": rng.normal(size=(ROWS, 1)).astype("float32"), "b": rng.integers(0, 2, (ROWS, 1)).astype("float32")}
    model = relu_model()
    with pytest.warns(RuntimeWarning, match=r"Weights became NaN or infinite at epoch 0, (batch|one of batches \d-)"):
        history = model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH), epochs=3, verbose=0)
    assert len(history.history["loss"]) == 1


@pytest.mark.parametrize("value", [0, -1, 1.5, "often"])
def test_invalid_check_weights(value):
    with pytest.raises(ValueError, match=f"check_weights={value!r}"):
        TaskNaNGuard(check_weights=value)


def test_invalid_on_nan():
    with pytest.raises(ValueError, match="on_nan='ignore'"):
        TaskNaNGuard(on_nan="ignore")


def relu_model():
    return tiny_model(tasks=TASKS[:2], input_dim=3, trunk_units=4, activation="relu", head_units=())


def test_weights_turned_nan_by_a_nan_input_are_caught_though_the_losses_stay_finite():
    # oneDNN's ReLU maps NaN to 0: a NaN input makes the shared kernel NaN, yet every loss stays finite.
    # Before: training ran on silently, the heads outputting constants.
    x, y = tiny_data(TASKS[:2], n=ROWS, input_dim=3, seed=0)
    x[9, 1] = np.nan  # batch 2
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    unguarded, model = BatchLogs(), relu_model()
    model.fit(data, epochs=1, verbose=0, shuffle=False, callbacks=[unguarded], nan_guard=False)
    assert all(np.isfinite(step["loss"]) for step in unguarded.logs)
    assert np.isnan(model.get_layer("trunk").kernel.numpy()).any()

    guard = TaskNaNGuard(on_nan="raise", check_weights=1)
    with pytest.raises(FloatingPointError, match=r"Weights became NaN or infinite at epoch 0, batch 2, while every "
                       r"task loss stayed finite: 'trunk/kernel' \(shared\)\. The likely cause is a NaN or infinite "
                       r"value in the inputs"):
        relu_model().fit(data, epochs=1, verbose=0, shuffle=False, callbacks=[guard])
    assert (guard.batch, guard.nan_variables) == (2, ["trunk/kernel"])


def test_weights_are_checked_less_often_when_the_check_costs_more_than_its_share_of_a_step():
    guard = TaskNaNGuard(on_nan="raise")
    make_model().fit(make_data(), epochs=2, verbose=0, shuffle=False, callbacks=[guard])
    check = guard._weights_check
    assert check.every >= 1 and check.checked_at == 5  # epoch end checks the last batch


def test_a_task_without_labels_for_a_whole_epoch_is_named():
    # Before: the task trained with loss 0 and no word.
    data = make_data()
    x, y = next(iter(data.unbatch().batch(ROWS)))
    y = {k: v.numpy() for k, v in y.items()}
    y["c"][:] = -1
    guard = TaskNaNGuard()
    with pytest.warns(UserWarning, match=r"Task 'c' had no labels in validation_data in epoch 0"), \
            pytest.warns(UserWarning, match=r"Task 'c' had no labels in the training data in epoch 0: its loss was "
                         r"exactly 0 at every batch, as when every label is the task's missing marker \(-1\)"):
        make_model().fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[guard],
                         validation_data=(x, y))
    assert guard.unlabelled_tasks == ["c", "val_c"]  # warned once each, not every epoch


@keras.saving.register_keras_serializable(package="kmtl_tests")
class DropsNonFinite(Weighting):
    """A strategy that keeps a non-finite task loss out of the total (its weight formed with `where`)."""

    def combine(self, losses, training=True):
        weights = ops.where(ops.isfinite(losses), ops.ones_like(losses), ops.zeros_like(losses))
        return ops.sum(ops.where(weights > 0, losses, ops.zeros_like(losses))), weights


@pytest.mark.slow
@pytest.mark.parametrize("every, where", [(1, r"batch 2"), (3, r"one of batches 0-2 \(checked every few batches\)")])
def test_a_task_loss_kept_out_of_the_total_is_found_at_the_next_check(every, where):
    # The total stays finite, so the guard reads the task losses with its weights check: at the batch when it
    # checks every batch, else within the batches since the last check.
    model = make_model()
    model.compile(optimizer=keras.optimizers.SGD(0.1), weighting=DropsNonFinite())
    guard = TaskNaNGuard(on_nan="raise", check_weights=every)
    with pytest.raises(FloatingPointError, match=rf"epoch 0, {where}: task 'b' \(nan\)"):
        model.fit(make_data(nan_rows={"b": 9}), epochs=1, verbose=0, shuffle=False, callbacks=[guard])
    assert guard.nan_tasks == ["b"]
