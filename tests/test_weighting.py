"""Tests for kmtl.weighting: closed forms of loss-level strategies, `get`, configs, uncertainty convergence and the
gradient-level interface inside a model."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops
from tiny import tiny_data, tiny_model

import kmtl
from kmtl import Task
from kmtl.weighting import Equal, GradientWeighting, Static, Uncertainty, Weighting

TASKS = [
    Task("age", "regression", loss_weight=0.1),
    Task("smiling", "binary", loss_weight=2.0),
    Task("hair", "multiclass", num_classes=3, loss_weight=0.0),
    Task("pose", "regression", units=2, loss_weight=1.5),
]
LOSSES = np.array([2.0, 0.5, 3.0, 0.25], "float32")


def configured(strategy, tasks=TASKS):
    strategy.configure(tasks)
    return strategy


def combine(strategy, losses=LOSSES):
    total, weights = strategy.combine(ops.convert_to_tensor(losses))
    return float(total), ops.convert_to_numpy(weights)


# === Closed forms ===


def test_equal():
    total, weights = combine(configured(Equal()))
    assert total == pytest.approx(2.0 + 0.5 + 3.0 + 0.25, abs=1e-6)
    np.testing.assert_array_equal(weights, [1.0, 1.0, 1.0, 1.0])


def test_static():
    total, weights = combine(configured(Static()))
    assert total == pytest.approx(0.1 * 2.0 + 2.0 * 0.5 + 0.0 * 3.0 + 1.5 * 0.25, abs=1e-6)
    np.testing.assert_allclose(weights, [0.1, 2.0, 0.0, 1.5], atol=1e-7)


def test_uncertainty_at_initial_value():
    total, weights = combine(configured(Uncertainty(initial_log_variance=0.0)))
    assert total == pytest.approx(0.5 * 2.0 + 0.5 + 3.0 + 0.5 * 0.25, abs=1e-6)
    np.testing.assert_allclose(weights, [0.5, 1.0, 1.0, 0.5], atol=1e-7)


def test_uncertainty_closed_form():
    strategy = configured(Uncertainty())
    s = np.array([0.3, -0.7, 1.2, -2.0])
    strategy.log_variance.assign(s.astype("float32"))
    scale = np.array([0.5, 1.0, 1.0, 0.5])  # regression, binary, multiclass, regression
    expected_weights = scale * np.exp(-s)
    expected_total = np.sum(expected_weights * LOSSES.astype(np.float64) + 0.5 * s)
    total, weights = combine(strategy)
    assert total == pytest.approx(expected_total, rel=1e-6)
    np.testing.assert_allclose(weights, expected_weights, rtol=1e-6)


def test_uncertainty_initial_log_variance():
    strategy = configured(Uncertainty(initial_log_variance=0.7))
    np.testing.assert_allclose(strategy.log_variance.numpy(), [0.7] * 4, atol=1e-7)
    assert strategy.log_variance.trainable


def test_uncertainty_gradient_closed_form():
    strategy = configured(Uncertainty())
    s = np.array([0.3, -0.7, 1.2, -2.0])
    strategy.log_variance.assign(s.astype("float32"))
    with tf.GradientTape() as tape:
        total, _ = strategy.combine(tf.constant(LOSSES))
    grad = tape.gradient(total, strategy.log_variance.value).numpy()
    scale = np.array([0.5, 1.0, 1.0, 0.5])
    np.testing.assert_allclose(grad, -scale * np.exp(-s) * LOSSES + 0.5, rtol=1e-5)


# === get ===


@pytest.mark.parametrize("name, cls", [("equal", Equal), ("static", Static), ("uncertainty", Uncertainty)])
def test_get_by_name_returns_fresh_objects(name, cls):
    first, second = kmtl.weighting.get(name), kmtl.weighting.get(name)
    assert type(first) is cls and first is not second


def test_get_object_and_none():
    strategy = Uncertainty(initial_log_variance=0.3)
    assert kmtl.weighting.get(strategy) is strategy
    assert type(kmtl.weighting.get(None)) is Equal


def test_get_from_config():
    config = keras.saving.serialize_keras_object(Uncertainty(initial_log_variance=0.3))
    strategy = kmtl.weighting.get(config)
    assert type(strategy) is Uncertainty and strategy.initial_log_variance == 0.3


@pytest.mark.parametrize("identifier", ["pcgrad_typo", "Equal", 3, keras.saving.serialize_keras_object(keras.layers.Dense(1))])
def test_get_rejects_unknown(identifier):
    with pytest.raises(ValueError, match="weighting"):
        kmtl.weighting.get(identifier)


def test_get_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"Expected one of \[.*'equal'.*'pcgrad'.*'uncertainty'.*\].*pcgrad_typo"):
        kmtl.weighting.get("pcgrad_typo")


# === Config ===


@pytest.mark.parametrize(
    "strategy", [Equal(), Static(name="fixed"), Uncertainty(initial_log_variance=-0.5, name="kendall")]
)
def test_config_round_trip(strategy):
    config = strategy.get_config()
    restored = type(strategy).from_config(config)
    assert restored.get_config() == config
    deserialized = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(strategy))
    assert type(deserialized) is type(strategy) and deserialized.get_config() == config


def test_base_classes():
    assert not Equal.gradient_level and GradientWeighting.gradient_level
    assert issubclass(GradientWeighting, Weighting)
    with pytest.raises(TypeError, match="aggregate"):
        configured(GradientWeighting()).aggregate(tf.zeros((4, 3)), tf.constant(LOSSES))
    total, weights = combine(configured(GradientWeighting()))  # evaluation: the plain sum
    assert total == pytest.approx(float(LOSSES.sum()), abs=1e-6)
    np.testing.assert_array_equal(weights, 1.0)


# === Uncertainty convergence ===


def test_uncertainty_converges_to_closed_form_optimum():
    l_reg, l_cls = 4.0, 0.5
    tasks = [Task("r", "regression"), Task("k", "binary")]
    strategy = configured(Uncertainty(initial_log_variance=1.0), tasks)
    optimizer = keras.optimizers.SGD(learning_rate=0.5)
    losses = tf.constant([l_reg, l_cls])
    for _ in range(300):
        with tf.GradientTape() as tape:
            total, _ = strategy.combine(losses)
        optimizer.apply_gradients([(tape.gradient(total, strategy.log_variance.value), strategy.log_variance)])
    s = strategy.log_variance.numpy()
    assert s[0] == pytest.approx(np.log(l_reg), abs=1e-3)  # 1.386
    assert s[1] == pytest.approx(np.log(2 * l_cls), abs=1e-3)  # 0.0


def test_log_variance_moves_during_fit():
    model = tiny_model("uncertainty", optimizer=keras.optimizers.Adam(0.05))
    x, y = tiny_data()
    before = model.weighting.log_variance.numpy().copy()
    np.testing.assert_array_equal(before, 0.0)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    after = model.weighting.log_variance.numpy()
    assert np.all(np.abs(after - before) > 1e-3)
    # Logged weights follow the learned log-variances: 0.5 exp(-s) for regression, exp(-s) otherwise.
    logs = model.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
    np.testing.assert_allclose(
        [logs["a_weight"], logs["b_weight"], logs["c_weight"]],
        [np.exp(-after[0]), 0.5 * np.exp(-after[1]), np.exp(-after[2])],
        rtol=1e-5,
    )


# === Gradient-level interface ===


class SumOfGradients(GradientWeighting):
    """Adds the rows of G: the same direction as equal weighting."""

    def aggregate(self, grads, losses):
        return ops.sum(grads, axis=0), ops.ones_like(losses)


class FirstTaskOnly(GradientWeighting):
    """Moves the shared variables along task 0's gradient only."""

    def aggregate(self, grads, losses):
        return grads[0], ops.one_hot(0, self.num_tasks)


