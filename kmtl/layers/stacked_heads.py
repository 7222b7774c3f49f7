"""Stacked heads: the output heads of many tasks of one kind, computed by one layer in one einsum."""

from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

from kmtl.tasks import Task, validate_task_list


@keras.saving.register_keras_serializable(package="kmtl")
class StackedHeads(keras.layers.Layer):
    """The dense output heads of `T` tasks of the same kind and width, as one layer.

    Computes `y[t] = activation(x @ kernel[t] + bias[t])` for every task `t` at once (the einsum
    `...d,tdk->...tk` over a kernel of shape `(T, d, k)`, run as one matmul, plus a bias `(T, k)`) and returns a dict
    `{task_name: (batch, k)}` in task order. A model with `T = 128` binary tasks thus has one head layer instead of
    128. Each slice is initialised as a Dense kernel `(d, k)` would be. A regression task with
    `target_offset`/`target_scale` gets its output rescaled to the targets' units, as `kmtl.heads.task_head` does.

    The tasks must share their kind, output width and activation (e.g. all binary, or all multiclass with 5
    classes); `stacked_task_heads` groups mixed tasks into one layer per such group.

    Variable partition: `kmtl.MultiTaskModel` reads ownership from the graph, and this one layer feeds every one of
    its tasks' outputs, so (for two tasks or more) its kernel and bias count as *shared* variables
    (`model.shared_variables`), not as per-task ones. Mathematically slice `t` belongs to task `t` alone: task `t`'s loss has a zero gradient on every
    other slice, so loss-level weighting trains each slice on its own task only. Gradient-level strategies (PCGrad,
    MGDA, ...) however treat the whole kernel as shared and may mix the slices' updates; use separate Dense heads
    (`kmtl.builders.hard_sharing`) with those.

    Args:
        tasks: list of `kmtl.Task` (or their serialised configs), all of the same kind, `output_units` and
            activation, with unique names.
        use_bias: bool. Whether the heads have a bias. Defaults to `True`.
        kernel_initializer: Keras initializer for the kernel. Variance-scaling initialisers (Glorot, He, LeCun)
            give each `(d, k)` slice the variance a Dense kernel would get. Defaults to `"glorot_uniform"`.
        bias_initializer: Keras initializer for the bias. Defaults to `"zeros"`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Returns:
        A dict `{task_name: tensor (..., k)}` for inputs `(..., d)`.

    Example:

    >>> tasks = [Task(f"assay_{i}", "binary") for i in range(3)]
    >>> out = StackedHeads(tasks)(keras.ops.ones((2, 8)))
    >>> {name: tuple(y.shape) for name, y in out.items()}
    {'assay_0': (2, 1), 'assay_1': (2, 1), 'assay_2': (2, 1)}

    Reference:
        Ramsundar, Kearnes, Riley, Webster, Konerding & Pande (2015). Massively Multitask Networks for Drug
        Discovery. arXiv:1502.02072.
    """

    def __init__(
        self,
        tasks,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.tasks = check_stackable(tasks)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        first = self.tasks[0]
        self.num_tasks = len(self.tasks)
        self.units = first.output_units
        self.activation = keras.activations.get(first.activation)
        self._rescales = any(t.standardizes_targets for t in self.tasks)

    @property
    def task_names(self):
        return [t.name for t in self.tasks]

    def build(self, input_shape):
        features = input_shape[-1]
        if features is None:
            raise ValueError(f"StackedHeads needs a known last input dimension. Received input shape: {input_shape}")
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.num_tasks, features, self.units),
            initializer=stacked_initializer(self.kernel_initializer, self.num_tasks),
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(self.num_tasks, self.units), initializer=self.bias_initializer
            )

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        outputs = stacked_matmul(x, self.kernel)  # (..., T, k)
        if self.bias is not None:
            outputs = outputs + self.bias
        outputs = self.activation(outputs)
        if self._rescales:
            scale = ops.convert_to_tensor([[t.target_scale] for t in self.tasks], dtype=self.compute_dtype)
            offset = ops.convert_to_tensor([[t.target_offset] for t in self.tasks], dtype=self.compute_dtype)
            outputs = outputs * scale + offset
        per_task = ops.unstack(outputs, num=self.num_tasks, axis=-2)
        return dict(zip(self.task_names, per_task))

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape[:-1]) + (self.units,)
        return {name: shape for name in self.task_names}

    def get_config(self):
        return {
            **super().get_config(),
            "tasks": [keras.saving.serialize_keras_object(t) for t in self.tasks],
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }


