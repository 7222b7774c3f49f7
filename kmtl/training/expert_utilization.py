"""Expert utilisation of mixture-of-experts models: the mean weight each task's gate gives each expert."""

from __future__ import annotations

from typing import Any, Mapping

import keras
import numpy as np


def expert_utilization(model, data: Any, *, batch_size: int | None = None, gates: Mapping[str, str] | None = None):
    """Mean gate weight per expert over `data`, for every task that has a gate.

    A task's gate is the layer named `gate_<task>` (as `kmtl.builders.mmoe` and `kmtl.builders.ple` name them);
    its output, `(batch, E)`, sums to 1 over the experts, so the result for each task also sums to 1. In a PLE
    model the entries follow the last level's gate: the task's own experts first, then the shared experts.

    Args:
        model: a Functional model, e.g. a `kmtl.MultiTaskModel` built by `mmoe` or `ple`.
        data: the model's inputs (an array, a dict or list of arrays), or a `tf.data.Dataset` yielding inputs or
            `(inputs, labels)` pairs.
        batch_size: int. Batch size for arrays (as in `Model.predict`).
        gates: dict `{key: layer_name}` of gates to read instead of the `gate_<task>` layers.

    Returns:
        Dict `{key: np.ndarray (E,)}` keyed by task name (or by the keys of `gates`).

    Raises:
        ValueError: if the model has no gate layer to read.

    Example:

    >>> import keras, kmtl
    >>> from kmtl.builders.mmoe import mmoe
    >>> x = keras.Input((4,), name="x")
    >>> model = mmoe(x, x, [kmtl.Task("a", "binary"), kmtl.Task("b", "binary")], num_experts=3)
    >>> usage = expert_utilization(model, np.ones((5, 4), "float32"))
    >>> sorted(usage), usage["a"].shape, round(float(usage["a"].sum()), 5)
    (['a', 'b'], (3,), 1.0)
    """
    return _mean_gates(gate_model(model, gates), data, batch_size)


def gate_model(model, gates: Mapping[str, str] | None = None) -> keras.Model:
    """A `keras.Model` from the model's inputs to its gates' outputs `{key: (batch, E)}`, sharing its layers."""
    if gates is None:
        names = [getattr(t, "name", t) for t in getattr(model, "tasks", ())]
        if not names:
            raise ValueError("expert_utilization needs a model with `tasks` or an explicit `gates` dict.")
        layer_names = {layer.name for layer in model.layers}
        gates = {name: f"gate_{name}" for name in names if f"gate_{name}" in layer_names}
        if not gates:
            raise ValueError(
                f"Model '{model.name}' has no gate layers named gate_<task> for its tasks {names}; build it with "
                "kmtl.builders.mmoe or kmtl.builders.ple, or pass `gates={key: layer_name}`."
            )
    outputs = {}
    for key, layer_name in gates.items():
        try:
            outputs[key] = model.get_layer(layer_name).output
        except ValueError as error:
            raise ValueError(f"expert_utilization: no gate layer named '{layer_name}' for '{key}'. {error}") from None
    return keras.Model(model.input, outputs, name=f"{model.name}_gates")


def _mean_gates(gates: keras.Model, data, batch_size):
    weights = gates.predict(data, batch_size=batch_size, verbose=0)
    return {key: np.asarray(value, dtype="float64").reshape(-1, value.shape[-1]).mean(axis=0)
            for key, value in weights.items()}


# Not registered: Keras callbacks have no get_config() and are never saved.
class ExpertUtilizationLogger(keras.callbacks.Callback):
    """Records the expert utilisation of every task's gate at the end of each epoch.

    At each epoch end it computes `expert_utilization(model, data)` and writes `<task>_expert_<e>` (the mean gate
    weight of expert `e`, from 0) into the epoch's logs, so they appear in `History.history`, `CSVLogger` and
    TensorBoard, and appends the `(E,)` arrays to `self.history[task]`.

    Args:
        data: inputs to measure on, as for `expert_utilization` (e.g. a validation sample).
        batch_size: int. Batch size for arrays.
        gates: dict `{key: layer_name}` of gates to read instead of the `gate_<task>` layers.

    Example:

    ```python
    logger = ExpertUtilizationLogger(x_val)
    model.fit(x, y, epochs=3, callbacks=[logger])
    logger.history["click"]  # 3 arrays of shape (num_experts,)
    ```

    Reference:
        Ma, Zhao, Yi, Chen, Hong & Chi (2018). Modeling Task Relationships in Multi-task Learning with Multi-gate
        Mixture-of-Experts. KDD (Section 5 studies the gates' utilisation of experts).
    """

    def __init__(self, data: Any, *, batch_size: int | None = None, gates: Mapping[str, str] | None = None):
        super().__init__()
        self.data = data
        self.batch_size = batch_size
        self.gates = None if gates is None else dict(gates)
        self.history: dict[str, list[np.ndarray]] = {}
        self._gate_model = None

    def on_train_begin(self, logs=None):
        self._gate_model = gate_model(self.model, self.gates)

    def on_epoch_end(self, epoch, logs=None):
        usage = _mean_gates(self._gate_model, self.data, self.batch_size)
        for key, values in usage.items():
            self.history.setdefault(key, []).append(values)
            if logs is not None:
                logs.update({f"{key}_expert_{e}": float(v) for e, v in enumerate(values)})
