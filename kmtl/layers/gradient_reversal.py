"""Gradient reversal layer for adversarial (domain) auxiliary tasks."""

import math

import keras
from keras import ops


@ops.custom_gradient
def _reverse_gradient(x, strength):
    """Identity on `x`; the gradient is multiplied by `-strength`."""

    def grad(*args, upstream=None):
        # TensorFlow and JAX pass the upstream gradient positionally; PyTorch
        # passes it as `upstream` after the inputs.
        if upstream is None:
            (upstream,) = args
        scale = ops.cast(strength, upstream.dtype)
        return ops.negative(scale) * upstream, ops.zeros_like(strength)

    # `ops.identity` builds an identity *matrix*; `ops.copy` is tf.identity.
    return ops.copy(x), grad


@keras.saving.register_keras_serializable(package="kmtl")
class GradientReversal(keras.layers.Layer):
    """Gradient reversal layer: identity forward, `-strength` times backward.

    Placed between shared features and an adversarial head (for instance a
    domain classifier), it lets the head minimise its loss while pushing the
    shared features to *maximise* it, so the features become invariant to
    what the head predicts.

    The current strength lives in a non-trainable weight (`strength_variable`),
    so it is saved with the model and can be changed during training with
    `set_strength()` (or `strength_variable.assign()`) without retracing a
    compiled train step; `GradientReversalSchedule` does this per batch.
    `get_config()` returns the initial `strength` argument.

    Args:
        strength: float. Initial factor applied to the reversed gradient, a
            finite number `>= 0`. Defaults to `1.0`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Returns:
        The inputs, unchanged.

    Example:

    >>> layer = GradientReversal(strength=0.5)
    >>> x = keras.ops.ones((2, 3))
    >>> bool(keras.ops.all(layer(x) == x))
    True
    >>> layer.set_strength(2.0)
    >>> float(layer.strength_variable.numpy())
    2.0

    Reference:
        Ganin & Lempitsky (2015). Unsupervised Domain Adaptation by
        Backpropagation. ICML.
    """

    def __init__(self, strength=1.0, **kwargs):
        super().__init__(**kwargs)
        _check_strength(strength)
        self.strength = float(strength)

    def build(self, input_shape):
        self.strength_variable = self.add_weight(
            name="strength",
            shape=(),
            initializer=keras.initializers.Constant(self.strength),
            trainable=False,
            dtype="float32",
            autocast=False,
        )

    def set_strength(self, value):
        """Sets the current strength (a finite float `>= 0`) in place."""
        if not self.built:
            raise ValueError(
                f"GradientReversal layer '{self.name}' must be built (called "
                "once) before its strength can be set."
            )
        if not hasattr(value, "shape"):  # Python values; tensors go as they are.
            _check_strength(value)
        self.strength_variable.assign(ops.cast(value, "float32"))

    def call(self, inputs):
        strength = ops.convert_to_tensor(self.strength_variable)
        return _reverse_gradient(inputs, strength)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "strength": self.strength}


def _check_strength(strength):
    if (
        isinstance(strength, bool)
        or not isinstance(strength, (int, float))
        or not math.isfinite(strength)
        or strength < 0
    ):
        raise ValueError(
            "Invalid value for `strength`. Expected a finite float >= 0. "
            f"Received: strength={strength!r}"
        )
