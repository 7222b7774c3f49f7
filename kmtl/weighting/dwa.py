"""Loss-level dynamic weighting: DWA, random loss weighting, geometric loss, IMTL-L (and FAMO, from `famo.py`)."""

from __future__ import annotations

import math
import numbers

import keras
from keras import ops

from kmtl.weighting.base import Weighting
from kmtl.weighting.famo import FAMO

# Floor for losses that are divided by or put in a log, so a zero loss (e.g. a batch without labels) stays finite.
_EPSILON = 1e-12


@keras.saving.register_keras_serializable(package="kmtl")
class DWA(Weighting):
    """Dynamic weight average: weights from the rate at which each task's loss fell over the last two epochs.

    In epoch t the weight of task k is `w_k = K * softmax(r / temperature)_k` with `r_k = L_k(t-1) / L_k(t-2)`, where
    `L_k(e)` is the mean of task k's training loss over the steps of epoch e and K the number of tasks; the weights
    sum to K. Weights are 1 in the first two epochs. Each training step adds its losses to a running sum;
    `on_epoch_end` turns the sum into the epoch mean and shifts the two-epoch history. An epoch without training
    steps leaves the history unchanged, so a second `on_epoch_end` call in a row does nothing. Evaluation uses the
    current weights and leaves the state alone. A task loss of 0 in `L_k(t-2)` (no labels at all in an epoch) is
    floored at 1e-12. The state (`epoch_loss_sum`, `epoch_steps`, `last_epoch_loss`, `previous_epoch_loss`,
    `epochs_seen`) is saved with the model.

    Args:
        temperature: float. Softness of the weights; large values give weights near 1. Must be positive.

    Example:

    >>> from kmtl import Task
    >>> dwa = DWA(temperature=2.0)
    >>> dwa.configure([Task("a", "regression"), Task("b", "binary")])
    >>> for epoch_losses in ([2.0, 1.0], [1.0, 1.0]):
    ...     _ = dwa.combine(ops.convert_to_tensor(epoch_losses))
    ...     dwa.on_epoch_end()
    >>> _, weights = dwa.combine(ops.convert_to_tensor([1.0, 1.0]), training=False)
    >>> [round(float(w), 4) for w in weights]  # r = (0.5, 1): 2 * softmax((0.25, 0.5))
    [0.8756, 1.1244]

    Reference:
        Liu, Johns & Davison (2019). End-to-End Multi-Task Learning with Attention. CVPR.
    """

    def __init__(self, temperature=2.0, **kwargs):
        super().__init__(**kwargs)
        self.temperature = _positive("temperature", temperature)

    def create_state(self, num_tasks):
        tasks = (num_tasks,)
        self.epoch_loss_sum = _state(self, tasks, "epoch_loss_sum")
        self.epoch_steps = _state(self, (), "epoch_steps")
        self.last_epoch_loss = _state(self, tasks, "last_epoch_loss")
        self.previous_epoch_loss = _state(self, tasks, "previous_epoch_loss")
        self.epochs_seen = _state(self, (), "epochs_seen")

    def combine(self, losses, training=True):
        if training:
            self.epoch_loss_sum.assign_add(ops.stop_gradient(losses))
            self.epoch_steps.assign_add(ops.ones((), "float32"))
        ratio = self.last_epoch_loss / ops.maximum(self.previous_epoch_loss, _EPSILON)
        dynamic = self.num_tasks * ops.softmax(ratio / self.temperature)
        weights = ops.where(self.epochs_seen >= 2.0, dynamic, ops.ones_like(dynamic))
        weights = ops.cast(weights, losses.dtype)
        return ops.sum(weights * losses), weights

    def on_epoch_end(self):
        steps = float(ops.convert_to_numpy(self.epoch_steps))
        if steps == 0.0:
            return
        self.previous_epoch_loss.assign(self.last_epoch_loss)
        self.last_epoch_loss.assign(self.epoch_loss_sum / steps)
        self.epochs_seen.assign_add(1.0)
        self.epoch_loss_sum.assign(ops.zeros_like(self.epoch_loss_sum))
        self.epoch_steps.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


_DISTRIBUTIONS = ("normal", "uniform", "dirichlet")


