"""Tests for kmtl.weighting.dynamic and kmtl.weighting.famo: DWA, RLW, GLS, IMTL-L and FAMO against hand-computed
values, inside a training `MultiTaskModel`, and through `.keras` save/load."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops
from tiny import tiny_data, tiny_model

from kmtl import Task
from kmtl.weighting import STRATEGIES as REGISTERED
from kmtl.weighting.dwa import DWA
from kmtl.weighting.famo import FAMO
from kmtl.weighting.gls import GeometricMean
from kmtl.weighting.imtl import IMTLL
from kmtl.weighting.rlw import RLW

TASKS = [
    Task("age", "regression"),
    Task("smiling", "binary"),
    Task("hair", "multiclass", num_classes=3),
]
LOSSES = np.array([2.0, 0.5, 3.0], "float32")


def configured(strategy, tasks=TASKS):
    strategy.configure(tasks)
    return strategy


def combine(strategy, losses=LOSSES, training=True):
    total, weights = strategy.combine(ops.convert_to_tensor(np.asarray(losses, "float32")), training=training)
    return float(total), ops.convert_to_numpy(weights).astype(np.float64)


def state_of(strategy):
    return {v.name: np.array(ops.convert_to_numpy(v)) for v in strategy.variables}


def softmax(x):
    e = np.exp(x - np.max(x))
    return e / e.sum()


def total_and_loss_gradient(strategy, losses=LOSSES):
    """The total and its gradient with respect to the vector of losses."""
    losses = tf.Variable(losses)
    with tf.GradientTape() as tape:
        total, weights = strategy.combine(tf.convert_to_tensor(losses))
    return float(total), tape.gradient(total, losses).numpy(), ops.convert_to_numpy(weights)


# === DWA ===


def run_dwa_epochs(dwa, epochs):
    """Feeds each epoch's batches of losses to `combine` and ends the epoch; returns the weights of every step."""
    seen = []
    for batches in epochs:
        for losses in batches:
            seen.append(combine(dwa, losses)[1])
        dwa.on_epoch_end()
    return seen


EPOCH_1 = [[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]]  # mean (2, 2, 2)
EPOCH_2 = [[1.0, 2.0, 2.0]]  # mean (1, 2, 2)
EPOCH_3 = [[0.5, 1.0, 4.0], [0.5, 3.0, 2.0]]  # mean (0.5, 2, 3)


def test_dwa_weights_are_one_in_the_first_two_epochs():
    dwa = configured(DWA(temperature=2.0))
    for weights in run_dwa_epochs(dwa, [EPOCH_1, EPOCH_2]):
        np.testing.assert_array_equal(weights, 1.0)
    total, _ = combine(configured(DWA()), [2.0, 0.5, 3.0])
    assert total == pytest.approx(5.5, abs=1e-6)


def test_dwa_weights_after_two_and_three_epochs():
    dwa = configured(DWA(temperature=2.0))
    run_dwa_epochs(dwa, [EPOCH_1, EPOCH_2])
    # r = L(2) / L(1) = (1/2, 2/2, 2/2); w = 3 * softmax(r / 2).
    expected = 3 * np.exp([0.25, 0.5, 0.5]) / np.exp([0.25, 0.5, 0.5]).sum()
    total, weights = combine(dwa, [1.0, 2.0, 4.0])
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    np.testing.assert_allclose(weights, [0.8408, 1.0796, 1.0796], atol=1e-4)
    assert total == pytest.approx(float(expected @ [1.0, 2.0, 4.0]), rel=1e-6)
    dwa.on_epoch_end()  # epoch 3 was the one batch above: mean (1, 2, 4)
    run_dwa_epochs(dwa, [EPOCH_3])  # epoch 4: mean (0.5, 2, 3)
    # r = L(4) / L(3) = (0.5, 1, 0.75)
    _, weights = combine(dwa, LOSSES)
    np.testing.assert_allclose(weights, 3 * softmax(np.array([0.5, 1.0, 0.75]) / 2.0), rtol=1e-6)


