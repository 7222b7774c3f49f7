"""Training callbacks."""

import math

import keras
import numpy as np

from kmtl.layers.gradient_reversal import GradientReversal


def grl_schedule(p, gamma=10.0):
    """Gradient-reversal strength schedule of Ganin & Lempitsky.

    Computes `2 / (1 + exp(-gamma * p)) - 1`, which rises smoothly from 0 at
    the start of training (`p = 0`) towards 1 at the end (`p = 1`), so the
    adversarial signal is damped while the head is still noisy.

    Args:
        p: float or array. Training progress in `[0, 1]`.
        gamma: float. Steepness of the schedule. Defaults to `10.0`.

    Returns:
        The schedule value, a float for a scalar `p`, else a numpy array.

    Example:

    >>> grl_schedule(0.0)
    0.0
    >>> round(grl_schedule(1.0), 5)
    0.99991

    Reference:
        Ganin & Lempitsky (2015). Unsupervised Domain Adaptation by
        Backpropagation. ICML.
    """
    value = 2.0 / (1.0 + np.exp(-gamma * np.asarray(p, dtype="float64"))) - 1.0
    return float(value) if np.ndim(value) == 0 else value


# Not registered: Keras callbacks have no get_config() and are never saved.
class GradientReversalSchedule(keras.callbacks.Callback):
    """Sets the strength of gradient-reversal layers at every training batch.

    At the start of each batch the strength becomes
    `max_strength * grl_schedule(p, gamma)`, where the training progress is
    `p = (epoch * steps + batch) / (epochs * steps)`. `epochs` and `steps`
    come from the `fit` call (`self.params`); when the number of steps per
    epoch is unknown (a dataset of unknown length) `steps_per_epoch` is used.
    The strength is a variable, so the compiled train step is not retraced.

    Args:
        layers: `GradientReversal` layer or layer name, or a list of them.
            Names are looked up in the model being trained (nested models
            included).
        max_strength: float. Strength reached at the end of training.
            Defaults to `1.0`.
        gamma: float. Steepness of the schedule. Defaults to `10.0`.
        steps_per_epoch: int or None. Steps per epoch when `fit` cannot tell.
            Defaults to `None`.

    Example:

    ```python
    grl = kmtl.layers.GradientReversal(name="grl")
    ...  # build a model using `grl` in front of a domain head
    model.fit(x, y, epochs=5, callbacks=[GradientReversalSchedule("grl")])
    ```

    Reference:
        Ganin & Lempitsky (2015). Unsupervised Domain Adaptation by
        Backpropagation. ICML.
    """

    def __init__(self, layers, max_strength=1.0, gamma=10.0, steps_per_epoch=None):
        super().__init__()
        for name, value in (("max_strength", max_strength), ("gamma", gamma)):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(
                    f"Invalid value for `{name}`. Expected a finite float >= 0. "
                    f"Received: {name}={value!r}"
                )
        if steps_per_epoch is not None and (
            isinstance(steps_per_epoch, bool)
            or not isinstance(steps_per_epoch, int)
            or steps_per_epoch < 1
        ):
            raise ValueError(
                "Invalid value for `steps_per_epoch`. Expected a positive int "
                f"or None. Received: steps_per_epoch={steps_per_epoch!r}"
            )
        self.layers = layers if isinstance(layers, (list, tuple)) else [layers]
        if not self.layers:
            raise ValueError(
                "Invalid value for `layers`. Expected at least one layer or "
                f"layer name. Received: layers={layers!r}"
            )
        self.max_strength = float(max_strength)
        self.gamma = float(gamma)
        self.steps_per_epoch = steps_per_epoch
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self._targets = [self._resolve(layer) for layer in self.layers]
        self._epochs = self.params.get("epochs")
        self._steps = self.params.get("steps") or self.steps_per_epoch
        if not self._epochs or not self._steps:
            raise ValueError(
                "GradientReversalSchedule needs the number of epochs and of "
                "steps per epoch: `fit` did not report the steps, so pass "
                "`steps_per_epoch=` to the callback (or to `fit`). "
                f"Received: params={self.params}"
            )

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        total = self._epochs * self._steps
        progress = min(max((self._epoch * self._steps + batch) / total, 0.0), 1.0)
        strength = self.max_strength * grl_schedule(progress, self.gamma)
        for layer in self._targets:
            layer.set_strength(strength)

    def _resolve(self, layer):
        if isinstance(layer, str):
            found = _find_layer(self.model, layer)
            if found is None:
                raise ValueError(
                    f"GradientReversalSchedule: no layer named '{layer}' in "
                    f"model '{self.model.name}'."
                )
            layer = found
        if not isinstance(layer, GradientReversal):
            raise ValueError(
                "GradientReversalSchedule expects GradientReversal layers. "
                f"Received: layer={layer!r}"
            )
        return layer


def _find_layer(model, name):
    """Depth-first search for a layer called `name` in nested models."""
    for layer in getattr(model, "layers", []):
        if layer.name == name:
            return layer
        found = _find_layer(layer, name)
        if found is not None:
            return found
    return None
