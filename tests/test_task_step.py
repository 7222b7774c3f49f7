"""Tests for the gradient-level train step: loop vs jacobian, rep-grad, tf.distribute, mixed precision, and the
epoch hook of strategies."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import kmtl
from kmtl import Task
from kmtl.weighting import GradientWeighting, Weighting

TASKS = [Task("a", "regression"), Task("b", "binary"), Task("c", "multiclass", num_classes=3)]


@keras.saving.register_keras_serializable(package="kmtl_tests")
class SumOfUnit(GradientWeighting):
    """A nonlinear aggregator: the sum of unit task gradients (aggregating per replica would differ)."""

    def aggregate(self, grads, losses):
        norms = ops.sqrt(ops.sum(grads * grads, axis=1)) + 1e-12
        return ops.sum(grads / norms[:, None], axis=0), 1.0 / norms


@keras.saving.register_keras_serializable(package="kmtl_tests")
class PlainSum(GradientWeighting):
    def aggregate(self, grads, losses):
        return ops.sum(grads, axis=0), ops.ones_like(losses)


@keras.saving.register_keras_serializable(package="kmtl_tests")
class SqrtSum(Weighting):
    """A nonlinear loss-level strategy: sum of square roots of the task losses."""

    def combine(self, losses, training=True):
        return ops.sum(ops.sqrt(losses + 1e-6)), 0.5 / ops.sqrt(losses + 1e-6)


def make_model(seed=0, tasks=TASKS):
    keras.utils.set_random_seed(seed)
    x = keras.Input((5,), name="x")
    h = keras.layers.Dense(6, activation="tanh", name="shared1")(x)
    h = keras.layers.Dense(4, activation="tanh", name="shared2")(h)
    return kmtl.builders.hard_sharing(x, h, tasks, head_units=(3,))


def make_data(n=8, seed=1, missing=True):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype("float32")
    y = {
        "a": rng.normal(size=(n, 1)).astype("float32"),
        "b": rng.integers(0, 2, size=(n, 1)).astype("float32"),
        "c": rng.integers(0, 3, size=(n,)).astype("int32"),
    }
    if missing:
        # Uneven across the two halves of the batch (the two replicas' shares).
        y["a"][[0, 1, 2]] = np.nan
        y["b"][[5]] = -1
    return x, y


def weights_after_step(model, x, y, optimizer=None, batch_size=8):
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    return [v.numpy() for v in model.weights]


def compiled(strategy, seed=0, **kwargs):
    model = make_model(seed)
    model.compile(optimizer=keras.optimizers.SGD(0.1), weighting=strategy, **kwargs)
    return model


# === Per-task gradients: loop and jacobian agree ===


def test_loop_and_jacobian_give_the_same_step():
    x, y = make_data()
    loop = weights_after_step(compiled(SumOfUnit(), gradient_method="loop"), x, y)
    jac = weights_after_step(compiled(SumOfUnit(), gradient_method="jacobian"), x, y)
    for a, b in zip(loop, jac):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_plain_sum_equals_loss_level_equal_weighting():
    x, y = make_data()
    grad_level = weights_after_step(compiled(PlainSum()), x, y)
    loss_level = weights_after_step(compiled("equal"), x, y)
    for a, b in zip(grad_level, loss_level):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_invalid_gradient_method():
    with pytest.raises(ValueError, match="gradient_method"):
        make_model().compile(weighting=SumOfUnit(), gradient_method="vmap")


# === Gradients of the shared representation ===


@pytest.mark.slow  # trains, exports or starts a process: several seconds on 2 cores
def test_rep_grad_with_plain_sum_equals_parameter_gradients():
    x, y = make_data()
    rep = weights_after_step(compiled(PlainSum(rep_grad=True)), x, y)
    par = weights_after_step(compiled(PlainSum()), x, y)
    for a, b in zip(rep, par):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_rep_grad_weights_come_from_representation_gradients():
    """SumOfUnit on rep-grads: shared parameters move along sum_t (1/||dL_t/dz||) dL_t/dtheta."""
    x, y = make_data(missing=False)
    model = compiled(SumOfUnit(rep_grad=True))
    reference = make_model()
    trunk = keras.Model(reference.input, reference.get_layer("shared2").output)
    heads = keras.Model(reference.get_layer("shared2").output, reference.output)
    reference.compile(optimizer="sgd", weighting="equal")
    before = [v.numpy() for v in reference.trainable_variables]
    with tf.GradientTape(persistent=True) as tape:
        z = trunk(x, training=True)
        y_pred = heads(z, training=True)
        losses = reference.task_losses(y, y_pred)
        task_losses = [losses[i] for i in range(3)]
    shared = reference.shared_variables
    expected = {}
    for loss in task_losses:
        g_z = tape.gradient(loss, z)
        weight = 1.0 / np.linalg.norm(g_z.numpy())
        for v, g in zip(shared, tape.gradient(loss, shared)):
            expected[v.path] = expected.get(v.path, 0) + weight * g.numpy()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    for v, v0 in zip(model.trainable_variables, before):
        if v.path in expected:
            np.testing.assert_allclose(v.numpy(), v0 - 0.1 * expected[v.path], atol=1e-5)


def test_rep_grad_refused_by_a_strategy_that_does_not_support_it():
    class NoRep(SumOfUnit):
        supports_rep_grad = False
        rep_grad_refusal = "its state is per parameter."

    with pytest.raises(ValueError, match="does not support `rep_grad=True`: its state is per parameter"):
        NoRep(rep_grad=True)


def test_rep_grad_needs_a_representation_used_once():
    x = keras.Input((5,), name="x")
    dense = keras.layers.Dense(4, name="shared")
    h1, h2 = dense(x), dense(keras.layers.Dense(5, name="pre")(x))  # "shared" is called twice
    tasks = TASKS[:2]
    outputs = {"a": keras.layers.Dense(1, name="a")(h1), "b": keras.layers.Dense(1, activation="sigmoid", name="b")(
        keras.layers.Concatenate()([h1, h2]))}
    model = kmtl.MultiTaskModel(x, outputs, tasks=tasks)
    model.compile(optimizer="sgd", weighting=PlainSum(rep_grad=True))
    xx, yy = make_data()
    with pytest.raises(ValueError, match="called once"):
        model.fit(xx, {k: yy[k] for k in ("a", "b")}, epochs=1, verbose=0)


# === tf.distribute: reduce, then aggregate ===


@pytest.mark.slow  # trains and restores or runs two replicas: several seconds on 2 cores
@pytest.mark.parametrize(
    "strategy_factory",
    [
        SumOfUnit,
        pytest.param(lambda: SumOfUnit(rep_grad=True), marks=pytest.mark.slow),
        pytest.param(SqrtSum, marks=pytest.mark.slow),
        pytest.param(lambda: "uncertainty", marks=pytest.mark.slow),
    ],
    ids=["gradient-level", "rep-grad", "nonlinear-loss-level", "uncertainty"],
)
def test_mirrored_strategy_matches_one_device(mirrored_strategy, strategy_factory):
    """Two replicas with uneven missing labels make the same update as one device on the same global batch."""
    x, y = make_data(n=8)
    single = compiled(strategy_factory())
    expected = weights_after_step(single, x, y)
    with mirrored_strategy.scope():
        mirrored = compiled(strategy_factory())
    got = weights_after_step(mirrored, x, y)
    for a, b in zip(expected, got):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # The logged losses are the global batch's, too.
    logs_single = single.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    logs_mirrored = mirrored.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    for task in ("a", "b", "c"):
        assert logs_mirrored[f"{task}_loss"] == pytest.approx(logs_single[f"{task}_loss"], abs=1e-5)


# === Mixed precision ===


@pytest.fixture
def mixed_precision():
    keras.config.set_dtype_policy("mixed_float16")
    yield
    keras.config.set_dtype_policy("float32")


def test_mixed_precision_gradient_level_step_matches_float32(mixed_precision):
    x, y = make_data(missing=False)
    model = compiled(SumOfUnit())
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    mixed = weights_after_step(model, x, y)
    keras.config.set_dtype_policy("float32")
    full = weights_after_step(compiled(SumOfUnit()), x, y)
    for a, b in zip(mixed, full):
        # float16 activations: agreement to float16 precision, not float32's.
        np.testing.assert_allclose(np.asarray(a, "float32"), b, atol=2e-3)


def test_mixed_precision_overflow_skips_the_step_and_lowers_the_scale(mixed_precision):
    x, y = make_data(missing=False)
    model = make_model()
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1), initial_scale=1e30)
    model.compile(optimizer=optimizer, weighting=SumOfUnit())
    before = [v.numpy() for v in model.trainable_variables]
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    for a, b in zip(before, model.trainable_variables):
        np.testing.assert_array_equal(a, b.numpy())
    assert float(optimizer.dynamic_scale.numpy()) == pytest.approx(0.5e30, rel=1e-3)


# === Epoch hook ===


@keras.saving.register_keras_serializable(package="kmtl_tests")
class CountEpochs(Weighting):
    def create_state(self, num_tasks):
        self.epochs = self.add_weight(shape=(), initializer="zeros", trainable=False, name="epochs")

    def combine(self, losses, training=True):
        return ops.sum(losses), ops.ones_like(losses)

    def on_epoch_end(self):
        self.epochs.assign_add(1.0)


def test_fit_calls_the_strategy_after_each_epoch():
    x, y = make_data()
    model = compiled(CountEpochs())
    model.fit(x, y, batch_size=4, epochs=3, verbose=0)
    assert float(model.weighting.epochs.numpy()) == 3.0
    model.fit(x, y, 4, 2, 0, [])  # callbacks given positionally
    assert float(model.weighting.epochs.numpy()) == 5.0


# === Compile arguments ===


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"loss": "mse"}, r"`loss` must be a dict \{task_name: loss\}.*Task\(loss=\.\.\.\)\. Received: loss='mse'"),
        ({"loss": ["mse", "mse", "mse"]}, r"`loss` must be a dict .* Received: loss=\['mse'"),
        ({"metrics": ["mae"]}, r"`metrics` must be a dict \{task_name: \[metrics\]\}.*Task\(metrics=\.\.\.\)\. "
                               r"Received: metrics=\['mae'\]"),
        ({"metrics": {"a": "mae"}}, r"`metrics\['a'\]` must be a list of metrics\. Received: 'mae'"),
    ],
)
def test_compile_says_what_loss_and_metrics_must_be(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_model().compile(optimizer="sgd", **kwargs)


def test_gradient_level_strategy_without_shared_variables_warns():
    x = keras.Input((5,), name="x")
    outputs = {t.name: kmtl.heads.task_head(t, keras.layers.Dense(3, name=f"tower_{t.name}")(x)) for t in TASKS}
    model = kmtl.MultiTaskModel(x, outputs, tasks=TASKS)
    with pytest.warns(UserWarning, match=r"weighting='pcgrad' \(PCGrad\) is gradient-level, but the model has no "
                                         r"shared variables"):
        model.compile(optimizer="sgd", weighting="pcgrad")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.compile(optimizer="sgd", weighting="uncertainty")
        make_model().compile(optimizer="sgd", weighting="pcgrad")
