"""Channel groups: split a sequence's feature axis into per-variable groups, and run one small LSTM per group."""

from __future__ import annotations

import numbers

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="kmtl")
class ChannelGroups(keras.layers.Layer):
    """Splits the last axis of a tensor into groups of channels chosen by index lists.

    A clinical time series discretised for a network has several channels per variable (a value, a one-hot code
    for a categorical variable, an "was it measured" mask channel). A channel-wise model reads each variable's
    channels with its own small recurrent layer; this layer hands out those groups. It replaces the `Lambda`
    slices that Keras 3 refuses to load with `safe_mode=True`. A group may hold any channels in any order, and
    groups may overlap. An incoming Keras mask (e.g. of padded time steps) is passed on to every group.

    Args:
        groups: sequence of sequences of int. Each inner sequence lists the channel indices (into the last axis)
            of one group, in the order they are gathered. At least one group; no group empty.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Returns:
        A list with one tensor per group, `(..., len(group))`, in the order of `groups`.

    Example:

    >>> import numpy as np
    >>> x = np.arange(10, dtype="float32").reshape(1, 2, 5)
    >>> heart_rate, gcs = ChannelGroups([[0, 4], [1, 2, 3]])(x)
    >>> keras.ops.convert_to_numpy(heart_rate).tolist()
    [[[0.0, 4.0], [5.0, 9.0]]]
    >>> tuple(gcs.shape)
    (1, 2, 3)

    Reference:
        Harutyunyan, Khachatrian, Kale, Ver Steeg & Galstyan (2019). Multitask learning and benchmarking with
        clinical time series data. Scientific Data 6 (channel-wise LSTM).
    """

    def __init__(self, groups, **kwargs):
        super().__init__(**kwargs)
        self.groups = _check_groups(groups)
        self.supports_masking = True

    def build(self, input_shape):
        channels = input_shape[-1]
        highest = max(max(group) for group in self.groups)
        if channels is not None and highest >= channels:
            raise ValueError(
                f"Invalid value for `groups`. Channel index {highest} is out of range for inputs with {channels} "
                f"channels (last axis). Received: groups={self.groups}"
            )
        super().build(input_shape)

    def call(self, inputs):
        return [ops.take(inputs, group, axis=-1) for group in self.groups]

    def compute_output_shape(self, input_shape):
        return [tuple(input_shape[:-1]) + (len(group),) for group in self.groups]

    def compute_mask(self, inputs, mask=None):
        if mask is None:
            return None
        return [mask for _ in self.groups]

    def get_config(self):
        return {**super().get_config(), "groups": [list(group) for group in self.groups]}


