"""Mixture of experts: stacked expert MLPs, softmax gates and the gated mixture of expert outputs."""

import numbers

import keras
from keras import ops

from kmtl.layers._ops import softmax

from kmtl.layers.stacked_heads import stacked_initializer, stacked_matmul


@keras.saving.register_keras_serializable(package="kmtl")
class Experts(keras.layers.Layer):
    """`E` expert MLPs of identical shape, computed together.

    Each layer of the experts has a stacked kernel `(E, d_in, d_out)` and bias `(E, d_out)`, and all `E` experts
    are evaluated with one einsum per depth: inputs `(..., d)` give outputs `(..., E, units)`, where
    `outputs[..., e, :]` is expert `e`'s MLP applied to the inputs. Every layer, the last included, is followed by
    `activation` (experts are ReLU MLPs in the MMoE and PLE papers). Each expert's kernels are initialised as a
    Dense kernel of the same shape would be.

    Args:
        num_experts: int. Number of experts `E` (>= 1).
        units: int. Output width of every expert (>= 1).
        hidden_units: sequence of int. Widths of the experts' hidden layers. Defaults to `()` (one layer).
        activation: str or callable. Activation after every layer. Defaults to `"relu"`.
        use_bias: bool. Whether the layers have biases. Defaults to `True`.
        kernel_initializer: Keras initializer of the kernels. Defaults to `"glorot_uniform"`.
        bias_initializer: Keras initializer of the biases. Defaults to `"zeros"`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Returns:
        A tensor `(..., num_experts, units)`.

    Example:

    >>> tuple(Experts(num_experts=3, units=4, hidden_units=[8])(keras.ops.ones((2, 5))).shape)
    (2, 3, 4)

    Reference:
        Ma, Zhao, Yi, Chen, Hong & Chi (2018). Modeling Task Relationships in Multi-task Learning with Multi-gate
        Mixture-of-Experts. KDD.
    """

    def __init__(
        self,
        num_experts,
        units,
        hidden_units=(),
        activation="relu",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_experts = _check_positive_int("num_experts", num_experts)
        self.units = _check_positive_int("units", units)
        if isinstance(hidden_units, (int, str)) or not all(
            isinstance(u, numbers.Integral) and not isinstance(u, bool) and u > 0 for u in hidden_units
        ):
            raise ValueError(
                "Invalid value for `hidden_units`. Expected a sequence of positive ints. "
                f"Received: hidden_units={hidden_units!r}"
            )
        self.hidden_units = [int(u) for u in hidden_units]
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        features = input_shape[-1]
        if features is None:
            raise ValueError(f"Experts needs a known last input dimension. Received input shape: {input_shape}")
        widths = [features, *self.hidden_units, self.units]
        initializer = stacked_initializer(self.kernel_initializer, self.num_experts)
        self.kernels, self.biases = [], []
        for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
            self.kernels.append(
                self.add_weight(name=f"kernel_{i}", shape=(self.num_experts, fan_in, fan_out), initializer=initializer)
            )
            if self.use_bias:
                self.biases.append(
                    self.add_weight(
                        name=f"bias_{i}", shape=(self.num_experts, fan_out), initializer=self.bias_initializer
                    )
                )

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        for i, kernel in enumerate(self.kernels):
            # The first layer reads the shared input (..., d), all experts in one matmul; later ones each expert's
            # own activations (..., E, h).
            x = stacked_matmul(x, kernel) if i == 0 else ops.einsum("...ed,edh->...eh", x, kernel)
            if self.use_bias:
                x = x + self.biases[i]
            x = self.activation(x)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_experts, self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "num_experts": self.num_experts,
            "units": self.units,
            "hidden_units": list(self.hidden_units),
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }


