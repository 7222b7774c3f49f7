"""Cross-stitch unit: learned linear mixing of task-specific activations."""

import keras
from keras import ops

from kmtl.layers._shapes import shape_list

_MODES = ("matrix", "channel")


@keras.saving.register_keras_serializable(package="kmtl")
class CrossStitch(keras.layers.Layer):
    """Cross-stitch unit mixing the activations of several task columns.

    Called on a list of `T` tensors of identical shape `(batch, ..., channels)`,
    one per task, it returns a list of `T` tensors of the same shape where
    `outputs[i] = sum_j alpha[i, j] * inputs[j]`. The mixing weights `alpha`
    are learned; by default they start near the identity
    (`alpha[i, i] = self_weight`, `alpha[i, j] = (1 - self_weight) / (T - 1)`
    otherwise, so every row sums to 1; with `T = 1` the unit is the identity).

    Args:
        mode: str. `"matrix"` learns one `(T, T)` matrix shared by all
            channels; `"channel"` learns one `(T, T)` matrix per channel
            (kernel shape `(channels, T, T)`). Defaults to `"matrix"`.
        self_weight: float. Initial weight of a task's own activation, in
            `[0, 1]`. Ignored when `initializer` is given. Defaults to `0.9`.
        initializer: optional Keras initializer (object, name or config) for
            `alpha`, overriding the near-identity default.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Returns:
        A list of `T` tensors, each with the shape of the inputs.

    Example:

    >>> a = keras.ops.ones((2, 3))
    >>> b = keras.ops.zeros((2, 3))
    >>> out = CrossStitch(self_weight=0.8)([a, b])
    >>> [round(float(o[0, 0]), 4) for o in out]
    [0.8, 0.2]

    Reference:
        Misra, Shrivastava, Gupta & Hebert (2016). Cross-stitch Networks for
        Multi-task Learning. CVPR.
    """

    def __init__(self, mode="matrix", self_weight=0.9, initializer=None, **kwargs):
        super().__init__(**kwargs)
        if mode not in _MODES:
            raise ValueError(
                f"Invalid value for `mode`. Expected one of {_MODES}. "
                f"Received: mode={mode!r}"
            )
        if (
            isinstance(self_weight, bool)
            or not isinstance(self_weight, (int, float))
            or not 0.0 <= self_weight <= 1.0
        ):
            raise ValueError(
                "Invalid value for `self_weight`. Expected a float in [0, 1]. "
                f"Received: self_weight={self_weight!r}"
            )
        self.mode = mode
        self.self_weight = float(self_weight)
        self.initializer = (
            None if initializer is None else keras.initializers.get(initializer)
        )

    def build(self, input_shape):
        shapes = _check_shapes(input_shape)
        self.num_tasks = len(shapes)
        channels = shapes[0][-1]
        if self.mode == "channel":
            if channels is None:
                raise ValueError(
                    "CrossStitch with mode='channel' needs a known last "
                    f"dimension. Received input shapes: {shapes}"
                )
            kernel_shape = (channels, self.num_tasks, self.num_tasks)
        else:
            kernel_shape = (self.num_tasks, self.num_tasks)
        self.alpha = self.add_weight(
            name="alpha",
            shape=kernel_shape,
            initializer=self.initializer or self._near_identity,
            trainable=True,
        )

    def _near_identity(self, shape, dtype=None):
        num_tasks = shape[-1]
        if num_tasks == 1:
            own, other = 1.0, 0.0
        else:
            own = self.self_weight
            other = (1.0 - self.self_weight) / (num_tasks - 1)
        eye = ops.eye(num_tasks, dtype=dtype)
        matrix = eye * own + (1.0 - eye) * other
        return ops.broadcast_to(matrix, shape)

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != self.num_tasks:
            raise ValueError(
                f"CrossStitch was built for a list of {self.num_tasks} tensors. "
                f"Received: inputs={inputs!r}"
            )
        # Task axis last: (batch, ..., channels, T).
        stacked = ops.stack(
            [ops.cast(x, self.compute_dtype) for x in inputs], axis=-1
        )
        alpha = ops.cast(self.alpha, self.compute_dtype)
        if self.mode == "matrix":
            mixed = ops.matmul(stacked, ops.transpose(alpha))
        else:
            mixed = ops.einsum("...cj,cij->...ci", stacked, alpha)
        return ops.unstack(mixed, num=self.num_tasks, axis=-1)

    def compute_output_shape(self, input_shape):
        return [tuple(shape) for shape in _check_shapes(input_shape)]

    def get_config(self):
        return {
            **super().get_config(),
            "mode": self.mode,
            "self_weight": self.self_weight,
            "initializer": (
                None
                if self.initializer is None
                else keras.initializers.serialize(self.initializer)
            ),
        }


def _check_shapes(input_shape):
    """Returns the list of input shapes, checking that they are equal."""
    shapes = shape_list("CrossStitch", input_shape, "tensor, one per task")
    if any(s != shapes[0] for s in shapes):
        raise ValueError(
            "CrossStitch expects all inputs to have the same shape. "
            f"Received input shapes: {shapes}"
        )
    return shapes
