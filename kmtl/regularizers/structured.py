"""Structured penalties on task-specific weights: block sparsity, clustering, and a learned task relationship."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from kmtl._checks import is_number
from kmtl.regularizers.base import Penalty, compute_dtype_of, stack_weights


@keras.saving.register_keras_serializable(package="kmtl")
class GroupLasso(Penalty):
    """Block-sparse l1/lq penalty across tasks: each input feature is used by all tasks or by none.

    The T layers' weights, each of shape `(d, ...)` (e.g. a Dense kernel `(d, k)`), are stacked into `(T, d, ...)`.
    Group i holds every weight that reads input feature i, in every task. The penalty is the sum over groups of
    their lq norm, `sum_i ||W[:, i, ...]||_q`: an l1 norm over groups (so whole groups become zero) of an lq norm
    within a group. `q=2` is the group lasso of multi-task feature learning, `q="inf"` the l1/l_inf variant.

    The gradient of a group that is exactly zero is taken as zero (a subgradient), so training never sees NaN.

    Args:
        layers: list of str. Names of the T layers, one per task, in task order.
        strength: float. Multiplier of the penalty (>= 0).
        q: float >= 1 or `"inf"`. Norm within a group. Defaults to 2.
        axis: int. Axis of each weight that indexes the input features (the groups). Defaults to 0, the input
            axis of a Dense kernel; use -2 for the input channels of a convolution kernel.
        weight: str. Attribute of each layer to read (default `"kernel"`).
        **kwargs: passed to `keras.layers.Layer`.

    Example:

    >>> w1 = keras.ops.convert_to_tensor([[3.0], [0.0]])
    >>> w2 = keras.ops.convert_to_tensor([[4.0], [0.0]])
    >>> float(GroupLasso(["a", "b"]).compute([w1, w2]))  # feature 0: ||(3, 4)|| = 5; feature 1 unused
    5.0

    Reference:
        Argyriou, Evgeniou & Pontil (2008). Convex Multi-Task Feature Learning. Machine Learning 73.
    """

    def __init__(self, layers, strength=1e-3, q=2.0, axis=0, weight="kernel", **kwargs):
        super().__init__(layers, strength=strength, weight=weight, **kwargs)
        if isinstance(q, str) and q == "inf" or is_number(q) and q == math.inf:
            q = "inf"
        elif not is_number(q) or not 1 <= q < math.inf:
            raise ValueError(f"Invalid value for `q`. Expected a number >= 1 or 'inf'. Received: q={q!r}")
        else:
            q = float(q)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"Invalid value for `axis`. Expected an int. Received: axis={axis!r}")
        self.q = q
        self.axis = axis

    def compute(self, variables):
        stacked = stack_weights(variables)
        rank = len(stacked.shape) - 1
        if not -rank <= self.axis < rank:
            raise ValueError(
                f"GroupLasso: `axis`={self.axis} is out of range for weights of shape {tuple(stacked.shape[1:])}."
            )
        groups = ops.reshape(ops.moveaxis(stacked, self.axis % rank + 1, 0), (stacked.shape[self.axis % rank + 1], -1))
        magnitudes = ops.abs(groups)
        if self.q == "inf":
            return ops.sum(ops.max(magnitudes, axis=1))
        powered = ops.sum(ops.power(magnitudes, self.q), axis=1)
        nonzero = powered > 0
        # Double `where`: the root's gradient at 0 is infinite; this makes it 0 without NaN leaking through.
        norms = ops.where(nonzero, ops.power(ops.where(nonzero, powered, 1.0), 1.0 / self.q), 0.0)
        return ops.sum(norms)

    def get_config(self):
        return {**super().get_config(), "q": self.q, "axis": self.axis}


@keras.saving.register_keras_serializable(package="kmtl")
class MeanRegularized(Penalty):
    """Pulls task weights towards their mean (and optionally the mean towards zero), optionally within clusters.

    With the T weights flattened to `W_1..W_T` and their mean `W̄`, the penalty is

    `sum_t ||W_t - W̄||^2 + mean_strength * ||W̄||^2`

    (regularised multi-task learning: each task is the mean model plus a small task-specific offset). Given
    `clusters` (a cluster label per layer), the pull towards the overall mean is split as in clustered multi-task
    learning with known clusters, with cluster means `W̄_c` and sizes `m_c`:

    `sum_c sum_{t in c} ||W_t - W̄_c||^2 + between_strength * sum_c m_c ||W̄_c - W̄||^2 + mean_strength * ||W̄||^2`.

    With `between_strength=1` the clustered penalty equals the unclustered one (the variance decomposition); below
    1, tasks are pulled together more within their cluster than across clusters. Without `mean_strength` and
    clusters this is `SoftSharingL2`.

    Args:
        layers: list of str. Names of the T layers, one per task, in task order.
        strength: float. Multiplier of the penalty (>= 0).
        mean_strength: float. Weight of `||W̄||^2` relative to the pull towards the mean (>= 0). Defaults to 0.
        clusters: optional list of T cluster labels (ints or strings), one per layer.
        between_strength: float. Weight of the between-cluster term when `clusters` is given (>= 0).
            Defaults to 0.1.
        weight: str. Attribute of each layer to read (default `"kernel"`).
        **kwargs: passed to `keras.layers.Layer`.

    Example:

    >>> w = keras.ops.ones((2, 1))
    >>> float(MeanRegularized(["a", "b"], mean_strength=1.0).compute([w, 3.0 * w]))  # 2 * 2 * 1 + 1 * 2 * 4
    12.0

    Reference:
        Evgeniou & Pontil (2004). Regularized Multi-Task Learning. KDD.
        Jacob, Bach & Vert (2008). Clustered Multi-Task Learning: A Convex Formulation. NIPS.
    """

    def __init__(
        self, layers, strength=1e-3, mean_strength=0.0, clusters=None, between_strength=0.1, weight="kernel", **kwargs
    ):
        super().__init__(layers, strength=strength, weight=weight, **kwargs)
        for field, value in (("mean_strength", mean_strength), ("between_strength", between_strength)):
            if not is_number(value) or value < 0:
                raise ValueError(f"Invalid value for `{field}`. Expected a number >= 0. Received: {field}={value!r}")
        if clusters is not None:
            clusters = list(clusters) if isinstance(clusters, (list, tuple)) else clusters
            if not isinstance(clusters, list) or len(clusters) != len(self.layer_names):
                raise ValueError(
                    f"Invalid value for `clusters`. Expected one cluster label per layer ({len(self.layer_names)}). "
                    f"Received: clusters={clusters!r}"
                )
        self.mean_strength = float(mean_strength)
        self.clusters = clusters
        self.between_strength = float(between_strength)

    def compute(self, variables):
        stacked = stack_weights(variables)
        flat = ops.reshape(stacked, (stacked.shape[0], -1))
        mean = ops.mean(flat, axis=0)
        total = self.mean_strength * ops.sum(ops.square(mean))
        if self.clusters is None:
            return total + ops.sum(ops.square(flat - mean))
        dtype = compute_dtype_of(variables)
        labels = list(dict.fromkeys(self.clusters))
        assignment = np.array([[c == label for label in labels] for c in self.clusters], dtype=dtype)  # (T, C)
        sizes = assignment.sum(axis=0)
        cluster_means = ops.matmul(ops.convert_to_tensor(assignment.T / sizes[:, None], dtype), flat)  # (C, D)
        within = ops.sum(ops.square(flat - ops.matmul(ops.convert_to_tensor(assignment, dtype), cluster_means)))
        between = ops.sum(ops.convert_to_tensor(sizes, dtype) * ops.sum(ops.square(cluster_means - mean), axis=1))
        return total + within + self.between_strength * between

    def get_config(self):
        return {
            **super().get_config(),
            "mean_strength": self.mean_strength,
            "clusters": self.clusters,
            "between_strength": self.between_strength,
        }


@keras.saving.register_keras_serializable(package="kmtl")
class TaskRelationshipPrior(Penalty):
    """Matrix-normal prior on task weights with a task covariance estimated during training.

    The T layers' weights are flattened into the rows of `W` (T x D). The penalty is the negative log-density of
    a matrix-normal prior with task covariance `Omega` (T x T) and identity feature covariance, up to constants:
    `tr(W^T Omega^-1 W)`. Tasks that `Omega` finds related share statistical strength; unrelated ones do not.

    `Omega` is a non-trainable variable saved with the model. It starts at `I / T` (independent tasks: the
    penalty is then `T * ||W||^2`) and is re-estimated in closed form by `update_covariance()`:

    `Omega = (W W^T + epsilon I)^(1/2) / tr((W W^T + epsilon I)^(1/2))`,

    the minimiser of the penalty over covariances of unit trace. At that minimiser the penalty equals
    `(tr (W W^T)^(1/2))^2`, the squared trace norm of `W`. Pass a `TaskCovarianceUpdater` callback to `fit` to
    re-estimate `Omega` every `update_every` steps (alternating between the weights and the covariance, as the
    paper does).

    This is the feature-covariance-free simplification: Long et al. also estimate feature and class covariances
    (a tensor-normal prior) by flip-flop maximum likelihood; kmtl keeps those at the identity and uses the
    trace-normalised closed form for the task covariance (Zhang & Yeung 2010), which is scale-free and keeps
    `Omega` well conditioned.

    Args:
        layers: list of str. Names of the T layers (e.g. the task heads), in task order.
        strength: float. Multiplier of the penalty (>= 0).
        update_every: int. Training steps between re-estimates of `Omega` by `TaskCovarianceUpdater` (>= 1).
        epsilon: float. Ridge added to `W W^T` before the square root (> 0); keeps `Omega` invertible.
        weight: str. Attribute of each layer to read (default `"kernel"`).
        **kwargs: passed to `keras.layers.Layer`.

    Example:

    >>> prior = TaskRelationshipPrior(["a", "b"], epsilon=1e-9)
    >>> weights = [keras.ops.ones((2, 1)), keras.ops.ones((2, 1))]
    >>> float(prior.compute(weights))  # Omega = I / 2: 2 * ||W||^2
    8.0
    >>> [round(float(v), 3) for v in keras.ops.reshape(prior.update_covariance(weights), (-1,))]
    [0.5, 0.5, 0.5, 0.5]

    Reference:
        Long, Cao, Wang & Yu (2017). Learning Multiple Tasks with Multilinear Relationship Networks. NIPS.
        Long & Wang (2015). Learning Multiple Tasks with Deep Relationship Networks. arXiv:1506.02117.
        Zhang & Yeung (2010). A Convex Formulation for Learning Task Relationships in Multi-Task Learning. UAI.
    """

    def __init__(self, layers, strength=1e-3, update_every=100, epsilon=1e-3, weight="kernel", **kwargs):
        super().__init__(layers, strength=strength, weight=weight, **kwargs)
        if isinstance(update_every, bool) or not isinstance(update_every, (int, np.integer)) or update_every < 1:
            raise ValueError(
                f"Invalid value for `update_every`. Expected an int >= 1. Received: update_every={update_every!r}"
            )
        if not is_number(epsilon) or not epsilon > 0:
            raise ValueError(f"Invalid value for `epsilon`. Expected a number > 0. Received: epsilon={epsilon!r}")
        self.update_every = int(update_every)
        self.epsilon = float(epsilon)

    def build_state(self, variables):
        num_tasks = len(variables)
        self.task_covariance = self.add_weight(
            name="task_covariance",
            shape=(num_tasks, num_tasks),
            initializer=keras.initializers.Identity(gain=1.0 / num_tasks),
            trainable=False,
        )

    def _ensure_state(self, variables):
        """Lets `compute`/`update_covariance` run on plain weights, outside a model."""
        if not self.built:
            self.build_state(variables)
            self.built = True
        if len(variables) != self.task_covariance.shape[0]:
            raise ValueError(
                f"TaskRelationshipPrior: the task covariance is {tuple(self.task_covariance.shape)} but "
                f"{len(variables)} weights were given."
            )

    def compute(self, variables):
        self._ensure_state(variables)
        stacked = stack_weights(variables)
        flat = ops.reshape(stacked, (stacked.shape[0], -1))  # (T, D)
        covariance = ops.cast(self.task_covariance, flat.dtype)
        return ops.sum(flat * ops.solve(covariance, flat))  # tr(W^T Omega^-1 W)

    def update_covariance(self, variables=None):
        """Re-estimates `Omega` from the current weights (or the given ones) and returns it."""
        variables = self.variables_of_layers() if variables is None else list(variables)
        self._ensure_state(variables)
        dtype = compute_dtype_of(variables)
        flat = ops.reshape(stack_weights(variables), (len(variables), -1))
        gram = ops.matmul(flat, ops.transpose(flat)) + self.epsilon * ops.eye(len(variables), dtype=dtype)
        eigenvalues, eigenvectors = ops.eigh(gram)
        root = ops.matmul(eigenvectors * ops.sqrt(ops.maximum(eigenvalues, 0.0)), ops.transpose(eigenvectors))
        covariance = root / ops.trace(root)
        self.task_covariance.assign(ops.cast(covariance, self.task_covariance.dtype))
        return covariance

    def get_config(self):
        return {**super().get_config(), "update_every": self.update_every, "epsilon": self.epsilon}


class TaskCovarianceUpdater(keras.callbacks.Callback):
    """Re-estimates the task covariance of every `TaskRelationshipPrior` of the model during `fit`.

    Each prior is updated whenever the optimizer's step count passes a multiple of its `update_every`.

    Example:

    >>> model.fit(x, y, epochs=5, callbacks=[TaskCovarianceUpdater()])  # doctest: +SKIP

    Reference:
        Long, Cao, Wang & Yu (2017). Learning Multiple Tasks with Multilinear Relationship Networks. NIPS.
    """

    def __init__(self):
        super().__init__()
        self._priors = []
        self._last = {}

    def on_train_begin(self, logs=None):
        self._priors = [p for p in getattr(self.model, "penalties", []) if isinstance(p, TaskRelationshipPrior)]
        if not self._priors:
            raise ValueError(
                "TaskCovarianceUpdater: the model has no TaskRelationshipPrior among its penalties. Pass one to "
                "MultiTaskModel(..., penalties=[...])."
            )
        step = self._step()
        self._last = {id(p): step // p.update_every for p in self._priors}

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        for prior in self._priors:
            if step // prior.update_every > self._last[id(prior)]:
                prior.update_covariance()
                self._last[id(prior)] = step // prior.update_every

    def _step(self):
        return int(ops.convert_to_numpy(self.model.optimizer.iterations))