@keras.saving.register_keras_serializable(package="kmtl")
class ExpertGate(keras.layers.Layer):
    """Softmax gate: the weight a task gives each of `E` experts, computed from the gate's input.

    `weights = softmax(x @ kernel + bias)`, so inputs `(..., d)` give `(..., E)` weights in `[0, 1]` that sum to 1
    over the experts. Builders name a task's gate `gate_<task>`, so its weights can be read with
    `keras.Model(model.input, model.get_layer("gate_<task>").output)` (see
    `kmtl.training.expert_utilization.expert_utilization`).

    Args:
        num_experts: int. Number of experts the gate weighs (>= 1).
        use_bias: bool. Whether the gate has a bias. Defaults to `True`.
        kernel_initializer: Keras initializer of the kernel. Defaults to `"glorot_uniform"`.
        bias_initializer: Keras initializer of the bias. Defaults to `"zeros"`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Returns:
        A tensor `(..., num_experts)` of gate weights.

    Example:

    >>> weights = ExpertGate(num_experts=3)(keras.ops.ones((2, 5)))
    >>> [round(float(s), 5) for s in keras.ops.sum(weights, axis=-1)]
    [1.0, 1.0]

    Reference:
        Ma, Zhao, Yi, Chen, Hong & Chi (2018). Modeling Task Relationships in Multi-task Learning with Multi-gate
        Mixture-of-Experts. KDD.
    """

    def __init__(
        self,
        num_experts,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_experts = _check_positive_int("num_experts", num_experts)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        features = input_shape[-1]
        if features is None:
            raise ValueError(f"ExpertGate needs a known last input dimension. Received input shape: {input_shape}")
        self.kernel = self.add_weight(
            name="kernel", shape=(features, self.num_experts), initializer=self.kernel_initializer
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.num_experts,), initializer=self.bias_initializer)

    def call(self, inputs):
        logits = ops.matmul(ops.cast(inputs, self.compute_dtype), self.kernel)
        if self.bias is not None:
            logits = logits + self.bias
        return softmax(logits, axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_experts,)

    def get_config(self):
        return {
            **super().get_config(),
            "num_experts": self.num_experts,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }


@keras.saving.register_keras_serializable(package="kmtl")
class ExpertMixture(keras.layers.Layer):
    """Gated mixture of expert outputs: `sum_e gates[..., e] * experts[..., e, :]`.

    Called as `mixture(experts, gates)`. `experts` is a tensor `(..., E, units)` or a list of such tensors, which
    are joined along the expert axis in list order (PLE mixes a task's own experts with the shared ones this way);
    `gates` is `(..., E)` with `E` the total number of experts. The layer has no weights.

    Args:
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Returns:
        A tensor `(..., units)`.

    Example:

    >>> experts = keras.ops.convert_to_tensor([[[1.0, 2.0], [3.0, 4.0]]])
    >>> ExpertMixture()(experts, keras.ops.convert_to_tensor([[0.25, 0.75]])).numpy().tolist()
    [[2.5, 3.5]]

    Reference:
        Ma, Zhao, Yi, Chen, Hong & Chi (2018). Modeling Task Relationships in Multi-task Learning with Multi-gate
        Mixture-of-Experts. KDD.
    """

    def build(self, experts_shape, gates_shape):
        self._check_shapes(experts_shape, gates_shape)

    def call(self, experts, gates):
        if isinstance(experts, (list, tuple)):
            experts = ops.concatenate([ops.cast(e, self.compute_dtype) for e in experts], axis=-2)
        experts = ops.cast(experts, self.compute_dtype)
        return ops.einsum("...eu,...e->...u", experts, ops.cast(gates, self.compute_dtype))

    def compute_output_shape(self, experts_shape, gates_shape):
        shapes = self._check_shapes(experts_shape, gates_shape)
        return tuple(shapes[0][:-2]) + (shapes[0][-1],)

    @staticmethod
    def _check_shapes(experts_shape, gates_shape):
        nested = isinstance(experts_shape, (list, tuple)) and experts_shape and not _is_shape(experts_shape)
        shapes = [tuple(s) for s in experts_shape] if nested else [tuple(experts_shape)]
        if any(len(s) < 2 for s in shapes) or len({s[:-2] + s[-1:] for s in shapes}) != 1:
            raise ValueError(
                "ExpertMixture expects experts of shape (..., num_experts, units), alike but for num_experts. "
                f"Received experts shapes: {shapes}"
            )
        counts = [s[-2] for s in shapes]
        total = None if None in counts else sum(counts)
        gates_shape = tuple(gates_shape)
        if total is not None and gates_shape[-1] is not None and gates_shape[-1] != total:
            raise ValueError(
                f"ExpertMixture expects one gate weight per expert: {total} experts ({counts}). "
                f"Received gates shape: {gates_shape}"
            )
        return shapes


def _is_shape(value):
    return all(d is None or isinstance(d, int) for d in value)


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"Invalid value for `{name}`. Expected a positive int. Received: {name}={value!r}")
    return int(value)
