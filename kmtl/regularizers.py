"""Penalties that tie variables of several layers together (soft sharing and relatives).

A Keras `Regularizer` sees one variable. Multi-task penalties compare the variables of several layers — task
towers, task heads — so kmtl has `Penalty`: a small layer-like object that names the layers it reads, is attached to
a `MultiTaskModel` (`MultiTaskModel(..., penalties=[...])`, which builders do for you), adds its value to the
training loss, and is saved with the model (config and any state it keeps).
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import ops


class Penalty(keras.layers.Layer):
    """Base class of cross-layer penalties.

    Subclasses implement `compute(variables)`, returning the (unscaled) penalty of the named layers' weights; the
    value added to the loss is `strength * compute(...)`.

    Args:
        layers: list of str. Names of the layers whose weights the penalty reads, in a meaningful order (e.g. task
            order).
        strength: float. Multiplier of the penalty (>= 0).
        weight: str. Attribute of each layer to read (default `"kernel"`).
        **kwargs: passed to `keras.layers.Layer`.
    """

    def __init__(self, layers: Sequence[str], strength: float = 1e-3, weight: str = "kernel", **kwargs):
        super().__init__(**kwargs)
        layers = list(layers)
        if len(layers) < 1 or not all(isinstance(n, str) for n in layers):
            raise ValueError(f"Invalid value for `layers`. Expected a list of layer names. Received: layers={layers!r}")
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or strength < 0:
            raise ValueError(f"Invalid value for `strength`. Expected a number >= 0. Received: strength={strength!r}")
        self.layer_names = layers
        self.strength = float(strength)
        self.weight = weight
        self._model_layers = None

    def attach(self, model) -> None:
        """Resolves the layer names in `model` (called by `MultiTaskModel`); errors name a missing layer."""
        found = []
        for name in self.layer_names:
            try:
                layer = model.get_layer(name)
            except ValueError:
                raise ValueError(
                    f"{type(self).__name__}: the model has no layer named {name!r}. "
                    f"Layers: {[l.name for l in model.layers]}"
                ) from None
            if not hasattr(layer, self.weight):
                raise ValueError(f"{type(self).__name__}: layer {name!r} has no weight `{self.weight}`.")
            found.append(layer)
        self._model_layers = found
        if not self.built:
            self.build_state([getattr(layer, self.weight) for layer in found])
            self.built = True

    def build_state(self, variables) -> None:
        """Creates any state the penalty keeps (e.g. an estimated task covariance). Default: none."""

    def variables_of_layers(self):
        if self._model_layers is None:
            raise RuntimeError(f"{type(self).__name__} is not attached to a model.")
        return [getattr(layer, self.weight) for layer in self._model_layers]

    def penalty(self):
        """`strength * compute(variables)` as a scalar tensor."""
        return self.strength * self.compute(self.variables_of_layers())

    def compute(self, variables):
        raise TypeError(f"{type(self).__name__} must implement `compute(variables)`.")

    def get_config(self):
        return {**super().get_config(), "layers": self.layer_names, "strength": self.strength, "weight": self.weight}


@keras.saving.register_keras_serializable(package="kmtl")
class SoftSharingL2(Penalty):
    """Squared L2 distance of corresponding weights of task towers to their mean, summed over towers.

    With weights `W_1..W_T` of the same shape, the penalty is `sum_t ||W_t - mean_s W_s||_F^2`. It pulls the
    towers together without forcing them to be equal; with T = 2 it equals `0.5 * ||W_1 - W_2||^2`.

    Example:

    >>> p = SoftSharingL2(["tower_a_1", "tower_b_1"], strength=1.0)
    >>> float(p.compute([keras.ops.ones((2, 2)), keras.ops.zeros((2, 2))]))
    2.0

    Reference:
        Duong, Cohn, Bird & Cook (2015). Low Resource Dependency Parsing: Cross-lingual Parameter Sharing in a
        Neural Network Parser. ACL.
    """

    def compute(self, variables):
        stacked = ops.stack([ops.cast(v, "float32") for v in variables])
        return ops.sum(ops.square(stacked - ops.mean(stacked, axis=0, keepdims=True)))
