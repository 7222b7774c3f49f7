"""The base of cross-layer penalties: `Penalty` and the helpers its subclasses share.

A Keras `Regularizer` sees one variable. Multi-task penalties compare the variables of several layers — task
towers, task heads — so kmtl has `Penalty`: a small layer-like object that names the layers it reads, is attached to
a `MultiTaskModel` (`MultiTaskModel(..., penalties=[...])`, which builders do for you), adds its value to the
training loss, and is saved with the model (config and any state it keeps).
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

from kmtl._checks import is_number


class Penalty(keras.layers.Layer):
    """Base class of cross-layer penalties.

    Subclasses implement `compute(variables)`, returning the (unscaled) penalty of the named layers' weights; the
    value added to the loss is `strength * compute(...)`. A subclass that keeps state (e.g. an estimated task
    covariance) creates it in `build_state(variables)`; the state is saved with the model.

    `compute` also accepts plain arrays, so a penalty can be evaluated on any weights:
    `penalty.compute([w1, w2])`. It works in float64 when every weight is float64 and in float32 otherwise.

    Args:
        layers: list of str. Names of the layers whose weights the penalty reads, in a meaningful order (e.g. task
            order).
        strength: float. Multiplier of the penalty (>= 0).
        weight: str. Attribute of each layer to read (default `"kernel"`).
        **kwargs: passed to `keras.layers.Layer`.
    """

    #: Whether every layer's weight must have the same shape (checked when the penalty is attached).
    same_shape = True

    def __init__(self, layers: Sequence[str], strength: float = 1e-3, weight: str = "kernel", **kwargs):
        super().__init__(**kwargs)
        layers = list(layers) if isinstance(layers, (list, tuple)) else layers
        if not isinstance(layers, list) or not layers or not all(isinstance(n, str) for n in layers):
            raise ValueError(f"Invalid value for `layers`. Expected a list of layer names. Received: layers={layers!r}")
        if not is_number(strength) or strength < 0:
            raise ValueError(f"Invalid value for `strength`. Expected a number >= 0. Received: strength={strength!r}")
        if not isinstance(weight, str):
            raise ValueError(f"Invalid value for `weight`. Expected an attribute name. Received: weight={weight!r}")
        self.layer_names = layers
        self.strength = float(strength)
        self.weight = weight
        # Not a list attribute: Keras would track the model's layers as this penalty's sublayers and save their
        # weights a second time under the penalty.
        self._handles = _LayerHandles(())

    def attach(self, model) -> None:
        """Resolves the layer names in `model` (called by `MultiTaskModel`).

        Raises:
            ValueError: naming a layer the model lacks, a layer without the weight, or layers whose weights differ
                in shape.
        """
        found = []
        for name in self.layer_names:
            try:
                layer = model.get_layer(name)
            except ValueError:
                raise ValueError(
                    f"{type(self).__name__}: the model has no layer named {name!r}. "
                    f"Layers: {[l.name for l in model.layers]}"
                ) from None
            if getattr(layer, self.weight, None) is None:
                raise ValueError(f"{type(self).__name__}: layer {name!r} has no weight `{self.weight}`.")
            found.append(layer)
        variables = [getattr(layer, self.weight) for layer in found]
        shapes = [tuple(v.shape) for v in variables]
        if self.same_shape and any(s != shapes[0] for s in shapes):
            listing = ", ".join(f"{n}: {s}" for n, s in zip(self.layer_names, shapes))
            raise ValueError(
                f"{type(self).__name__}: the layers' `{self.weight}` weights must have the same shape. "
                f"Received: {listing}"
            )
        self._handles = _LayerHandles(found)
        if not self.built:
            self.build_state(variables)
            self.built = True

    def build_state(self, variables) -> None:
        """Creates any state the penalty keeps (e.g. an estimated task covariance). Default: none."""

    def variables_of_layers(self) -> list:
        """The weights the penalty reads, in the order of `layers`."""
        if not self._handles.layers:
            raise RuntimeError(f"{type(self).__name__} is not attached to a model.")
        return [getattr(layer, self.weight) for layer in self._handles.layers]

    def penalty(self):
        """`strength * compute(variables)` as a scalar tensor."""
        return self.strength * self.compute(self.variables_of_layers())

    def compute(self, variables):
        """The unscaled penalty of `variables` (a list of weights, one per layer)."""
        raise TypeError(f"{type(self).__name__} must implement `compute(variables)`.")

    def get_config(self):
        return {**super().get_config(), "layers": self.layer_names, "strength": self.strength, "weight": self.weight}


class _LayerHandles:
    """Holds the resolved layers out of Keras's attribute tracking."""

    __slots__ = ("layers",)

    def __init__(self, layers):
        self.layers = tuple(layers)


def compute_dtype_of(variables) -> str:
    """float64 when every variable is float64 (exact tests), float32 otherwise (mixed precision included)."""
    dtypes = {keras.backend.standardize_dtype(getattr(v, "dtype", "float32")) for v in variables}
    return "float64" if dtypes == {"float64"} else "float32"


def stack_weights(variables):
    """Stacks T weights of equal shape into one `(T, *shape)` tensor in the penalty's compute dtype."""
    dtype = compute_dtype_of(variables)
    return ops.stack([ops.cast(v, dtype) for v in variables])
