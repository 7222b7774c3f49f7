"""Dice losses for per-pixel tasks: each image's Dice over its labelled pixels, averaged over annotated images.

kmtl's other losses are means over label entries. Dice is not: it compares a whole mask with a whole prediction.
These losses therefore implement `masked_call(y_true, y_pred, present, weights, rows)`, which
`kmtl.losses.masked_loss` calls with the task's label entries (missing pixels already marked): an unlabelled pixel
counts for nothing, an image whose mask is missing (every pixel missing) is left out of the mean (it contributes
nothing to the loss or its gradient), and a partly annotated mask is scored over its labelled pixels only.

Called directly (`loss(y_true, y_pred)`, as Keras does outside kmtl), they score every pixel: with `smooth=0` the
binary `DiceLoss` then equals `keras.losses.Dice(axis=...)` per image.

Reference:
    Milletari, Navab & Ahmadi (2016). V-Net: Fully Convolutional Neural Networks for Volumetric Medical Image
    Segmentation. 3DV.
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["DiceCrossEntropy", "DiceLoss", "masked_dice"]


def masked_dice(y_true, y_pred, weights, rows, smooth: float = 1.0):
    """Dice loss of each image over its weighted pixels: `1 - mean_c (2 Σ w y p + s) / (Σ w y + Σ w p + s)`.

    Args:
        y_true: tensor. Binary masks as 0/1 (one value per pixel), or class ids when `y_pred` has several channels.
        y_pred: tensor. Probabilities: one channel (binary, the foreground) or one per class (softmax).
        weights: tensor, one per pixel: 0 for unlabelled pixels, else the pixel's weight (usually 1).
        rows: int or scalar tensor. Number of images; the pixels are laid out image by image.
        smooth: float. Added to both sides of the ratio (`s`), so an image with an empty mask and an empty
            prediction scores 1, not 0/0.

    Returns:
        Tuple `(loss, labelled)`: float32 `(rows,)` per-image losses and `(rows,)` 1.0 where the image has at least
        one labelled pixel.
    """
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
    channels = y_pred.shape[-1] if len(y_pred.shape) > 1 else 1
    channels = 1 if channels is None else int(channels)
    y_pred = ops.reshape(y_pred, (rows, -1, channels))
    y_true = ops.convert_to_tensor(y_true)
    if channels == 1:
        y_true = ops.reshape(ops.cast(y_true, "float32"), (rows, -1, 1))
    else:
        y_true = ops.one_hot(ops.reshape(ops.cast(y_true, "int32"), (rows, -1)), channels, dtype="float32")
    weights = ops.reshape(ops.cast(ops.convert_to_tensor(weights), "float32"), (rows, -1, 1))
    weighted_pred = weights * y_pred  # (two products per pixel, not four)
    overlap = ops.sum(weighted_pred * y_true, axis=1)
    size = ops.sum(weights * y_true, axis=1) + ops.sum(weighted_pred, axis=1)
    dice = (2.0 * overlap + smooth) / ops.maximum(size + smooth, keras.config.epsilon())
    labelled = ops.cast(ops.sum(ops.reshape(weights, (rows, -1)), axis=1) > 0, "float32")
    return 1.0 - ops.mean(dice, axis=-1), labelled


def _mean_over_labelled(per_image, labelled):
    # `where` keeps images without labels out of the sum, their values and their gradients alike.
    total = ops.sum(ops.where(labelled > 0, per_image, ops.zeros_like(per_image)))
    return total / ops.maximum(ops.sum(labelled), 1.0)


def _pixel_entries(y_true, y_pred):
    """Unmasked `(y_true, y_pred)` as one row per pixel: `(N,)` ids and `(N, C)`, or `(N, 1)` and `(N, 1)`."""
    y_pred = ops.convert_to_tensor(y_pred)
    channels = int(y_pred.shape[-1])
    if channels == 1:
        return ops.reshape(ops.cast(y_true, y_pred.dtype), (-1, 1)), ops.reshape(y_pred, (-1, 1))
    return ops.reshape(y_true, (-1,)), ops.reshape(y_pred, (-1, channels))


@keras.saving.register_keras_serializable(package="kmtl")
class DiceLoss(keras.losses.Loss):
    """Soft Dice loss per image, for per-pixel tasks; missing pixels and missing masks count for nothing.

    For a binary task the Dice of the foreground; for a multiclass task the mean over classes of each class's Dice
    (one-hot labels against the softmax). In a kmtl model the loss is the mean over images with at least one
    labelled pixel (see the module docstring).

    Args:
        smooth: float >= 0. Added to numerator and denominator of each Dice ratio.
        reduction, name, dtype: as for `keras.losses.Loss`.

    Example:

    >>> loss = DiceLoss(smooth=0.0)
    >>> round(float(loss([[[1.0], [0.0]]], [[[1.0], [1.0]]])), 4)  # 1 - 2*1 / (1 + 2)
    0.3333
    """

    def __init__(self, smooth: float = 1.0, reduction="sum_over_batch_size", name="dice_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if isinstance(smooth, bool) or not isinstance(smooth, (int, float)) or smooth < 0:
            raise ValueError(f"Invalid value for `smooth`. Expected a number >= 0. Received: smooth={smooth!r}")
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        rows = ops.shape(y_pred)[0]
        y_true, y_pred = _pixel_entries(y_true, y_pred)
        return masked_dice(y_true, y_pred, ops.ones((ops.shape(y_pred)[0],)), rows, self.smooth)[0]

    def masked_call(self, y_true, y_pred, present, weights, rows):
        """The mean Dice loss over images with labelled pixels, from a task's label entries (`label_entries`)."""
        per_image, labelled = masked_dice(y_true, y_pred, weights, rows, self.smooth)
        return _mean_over_labelled(per_image, labelled)

    def get_config(self):
        return {**super().get_config(), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="kmtl")
