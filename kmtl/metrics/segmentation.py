"""Dice score for masks: `2 TP / (2 TP + FP + FN)` over every labelled pixel seen, per class, then averaged.

Keras has IoU metrics (`keras.metrics.BinaryIoU`, `MeanIoU`) but no Dice score; this one follows them: it keeps
running counts, so the score is over all pixels of all batches (not a mean of per-batch scores), and a pixel with
sample weight 0 (kmtl gives unlabelled pixels weight 0) is not counted.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

__all__ = ["DiceScore"]


@keras.saving.register_keras_serializable(package="kmtl")
class DiceScore(keras.metrics.Metric):
    """Dice score (F1 of pixels) of thresholded binary masks or argmax class masks.

    Args:
        num_classes: int or None. None for binary masks (labels 0/1, one probability per pixel); else the number of
            classes of a multiclass mask (labels are class ids, predictions one probability per class).
        target_class_ids: sequence of int or None. Classes averaged over; default: the foreground (binary) or every
            class (multiclass). Classes that were neither labelled nor predicted are left out of the mean.
        threshold: float. Binary masks: probability at or above which a pixel is predicted foreground.
        name, dtype: as for `keras.metrics.Metric`.

    Example:

    >>> metric = DiceScore()
    >>> metric.update_state([[1.0], [1.0], [0.0]], [[0.9], [0.2], [0.7]])
    >>> float(metric.result())  # TP 1, FP 1, FN 1: 2 / 4
    0.5
    """

    def __init__(
        self,
        num_classes: int | None = None,
        target_class_ids: Sequence[int] | None = None,
        threshold: float = 0.5,
        name: str = "dice",
        dtype=None,
    ):
        super().__init__(name=name, dtype=dtype)
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                        or num_classes < 2):
            raise ValueError(
                f"Invalid value for `num_classes`. Expected None (binary) or an int >= 2. Received: num_classes={num_classes!r}"
            )
        self.num_classes = num_classes
        width = 2 if num_classes is None else num_classes
        ids = [1] if target_class_ids is None and num_classes is None else target_class_ids
        ids = list(range(width)) if ids is None else [int(i) for i in ids]
        if not ids or any(not 0 <= i < width for i in ids):
            raise ValueError(
                f"Invalid value for `target_class_ids`. Expected ids in 0..{width - 1}. "
                f"Received: target_class_ids={target_class_ids!r}"
            )
        self.target_class_ids = ids
        self.threshold = float(threshold)
        self._width = width
        self.true_positives = self.add_variable((width,), initializer="zeros", name="true_positives")
        self.false_positives = self.add_variable((width,), initializer="zeros", name="false_positives")
        self.false_negatives = self.add_variable((width,), initializer="zeros", name="false_negatives")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.convert_to_tensor(y_pred)
        if self.num_classes is None:
            self._update_binary(y_true, y_pred, sample_weight)
            return
        truth = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        guess = ops.cast(ops.argmax(ops.reshape(y_pred, (-1, self.num_classes)), axis=-1), "int32")
        truth = ops.one_hot(truth, self._width, dtype="float32")
        guess = ops.one_hot(guess, self._width, dtype="float32")
        weight = 1.0 if sample_weight is None else ops.reshape(ops.cast(sample_weight, "float32"), (-1, 1))
        self.true_positives.assign_add(ops.sum(weight * truth * guess, axis=0))
        self.false_positives.assign_add(ops.sum(weight * (1.0 - truth) * guess, axis=0))
        self.false_negatives.assign_add(ops.sum(weight * truth * (1.0 - guess), axis=0))

    def _update_binary(self, y_true, y_pred, sample_weight):
        # Four sums over the pixels give both classes' counts (no one-hot (N, 2) tensors): with t, g the
        # thresholded truth and guess and w the weights, TP1 = Σwtg, FP1 = Σwg - TP1, FN1 = Σwt - TP1 and, for the
        # background, TP0 = Σw - Σwt - Σwg + TP1, FP0 = FN1, FN0 = FP1.
        truth = ops.cast(ops.cast(ops.reshape(y_true, (-1,)), "float32") >= 0.5, "float32")
        guess = ops.cast(ops.reshape(y_pred, (-1,)) >= self.threshold, "float32")
        if sample_weight is None:
            weighted_truth, weighted_guess, total = truth, guess, ops.cast(ops.shape(truth)[0], "float32")
        else:
            weight = ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
            weighted_truth, weighted_guess, total = weight * truth, weight * guess, ops.sum(weight)
        tp = ops.sum(weighted_truth * guess)
        labelled, predicted = ops.sum(weighted_truth), ops.sum(weighted_guess)
        fp, fn = predicted - tp, labelled - tp
        self.true_positives.assign_add(ops.stack([total - labelled - predicted + tp, tp]))
        self.false_positives.assign_add(ops.stack([fn, fp]))
        self.false_negatives.assign_add(ops.stack([fp, fn]))

    def result(self):
        ids = self.target_class_ids
        tp, fp, fn = (ops.take(v, ids) for v in (self.true_positives, self.false_positives, self.false_negatives))
        size = 2.0 * tp + fp + fn
        seen = ops.cast(size > 0, "float32")
        dice = 2.0 * tp / ops.maximum(size, keras.config.epsilon())
        return ops.sum(dice * seen) / ops.maximum(ops.sum(seen), 1.0)

    def reset_state(self):
        for variable in (self.true_positives, self.false_positives, self.false_negatives):
            variable.assign(ops.zeros_like(variable))

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "target_class_ids": self.target_class_ids,
            "threshold": self.threshold,
        }