@keras.saving.register_keras_serializable(package="kmtl")
class GroupedLSTM(keras.layers.Layer):
    """One small LSTM per channel group, all stepped together in one recurrent loop.

    Equivalent to a separate `keras.layers.LSTM(units, return_sequences=True)` on each group (own weights, Keras's
    gate order and activations) with the outputs concatenated, but traced and run as a single loop: with a dozen
    or more groups (17 variables in the MIMIC-III benchmark's channel-wise LSTM) separate LSTMs take minutes to
    trace on CPU, this takes seconds. Each group's input projection is computed for all steps at once; the loop
    only applies the per-group recurrent kernels (one batched matrix product). Where the mask is 0 (padding) a
    group's state is carried over unchanged and its output repeats the previous one, as Keras's LSTM does, so
    padded steps never influence real steps. The loop compiles under XLA (`jit_compile=True`), also when the
    time axis is unknown at tracing (XLA then compiles once per length). For input dropout, drop whole channels
    before the layer (e.g. `keras.layers.SpatialDropout1D`, the same per-sequence mask Keras's LSTM `dropout`
    draws).

    Args:
        units: int. Units of each group's LSTM.
        go_backwards: bool. Run each LSTM from the last step to the first. Outputs stay in time order (as the
            backward half of `keras.layers.Bidirectional` returns them): output t summarises steps t..end.
        kernel_initializer: initializer of the input kernels.
        recurrent_initializer: initializer of each group's recurrent kernel `(units, 4 * units)`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: list of tensors `(batch, steps, channels_g)`, one per group (e.g. from `ChannelGroups`).
        mask: optional tensor `(batch, steps)`, 1 (True) at real steps and 0 at padding.

    Returns:
        Tensor `(batch, steps, len(inputs) * units)`: group g's outputs at `[g * units, (g + 1) * units)`.

    Example:

    >>> import numpy as np
    >>> x = np.ones((2, 5, 4), "float32")
    >>> groups = ChannelGroups([[0, 1], [2], [3]])(x)
    >>> tuple(GroupedLSTM(3)(groups).shape)
    (2, 5, 9)

    Reference:
        Hochreiter & Schmidhuber (1997). Long Short-Term Memory. Neural Computation 9. Harutyunyan, Khachatrian,
        Kale, Ver Steeg & Galstyan (2019). Multitask learning and benchmarking with clinical time series data.
        Scientific Data 6 (channel-wise LSTM).
    """

    def __init__(
        self,
        units: int,
        go_backwards: bool = False,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, numbers.Integral) or units < 1:
            raise ValueError(f"Invalid value for `units`. Expected a positive int. Received: units={units!r}")
        self.units = int(units)
        self.go_backwards = bool(go_backwards)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.supports_masking = True

    def build(self, input_shape):
        nested = isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple))
        if not nested:
            raise ValueError(
                "GroupedLSTM expects a list of tensors (batch, steps, channels), one per group. "
                f"Received: input_shape={input_shape}"
            )
        gates = 4 * self.units
        self.kernels = [
            self.add_weight(shape=(shape[-1], gates), initializer=self.kernel_initializer, name=f"kernel_{g}")
            for g, shape in enumerate(input_shape)
        ]
        self.recurrent_kernel = self.add_weight(
            shape=(len(input_shape), self.units, gates), initializer="zeros", name="recurrent_kernel"
        )
        # Each group's block is initialised on its own (an orthogonal init of the 3D weight would not be
        # orthogonal per group).
        self.recurrent_kernel.assign(
            ops.stack([self.recurrent_initializer((self.units, gates)) for _ in input_shape], axis=0)
        )
        # Keras's LSTM `unit_forget_bias`: forget gates start at 1.
        forget = np.concatenate([np.zeros(self.units), np.ones(self.units), np.zeros(2 * self.units)])
        self.bias = self.add_weight(shape=(len(input_shape), gates), initializer="zeros", name="bias")
        self.bias.assign(np.tile(forget, (len(input_shape), 1)).astype(self.bias.dtype))
        super().build(input_shape)

    def call(self, inputs, mask=None):
        projected = ops.stack([ops.matmul(x, k) for x, k in zip(inputs, self.kernels)], axis=2) + self.bias
        # Keras's RNN loop, not `ops.scan`: its TensorFlow loop declares its number of steps, which XLA needs to
        # differentiate it when the time axis is unknown at tracing (Keras's `scan` leaves it open). The layer is
        # made per call and owns no weights, so the saved layer is unchanged.
        loop = keras.layers.RNN(
            _GroupedLSTMStep(self.recurrent_kernel, self.units, self.compute_dtype),
            return_sequences=True,
            go_backwards=self.go_backwards,
            dtype=self.dtype_policy,
        )
        mask = _step_mask(mask)
        outputs = loop(projected, mask=mask)
        if self.go_backwards:  # Keras's RNN returns a backward run's outputs last step first
            outputs = ops.flip(outputs, axis=1)
        batch, steps = ops.shape(projected)[0], ops.shape(projected)[1]
        return ops.reshape(outputs, (batch, steps, len(self.kernels) * self.units))

    def compute_output_shape(self, input_shape):
        first = input_shape[0]
        return (first[0], first[1], len(input_shape) * self.units)

    def compute_mask(self, inputs, mask=None):
        if isinstance(mask, (list, tuple)):
            mask = next((m for m in mask if m is not None), None)
        return mask

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "go_backwards": self.go_backwards,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
        }


class _GroupedLSTMStep:
    """One step of every group's LSTM, as the cell of a `keras.layers.RNN`: the input projections of the step come
    in `(batch, groups, 4 * units)`; the states are h and c, `(batch, groups, units)` each. A plain object, so that
    the RNN tracks no weights of its own: the recurrent kernel stays the `GroupedLSTM`'s."""

    def __init__(self, recurrent_kernel, units, compute_dtype):
        self.recurrent_kernel = recurrent_kernel
        self.units = units
        self.compute_dtype = compute_dtype
        self.state_size = [recurrent_kernel.shape[0] * units] * 2

    def get_initial_state(self, batch_size):
        zeros = ops.zeros((batch_size, self.recurrent_kernel.shape[0], self.units), dtype=self.compute_dtype)
        return [zeros, zeros]

    def call(self, inputs, states):
        h, c = states
        z = inputs + ops.einsum("bgu,guv->bgv", h, self.recurrent_kernel)
        i, f, g, o = ops.split(z, 4, axis=-1)
        c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
        h = ops.sigmoid(o) * ops.tanh(c)
        return h, [h, c]

    __call__ = call


def _step_mask(mask):
    """A boolean `(batch, steps)` mask from a Keras mask (a tensor or a list of per-group masks), or None."""
    if isinstance(mask, (list, tuple)):
        mask = next((m for m in mask if m is not None), None)
    if mask is None:
        return None
    return ops.greater(ops.cast(mask, "float32"), 0.5)


def _check_groups(groups) -> list[list[int]]:
    def is_index(value):
        return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0

    ok = not isinstance(groups, (str, bytes)) and hasattr(groups, "__len__") and len(groups) > 0
    ok = ok and all(
        not isinstance(g, (str, bytes)) and hasattr(g, "__len__") and len(g) > 0 and all(is_index(i) for i in g)
        for g in groups
    )
    if not ok:
        raise ValueError(
            "Invalid value for `groups`. Expected a non-empty sequence of non-empty sequences of channel indices "
            f"(ints >= 0). Received: groups={groups!r}"
        )
    return [[int(i) for i in group] for group in groups]