def test_dwa_temperature_softens_the_weights():
    sharp, soft = configured(DWA(temperature=0.1)), configured(DWA(temperature=100.0))
    for dwa in (sharp, soft):
        run_dwa_epochs(dwa, [EPOCH_1, EPOCH_2])
    np.testing.assert_allclose(combine(sharp)[1], 3 * softmax(np.array([5.0, 10.0, 10.0])), rtol=1e-5)
    soft_weights = combine(soft)[1]
    np.testing.assert_allclose(soft_weights, 3 * softmax(np.array([0.005, 0.01, 0.01])), rtol=1e-5)
    assert np.abs(soft_weights - 1.0).max() < 5e-3


def test_dwa_state_after_epochs_and_idempotent_epoch_end():
    dwa = configured(DWA())
    run_dwa_epochs(dwa, [EPOCH_1, EPOCH_2])
    dwa.on_epoch_end()  # no training step since the last call: nothing moves
    state = state_of(dwa)
    np.testing.assert_allclose(state["last_epoch_loss"], [1.0, 2.0, 2.0])
    np.testing.assert_allclose(state["previous_epoch_loss"], [2.0, 2.0, 2.0])
    assert state["epochs_seen"] == 2.0 and state["epoch_steps"] == 0.0
    np.testing.assert_array_equal(state["epoch_loss_sum"], 0.0)


def test_dwa_evaluation_leaves_state_unchanged():
    dwa = configured(DWA())
    run_dwa_epochs(dwa, [EPOCH_1, EPOCH_2])
    combine(dwa, [4.0, 4.0, 4.0])
    before = state_of(dwa)
    _, eval_weights = combine(dwa, [9.0, 1.0, 5.0], training=False)
    for name, value in state_of(dwa).items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    np.testing.assert_allclose(eval_weights, combine(dwa)[1], rtol=1e-7)  # the same (current) weights


def test_dwa_weights_carry_no_gradient_into_the_losses():
    dwa = configured(DWA())
    run_dwa_epochs(dwa, [EPOCH_1, EPOCH_2])
    _, gradient, weights = total_and_loss_gradient(dwa)
    np.testing.assert_allclose(gradient, weights, rtol=1e-6)


# === RLW ===


@pytest.mark.parametrize("distribution", ["normal", "uniform", "dirichlet"])
def test_rlw_weights_on_the_simplex_and_fresh_each_step(distribution):
    rlw = configured(RLW(distribution=distribution, seed=3))
    draws = [combine(rlw) for _ in range(3)]
    for total, weights in draws:
        assert np.all(weights > 0)
        assert weights.sum() == pytest.approx(1.0, abs=1e-6)  # the paper's scaling: softmax, on the simplex
        assert total == pytest.approx(float(weights @ LOSSES), rel=1e-6)
    assert not np.allclose(draws[0][1], draws[1][1]) and not np.allclose(draws[1][1], draws[2][1])


def test_rlw_is_reproducible_with_a_seed():
    first, second, other = (configured(RLW(seed=s)) for s in (7, 7, 8))
    a = [combine(first)[1] for _ in range(3)]
    b = [combine(second)[1] for _ in range(3)]
    c = [combine(other)[1] for _ in range(3)]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_rlw_evaluation_uses_weights_one_and_draws_nothing():
    rlw, fresh = configured(RLW(seed=11)), configured(RLW(seed=11))
    total, weights = combine(rlw, training=False)
    assert total == pytest.approx(float(LOSSES.sum()), abs=1e-6)
    np.testing.assert_array_equal(weights, 1.0)
    np.testing.assert_array_equal(combine(rlw)[1], combine(fresh)[1])  # the evaluation consumed no draw


def test_rlw_weights_carry_no_gradient_into_the_losses():
    _, gradient, weights = total_and_loss_gradient(configured(RLW(seed=2)))
    np.testing.assert_allclose(gradient, weights, rtol=1e-6)


