"""Random effects: per-group random intercepts and slopes with a learned Gaussian prior, as in a mixed model."""

import math
import numbers

import keras
import numpy as np
from keras import ops

COVARIANCES = ("full", "diagonal")
POSTERIORS = ("gaussian", "point")
_LOG_2PI = math.log(2.0 * math.pi)


@keras.saving.register_keras_serializable(package="kmtl")
class RandomEffects(keras.layers.Layer):
    """Per-group random intercepts and slopes: the random part `z' b_g` of a linear mixed model.

    Called on `[groups, covariates]` (or on `groups` alone for random intercepts), it returns for every row `i`
    and output unit `u` the random effect `b[g_i, u, 0] + sum_j b[g_i, u, j + 1] * x_ij` of the row's group
    `g_i` (without `intercept`, the slopes only). Add it to a fixed part (e.g. a `Dense` layer on the same
    covariates) and the network models clustered observations (patients, subjects, sites) as a mixed model
    does: `y = fixed(x) + z' b_g + noise`, with the group coefficients `b_g ~ N(0, Sigma_u)` for each unit.

    The coefficients are embeddings, one row per group, and their Gaussian prior is a layer loss
    (`layer.losses`, added to the training loss), with the prior covariance `Sigma_u` learned (or fixed, with
    `trainable_prior=False`). Two forms:

    - `posterior="gaussian"` (default): each group's coefficients are a Gaussian `q_g = N(m_g, C_g C_g')` with a
      learned mean and full Cholesky factor; training uses a sample `m_g + C_g eps` per row and the loss is
      `penalty_weight * sum_g KL(q_g || N(0, Sigma))`. With a Gaussian likelihood whose variance is learned (a
      regression task under `weighting="uncertainty"`) and `penalty_weight = 1 / N` for `N` training rows, the
      training loss is the negative evidence lower bound divided by `N`, whose optimum over exact Gaussian
      posteriors is the maximum-likelihood linear mixed model: fixed effects, `Sigma` and the residual
      variance as `statsmodels`' `MixedLM(reml=False)` or lme4's `REML = FALSE` estimate them.
    - `posterior="point"`: each group's coefficients are one vector `m_g` and the loss is the negative log prior
      density `penalty_weight * sum_g -log N(m_g; 0, Sigma)` (the joint, or h-likelihood, mode). Cheaper and
      deterministic, but its learned variances shrink below the likelihood estimates (the spread of shrunken
      group estimates leaves out their uncertainty), and `Sigma -> 0` is a degenerate optimum.

    Predictions (`training=False`) use the posterior means `m_g`, the best linear unbiased predictions of a
    mixed model. A group id outside `[0, num_groups)` (a group unseen in training, or -1 for unknown) gets the
    random effect 0: the prediction falls back to the fixed effects, as a mixed model's population-level
    prediction does.

    Args:
        num_groups: int. Number of groups `G`; ids are 0 to `G - 1`.
        units: int. Number of outputs, each with its own random coefficients and prior covariance. Defaults to 1.
        intercept: bool. Whether each group has a random intercept. Defaults to `True`.
        covariance: str. The prior covariance of one unit's coefficients: `"full"` (learned correlations, as
            `MixedLM(re_formula="~x")`) or `"diagonal"` (independent coefficients). Defaults to `"full"`.
        posterior: str. `"gaussian"` (variational, default) or `"point"` (the coefficients' mode); see above.
        prior_stddev: float or sequence of floats. Initial (or, with `trainable_prior=False`, fixed) prior standard
            deviation of the coefficients, one for all or one per coefficient (intercept first). Defaults to 1.
        trainable_prior: bool. Learn the prior covariance (`True`, default) or keep it at `prior_stddev`.
        penalty_weight: float > 0. Multiplier of the prior penalty. Use `1 / N` (the number of training rows) when
            the task loss is a mean over rows, as Keras losses are: the penalty then weighs against the data as
            the prior does in the mixed model's likelihood. Defaults to 1.
        seed: int or None. Seed of the training samples of the Gaussian posterior.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Returns:
        A tensor `(batch, units)`.

    Example:

    >>> layer = RandomEffects(num_groups=3)
    >>> groups, days = keras.ops.array([0, 2, 7]), keras.ops.array([[1.0], [2.0], [3.0]])
    >>> tuple(layer([groups, days]).shape)
    (3, 1)
    >>> layer.prior_covariance().shape  # (units, coefficients, coefficients)
    (1, 2, 2)

    Reference:
        Laird & Ware (1982). Random-Effects Models for Longitudinal Data. Biometrics 38(4).
        Kingma & Welling (2014). Auto-Encoding Variational Bayes. ICLR.
    """

    def __init__(
        self,
        num_groups,
        units=1,
        intercept=True,
        covariance="full",
        posterior="gaussian",
        prior_stddev=1.0,
        trainable_prior=True,
        penalty_weight=1.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_groups = _check_positive_int("num_groups", num_groups)
        self.units = _check_positive_int("units", units)
        self.intercept = bool(intercept)
        for name, value, choices in (("covariance", covariance, COVARIANCES), ("posterior", posterior, POSTERIORS)):
            if value not in choices:
                raise ValueError(f"Invalid value for `{name}`. Expected one of {choices}. Received: {name}={value!r}")
        self.covariance = covariance
        self.posterior = posterior
        stddevs = list(prior_stddev) if isinstance(prior_stddev, (list, tuple)) else [prior_stddev]
        if not stddevs or not all(_is_positive_number(s) for s in stddevs):
            raise ValueError(
                "Invalid value for `prior_stddev`. Expected a positive number or a sequence of them. "
                f"Received: prior_stddev={prior_stddev!r}"
            )
        listed = isinstance(prior_stddev, (list, tuple))
        self.prior_stddev = [float(s) for s in stddevs] if listed else float(stddevs[0])
        self.trainable_prior = bool(trainable_prior)
        if not _is_positive_number(penalty_weight):
            raise ValueError(
                "Invalid value for `penalty_weight`. Expected a positive number. "
                f"Received: penalty_weight={penalty_weight!r}"
            )
        self.penalty_weight = float(penalty_weight)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    # === State ===

    def build(self, input_shape):
        groups_shape, covariates_shape = _split_shapes(input_shape)
        if len(groups_shape) not in (1, 2) or (len(groups_shape) == 2 and groups_shape[-1] != 1):
            raise ValueError(
                f"RandomEffects expects group ids of shape (batch,) or (batch, 1). Received: {tuple(groups_shape)}"
            )
        slopes = 0
        if covariates_shape is not None:
            if len(covariates_shape) != 2 or covariates_shape[-1] is None:
                raise ValueError(
                    "RandomEffects expects covariates of shape (batch, features) with known features. "
                    f"Received: {tuple(covariates_shape)}"
                )
            slopes = int(covariates_shape[-1])
        k = int(self.intercept) + slopes
        if k == 0:
            raise ValueError("RandomEffects has no coefficients: pass covariates or set intercept=True.")
        stddevs = self.prior_stddev if isinstance(self.prior_stddev, list) else [self.prior_stddev] * k
        if len(stddevs) != k:
            raise ValueError(
                f"Invalid value for `prior_stddev`. Expected one value or {k} (one per coefficient). "
                f"Received: prior_stddev={self.prior_stddev!r}"
            )
        self.num_coefficients = k
        g, u = self.num_groups, self.units
        log_sd = np.log(np.asarray(stddevs, "float64"))
        # The prior precision's Cholesky factor P (Sigma^-1 = P P'): log of its diagonal, and its strict lower part.
        self.prior_log_diagonal = self.add_weight(
            name="prior_log_diagonal", shape=(u, k), trainable=self.trainable_prior,
            initializer=_Constant(np.broadcast_to(-log_sd, (u, k))),
        )
        self.prior_lower = None
        if self.covariance == "full" and k > 1:
            self.prior_lower = self.add_weight(
                name="prior_lower", shape=(u, k, k), initializer="zeros", trainable=self.trainable_prior
            )
        self.mean = self.add_weight(name="mean", shape=(g, u, k), initializer="zeros")
        self.posterior_log_diagonal = self.posterior_lower = None
        if self.posterior == "gaussian":
            # Starts at the prior's spread: the penalty (a KL divergence) starts at 0.
            self.posterior_log_diagonal = self.add_weight(
                name="posterior_log_diagonal", shape=(g, u, k),
                initializer=_Constant(np.broadcast_to(log_sd, (g, u, k))),
            )
            if k > 1:
                self.posterior_lower = self.add_weight(
                    name="posterior_lower", shape=(g, u, k, k), initializer="zeros"
                )

    # === Forward pass ===

    def call(self, inputs, training=None):
        groups, covariates = _split_inputs(inputs)
        dtype = self.compute_dtype
        groups = ops.cast(groups, "int32")
        if len(groups.shape) == 2:
            groups = ops.squeeze(groups, axis=-1)
        seen = ops.logical_and(groups >= 0, groups < self.num_groups)
        index = ops.where(seen, groups, ops.zeros_like(groups))
        coefficients = ops.take(ops.cast(self.mean, dtype), index, axis=0)  # (B, U, k)
        if training and self.posterior == "gaussian":
            factor = ops.take(self._posterior_factor(dtype), index, axis=0)  # (B, U, k, k)
            noise = keras.random.normal(ops.shape(coefficients), dtype=dtype, seed=self.seed_generator)
            coefficients = coefficients + ops.einsum("bukl,bul->buk", factor, noise)
        coefficients = coefficients * ops.cast(seen, dtype)[:, None, None]
        parts = []
        if self.intercept:
            parts.append(ops.ones_like(ops.cast(groups, dtype))[:, None])
        if covariates is not None:
            parts.append(ops.cast(covariates, dtype))
        design = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)  # (B, k)
        self.add_loss(self.penalty_weight * self.penalty())
        return ops.einsum("buk,bk->bu", coefficients, design)

    def penalty(self):
        """The unweighted prior penalty summed over groups and units, a scalar tensor.

        `posterior="gaussian"`: `sum KL(q_g || N(0, Sigma_u))`; `"point"`: `sum -log N(m_g; 0, Sigma_u)`.
        """
        dtype = self.compute_dtype
        k = self.num_coefficients
        prior = self._prior_factor(dtype)  # (U, k, k): Sigma^-1 = P P'
        log_det_precision = 2.0 * ops.sum(ops.cast(self.prior_log_diagonal, dtype), axis=-1)  # (U,)
        mean = ops.cast(self.mean, dtype)
        whitened = ops.einsum("ukl,guk->gul", prior, mean)  # P' m
        quadratic = ops.sum(ops.square(whitened), axis=-1)  # (G, U): m' Sigma^-1 m
        if self.posterior == "point":
            return ops.sum(0.5 * quadratic - 0.5 * log_det_precision + 0.5 * k * _LOG_2PI)
        factor = self._posterior_factor(dtype)  # (G, U, k, k)
        trace = ops.sum(ops.square(ops.einsum("ukl,gukm->gulm", prior, factor)), axis=(-2, -1))  # tr(Sigma^-1 S)
        log_det_posterior = 2.0 * ops.sum(ops.cast(self.posterior_log_diagonal, dtype), axis=-1)
        return 0.5 * ops.sum(trace + quadratic - k - log_det_posterior - log_det_precision)

    # === Readouts ===

    def prior_covariance(self):
        """The prior covariance `Sigma` of each unit's coefficients, a NumPy array `(units, k, k)`."""
        factor = ops.convert_to_numpy(self._prior_factor("float32")).astype("float64")
        return np.linalg.inv(factor @ np.swapaxes(factor, -1, -2))

    def random_effects(self):
        """The groups' coefficients (posterior means), a NumPy array `(num_groups, units, k)`."""
        return ops.convert_to_numpy(self.mean)

    def compute_output_shape(self, input_shape):
        groups_shape, _ = _split_shapes(input_shape)
        return (groups_shape[0], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "num_groups": self.num_groups,
            "units": self.units,
            "intercept": self.intercept,
            "covariance": self.covariance,
            "posterior": self.posterior,
            "prior_stddev": self.prior_stddev,
            "trainable_prior": self.trainable_prior,
            "penalty_weight": self.penalty_weight,
            "seed": self.seed,
        }

    def _prior_factor(self, dtype):
        return _lower_factor(self.prior_log_diagonal, self.prior_lower, dtype)

    def _posterior_factor(self, dtype):
        return _lower_factor(self.posterior_log_diagonal, self.posterior_lower, dtype)


