"""Gradient reversal whose strength follows Ganin & Lempitsky's schedule, counted inside the model."""

import math

import keras
from keras import ops

from kmtl.layers.gradient_reversal import _reverse_gradient


@keras.saving.register_keras_serializable(package="kmtl")
class ScheduledGradientReversal(keras.layers.Layer):
    """Gradient reversal layer whose strength rises with training progress, without a callback.

    Identity forward; backward, the gradient is multiplied by `-strength`, where at the `s`-th training call
    (`training=True`; one per train step in `fit`)

        strength = max_strength * (2 / (1 + exp(-gamma * p)) - 1),    p = min(s / total_steps, 1)

    the schedule of Ganin & Lempitsky (2015), from 0 at the start towards `max_strength` at the end, so the
    adversarial signal is damped while the domain head is still noisy. The layer counts its training calls in a
    non-trainable weight (`step`) and keeps the strength it used last in another (`strength_variable`); both are
    saved with the model, so a reloaded model continues the schedule. Calls with `training` false or None
    (`predict`, `evaluate`, serving) leave both unchanged.

    Unlike `kmtl.layers.GradientReversal` with `kmtl.training.GradientReversalSchedule`, no callback is needed:
    the schedule runs wherever the model is trained (`kmtl train`, `compare`, `tune`, a user's own `fit`).
    `total_steps` is the number of train steps the schedule spans (epochs times steps per epoch).

    Args:
        total_steps: int >= 1. Train steps over which `p` goes from 0 to 1.
        max_strength: float. Strength reached at the end, a finite number `>= 0`; 0 makes the gradient through
            the layer zero (the head behind it learns, the layers before it do not see its loss). Defaults to 1.
        gamma: float. Steepness of the schedule, a finite number `>= 0`. Defaults to 10.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Returns:
        The inputs, unchanged.

    Example:

    >>> layer = ScheduledGradientReversal(total_steps=4)
    >>> x = keras.ops.ones((2, 3))
    >>> _ = [layer(x, training=True) for _ in range(3)]
    >>> int(layer.step.numpy()), round(float(layer.strength_variable.numpy()), 4)  # the 3rd call used p = 2/4
    (3, 0.9866)

    Reference:
        Ganin & Lempitsky (2015). Unsupervised Domain Adaptation by Backpropagation. ICML.
    """

    def __init__(self, total_steps, max_strength=1.0, gamma=10.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(
                f"Invalid value for `total_steps`. Expected an int >= 1. Received: total_steps={total_steps!r}"
            )
        for name, value in (("max_strength", max_strength), ("gamma", gamma)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"Invalid value for `{name}`. Expected a finite float >= 0. Received: {name}={value!r}"
                )
        self.total_steps = total_steps
        self.max_strength = float(max_strength)
        self.gamma = float(gamma)

    def build(self, input_shape):
        # One count for all replicas: under a distribution strategy the first replica's update is kept.
        self.step = self.add_weight(name="step", shape=(), initializer="zeros", trainable=False, dtype="int64",
                                    aggregation="only_first_replica")
        self.strength_variable = self.add_weight(name="strength", shape=(), initializer="zeros", trainable=False,
                                                 dtype="float32", autocast=False, aggregation="only_first_replica")

    def strength_at(self, step):
        """The schedule's strength at train step `step` (a number or tensor), as a float32 tensor."""
        progress = ops.minimum(ops.cast(step, "float32") / float(self.total_steps), 1.0)
        return self.max_strength * (2.0 / (1.0 + ops.exp(-self.gamma * progress)) - 1.0)

    def call(self, inputs, training=None):
        if not training:
            return _reverse_gradient(inputs, ops.convert_to_tensor(self.strength_variable))
        strength = self.strength_at(self.step)
        self.strength_variable.assign(strength)
        self.step.assign_add(ops.ones((), "int64"))
        return _reverse_gradient(inputs, strength)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "total_steps": self.total_steps,
            "max_strength": self.max_strength,
            "gamma": self.gamma,
        }
