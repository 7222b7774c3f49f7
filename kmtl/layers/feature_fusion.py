"""HyperFace-style fusion of features taken at several depths."""

import keras
from keras import ops

from kmtl.layers._shapes import shape_list

_POOLINGS = ("avg", "max")


@keras.saving.register_keras_serializable(package="kmtl")
class FeatureFusion(keras.layers.Layer):
    """Fuses feature maps from several depths into one vector per example.

    Each input of shape `(batch, H_i, W_i, C_i)` is globally pooled to
    `(batch, C_i)` (more generally, every axis between the batch and the
    channels is pooled, so sequences and volumes work too); inputs of shape
    `(batch, d)` are used as they are. The vectors are concatenated and,
    when `units` is given, projected by a `Dense` layer.

    Args:
        units: int or None. Size of the projection after concatenation;
            `None` returns the concatenation itself. Defaults to `None`.
        activation: str, callable or None. Activation of the projection.
            Ignored when `units` is `None`. Defaults to `None`.
        pooling: str. Global pooling of each feature map, `"avg"` or `"max"`.
            Defaults to `"avg"`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Returns:
        A tensor of shape `(batch, units)`, or `(batch, sum_i C_i)` when
        `units` is `None`.

    Example:

    >>> early = keras.ops.ones((2, 8, 8, 3))
    >>> late = keras.ops.ones((2, 2, 2, 5))
    >>> tuple(FeatureFusion(units=4, activation="relu")([early, late]).shape)
    (2, 4)
    >>> tuple(FeatureFusion()([early, late]).shape)
    (2, 8)

    Reference:
        Ranjan, Patel & Chellappa (2019). HyperFace: A Deep Multi-task
        Learning Framework for Face Detection, Landmark Localization, Pose
        Estimation, and Gender Recognition. IEEE TPAMI.
    """

    def __init__(self, units=None, activation=None, pooling="avg", **kwargs):
        super().__init__(**kwargs)
        if units is not None and (
            isinstance(units, bool) or not isinstance(units, int) or units < 1
        ):
            raise ValueError(
                "Invalid value for `units`. Expected a positive int or None. "
                f"Received: units={units!r}"
            )
        if pooling not in _POOLINGS:
            raise ValueError(
                f"Invalid value for `pooling`. Expected one of {_POOLINGS}. "
                f"Received: pooling={pooling!r}"
            )
        self.units = units
        self.activation = keras.activations.get(activation)
        self.pooling = pooling

    def build(self, input_shape):
        width = self._fused_width(input_shape)
        self.projection = None
        if self.units is not None:
            self.projection = keras.layers.Dense(
                self.units,
                activation=self.activation,
                dtype=self.dtype_policy,
                name="projection",
            )
            self.projection.build((None, width))

    def call(self, inputs):
        pool = ops.mean if self.pooling == "avg" else ops.max
        vectors = []
        for x in inputs:
            x = ops.cast(x, self.compute_dtype)
            rank = len(x.shape)
            vectors.append(x if rank == 2 else pool(x, axis=tuple(range(1, rank - 1))))
        fused = ops.concatenate(vectors, axis=-1)
        if self.projection is not None:
            fused = self.projection(fused)
        return fused

    def compute_output_shape(self, input_shape):
        width = self._fused_width(input_shape)
        batch = input_shape[0][0]
        return (batch, width if self.units is None else self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "pooling": self.pooling,
        }

    @staticmethod
    def _fused_width(input_shape):
        """Checks the input shapes and returns the concatenated width."""
        shapes = shape_list("FeatureFusion", input_shape)
        if any(len(s) < 2 or s[-1] is None for s in shapes):
            raise ValueError(
                "FeatureFusion expects inputs of rank >= 2 with a known last "
                f"dimension. Received input shapes: {shapes}"
            )
        return sum(s[-1] for s in shapes)