@pytest.mark.parametrize("distribution", ["normal", "uniform", "dirichlet"])
def test_rlw_draws_follow_the_distribution(distribution):
    # log(softmax(x)) = x - logsumexp(x): centred log-weights are the centred draws, one per task.
    k = 500
    rlw = configured(RLW(distribution=distribution, seed=0), [Task(f"t{i}", "regression") for i in range(k)])
    _, weights = combine(rlw, np.ones(k))
    x = np.log(weights) - np.log(weights).mean()
    if distribution == "normal":
        assert x.std() == pytest.approx(1.0, abs=0.1)
    elif distribution == "uniform":
        assert x.max() - x.min() < 1.0 and x.std() == pytest.approx(np.sqrt(1 / 12), abs=0.03)
    else:  # x = (e - mean(e)) / sum(e) with e ~ Exp(1): k * x is about e / mean(e) - 1 >= -1, std 1, skewed right
        y = k * x
        assert y.min() >= -1.0 - 1e-3 and y.std() == pytest.approx(1.0, abs=0.15)
        assert np.mean(y**3) / y.std() ** 3 > 1.0


# === GLS ===


def test_gls_total_is_the_geometric_mean_and_weights_are_its_gradient():
    gls = configured(GeometricMean())
    total, gradient, weights = total_and_loss_gradient(gls)
    expected = (2.0 * 0.5 * 3.0) ** (1 / 3)
    assert total == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(gradient, weights, rtol=1e-5)
    np.testing.assert_allclose(weights, expected / (3 * LOSSES), rtol=1e-5)
    np.testing.assert_allclose(weights * LOSSES, expected / 3, rtol=1e-5)  # every task contributes alike


def test_gls_is_finite_with_a_zero_loss():
    gls = configured(GeometricMean())
    total, gradient, weights = total_and_loss_gradient(gls, np.array([0.0, 0.5, 2.0], "float32"))
    assert np.isfinite(total) and 0 < total < 1e-3
    assert np.all(np.isfinite(gradient))
    assert weights[0] == 0.0 and gradient[0] == 0.0
    np.testing.assert_allclose(gradient[1:], weights[1:], rtol=1e-5)


# === IMTL-L ===


def test_imtl_l_closed_form():
    imtl = configured(IMTLL())
    s = np.array([0.4, -1.0, 0.2], "float32")
    imtl.log_scale.assign(s)
    total, gradient, weights = total_and_loss_gradient(imtl)
    assert total == pytest.approx(float(np.sum(np.exp(s) * LOSSES - s)), rel=1e-6)
    np.testing.assert_allclose(weights, np.exp(s), rtol=1e-6)
    np.testing.assert_allclose(gradient, np.exp(s), rtol=1e-6)
    assert imtl.log_scale.trainable


def scale_gradient(imtl, losses=LOSSES):
    with tf.GradientTape() as tape:
        total, _ = imtl.combine(tf.constant(losses))
    return tape.gradient(total, imtl.log_scale.value).numpy()


def test_imtl_l_scale_gradient_vanishes_where_scaled_losses_are_one():
    imtl = configured(IMTLL())
    s = np.array([0.4, -1.0, 0.2], "float32")
    imtl.log_scale.assign(s)
    np.testing.assert_allclose(scale_gradient(imtl), np.exp(s) * LOSSES - 1.0, rtol=1e-5)
    imtl.log_scale.assign(-np.log(LOSSES))  # e^s L = 1
    np.testing.assert_allclose(scale_gradient(imtl), 0.0, atol=1e-6)


def test_imtl_l_converges_to_the_closed_form_optimum():
    imtl = configured(IMTLL())
    optimizer = keras.optimizers.SGD(learning_rate=0.5)
    for _ in range(100):
        optimizer.apply_gradients([(scale_gradient(imtl), imtl.log_scale)])
    np.testing.assert_allclose(imtl.log_scale.numpy(), -np.log(LOSSES), atol=1e-4)


# === FAMO ===

TWO_TASKS = TASKS[:2]