def stacked_task_heads(tasks: Sequence[Task], features, *, name: str = "stacked_heads") -> dict:
    """Applies stacked heads to a feature vector: one `StackedHeads` layer per group of alike tasks.

    Tasks are grouped by kind, output width and activation, in order of first appearance; each group gets one
    `StackedHeads` layer (float32, like `kmtl.heads.task_head`), named `name` when there is one group and
    `<name>_<i>` (from 1) when there are several.

    Args:
        tasks: list of `kmtl.Task`.
        features: symbolic tensor `(batch, d)`.
        name: str. Name (or prefix) of the stacked layers.

    Returns:
        Dict `{task_name: tensor (batch, output_units)}` in task order.

    Example:

    >>> x = keras.Input((8,))
    >>> tasks = [Task("a", "binary"), Task("b", "binary"), Task("c", "regression", units=2)]
    >>> {k: tuple(v.shape) for k, v in stacked_task_heads(tasks, x).items()}
    {'a': (None, 1), 'b': (None, 1), 'c': (None, 2)}
    """
    tasks = validate_task_list(tasks)
    if len(features.shape) != 2:
        raise ValueError(
            f"Stacked heads read a feature vector (batch, features). Received shape {features.shape}; "
            "pool or flatten the features first (e.g. keras.layers.GlobalAveragePooling2D)."
        )
    groups = {}
    for task in tasks:
        groups.setdefault((task.kind, task.output_units, task.activation), []).append(task)
    outputs = {}
    for i, group in enumerate(groups.values(), start=1):
        layer_name = name if len(groups) == 1 else f"{name}_{i}"
        outputs.update(StackedHeads(group, name=layer_name, dtype="float32")(features))
    return {t.name: outputs[t.name] for t in tasks}


def check_stackable(tasks) -> list:
    """Checks that `tasks` (Tasks or their serialised configs) are valid, uniquely named and alike (kind, output
    width, activation); returns them as `Task`s."""
    if not isinstance(tasks, (list, tuple)):
        raise ValueError(f"Invalid value for `tasks`. Expected a list of kmtl.Task. Received: tasks={tasks!r}")
    tasks = validate_task_list(
        [keras.saving.deserialize_keras_object(t) if isinstance(t, dict) else t for t in tasks]
    )
    first = tasks[0]
    for task in tasks[1:]:
        if (task.kind, task.output_units, task.activation) != (first.kind, first.output_units, first.activation):
            raise ValueError(
                "Invalid value for `tasks`. Expected tasks of one kind, output width and activation. "
                f"Received: {first!r} ({first.output_units} units, {first.activation}) and "
                f"{task!r} ({task.output_units} units, {task.activation})"
            )
    return tasks


def stacked_matmul(x, kernel):
    """`einsum("...d,tdk->...tk", x, kernel)`, computed as one matmul `(..., d) @ (d, T * k)`.

    With an unknown batch dimension TensorFlow runs that einsum as a broadcast batched matmul, `T` small products;
    one matmul over all heads makes a training step at `T = 128` about 7x faster on 2 CPU cores (3 ms against 22 ms
    in `benchmarks/many_tasks.py`).
    """
    count, features, units = kernel.shape
    flat = ops.reshape(ops.transpose(kernel, (1, 0, 2)), (features, count * units))
    outputs = ops.matmul(x, flat)
    return ops.reshape(outputs, tuple(ops.shape(outputs)[:-1]) + (count, units))


def stacked_initializer(initializer, count: int):
    """An initializer for `count` stacked kernels `(count, ..., fan_in, fan_out)`.

    Keras computes the fans of a 3-D shape as those of a convolution (`count * fan_in`, `count * fan_out`), which
    would shrink a variance-scaling initializer's variance by `count`; this returns a copy with its `scale`
    multiplied by `count`, so every slice has the variance of one Dense kernel. Other initializers are returned
    unchanged.
    """
    if isinstance(initializer, keras.initializers.VarianceScaling):
        return keras.initializers.VarianceScaling(
            scale=initializer.scale * count,
            mode=initializer.mode,
            distribution=initializer.distribution,
            seed=initializer.seed,
        )
    return initializer