def test_sum_of_gradients_matches_equal_weighting():
    x, y = tiny_data()
    equal = tiny_model("equal")
    custom = tiny_model(SumOfGradients())
    by_path = lambda model: {v.path: v.numpy() for v in model.trainable_variables}
    initial = by_path(equal)
    assert sorted(initial) == sorted(by_path(custom))
    for path, value in by_path(custom).items():
        np.testing.assert_array_equal(value, initial[path])  # same initial weights
    equal_logs = equal.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    custom_logs = custom.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    expected = by_path(equal)
    for path, value in by_path(custom).items():
        assert not np.allclose(expected[path], initial[path]), path  # the step moved every variable
        np.testing.assert_allclose(value, expected[path], atol=1e-5, err_msg=path)
    for key in ("loss", "a_loss", "b_loss", "c_loss"):
        assert custom_logs[key][0] == pytest.approx(equal_logs[key][0], abs=1e-5), key
    assert custom_logs["a_weight"][0] == custom_logs["b_weight"][0] == 1.0


def manual_task_losses(model, x, y):
    """Task losses written out with plain TF ops (no missing labels in the data)."""
    pred = model(x, training=True)
    p = tf.clip_by_value(pred["a"][:, 0], 1e-7, 1 - 1e-7)
    ya = tf.cast(y["a"], tf.float32)
    loss_a = -tf.reduce_mean(ya * tf.math.log(p) + (1 - ya) * tf.math.log(1 - p))
    loss_b = tf.reduce_mean(tf.square(y["b"] - pred["b"]))
    loss_c = -tf.reduce_mean(tf.math.log(tf.gather(pred["c"], y["c"], axis=1, batch_dims=1)))
    return [loss_a, loss_b, loss_c]


