"""Tests for per-task learning rates and optimizers (`compile(task_learning_rates=..., task_optimizers=...)`)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kmtl
from kmtl import Task
from kmtl.training import MultiOptimizer

TASKS = [Task("age", "regression"), Task("smiling", "binary")]


def make_model(seed=0):
    keras.utils.set_random_seed(seed)
    x = keras.Input((4,), name="x")
    h = keras.layers.Dense(5, activation="tanh", name="shared")(x)
    return kmtl.builders.hard_sharing(x, h, TASKS, head_units=(3,))


def make_data(n=8):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, {"age": rng.normal(size=(n, 1)).astype("float32"),
               "smiling": rng.integers(0, 2, (n, 1)).astype("float32")}


def gradients(model, x, y):
    with tf.GradientTape() as tape:
        losses = model.task_losses(y, model(x, training=True))
        total = tf.reduce_sum(losses)
    return {v.path: g.numpy() for v, g in zip(model.trainable_variables, tape.gradient(total, model.trainable_variables))}


@pytest.mark.parametrize("weighting", ["equal", "pcgrad_like"])
def test_each_group_moves_at_its_own_rate(weighting):
    """Plain SGD: shared and smiling variables move by 0.1 * grad, age's own variables by 0.01 * grad."""
    x, y = make_data()
    model = make_model()
    strategy = "equal" if weighting == "equal" else _Sum()
    model.compile(optimizer=keras.optimizers.SGD(0.1), weighting=strategy, task_learning_rates={"age": 0.01})
    grads = gradients(model, x, y)
    before = {v.path: v.numpy() for v in model.trainable_variables}
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    age_own = {v.path for v in model.task_variables["age"]}
    assert age_own and len(age_own) < len(before)
    for v in model.trainable_variables:
        rate = 0.01 if v.path in age_own else 0.1
        np.testing.assert_allclose(v.numpy(), before[v.path] - rate * grads[v.path], atol=1e-6)


class _Sum(kmtl.weighting.GradientWeighting):
    def aggregate(self, grads, losses):
        return keras.ops.sum(grads, axis=0), keras.ops.ones_like(losses)


def test_task_optimizers_and_save_load_round_trip(tmp_path):
    x, y = make_data()
    model = make_model()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        weighting="uncertainty",
        task_learning_rates={"age": 1e-3},
        task_optimizers={"smiling": keras.optimizers.SGD(0.05, momentum=0.9)},
    )
    assert isinstance(model.optimizer, MultiOptimizer)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded.optimizer, MultiOptimizer)
    assert float(loaded.optimizer.optimizers["age"].learning_rate) == pytest.approx(1e-3)
    assert isinstance(loaded.optimizer.optimizers["smiling"], keras.optimizers.SGD)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    # The next step is the same: the slots of every optimizer came back.
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"task_learning_rates": {"height": 0.1}}, r"unknown task\(s\) \['height'\]"),
        ({"task_optimizers": {"height": "sgd"}}, r"unknown task\(s\) \['height'\]"),
        ({"task_learning_rates": {"age": 0.0}}, "Invalid learning rate for task 'age'"),
        ({"task_learning_rates": {"age": 0.1}, "task_optimizers": {"age": "sgd"}}, "both"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_model().compile(optimizer="adam", **kwargs)


def test_without_task_rates_the_optimizer_is_unchanged():
    model = make_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    assert isinstance(model.optimizer, keras.optimizers.Adam)


@pytest.mark.parametrize("weighting", ["equal", "pcgrad_like"])
def test_global_clipnorm_clips_all_groups_together(weighting):
    """`SGD(0.1, global_clipnorm=1)` moves all variables by at most 0.1 in total, with task rates as without."""
    x, y = make_data()
    y = {"age": 1000.0 * y["age"], "smiling": y["smiling"]}  # gradients far above the clip norm
    updates = []
    for rates in (None, {"age": 0.1, "smiling": 0.1}):
        model = make_model()
        strategy = "equal" if weighting == "equal" else _Sum()
        model.compile(optimizer=keras.optimizers.SGD(0.1, global_clipnorm=1.0), weighting=strategy,
                      task_learning_rates=rates)
        before = [v.numpy() for v in model.trainable_variables]
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
        updates.append(np.concatenate([(v.numpy() - b).ravel() for v, b in zip(model.trainable_variables, before)]))
    assert np.linalg.norm(updates[0]) == pytest.approx(0.1, rel=1e-5)
    np.testing.assert_allclose(updates[1], updates[0], atol=1e-7)
