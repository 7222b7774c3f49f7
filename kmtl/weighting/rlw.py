"""RLW: random loss weighting, fresh random weights on the simplex at every training step."""

from __future__ import annotations

import numbers

import keras
from keras import ops

from kmtl._checks import check_choice
from kmtl.weighting.base import Weighting, register

_DISTRIBUTIONS = ("normal", "uniform", "dirichlet")


@register("rlw")
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
        check_choice("distribution", distribution, _DISTRIBUTIONS)
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
