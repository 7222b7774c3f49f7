"""Small shared trunks for examples, recipes and tests. Any Keras layers will do as a trunk."""

from __future__ import annotations

from typing import Sequence

import keras


def conv_net(inputs, filters: Sequence[int] = (32, 64, 128), *, dense_units: int | None = 128, name: str = "trunk"):
    """A small CNN trunk: per stage a 3x3 conv, batch norm, ReLU and 2x2 max-pool; then global average pooling.

    Args:
        inputs: symbolic image tensor `(batch, H, W, C)`.
        filters: sequence of int. Filters of each stage.
        dense_units: int or None. Width of a final Dense+ReLU layer (None: the pooled features are returned).
        name: str. Prefix of the layer names.

    Returns:
        Symbolic tensor `(batch, d)`.
    """
    x = inputs
    for i, f in enumerate(filters, start=1):
        x = keras.layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = keras.layers.Activation("relu", name=f"{name}_relu{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"{name}_pool{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name=f"{name}_gap")(x)
    if dense_units:
        x = keras.layers.Dense(dense_units, activation="relu", name=f"{name}_dense")(x)
    return x


def mlp(inputs, units: Sequence[int] = (64, 64), *, activation: str = "relu", name: str = "trunk"):
    """A stack of Dense layers named `<name>_dense<i>`."""
    x = inputs
    for i, u in enumerate(units, start=1):
        x = keras.layers.Dense(u, activation=activation, name=f"{name}_dense{i}")(x)
    return x
