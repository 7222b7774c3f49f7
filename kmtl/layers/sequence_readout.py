"""Whole-sequence read-outs that never read padding: `SequenceReadout` (one time step: a fixed step, or the last
real step) and `SequenceMean` (the mean over the real steps)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="kmtl")
class SequenceReadout(keras.layers.Layer):
    """Reads each sequence at one time step: a fixed step, or the sequence's last real step.

    The step read is `min(step, last real step)` (the last real step when `step` is None), the last real step being
    the last one whose mask is 1; a sequence with no real step is read at step 0. So a whole-stay prediction never
    reads padding, and appending padding to a sequence leaves it unchanged.

    Args:
        step: int or None. Time step to read (0-based), e.g. 47 for "at 48 hours" with hourly steps; None reads
            the last real step.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: list `[sequence, mask]`: `sequence` `(batch, steps, channels)`, `mask` `(batch, steps)`.

    Returns:
        Tensor `(batch, channels)`.

    Example:

    >>> import numpy as np
    >>> x = np.arange(6, dtype="float32").reshape(1, 3, 2)
    >>> mask = np.array([[1.0, 1.0, 0.0]], "float32")
    >>> keras.ops.convert_to_numpy(SequenceReadout()([x, mask])).tolist()  # last real step, step 1
    [[2.0, 3.0]]
    >>> keras.ops.convert_to_numpy(SequenceReadout(step=0)([x, mask])).tolist()
    [[0.0, 1.0]]

    Reference:
        Harutyunyan et al. (2019). Multitask learning and benchmarking with clinical time series data. Scientific
        Data 6 (in-hospital mortality read at 48 hours, phenotypes at the end of the stay).
    """

    def __init__(self, step: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if step is not None and (isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0):
            raise ValueError(f"Invalid value for `step`. Expected an int >= 0 or None. Received: step={step!r}")
        self.step = None if step is None else int(step)
        self.supports_masking = True  # consumes the sequence's Keras mask: the read-out has no time axis

    def call(self, inputs):
        sequence, mask = inputs
        steps = ops.arange(ops.shape(sequence)[1])
        real = ops.greater(ops.cast(mask, "float32"), 0.5)
        last = ops.max(ops.where(real, steps[None, :], -1), axis=1)
        index = ops.maximum(last, 0)
        if self.step is not None:
            index = ops.minimum(index, self.step)
        pick = ops.cast(ops.equal(steps[None, :], index[:, None]), sequence.dtype)
        return ops.sum(sequence * pick[:, :, None], axis=1)

    def compute_output_shape(self, input_shape):
        sequence_shape = input_shape[0]
        return (sequence_shape[0], sequence_shape[2])

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        return {**super().get_config(), "step": self.step}


@keras.saving.register_keras_serializable(package="kmtl")
class SequenceMean(keras.layers.Layer):
    """Mean of each sequence over its real steps (mask 1); a sequence with no real step gives zeros.

    Call arguments:
        inputs: list `[sequence, mask]`: `sequence` `(batch, steps, channels)`, `mask` `(batch, steps)`.

    Returns:
        Tensor `(batch, channels)`; padding never counts, so appending padding leaves it unchanged.

    Example:

    >>> x = np.array([[[1.0], [3.0], [9.0]]], "float32")
    >>> keras.ops.convert_to_numpy(SequenceMean()([x, np.array([[1.0, 1.0, 0.0]], "float32")])).tolist()
    [[2.0]]
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True  # consumes the sequence's Keras mask: the mean has no time axis

    def call(self, inputs):
        sequence, mask = inputs
        real = ops.cast(ops.greater(ops.cast(mask, "float32"), 0.5), sequence.dtype)
        total = ops.sum(sequence * real[:, :, None], axis=1)
        return total / ops.maximum(ops.sum(real, axis=1, keepdims=True), 1.0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], input_shape[0][2])

    def compute_mask(self, inputs, mask=None):
        return None