def test_famo_total_weights_and_gradient():
    famo = configured(FAMO(), TWO_TASKS)
    total, gradient, weights = total_and_loss_gradient(famo, np.array([4.0, 1.0], "float32"))
    # z = (1/2, 1/2): c = 1 / (1/8 + 1/2) = 1.6; w = c z / L = (0.2, 0.8); total = c (log 4 + log 1) / 2
    np.testing.assert_allclose(weights, [0.2, 0.8], rtol=1e-6)
    np.testing.assert_allclose(gradient, weights, rtol=1e-6)
    assert total == pytest.approx(0.8 * np.log(4.0), rel=1e-6)


def test_famo_min_losses_per_task():
    famo = configured(FAMO(min_losses=[1.0, 0.0]), TWO_TASKS)
    _, weights = combine(famo, [4.0, 1.0], training=False)
    # gaps (3, 1): c = 1 / (1/6 + 1/2) = 1.5; w = (0.25, 0.75)
    np.testing.assert_allclose(weights, [0.25, 0.75], rtol=1e-6)
    total, weights = combine(famo, [0.5, 1.0], training=False)  # below its minimum: floored, finite
    assert np.isfinite(total) and np.all(np.isfinite(weights))


def test_famo_first_step_only_records_its_losses():
    famo = configured(FAMO(), TWO_TASKS)
    combine(famo, [4.0, 1.0])
    state = state_of(famo)
    np.testing.assert_array_equal(state["logits"], 0.0)
    np.testing.assert_array_equal(state["previous_losses"], [4.0, 1.0])
    assert state["has_previous"] == 1.0 and state["logits_steps"] == 0.0


def test_famo_sgd_update_from_two_steps():
    famo = configured(FAMO(logits_optimizer="sgd", learning_rate=0.025, gamma=0.01), TWO_TASKS)
    combine(famo, [4.0, 1.0])
    _, weights = combine(famo, [2.0, 1.0])
    # delta = log(4, 1) - log(2, 1) = (log 2, 0); z = (1/2, 1/2); g = z (delta - z.delta) = (log 2, -log 2) / 4.
    # xi = 0 - 0.025 (g + 0.01 * 0): the task whose loss fell faster loses weight.
    xi = -0.025 * np.array([0.25, -0.25]) * np.log(2.0)
    np.testing.assert_allclose(famo.logits.numpy(), xi, rtol=1e-5)
    z = softmax(xi)
    np.testing.assert_allclose(weights, z / np.array([2.0, 1.0]) / np.sum(z / np.array([2.0, 1.0])), rtol=1e-6)
    np.testing.assert_array_equal(famo.previous_losses.numpy(), [2.0, 1.0])


def test_famo_adam_update_from_two_then_three_steps():
    lr, gamma = 0.025, 0.01
    famo = configured(FAMO(learning_rate=lr, gamma=gamma), TWO_TASKS)
    combine(famo, [4.0, 1.0])
    combine(famo, [2.0, 1.0])
    # Adam's first bias-corrected step is lr * g / |g| = lr * sign(g), g = (log 2, -log 2) / 4. (rtol: float32's
    # 1 - 0.999 is off by 1.3e-5 relative, which the square root halves.)
    np.testing.assert_allclose(famo.logits.numpy(), [-lr, lr], rtol=1e-5)
    combine(famo, [1.5, 0.5])
    g1 = np.array([0.25, -0.25]) * np.log(2.0)
    xi1 = np.array([-lr, lr])
    z1 = softmax(xi1)
    delta = np.log([2.0, 1.0]) - np.log([1.5, 0.5])
    g2 = z1 * (delta - z1 @ delta) + gamma * xi1
    m = 0.9 * 0.1 * g1 + 0.1 * g2
    v = 0.999 * 0.001 * g1**2 + 0.001 * g2**2
    xi2 = xi1 - lr * (m / (1 - 0.9**2)) / (np.sqrt(v / (1 - 0.999**2)) + 1e-8)
    np.testing.assert_allclose(famo.logits.numpy(), xi2, rtol=2e-5)  # float32 bias corrections, as above
    np.testing.assert_allclose(famo.logits_m.numpy(), m, rtol=1e-5)
    assert float(famo.logits_steps.numpy()) == 2.0