def test_gradient_level_direction_drives_the_shared_variables_only():
    x, y = tiny_data()
    lr = 0.1
    reference = tiny_model("equal")
    shared = reference.shared_variables
    own = reference.task_variables
    with tf.GradientTape(persistent=True) as tape:
        losses = manual_task_losses(reference, x, y)
    expected = {}
    for v, g in zip(shared, tape.gradient(losses[0], shared)):  # task 0 alone moves the trunk
        expected[v.path] = v.numpy() - lr * g.numpy()
    for i, name in enumerate(["a", "b", "c"]):  # each head moves with its own task's gradient
        for v, g in zip(own[name], tape.gradient(losses[i], own[name])):
            expected[v.path] = v.numpy() - lr * g.numpy()
    del tape
    assert len(expected) == len(reference.trainable_variables)

    model = tiny_model(FirstTaskOnly(), optimizer=keras.optimizers.SGD(learning_rate=lr))
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    for v in model.trainable_variables:
        np.testing.assert_allclose(v.numpy(), expected[v.path], atol=1e-5, err_msg=v.path)
    assert (history["a_weight"][0], history["b_weight"][0], history["c_weight"][0]) == (1.0, 0.0, 0.0)


# === One strategy object, one model ===


def two_task_model(strategy, name="two_tasks"):
    x = keras.Input((3,), name="x")
    tasks = [Task("a", "regression"), Task("b", "regression")]
    model = kmtl.builders.hard_sharing(x, keras.layers.Dense(4, name="trunk")(x), tasks, name=name)
    model.compile(optimizer="sgd", weighting=strategy)
    return model


def test_a_strategy_object_serves_one_model():
    # Before: the second compile re-created the strategy's state for 2 tasks and training the first model failed
    # with "Dimensions must be equal, but are 2 and 3".
    strategy = Uncertainty()
    first = tiny_model(strategy)
    with pytest.raises(
        ValueError,
        match=rf"This Weighting object is already used by model '{first.name}'; pass a new one \(or a name\) to each "
        r"model\. Received: weighting=<Uncertainty name=uncertainty_weighting",
    ):
        two_task_model(strategy)
    x, y = tiny_data()
    assert np.isfinite(first.fit(x, y, batch_size=8, epochs=1, verbose=0).history["loss"][0])


def test_a_strategy_object_with_equal_task_counts_is_not_shared_silently():
    strategy = kmtl.weighting.GradNorm()
    first = tiny_model(strategy)
    with pytest.raises(ValueError, match="already used by model"):
        tiny_model(strategy)
    assert first.weighting is strategy


def test_recompiling_the_same_model_with_its_strategy_works():
    strategy = kmtl.weighting.GradVac(seed=1)
    model = tiny_model(strategy)
    x, y = tiny_data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    model.compile(optimizer=keras.optimizers.SGD(0.1), weighting=strategy)
    assert model.weighting is strategy
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.all(np.isfinite(strategy.targets.numpy()))


def test_a_strategy_released_by_a_recompile_may_serve_another_model():
    strategy = Uncertainty()
    model = tiny_model(strategy)
    model.compile(optimizer="sgd", weighting="equal")
    other = tiny_model(strategy)
    assert other.weighting is strategy


# === Saved files and registered names ===

DATA = Path(__file__).parent / "data"

# Keras serialisation names of every strategy and penalty, recorded before the weighting and regularizers modules
# were split into packages: saved `.keras` files refer to them.
REGISTERED_NAMES = {
    "AlignedMTL": "kmtl>AlignedMTL", "CAGrad": "kmtl>CAGrad", "ConFIG": "kmtl>ConFIG", "DWA": "kmtl>DWA",
    "DualProj": "kmtl>DualProj", "Equal": "kmtl>Equal", "FAMO": "kmtl>FAMO", "GeometricMean": "kmtl>GeometricMean",
    "GradDrop": "kmtl>GradDrop", "GradNorm": "kmtl>GradNorm", "GradVac": "kmtl>GradVac",
    "GradientWeighting": "GradientWeighting", "GroupLasso": "kmtl>GroupLasso", "IMTLG": "kmtl>IMTLG",
    "IMTLL": "kmtl>IMTLL", "MGDA": "kmtl>MGDA", "MeanRegularized": "kmtl>MeanRegularized", "NashMTL": "kmtl>NashMTL",
    "PCGrad": "kmtl>PCGrad", "Penalty": "Penalty", "RLW": "kmtl>RLW", "SoftSharingL2": "kmtl>SoftSharingL2",
    "Static": "kmtl>Static", "TaskCovarianceUpdater": "TaskCovarianceUpdater",
    "TaskRelationshipPrior": "kmtl>TaskRelationshipPrior", "TraceNorm": "kmtl>TraceNorm", "UPGrad": "kmtl>UPGrad",
    "Uncertainty": "kmtl>Uncertainty", "Weighting": "Weighting",
}


