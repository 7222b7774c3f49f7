"""Sluice-network layers: subspace mixing between tasks (alpha) and mixtures over layers (beta)."""

import keras
from keras import ops

from kmtl._checks import is_number
from kmtl.layers._ops import softmax
from kmtl.layers._shapes import shape_list


@keras.saving.register_keras_serializable(package="kmtl")
class SubspaceMixing(keras.layers.Layer):
    """Sluice alpha unit: learned mixing of every task's subspaces.

    Called on a list of `T` tensors of identical shape `(batch, ..., d)`, one
    per task, it splits each task's features into `subspaces` (S) equal
    subspaces of width `d / S`, mixes all `T * S` subspaces with a learned
    `(T*S, T*S)` matrix `alpha` and returns `T` tensors of the input shape:
    `out[k] = sum_l alpha[k, l] * in[l]`, where subspace `k = t * S + s` is
    subspace `s` of task `t`. `alpha` starts near the identity
    (`alpha[k, k] = self_weight`, the rest of each row `(1 - self_weight) /
    (T*S - 1)`), so each subspace starts mostly as itself.

    The layer also adds, with `add_loss`, the subspace orthogonality penalty
    of its inputs, `orthogonality * sum_t sum_{s < r} ||G_{t,s}^T G_{t,r}||_F^2`,
    where `G_{t,s}` is subspace `s` of task `t`'s input with all axes but the
    last flattened into rows `(batch * ..., d / S)`. The penalty is a sum over
    the batch, so its size grows with the batch size squared; choose
    `orthogonality` for your batch size.

    Args:
        subspaces: int. Number of subspaces per task (>= 1; `d` must be a
            multiple). With 1 the unit is a cross-stitch unit. Defaults to 2.
        orthogonality: float. Strength of the orthogonality penalty (>= 0; 0
            adds no loss). Defaults to `1e-3`.
        self_weight: float. Initial weight of a subspace on itself, in
            `[0, 1]`. Ignored when `initializer` is given. Defaults to `0.9`.
        initializer: optional Keras initializer (object, name or config) for
            `alpha`, overriding the near-identity default.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Returns:
        A list of `T` tensors, each with the shape of the inputs.

    Example:

    >>> a = keras.ops.ones((1, 4))
    >>> b = keras.ops.zeros((1, 4))
    >>> out = SubspaceMixing(subspaces=2, self_weight=0.7)([a, b])
    >>> [round(float(o[0, 0]), 4) for o in out]
    [0.8, 0.2]

    Reference:
        Ruder, Bingel, Augenstein & Søgaard (2019). Latent Multi-task
        Architecture Learning. AAAI.
    """

    def __init__(
        self,
        subspaces=2,
        orthogonality=1e-3,
        self_weight=0.9,
        initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(subspaces, bool) or not isinstance(subspaces, int) or subspaces < 1:
            raise ValueError(
                "Invalid value for `subspaces`. Expected a positive int. "
                f"Received: subspaces={subspaces!r}"
            )
        if not is_number(orthogonality) or orthogonality < 0:
            raise ValueError(
                "Invalid value for `orthogonality`. Expected a float >= 0. "
                f"Received: orthogonality={orthogonality!r}"
            )
        if not is_number(self_weight) or not 0.0 <= self_weight <= 1.0:
            raise ValueError(
                "Invalid value for `self_weight`. Expected a float in [0, 1]. "
                f"Received: self_weight={self_weight!r}"
            )
        self.subspaces = subspaces
        self.orthogonality = float(orthogonality)
        self.self_weight = float(self_weight)
        self.initializer = (
            None if initializer is None else keras.initializers.get(initializer)
        )

    def build(self, input_shape):
        shapes = _check_list_of_equal_shapes("SubspaceMixing", input_shape)
        width = shapes[0][-1]
        if width is None or width % self.subspaces:
            raise ValueError(
                f"SubspaceMixing with subspaces={self.subspaces} needs a known "
                "last dimension that is a multiple of `subspaces`. "
                f"Received input shapes: {shapes}"
            )
        self.num_tasks = len(shapes)
        size = self.num_tasks * self.subspaces
        self.alpha = self.add_weight(
            name="alpha",
            shape=(size, size),
            initializer=self.initializer or self._near_identity,
            trainable=True,
        )

    def _near_identity(self, shape, dtype=None):
        size = shape[-1]
        own = 1.0 if size == 1 else self.self_weight
        other = 0.0 if size == 1 else (1.0 - self.self_weight) / (size - 1)
        eye = ops.eye(size, dtype=dtype)
        return eye * own + (1.0 - eye) * other

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != self.num_tasks:
            raise ValueError(
                f"SubspaceMixing was built for a list of {self.num_tasks} "
                f"tensors. Received: inputs={inputs!r}"
            )
        # Subspace k = t * S + s, each (batch, ..., d / S).
        pieces = [
            piece
            for x in inputs
            for piece in ops.split(ops.cast(x, self.compute_dtype), self.subspaces, axis=-1)
        ]
        if self.orthogonality > 0 and self.subspaces > 1:
            self.add_loss(self.orthogonality * self._orthogonality_penalty(pieces))
        stacked = ops.stack(pieces, axis=-1)  # (batch, ..., d / S, T * S)
        mixed = ops.matmul(stacked, ops.transpose(ops.cast(self.alpha, self.compute_dtype)))
        mixed = ops.unstack(mixed, num=len(pieces), axis=-1)
        size = self.subspaces
        return [
            ops.concatenate(mixed[t * size : (t + 1) * size], axis=-1)
            for t in range(self.num_tasks)
        ]

    def _orthogonality_penalty(self, pieces):
        """`sum_t sum_{s < r} ||G_{t,s}^T G_{t,r}||_F^2` in float32."""
        width = pieces[0].shape[-1]
        rows = [ops.reshape(ops.cast(p, "float32"), (-1, width)) for p in pieces]
        terms = []
        for t in range(self.num_tasks):
            own = rows[t * self.subspaces : (t + 1) * self.subspaces]
            for s in range(self.subspaces):
                for r in range(s + 1, self.subspaces):
                    product = ops.matmul(ops.transpose(own[s]), own[r])
                    terms.append(ops.sum(ops.square(product)))
        return ops.sum(ops.stack(terms))

    def compute_output_shape(self, input_shape):
        return [tuple(s) for s in _check_list_of_equal_shapes("SubspaceMixing", input_shape)]

    def get_config(self):
        return {
            **super().get_config(),
            "subspaces": self.subspaces,
            "orthogonality": self.orthogonality,
            "self_weight": self.self_weight,
            "initializer": (
                None
                if self.initializer is None
                else keras.initializers.serialize(self.initializer)
            ),
        }


@keras.saving.register_keras_serializable(package="kmtl")
class LayerMixture(keras.layers.Layer):
    """Sluice beta unit: a learned convex mixture of several layers' outputs.

    Called on a list of `L` tensors of identical shape (one task's outputs at
    `L` depths), it returns `sum_l w_l * inputs[l]` with
    `w = softmax(beta)`: the weights are positive and sum to 1. `beta` (a
    vector of `L` logits) starts at zero, an even mixture. `mixture_weights()`
    returns the current `w`.

    Args:
        initializer: Keras initializer (object, name or config) of the logits
            `beta`. Defaults to `"zeros"`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Returns:
        A tensor with the shape of each input.

    Example:

    >>> out = LayerMixture()([keras.ops.ones((1, 2)), keras.ops.zeros((1, 2))])
    >>> keras.ops.convert_to_numpy(out).tolist()
    [[0.5, 0.5]]

    Reference:
        Ruder, Bingel, Augenstein & Søgaard (2019). Latent Multi-task
        Architecture Learning. AAAI.
    """

    def __init__(self, initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        shapes = _check_list_of_equal_shapes("LayerMixture", input_shape)
        self.num_layers = len(shapes)
        self.beta = self.add_weight(
            name="beta",
            shape=(self.num_layers,),
            initializer=self.initializer,
            trainable=True,
        )

    def mixture_weights(self):
        """The mixture weights `softmax(beta)`, a tensor of shape `(L,)`."""
        return softmax(ops.convert_to_tensor(self.beta))

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != self.num_layers:
            raise ValueError(
                f"LayerMixture was built for a list of {self.num_layers} "
                f"tensors. Received: inputs={inputs!r}"
            )
        stacked = ops.stack([ops.cast(x, self.compute_dtype) for x in inputs], axis=-1)
        weights = softmax(ops.cast(self.beta, self.compute_dtype))
        return ops.matmul(stacked, weights)

    def compute_output_shape(self, input_shape):
        return tuple(_check_list_of_equal_shapes("LayerMixture", input_shape)[0])

    def get_config(self):
        return {
            **super().get_config(),
            "initializer": keras.initializers.serialize(self.initializer),
        }


def _check_list_of_equal_shapes(layer, input_shape):
    """Returns the list of input shapes, checking that they are equal."""
    shapes = shape_list(layer, input_shape)
    if any(s != shapes[0] for s in shapes):
        raise ValueError(
            f"{layer} expects all inputs to have the same shape. "
            f"Received input shapes: {shapes}"
        )
    return shapes