def test_famo_evaluation_leaves_state_unchanged():
    famo = configured(FAMO(), TWO_TASKS)
    combine(famo, [4.0, 1.0])
    combine(famo, [2.0, 1.0])
    before = state_of(famo)
    _, weights = combine(famo, [1.0, 3.0], training=False)
    for name, value in state_of(famo).items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    z = softmax(before["logits"].astype(np.float64))
    np.testing.assert_allclose(weights, (z / [1.0, 3.0]) / np.sum(z / [1.0, 3.0]), rtol=1e-5)


# === Arguments and config ===


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: DWA(temperature=0), "temperature=0"),
        (lambda: DWA(temperature=float("nan")), "temperature=nan"),
        (lambda: DWA(temperature="warm"), "temperature='warm'"),
        (lambda: RLW(distribution="gauss"), "distribution='gauss'"),
        (lambda: RLW(seed=1.5), "seed=1.5"),
        (lambda: RLW(seed=True), "seed=True"),
        (lambda: FAMO(gamma=-0.1), "gamma=-0.1"),
        (lambda: FAMO(learning_rate=0), "learning_rate=0"),
        (lambda: FAMO(min_losses="zero"), "min_losses='zero'"),
        (lambda: FAMO(logits_optimizer="rmsprop"), "logits_optimizer='rmsprop'"),
        (lambda: configured(FAMO(min_losses=[0.0, 0.0])), r"min_losses=\[0.0, 0.0\]"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "strategy",
    [
        DWA(temperature=0.5, name="dwa"),
        RLW(distribution="dirichlet", seed=4),
        GeometricMean(),
        IMTLL(name="imtl"),
        FAMO(gamma=0.0, learning_rate=0.1, min_losses=[0.0, 0.1, 0.2], logits_optimizer="sgd"),
    ],
    ids=lambda s: type(s).__name__,
)
def test_config_round_trip(strategy):
    config = strategy.get_config()
    assert type(strategy).from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(strategy))
    assert type(restored) is type(strategy) and restored.get_config() == config


def test_rlw_seed_config_is_a_plain_int():
    seed = RLW(seed=np.int64(5)).get_config()["seed"]
    assert seed == 5 and type(seed) is int


def test_names():
    names = {"dwa": DWA, "rlw": RLW, "gls": GeometricMean, "imtl_l": IMTLL, "famo": FAMO}
    assert {name: REGISTERED[name] for name in names} == names


# === Inside a MultiTaskModel ===


class EpochEnd(keras.callbacks.Callback):
    """Calls the strategy's `on_epoch_end` (harmless if `fit` calls it too: a second call in a row does nothing)."""

    def __init__(self, strategy):
        super().__init__()
        self.strategies = [strategy]

    def on_epoch_end(self, epoch, logs=None):
        self.strategies[0].on_epoch_end()


STRATEGIES = {
    "dwa": lambda: DWA(temperature=2.0),
    "rlw": lambda: RLW(seed=0),
    "gls": lambda: GeometricMean(),
    "imtl_l": lambda: IMTLL(),
    "famo": lambda: FAMO(),
}
EPOCHS = {"dwa": 3}  # DWA's weights move from the third epoch on


def fit(name, **compile_kwargs):
    """A model compiled with a fresh strategy `name`, fitted 4 steps an epoch; returns it, the strategy, the
    history and the data."""
    strategy = STRATEGIES[name]()
    model = tiny_model(strategy, optimizer=keras.optimizers.Adam(0.05), **compile_kwargs)
    x, y = tiny_data()
    trunk = model.get_layer("trunk").kernel.numpy().copy()
    epochs = EPOCHS.get(name, 1)
    history = model.fit(x, y, batch_size=4, epochs=epochs, verbose=0, callbacks=[EpochEnd(strategy)]).history
    assert all(np.all(np.isfinite(v)) for v in history.values()), history
    assert not np.allclose(model.get_layer("trunk").kernel.numpy(), trunk)
    return model, strategy, history, (x, y)