def test_registered_names_are_unchanged():
    classes = {}
    for module in (kmtl.weighting, kmtl.regularizers):
        classes.update({n: getattr(module, n) for n in module.__all__ if isinstance(getattr(module, n), type)})
    assert {n: keras.saving.get_registered_name(c) for n, c in classes.items()} == REGISTERED_NAMES


def test_strategy_names_are_unchanged():
    made = {name: kmtl.weighting.get(name) for name in kmtl.weighting.STRATEGIES}
    assert {name: type(s).__name__ for name, s in made.items()} == {
        "aligned_mtl": "AlignedMTL", "cagrad": "CAGrad", "config": "ConFIG", "dualproj": "DualProj", "dwa": "DWA",
        "equal": "Equal", "famo": "FAMO", "gls": "GeometricMean", "graddrop": "GradDrop", "gradnorm": "GradNorm",
        "gradvac": "GradVac", "imtl_g": "IMTLG", "imtl_l": "IMTLL", "mgda": "MGDA", "mgda_ub": "MGDA",
        "nash_mtl": "NashMTL", "pcgrad": "PCGrad", "rlw": "RLW", "static": "Static", "uncertainty": "Uncertainty",
        "upgrad": "UPGrad",
    }
    assert made["mgda_ub"].rep_grad and not made["mgda"].rep_grad


def test_model_saved_before_the_package_split_loads():
    # Written by tests/data/make_saved_strategies.py at commit 45ad1b7 (GradVac, SoftSharingL2, TaskRelationshipPrior).
    expected = json.loads((DATA / "saved_strategies_v0_1.json").read_text())
    assert kmtl.MultiTaskModel  # `import kmtl` is lazy: this registers the model class (kmtl.load_model does not yet)
    model = kmtl.load_model(DATA / "saved_strategies_v0_1.keras", safe_mode=True)
    assert type(model.weighting) is kmtl.weighting.GradVac
    assert [type(p).__name__ for p in model.penalties] == ["SoftSharingL2", "TaskRelationshipPrior"]
    np.testing.assert_allclose(model.weighting.targets.numpy(), expected["targets"], rtol=1e-6)
    np.testing.assert_array_equal(model.weighting.seed_generator.state.numpy(), expected["seed_state"])
    np.testing.assert_allclose(model.penalties[1].task_covariance.numpy(), expected["task_covariance"], rtol=1e-6)
    np.testing.assert_allclose([float(p.penalty()) for p in model.penalties], expected["penalties"], rtol=1e-6)
    predictions = model.predict(np.asarray(expected["inputs"], "float32"), verbose=0)
    for name, values in expected["predictions"].items():
        np.testing.assert_allclose(predictions[name], values, rtol=1e-5, atol=1e-6)


# === Old module paths (deprecated aliases for one release) ===


@pytest.mark.parametrize(
    "old, name, new",
    [
        ("kmtl.weighting.min_norm", "MGDA", kmtl.weighting.MGDA),
        ("kmtl.weighting.min_norm", "gram_matrix", "kmtl.weighting._gradients"),
        ("kmtl.weighting.gradient_level", "PCGrad", kmtl.weighting.PCGrad),
        ("kmtl.weighting.gradient_stateful", "GradNorm", kmtl.weighting.GradNorm),
        ("kmtl.weighting.dynamic", "RLW", kmtl.weighting.RLW),
        ("kmtl.weighting.loss_level", "Uncertainty", kmtl.weighting.Uncertainty),
        ("kmtl.weighting.aligned", "aligned_weights", "kmtl.weighting.aligned_mtl"),
        ("kmtl.weighting.conic", "dual_cone_weights", "kmtl.weighting._dual_cone"),
        ("kmtl.penalties_lowrank", "TraceNorm", kmtl.regularizers.TraceNorm),
        ("kmtl.penalties_structured", "GroupLasso", kmtl.regularizers.GroupLasso),
    ],
)
def test_old_module_paths_forward_with_a_deprecation_warning(old, name, new):
    import importlib

    module = importlib.import_module(old)
    if isinstance(new, str):
        new = getattr(importlib.import_module(new), name)
    with pytest.warns(DeprecationWarning, match=rf"`{old}` is deprecated .* Import `{name}` from `kmtl\."):
        assert getattr(module, name) is new
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        module.missing  # noqa: B018
