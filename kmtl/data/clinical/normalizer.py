"""Per-channel standardisation of variable-length sequences, fitted on training data only.

`Normalizer` computes each selected channel's mean and standard deviation over the real steps of the training
sequences (padding never counts) and leaves the other channels (one-hot categories, masks) untouched. Its
`layer()` is Keras's built-in `Normalization` layer holding the same statistics, so a model that starts with it
carries them in its `.keras` file and in an exported SavedModel.
"""

import json
import numbers
import os

import keras
import numpy as np


class Normalizer:
    """Standardises selected channels of sequences: `(x - mean) / std`, statistics from training data.

    Args:
        channels: list of int or `None`. Indices of the channels to standardise (e.g.
            `Discretizer().continuous_channels`); `None` standardises every channel. Other channels keep
            mean 0 and standard deviation 1, i.e. pass through unchanged.

    A channel whose standard deviation is 0 on the training data gets standard deviation 1 (it is only
    centred), so an unseen value cannot blow up.

    Example:

    >>> norm = Normalizer(channels=[0]).fit([np.array([[1.0, 5.0], [3.0, 7.0]], dtype="float32")])
    >>> norm.mean.tolist(), norm.std.tolist()
    ([2.0, 0.0], [1.0, 1.0])
    >>> norm.transform(np.array([[4.0, 9.0]], dtype="float32")).tolist()
    [[2.0, 9.0]]
    """

    def __init__(self, channels=None):
        if channels is not None:
            channels = list(channels)
            if any(isinstance(c, bool) or not isinstance(c, numbers.Integral) or c < 0 for c in channels):
                raise ValueError(
                    f"Invalid value for `channels`. Expected a list of channel indices >= 0 or None. "
                    f"Received: channels={channels!r}"
                )
            channels = sorted({int(c) for c in channels})
        self.channels = channels
        self.mean = None
        self.std = None

    @property
    def num_features(self) -> int | None:
        """Number of channels seen by `fit`, or `None` before fitting."""
        return None if self.mean is None else int(self.mean.shape[0])

    def fit(self, sequences, mask=None):
        """Computes the statistics over the real steps of training sequences.

        Args:
            sequences: a list of float arrays `(steps_i, F)`, one per episode; or a padded array `(N, T, F)`
                with `mask`; or a single array `(steps, F)`.
            mask: array `(N, T)` or `None`. For a padded array, 1 at real steps and 0 at padding; padded
                steps never count. `None` counts every step.

        Returns:
            This `Normalizer`, fitted.

        Raises:
            ValueError: if the data has no step, holds non-finite values in a selected channel, or a channel
                index is out of range.
        """
        steps = _real_steps(sequences, mask)
        num_features = steps.shape[1]
        selected = list(range(num_features)) if self.channels is None else self.channels
        if selected and selected[-1] >= num_features:
            raise ValueError(
                f"Invalid value for `channels`: the data has {num_features} channels. "
                f"Received: channels={self.channels}"
            )
        if steps.shape[0] == 0:
            raise ValueError("Cannot fit a Normalizer on data with no real step.")
        values = steps[:, selected].astype("float64")
        if not np.isfinite(values).all():
            bad = selected[int(np.flatnonzero(~np.isfinite(values).all(axis=0))[0])]
            raise ValueError(f"Channel {bad} holds non-finite values (NaN or inf); impute them before fitting.")
        mean = np.zeros(num_features)
        std = np.ones(num_features)
        mean[selected] = values.mean(axis=0)
        spread = values.std(axis=0)
        std[selected] = np.where(spread > 0, spread, 1.0)
        self.mean = mean.astype("float32")
        self.std = std.astype("float32")
        return self

    def transform(self, x):
        """Standardises `x`.

        Args:
            x: float array `(..., F)` (one episode, or a padded batch), or a list of such arrays.

        Returns:
            float32 array(s) of the same shape(s). Padded steps are transformed too; the mask keeps them out.
        """
        self._check_fitted()
        if isinstance(x, (list, tuple)):
            return [self.transform(item) for item in x]
        x = np.asarray(x, dtype="float32")
        if x.shape[-1:] != self.mean.shape:
            raise ValueError(f"Expected {self.mean.shape[0]} channels in the last axis. Received: shape={x.shape}")
        return ((x - self.mean) / self.std).astype("float32")

    def layer(self, name: str = "normalize") -> keras.layers.Layer:
        """Returns a `keras.layers.Normalization` layer that applies `transform` inside a model.

        Args:
            name: str. Name of the layer.

        Returns:
            A built-in Keras `Normalization` layer (last axis) with this normaliser's mean and variance; its
            statistics are saved with the model and exported with it.
        """
        self._check_fitted()
        return keras.layers.Normalization(axis=-1, mean=self.mean, variance=np.square(self.std), name=name)

    # === Config ===

    def get_config(self) -> dict:
        mean = None if self.mean is None else [float(v) for v in self.mean]
        std = None if self.std is None else [float(v) for v in self.std]
        return {"channels": self.channels, "mean": mean, "std": std}

    @classmethod
    def from_config(cls, config):
        normalizer = cls(channels=config.get("channels"))
        if config.get("mean") is not None:
            normalizer.mean = np.asarray(config["mean"], dtype="float32")
            normalizer.std = np.asarray(config["std"], dtype="float32")
        return normalizer

    def save(self, path) -> None:
        """Writes the configuration and statistics to a JSON file at `path`."""
        with open(os.fspath(path), "w", encoding="utf-8") as file:
            json.dump(self.get_config(), file)

    @classmethod
    def load(cls, path):
        """Reads a `Normalizer` written by `save`."""
        with open(os.fspath(path), encoding="utf-8") as file:
            return cls.from_config(json.load(file))

    def _check_fitted(self):
        if self.mean is None:
            raise ValueError("This Normalizer is not fitted yet; call `fit` on the training sequences first.")


def _real_steps(sequences, mask):
    """Stacks the real (unpadded) steps of the input into one `(steps, F)` array."""
    if isinstance(sequences, (list, tuple)):
        if mask is not None:
            raise ValueError("`mask` is for a padded array; a list of sequences has no padding.")
        if not sequences:
            raise ValueError("Cannot fit a Normalizer on an empty list of sequences.")
        arrays = [np.asarray(seq, dtype="float32") for seq in sequences]
        widths = {a.shape[-1] for a in arrays if a.ndim == 2}
        if any(a.ndim != 2 for a in arrays) or len(widths) != 1:
            raise ValueError(
                f"Expected 2D arrays (steps, F) with one F. Received shapes: {[a.shape for a in arrays][:5]}"
            )
        return np.concatenate(arrays, axis=0)
    array = np.asarray(sequences, dtype="float32")
    if array.ndim == 2 and mask is None:
        return array
    if array.ndim != 3:
        raise ValueError(
            f"Expected a padded array (N, T, F) or a list of (steps, F) arrays. Received: shape={array.shape}"
        )
    if mask is None:
        return array.reshape(-1, array.shape[-1])
    mask = np.asarray(mask)
    if mask.shape != array.shape[:2]:
        raise ValueError(f"`mask` must have shape {array.shape[:2]} (N, T). Received: mask.shape={mask.shape}")
    return array[mask > 0]