_FITTED = {}


def fitted(name):
    """`fit(name)`, once per test module run: the training and save/load tests share it."""
    if name not in _FITTED:
        _FITTED[name] = fit(name)
    return _FITTED[name]


def check_trained_state(name, model, strategy, history, data):
    """What training leaves in each strategy's state and logs."""
    weights = np.array([history[f"{t}_weight"] for t in "abc"])  # (task, epoch)
    losses = np.array([history[f"{t}_loss"] for t in "abc"])
    if name == "dwa":
        np.testing.assert_array_equal(weights[:, :2], 1.0)
        # Epoch 3 weighs by the ratio of the logged epoch means (the same as DWA's: equal batches).
        np.testing.assert_allclose(weights[:, 2], 3 * softmax(losses[:, 1] / losses[:, 0] / 2.0), rtol=1e-5)
        np.testing.assert_allclose(strategy.last_epoch_loss.numpy(), losses[:, 2], rtol=1e-5)
        assert float(strategy.epochs_seen.numpy()) == 3.0
    elif name in ("rlw", "famo"):
        assert weights.sum() == pytest.approx(1.0, abs=1e-5)  # the mean of weights that each sum to 1
    elif name == "gls":
        assert np.all(weights > 0)
    if name == "famo":
        assert float(strategy.logits_steps.numpy()) == 3.0 and np.all(strategy.logits.numpy() != 0.0)
    if name == "imtl_l":
        assert np.all(np.abs(strategy.log_scale.numpy()) > 1e-3)  # trained by the model's optimizer


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_trains_a_model(name):
    model, strategy, history, data = fitted(name)
    check_trained_state(name, model, strategy, history, data)
    # Evaluation logs the current weights and leaves the state alone.
    before = state_of(strategy)
    logs = model.evaluate(*data, batch_size=16, return_dict=True, verbose=0)
    for key, value in state_of(strategy).items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    losses = np.array([logs[f"{t}_loss"] for t in "abc"], "float32")
    _, expected = combine(strategy, losses, training=False)
    np.testing.assert_allclose([logs[f"{t}_weight"] for t in "abc"], expected, rtol=1e-5)


@pytest.mark.slow  # XLA compiles the train step: 5-10 s a strategy on 2 CPU cores
@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_trains_under_xla(name):
    check_trained_state(name, *fit(name, jit_compile=True))


def save_and_load(model, tmp_path):
    path = str(tmp_path / "model.keras")
    model.save(path)
    return keras.saving.load_model(path, safe_mode=True)


@pytest.mark.parametrize("name", ["dwa", "famo", "imtl_l"])
def test_state_survives_save_and_load(name, tmp_path):
    model, strategy, _, _ = fitted(name)
    if name == "dwa":
        combine(strategy, [1.0, 2.0, 3.0])  # a running sum mid-epoch
    restored = save_and_load(model, tmp_path)
    assert type(restored.weighting) is type(strategy)
    assert restored.weighting.get_config() == strategy.get_config()
    expected, actual = state_of(strategy), state_of(restored.weighting)
    assert sorted(actual) == sorted(expected) and expected
    for key, value in expected.items():
        np.testing.assert_allclose(actual[key], value, atol=1e-6, err_msg=key)
    if name == "dwa":
        assert expected["epoch_steps"] == 1.0 and expected["epochs_seen"] == 3.0
    # Both combine the next losses alike, in evaluation and in training (which moves FAMO's logits).
    for training in (False, True):
        want, got = combine(strategy, LOSSES, training), combine(restored.weighting, LOSSES, training)
        assert got[0] == pytest.approx(want[0], abs=1e-5)
        np.testing.assert_allclose(got[1], want[1], atol=1e-6)
