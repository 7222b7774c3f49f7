"""Normalised mean error of facial landmarks."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kmtl")
class NormalizedMeanError(keras.metrics.Mean):
    """Mean point-to-point landmark error divided by the inter-ocular distance (NME).

    Labels and predictions are flattened `(x, y)` pairs, `(batch, 2 * num_points)`. For each example the error is
    the mean over points of `||p_k - t_k||_2`, divided by the distance between the two reference points of the
    ground truth (by default points 0 and 1, the eyes). The metric is the weighted mean over examples.

    Args:
        left_eye: int. Index of the first reference point.
        right_eye: int. Index of the second reference point.
        name: str. Metric name.
        dtype: Metric dtype.

    Example:

    >>> m = NormalizedMeanError()
    >>> m.update_state([[0.0, 0.0, 1.0, 0.0]], [[0.0, 0.1, 1.0, 0.1]])
    >>> round(float(m.result()), 4)
    0.1

    Reference:
        Sagonas, Antonakos, Tzimiropoulos, Zafeiriou & Pantic (2016). 300 Faces In-The-Wild Challenge:
        database and results.
    """

    # kmtl gives this metric whole landmark vectors with one weight per example rather than single entries.
    entrywise = False

    def __init__(self, left_eye=0, right_eye=1, name="nme", dtype=None):
        super().__init__(name=name, dtype=dtype)
        for field, value in (("left_eye", left_eye), ("right_eye", right_eye)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Invalid value for `{field}`. Expected an int >= 0. Received: {field}={value!r}")
        if left_eye == right_eye:
            raise ValueError(f"`left_eye` and `right_eye` must differ. Received: both={left_eye}")
        self.left_eye = left_eye
        self.right_eye = right_eye

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, self.dtype)
        y_pred = ops.cast(y_pred, self.dtype)
        points_true = ops.reshape(y_true, (ops.shape(y_true)[0], -1, 2))
        points_pred = ops.reshape(y_pred, (ops.shape(y_pred)[0], -1, 2))
        errors = ops.mean(ops.sqrt(ops.sum(ops.square(points_pred - points_true), axis=-1)), axis=-1)
        ocular = points_true[:, self.left_eye] - points_true[:, self.right_eye]
        distance = ops.maximum(ops.sqrt(ops.sum(ops.square(ocular), axis=-1)), keras.config.epsilon())
        return super().update_state(errors / distance, sample_weight=sample_weight)

    def get_config(self):
        return {**super().get_config(), "left_eye": self.left_eye, "right_eye": self.right_eye}
