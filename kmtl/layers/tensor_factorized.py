"""Task-specific Dense layers whose stacked kernel is a low-rank tensor factorisation."""

import math

import keras
from keras import ops

_FACTORIZATIONS = ("tucker", "tt")


@keras.saving.register_keras_serializable(package="kmtl")
class TensorFactorizedDense(keras.layers.Layer):
    """T task-specific Dense layers sharing a factorised `(T, d, k)` kernel.

    The kernel of task t is `W[t]` (d x k); the stacked kernel `W` is never stored but built from factors, so
    tasks share the factors and differ only through the task factor (and, with small ranks, are pulled into a
    common low-rank structure):

    - `"tucker"`, ranks `(r_task, r_in, r_out)`: `W = G x_1 U_task x_2 U_in x_3 U_out`, i.e.
      `W[t, i, j] = sum_abc G[a, b, c] U_task[t, a] U_in[i, b] U_out[j, c]`, with a core `G` (r_task, r_in, r_out)
      and factor matrices `U_task` (T, r_task), `U_in` (d, r_in), `U_out` (k, r_out).
    - `"tt"` (tensor train), ranks `(r_1, r_2)`: `W[t, i, j] = sum_ab G_1[t, a] G_2[a, i, b] G_3[b, j]`, with cores
      `G_1` (T, r_1), `G_2` (r_1, d, r_2), `G_3` (r_2, k).

    With full ranks (`(T, d, k)` for Tucker, `(min(T, d*k), min(T*d, k))` for TT) any kernel can be represented.
    An int rank is used for every mode and capped at that mode's full rank. Each task has its own bias `(k,)`.

    Called on a list of T tensors `(batch, ..., d)` (one per task) or on one tensor read by every task, it returns
    a list of T tensors `(batch, ..., k)`: `outputs[t] = activation(inputs[t] @ W[t] + bias[t])`.

    By default the factor matrices are orthogonal and the (middle) core is normal with the variance that gives the
    kernel the variance of Glorot initialisation, `2 / (d + k)`.

    Args:
        units: int. Output size k of every task.
        ranks: int or tuple of int. Tucker: `(r_task, r_in, r_out)`; TT: `(r_1, r_2)`; an int for every mode.
        factorization: str. `"tucker"` (default) or `"tt"`.
        num_tasks: int. Number of tasks T; required when the layer is called on one shared tensor, otherwise taken
            from the length of the input list.
        activation: activation function or name. Defaults to none (linear).
        use_bias: bool. Whether each task has a bias. Defaults to True.
        factor_initializer: initializer of the factor matrices (Tucker) or outer cores (TT). Defaults to
            `"orthogonal"`.
        core_initializer: initializer of the core (Tucker) or middle core (TT). Defaults to a normal distribution
            scaled as described above.
        bias_initializer: initializer of the biases. Defaults to `"zeros"`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Returns:
        A list of T tensors, one per task.

    Example:

    >>> layer = TensorFactorizedDense(2, ranks=(2, 3, 2), num_tasks=3)
    >>> outputs = layer(keras.ops.ones((4, 5)))
    >>> [tuple(o.shape) for o in outputs], tuple(layer.kernel.shape)
    ([(4, 2), (4, 2), (4, 2)], (3, 5, 2))

    Reference:
        Yang & Hospedales (2017). Deep Multi-task Representation Learning: A Tensor Factorisation Approach. ICLR.
    """

    def __init__(
        self,
        units,
        ranks,
        factorization="tucker",
        num_tasks=None,
        activation=None,
        use_bias=True,
        factor_initializer="orthogonal",
        core_initializer=None,
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not _is_positive_int(units):
            raise ValueError(f"Invalid value for `units`. Expected a positive int. Received: units={units!r}")
        if factorization not in _FACTORIZATIONS:
            raise ValueError(
                f"Invalid value for `factorization`. Expected one of {_FACTORIZATIONS}. "
                f"Received: factorization={factorization!r}"
            )
        num_modes = 3 if factorization == "tucker" else 2
        if isinstance(ranks, (list, tuple)):
            ranks = list(ranks)
        valid_list = isinstance(ranks, list) and len(ranks) == num_modes and all(map(_is_positive_int, ranks))
        if not (_is_positive_int(ranks) or valid_list):
            raise ValueError(
                f"Invalid value for `ranks`. Expected a positive int or {num_modes} positive ints for "
                f"factorization={factorization!r}. Received: ranks={ranks!r}"
            )
        if num_tasks is not None and not _is_positive_int(num_tasks):
            raise ValueError(
                f"Invalid value for `num_tasks`. Expected a positive int. Received: num_tasks={num_tasks!r}"
            )
        self.units = int(units)
        self.ranks = ranks if isinstance(ranks, list) else int(ranks)
        self.factorization = factorization
        self.num_tasks = num_tasks
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.factor_initializer = keras.initializers.get(factor_initializer)
        self.core_initializer = None if core_initializer is None else keras.initializers.get(core_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        self._shared_input = not _is_shape_list(input_shape)
        shapes = [tuple(input_shape)] if self._shared_input else [tuple(s) for s in input_shape]
        if any(s != shapes[0] for s in shapes) or len(shapes[0]) < 2 or shapes[0][-1] is None:
            raise ValueError(
                "TensorFactorizedDense expects one tensor or a list of tensors of the same shape (batch, ..., d) "
                f"with a known last dimension. Received input shape: {input_shape}"
            )
        if self._shared_input and self.num_tasks is None:
            raise ValueError("TensorFactorizedDense called on one shared tensor needs `num_tasks`.")
        if not self._shared_input and self.num_tasks not in (None, len(shapes)):
            raise ValueError(
                f"TensorFactorizedDense has num_tasks={self.num_tasks} but was called on {len(shapes)} tensors."
            )
        self._task_count = self.num_tasks or len(shapes)
        dims = (self._task_count, shapes[0][-1], self.units)
        self.effective_ranks = _effective_ranks(self.ranks, self.factorization, dims)
        core_init = self.core_initializer or keras.initializers.RandomNormal(stddev=self._core_stddev(dims))
        add = self._add_factor
        t, d, k = dims
        if self.factorization == "tucker":
            r_task, r_in, r_out = self.effective_ranks
            self.core = add("core", (r_task, r_in, r_out), core_init)
            self.task_factor = add("task_factor", (t, r_task), self.factor_initializer)
            self.input_factor = add("input_factor", (d, r_in), self.factor_initializer)
            self.output_factor = add("output_factor", (k, r_out), self.factor_initializer)
        else:
            r_1, r_2 = self.effective_ranks
            self.task_core = add("task_core", (t, r_1), self.factor_initializer)
            self.input_core = add("input_core", (r_1, d, r_2), core_init)
            self.output_core = add("output_core", (r_2, k), self.factor_initializer)
        self.bias = add("bias", (t, k), self.bias_initializer) if self.use_bias else None

    def _add_factor(self, name, shape, initializer):
        return self.add_weight(name=name, shape=shape, initializer=initializer)

    def _core_stddev(self, dims):
        # Orthogonal factors: an (n, r) factor's rows have mean squared norm min(n, r) / n.
        if self.factorization == "tucker":
            outer = zip(dims, self.effective_ranks)
        else:  # the task and output cores; the middle core is the random one
            outer = ((dims[0], self.effective_ranks[0]), (dims[2], self.effective_ranks[1]))
        coverage = math.prod(min(n, r) / n for n, r in outer)
        return math.sqrt(2.0 / (dims[1] + dims[2]) / coverage)

    @property
    def kernel(self):
        """The `(T, d, k)` kernel reconstructed from the factors."""
        if self.factorization == "tucker":
            return ops.einsum(
                "abc,ta,ib,jc->tij", self.core, self.task_factor, self.input_factor, self.output_factor
            )
        return ops.einsum("ta,aib,bj->tij", self.task_core, self.input_core, self.output_core)

    def call(self, inputs):
        shared = not isinstance(inputs, (list, tuple))
        if shared != self._shared_input or not shared and len(inputs) != self._task_count:
            expected = "one shared tensor" if self._shared_input else f"a list of {self._task_count} tensors"
            raise ValueError(f"TensorFactorizedDense was built for {expected}. Received: inputs={inputs!r}")
        kernel = ops.cast(self.kernel, self.compute_dtype)
        if shared:
            x = ops.cast(inputs, self.compute_dtype)
            outputs = ops.einsum("...i,tij->t...j", x, kernel)
        else:
            x = ops.stack([ops.cast(v, self.compute_dtype) for v in inputs])
            outputs = ops.einsum("t...i,tij->t...j", x, kernel)
        if self.use_bias:
            # (T, k) -> (T, 1, ..., 1, k), broadcast over the batch and any middle axes.
            bias_shape = (self._task_count,) + (1,) * (len(outputs.shape) - 2) + (self.units,)
            outputs = outputs + ops.reshape(ops.cast(self.bias, self.compute_dtype), bias_shape)
        return ops.unstack(self.activation(outputs), num=self._task_count, axis=0)

    def compute_output_shape(self, input_shape):
        shapes = [tuple(input_shape)] * (self.num_tasks or 1) if not _is_shape_list(input_shape) else input_shape
        return [tuple(s)[:-1] + (self.units,) for s in shapes]

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "ranks": self.ranks,
            "factorization": self.factorization,
            "num_tasks": self.num_tasks,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "factor_initializer": keras.initializers.serialize(self.factor_initializer),
            "core_initializer": (
                None if self.core_initializer is None else keras.initializers.serialize(self.core_initializer)
            ),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }


def _is_positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_shape_list(input_shape):
    return isinstance(input_shape, (list, tuple)) and bool(input_shape) and isinstance(input_shape[0], (list, tuple))


def _effective_ranks(ranks, factorization, dims):
    """Ranks per mode; an int rank is capped at each mode's full rank."""
    t, d, k = dims
    full = (t, d, k) if factorization == "tucker" else (min(t, d * k), min(t * d, k))
    if isinstance(ranks, int):
        return tuple(min(ranks, f) for f in full)
    return tuple(ranks)