def _lower_factor(log_diagonal, lower, dtype):
    """A lower-triangular factor `(..., k, k)` with diagonal `exp(log_diagonal)` and strict lower part of `lower`."""
    log_diagonal = ops.cast(log_diagonal, dtype)
    k = log_diagonal.shape[-1]
    factor = ops.exp(log_diagonal)[..., None, :] * ops.eye(k, dtype=dtype)
    if lower is not None:
        factor = factor + ops.cast(lower, dtype) * ops.convert_to_tensor(np.tril(np.ones((k, k)), -1), dtype)
    return factor


def _split_shapes(input_shape):
    if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple)):
        if len(input_shape) not in (1, 2):
            raise ValueError(
                f"RandomEffects expects `groups` or `[groups, covariates]`. Received {len(input_shape)} inputs."
            )
        return tuple(input_shape[0]), (tuple(input_shape[1]) if len(input_shape) == 2 else None)
    return tuple(input_shape), None


def _split_inputs(inputs):
    if isinstance(inputs, (list, tuple)):
        return inputs[0], (inputs[1] if len(inputs) == 2 else None)
    return inputs, None


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"Invalid value for `{name}`. Expected a positive int. Received: {name}={value!r}")
    return int(value)


def _is_positive_number(value):
    return (
        not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value) and value > 0
    )


class _Constant(keras.initializers.Initializer):
    """Fills a weight with a fixed array (not saved: the weight's value is)."""

    def __init__(self, value):
        self.value = np.asarray(value, "float64")

    def __call__(self, shape, dtype=None):
        return ops.cast(np.broadcast_to(self.value, shape), dtype or "float32")