class DiceCrossEntropy(DiceLoss):
    """Dice loss plus `crossentropy_weight` times the pixels' cross-entropy, for per-pixel tasks.

    The cross-entropy (binary, or sparse categorical for several channels) is the mean over labelled pixels; the
    Dice term is `DiceLoss`'s. Cross-entropy gives every pixel a gradient from the first step; Dice keeps small
    foregrounds from being drowned by the background.

    Args:
        smooth: float >= 0. As for `DiceLoss`.
        crossentropy_weight: float >= 0. Weight of the cross-entropy term.
        reduction, name, dtype: as for `keras.losses.Loss`.

    Example:

    >>> loss = DiceCrossEntropy(smooth=0.0, crossentropy_weight=0.0)
    >>> round(float(loss([[[1.0], [0.0]]], [[[1.0], [1.0]]])), 4)
    0.3333
    """

    def __init__(
        self,
        smooth: float = 1.0,
        crossentropy_weight: float = 1.0,
        reduction="sum_over_batch_size",
        name="dice_crossentropy",
        dtype=None,
    ):
        super().__init__(smooth=smooth, reduction=reduction, name=name, dtype=dtype)
        weight = crossentropy_weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ValueError(
                f"Invalid value for `crossentropy_weight`. Expected a number >= 0. Received: crossentropy_weight={weight!r}"
            )
        self.crossentropy_weight = float(weight)

    def call(self, y_true, y_pred):
        rows = ops.shape(y_pred)[0]
        entries_true, entries_pred = _pixel_entries(y_true, y_pred)
        crossentropy = ops.mean(ops.reshape(_crossentropy(entries_true, entries_pred), (rows, -1)), axis=1)
        return super().call(y_true, y_pred) + self.crossentropy_weight * crossentropy

    def masked_call(self, y_true, y_pred, present, weights, rows):
        dice = super().masked_call(y_true, y_pred, present, weights, rows)
        values = _crossentropy(y_true, y_pred)
        present = ops.cast(present, "float32")
        total = ops.sum(ops.where(present > 0, values * ops.cast(weights, "float32"), ops.zeros_like(values)))
        return dice + self.crossentropy_weight * total / ops.maximum(ops.sum(present), 1.0)

    def get_config(self):
        return {**super().get_config(), "crossentropy_weight": self.crossentropy_weight}


def _crossentropy(y_true, y_pred):
    """Per-pixel cross-entropy, `(N,)` float32, of entries `(N, 1)` (binary) or ids `(N,)` and `(N, C)`."""
    if int(y_pred.shape[-1]) == 1:
        values = keras.losses.binary_crossentropy(ops.cast(y_true, y_pred.dtype), y_pred)
    else:
        values = keras.losses.sparse_categorical_crossentropy(y_true, y_pred)
    return ops.cast(ops.reshape(values, (-1,)), "float32")
