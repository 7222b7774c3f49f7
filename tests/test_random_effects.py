"""Tests for kmtl.layers.RandomEffects: outputs, the prior penalty and their gradients, unseen groups, round trip."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from layer_testing import fit_and_round_trip
from scipy.stats import multivariate_normal

from kmtl.layers import RandomEffects

RNG = np.random.default_rng(0)
G, U = 4, 2


def make_layer(posterior="gaussian", covariance="full", slopes=2, dtype="float64", **kwargs):
    """A built layer with random weights (float64: finite differences and closed forms agree to 1e-8)."""
    layer = RandomEffects(G, units=U, posterior=posterior, covariance=covariance, dtype=dtype, seed=3, **kwargs)
    layer.build([(None,), (None, slopes)] if slopes else (None,))
    for weight in layer.weights:
        if weight.trainable:
            weight.assign(0.5 * RNG.normal(size=weight.shape))
    return layer


def lower(log_diagonal, strict):
    """Reference factor: exp(log_diagonal) on the diagonal, the strict lower part of `strict` below it."""
    k = log_diagonal.shape[-1]
    factor = np.exp(log_diagonal)[..., None, :] * np.eye(k)
    return factor if strict is None else factor + np.tril(strict, -1)


def numpy_prior_covariance(layer):
    strict = None if layer.prior_lower is None else layer.prior_lower.numpy()
    factor = lower(layer.prior_log_diagonal.numpy(), strict)
    return np.linalg.inv(factor @ np.swapaxes(factor, -1, -2))


# === Outputs ===


def test_output_is_group_coefficients_times_design():
    layer = make_layer()
    groups = np.array([0, 3, 1, 1])
    x = RNG.normal(size=(4, 2))
    out = layer([groups, x], training=False).numpy()
    design = np.concatenate([np.ones((4, 1)), x], axis=1)
    expected = np.einsum("buk,bk->bu", layer.mean.numpy()[groups], design)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    assert out.shape == (4, U)


def test_intercepts_only_and_slopes_only():
    intercepts = make_layer(slopes=0)
    groups = np.array([[2], [0]])  # (batch, 1) ids work too
    np.testing.assert_allclose(intercepts(groups).numpy(), intercepts.mean.numpy()[[2, 0], :, 0], rtol=1e-12)
    slopes = make_layer(slopes=1, intercept=False)
    x = np.array([[2.0], [-1.0]])
    np.testing.assert_allclose(
        slopes([groups, x], training=False).numpy(), slopes.mean.numpy()[[2, 0], :, 0] * x, rtol=1e-12
    )


@pytest.mark.parametrize("posterior", ["gaussian", "point"])
def test_unseen_groups_fall_back_to_zero(posterior):
    """Ids outside [0, num_groups) (unseen in training, or -1 for unknown) get no random effect: fixed effects only."""
    layer = make_layer(posterior)
    groups = tf.constant([-1, G, G + 7, 2])
    x = tf.constant(RNG.normal(size=(4, 2)))
    with tf.GradientTape() as tape:
        out = layer([groups, x], training=True)
        total = tf.reduce_sum(out)
    np.testing.assert_array_equal(out.numpy()[:3], 0.0)
    assert np.all(out.numpy()[3] != 0.0)
    grad = tf.convert_to_tensor(tape.gradient(total, layer.mean)).numpy()  # gather: IndexedSlices
    # Only group 2 (row 3) receives gradient from the outputs; the unseen rows did not borrow group 0.
    np.testing.assert_array_equal(grad[[0, 1, 3]], 0.0)
    design = np.concatenate([[1.0], x.numpy()[3]])
    np.testing.assert_allclose(grad[2], np.broadcast_to(design, (U, 3)), rtol=1e-12)


def test_output_gradient_against_covariates_is_the_slopes():
    layer = make_layer()
    groups = tf.constant([1, 3])
    x = tf.constant(RNG.normal(size=(2, 2)))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = layer([groups, x], training=False)
    jacobian = tape.batch_jacobian(out, x).numpy()  # (B, U, p)
    np.testing.assert_allclose(jacobian, layer.mean.numpy()[[1, 3], :, 1:], rtol=1e-12)


def test_training_samples_have_the_posterior_mean_and_covariance():
    """In training a row's coefficients are m_g + C_g eps: output mean z' m_g and variance z' C_g C_g' z."""
    layer = make_layer(dtype="float32")
    n = 20000
    groups = np.full(n, 1)
    x = np.tile(np.array([[0.5, -1.0]], "float32"), (n, 1))
    samples = layer([groups, x], training=True).numpy()
    z = np.array([1.0, 0.5, -1.0])
    strict = layer.posterior_lower.numpy()[1]
    factor = lower(layer.posterior_log_diagonal.numpy()[1], strict)  # (U, k, k)
    mean = layer.mean.numpy()[1] @ z
    var = np.einsum("k,ukl,uml,m->u", z, factor, factor, z)
    # Monte Carlo with 20000 draws: the mean's standard error is sqrt(var / n), the variance's ~ var * sqrt(2 / n).
    np.testing.assert_allclose(samples.mean(axis=0), mean, atol=4 * np.sqrt(var.max() / n))
    np.testing.assert_allclose(samples.var(axis=0), var, rtol=4 * np.sqrt(2 / n))


# === The prior penalty ===


def test_point_penalty_is_the_negative_log_prior_density():
    layer = make_layer("point")
    cov = numpy_prior_covariance(layer)
    np.testing.assert_allclose(layer.prior_covariance(), cov, rtol=1e-5)  # float32 readout
    mean = layer.mean.numpy()
    expected = -sum(
        multivariate_normal(np.zeros(3), cov[u]).logpdf(mean[g, u]) for g in range(G) for u in range(U)
    )
    np.testing.assert_allclose(float(layer.penalty()), expected, rtol=1e-10)


@pytest.mark.parametrize("covariance", ["full", "diagonal"])
def test_gaussian_penalty_is_the_kl_divergence_to_the_prior(covariance):
    layer = make_layer("gaussian", covariance)
    cov = numpy_prior_covariance(layer)
    if covariance == "diagonal":
        assert layer.prior_lower is None
        np.testing.assert_allclose(cov, cov * np.eye(3))
    precision = np.linalg.inv(cov)
    factor = lower(layer.posterior_log_diagonal.numpy(), layer.posterior_lower.numpy())
    posterior_cov = factor @ np.swapaxes(factor, -1, -2)
    mean = layer.mean.numpy()
    expected = 0.0
    for g in range(G):
        for u in range(U):
            m, s, p = mean[g, u], posterior_cov[g, u], precision[u]
            expected += 0.5 * (
                np.trace(p @ s) + m @ p @ m - 3 + np.linalg.slogdet(cov[u])[1] - np.linalg.slogdet(s)[1]
            )
    np.testing.assert_allclose(float(layer.penalty()), expected, rtol=1e-10)


def test_penalty_is_a_weighted_layer_loss():
    layer = make_layer(penalty_weight=0.25)
    layer([np.array([0]), np.zeros((1, 2))])
    (loss,) = layer.losses
    np.testing.assert_allclose(float(loss), 0.25 * float(layer.penalty()), rtol=1e-12)


@pytest.mark.parametrize("posterior", ["gaussian", "point"])
def test_penalty_gradient_matches_finite_differences(posterior):
    layer = make_layer(posterior)
    variables = layer.trainable_weights
    with tf.GradientTape() as tape:
        value = layer.penalty()
    grads = tape.gradient(value, variables)
    eps = 1e-6
    for variable, grad in zip(variables, grads):
        flat = variable.numpy().reshape(-1)
        for i in RNG.choice(flat.size, size=min(6, flat.size), replace=False):
            shifted = []
            for sign in (1, -1):
                moved = flat.copy()
                moved[i] += sign * eps
                variable.assign(moved.reshape(variable.shape))
                shifted.append(float(layer.penalty()))
            variable.assign(flat.reshape(variable.shape))
            numeric = (shifted[0] - shifted[1]) / (2 * eps)
            assert abs(grad.numpy().reshape(-1)[i] - numeric) < 1e-6 * max(1.0, abs(numeric)), variable.path


def test_fixed_prior_does_not_train():
    layer = RandomEffects(G, prior_stddev=[2.0, 0.5], trainable_prior=False)
    layer.build([(None,), (None, 1)])
    assert [w.name for w in layer.trainable_weights] == ["mean", "posterior_log_diagonal", "posterior_lower"]
    np.testing.assert_allclose(layer.prior_covariance()[0], np.diag([4.0, 0.25]), rtol=1e-6)


# === Round trip and arguments ===


@pytest.mark.parametrize("posterior", ["gaussian", pytest.param("point", marks=pytest.mark.slow)])
def test_round_trip(posterior, tmp_path):
    layer = RandomEffects(G, units=2, posterior=posterior, penalty_weight=0.1, seed=1, name="re")
    config = layer.get_config()
    assert RandomEffects.from_config(config).get_config() == config
    groups = keras.Input((), dtype="int32", name="group")
    x = keras.Input((1,), name="x")
    out = layer([groups, x])
    assert tuple(out.shape) == (None, 2)
    assert layer.compute_output_shape([(None,), (None, 1)]) == (None, 2)
    model = keras.Model({"group": groups, "x": x}, {"y": keras.layers.Dense(1, name="y")(out)})
    inputs = {"group": RNG.integers(-1, G + 1, size=16).astype("int32"), "x": RNG.normal(size=(16, 1))}
    labels = {"y": RNG.normal(size=(16, 1))}
    restored = fit_and_round_trip(model, inputs, labels, tmp_path, watched=[layer.mean], atol=1e-5)
    np.testing.assert_allclose(
        restored.get_layer("re").prior_covariance(), layer.prior_covariance(), rtol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_groups": 0}, "num_groups"),
        ({"num_groups": 3, "units": 1.5}, "units"),
        ({"num_groups": 3, "covariance": "tied"}, "covariance"),
        ({"num_groups": 3, "posterior": "mean"}, "posterior"),
        ({"num_groups": 3, "prior_stddev": 0.0}, "prior_stddev"),
        ({"num_groups": 3, "prior_stddev": []}, "prior_stddev"),
        ({"num_groups": 3, "penalty_weight": -1.0}, "penalty_weight"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandomEffects(**kwargs)


@pytest.mark.parametrize(
    "kwargs, shape, match",
    [
        ({}, [(None, 2), (None, 1)], "group ids of shape"),
        ({}, [(None,), (None, 2, 3)], "covariates of shape"),
        ({"intercept": False}, (None,), "no coefficients"),
        ({"prior_stddev": [1.0, 2.0, 3.0]}, [(None,), (None, 1)], "one per coefficient"),
    ],
)
def test_bad_shapes(kwargs, shape, match):
    with pytest.raises(ValueError, match=match):
        RandomEffects(3, **kwargs).build(shape)