@keras.saving.register_keras_serializable(package="kmtl")
class RLW(Weighting):
    """Random loss weighting: fresh random weights on the simplex at every training step.

    Every training step draws `x` from `distribution` (K values, K the number of tasks) and weights the losses by
    `softmax(x)`, so the weights are positive and sum to 1 as in the paper (the total is a random convex combination
    of the task losses, about 1/K of the plain sum). Distributions: `"normal"` (standard normal, the paper's
    default), `"uniform"` (on [0, 1)) and `"dirichlet"` (Dirichlet(1, ..., 1)); as in the authors' LibMTL code, the
    softmax is applied to every draw, the Dirichlet one included. Evaluation (`training=False`) uses weights 1, so
    the validation loss is the plain sum of task losses, as with equal weighting, and draws nothing.

    Args:
        distribution: str. One of `"normal"`, `"uniform"`, `"dirichlet"`.
        seed: int or None. Seed of the strategy's `keras.random.SeedGenerator`; the same seed gives the same
            sequence of weights.

    Example:

    >>> from kmtl import Task
    >>> rlw = RLW(seed=1)
    >>> rlw.configure([Task("a", "regression"), Task("b", "binary"), Task("c", "binary")])
    >>> _, weights = rlw.combine(ops.convert_to_tensor([1.0, 2.0, 3.0]))
    >>> round(float(ops.sum(weights)), 5)
    1.0

    Reference:
        Lin, Ye, Zhang & Tsang (2022). Reasonable Effectiveness of Random Weighting: A Litmus Test for
        Multi-Task Learning. TMLR.
    """

    def __init__(self, distribution="normal", seed=None, **kwargs):
        super().__init__(**kwargs)
        if distribution not in _DISTRIBUTIONS:
            raise ValueError(
                f"Invalid value for `distribution`. Expected one of {list(_DISTRIBUTIONS)}. "
                f"Received: distribution={distribution!r}"
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise ValueError(f"Invalid value for `seed`. Expected an int or None. Received: seed={seed!r}")
        self.distribution = distribution
        self.seed = None if seed is None else int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def combine(self, losses, training=True):
        if not training:
            weights = ops.ones_like(losses)
            return ops.sum(losses), weights
        weights = ops.cast(ops.softmax(self._draw()), losses.dtype)
        return ops.sum(weights * losses), weights

    def _draw(self):
        shape = (self.num_tasks,)
        if self.distribution == "normal":
            return keras.random.normal(shape, seed=self.seed_generator)
        uniform = keras.random.uniform(shape, seed=self.seed_generator)
        if self.distribution == "uniform":
            return uniform
        exponential = -ops.log1p(-uniform)  # Exp(1) = Gamma(1); normalised, a Dirichlet(1, ..., 1) draw
        return exponential / ops.sum(exponential)

    def get_config(self):
        return {**super().get_config(), "distribution": self.distribution, "seed": self.seed}


@keras.saving.register_keras_serializable(package="kmtl")
class GeometricMean(Weighting):
    """Geometric loss strategy (GLS): minimises the geometric mean of the task losses.

    `total = (L_1 * ... * L_K) ** (1 / K)`, computed as `exp(mean(log L_t))` with every loss floored at 1e-12 so a
    zero loss keeps the total finite (its task then gets no gradient). The logged weight of task t is the gradient
    of the total with respect to its loss, `total / (K * L_t)` (0 for a floored loss): tasks with small losses get
    large weights, which makes the total invariant to each task's loss scale. The strategy has no state.

    Example:

    >>> from kmtl import Task
    >>> gls = GeometricMean()
    >>> gls.configure([Task("a", "regression"), Task("b", "binary")])
    >>> total, weights = gls.combine(ops.convert_to_tensor([4.0, 1.0]))
    >>> round(float(total), 5), [round(float(w), 5) for w in weights]
    (2.0, [0.25, 1.0])

    Reference:
        Chennupati, Sistu, Yogamani & Rawashdeh (2019). MultiNet++: Multi-Stream Feature Aggregation and Geometric
        Loss Strategy for Multi-Task Learning. CVPR Workshops.
    """

    def combine(self, losses, training=True):
        floored = ops.maximum(losses, _EPSILON)
        total = ops.exp(ops.mean(ops.log(floored)))
        gradient = ops.stop_gradient(total) / (self.num_tasks * ops.stop_gradient(floored))
        weights = ops.where(losses > _EPSILON, gradient, ops.zeros_like(gradient))
        return total, ops.stop_gradient(weights)


@keras.saving.register_keras_serializable(package="kmtl")
class IMTLL(Weighting):
    """IMTL-L: loss balance with one learned log-scale `s_t` per task.

    `total = sum_t(exp(s_t) * L_t - s_t)`. The network's gradient sees each loss scaled by `exp(s_t)` (the logged
    weight); `s_t` is trained by the model's optimizer, and its gradient `exp(s_t) * L_t - 1` vanishes where
    `exp(s_t) * L_t = 1`, so at the optimum every scaled loss equals 1. The trainable variable `log_scale` starts at
    0 and is saved with the model. Only the loss-balance half of IMTL; its gradient balance (IMTL-G) is a
    gradient-level strategy.

    Example:

    >>> from kmtl import Task
    >>> imtl = IMTLL()
    >>> imtl.configure([Task("a", "regression"), Task("b", "binary")])
    >>> total, weights = imtl.combine(ops.convert_to_tensor([2.0, 0.5]))
    >>> float(total), [float(w) for w in weights]
    (2.5, [1.0, 1.0])

    Reference:
        Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang (2021). Towards Impartial Multi-task Learning. ICLR.
    """

    def create_state(self, num_tasks):
        self.log_scale = self.add_weight(shape=(num_tasks,), initializer="zeros", name="log_scale", trainable=True)

    def combine(self, losses, training=True):
        s = ops.cast(self.log_scale, losses.dtype)
        scale = ops.exp(s)
        return ops.sum(scale * losses - s), ops.stop_gradient(scale)


def _positive(name, value):
    """`value` as a float, or a ValueError naming the argument when it is not a finite positive number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not (math.isfinite(number) and number > 0):
        raise ValueError(f"Invalid value for `{name}`. Expected a positive number. Received: {name}={value!r}")
    return number


def _state(layer, shape, name):
    """A float32 non-trainable zero variable; under `tf.distribute` replicas' updates are averaged."""
    return layer.add_weight(
        shape=shape, initializer="zeros", name=name, trainable=False, aggregation="mean", dtype="float32"
    )


NAMES = {"dwa": DWA, "rlw": RLW, "gls": GeometricMean, "imtl_l": IMTLL, "famo": FAMO}
