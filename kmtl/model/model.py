"""`MultiTaskModel`: a Functional Keras model that carries its tasks."""

from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

import keras
from keras import ops

from kmtl import _keras_internals
from kmtl import weighting as weighting_lib
from kmtl.losses import label_entries, masked_loss
from kmtl.losses.masked import stacked_label_entries, stacked_masked_losses
from kmtl.model.gradient_step import GradientStep
from kmtl.model.gradients import GRADIENT_METHODS
from kmtl.model.multi_worker import MultiWorkerSupport
from kmtl.model.nan_guard import TaskNaNGuard
from kmtl.model.optimizers import MultiOptimizer, task_optimizer
from kmtl.model.partition import variable_partition
from kmtl.model.progress import TaskProgbarLogger
from kmtl.model.replicas import replica_context, scale_for_replicas
from kmtl.model.task_state import (
    TaskState,
    TrackedValue,
    Untracked,
    batch_size,
    task_sample_weight,
    update_metric,
)
from kmtl.tasks import Task, validate_task_list
from kmtl.tasks.batch_checks import named_batch_errors
from kmtl.tasks.fit_checks import check_fit_data


@keras.saving.register_keras_serializable(package="kmtl")
class MultiTaskModel(GradientStep, MultiWorkerSupport, keras.Model):
    """A Functional model whose outputs are a dict of task predictions, one per `Task`.

    `compile` derives losses and metrics from the tasks, masks missing labels, logs `<task>_loss` and
    `<task>_weight` for every task and combines task losses with a weighting strategy. Labels are always a dict
    `{task_name: labels}` and predictions a dict keyed the same way. Builders in `kmtl.builders` return this class;
    it can also be made directly from symbolic inputs and a dict of head outputs named after the tasks.

    Args:
        inputs: Keras input tensor(s), as for a Functional `keras.Model`.
        outputs: dict `{task_name: tensor}` with one entry per task.
        name: str. Model name.
        tasks: list of `kmtl.Task`, in the order used for logs and weights.
        penalties: list of `kmtl.regularizers.Penalty`. Penalties on variables of several layers at once (e.g. soft
            sharing between task towers); each is added to the training loss and saved with the model.
        **kwargs: passed to `keras.Model`.

    Example:

    >>> import keras, kmtl
    >>> tasks = [kmtl.Task("smiling", "binary"), kmtl.Task("age", "regression")]
    >>> x = keras.Input((8,), name="features")
    >>> h = keras.layers.Dense(16, activation="relu")(x)
    >>> outputs = {t.name: kmtl.heads.task_head(t, h) for t in tasks}
    >>> model = kmtl.MultiTaskModel(x, outputs, tasks=tasks)
    >>> model.compile(optimizer="adam", weighting="uncertainty")
    >>> sorted(model.task_variables)
    ['age', 'smiling']
    """

    def __init__(self, inputs, outputs, name=None, *, tasks: Sequence[Task], penalties: Sequence = (), **kwargs):
        tasks = validate_task_list(tasks)
        _check_outputs(tasks, outputs)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self._tasks = tuple(tasks)
        self.penalties = list(penalties)
        for penalty in self.penalties:
            penalty.attach(self)
        self._partition = Untracked()  # a plain holder: Keras must not adopt the partitioned variables
        self._plan = Untracked()
        self._gradient_method = "loop"
        self._task_state = None

    # === Tasks ===

    @property
    def tasks(self) -> tuple[Task, ...]:
        """The model's tasks, in order."""
        return self._tasks

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self._tasks]

    def task(self, name: str) -> Task:
        """The task called `name`."""
        for task in self._tasks:
            if task.name == name:
                return task
        raise KeyError(f"No task named {name!r}. Tasks: {self.task_names}")

    # === Variable partition ===

    @property
    def shared_variables(self) -> list:
        """Trainable variables of layers that feed more than one task's output."""
        return list(self._variable_partition()[0])

    @property
    def task_variables(self) -> dict[str, list]:
        """Trainable variables of layers that feed only one task's output, keyed by task name."""
        return {name: list(v) for name, v in self._variable_partition()[1].items()}

    def _variable_partition(self):
        if self._partition.value is None:
            self._partition.value = variable_partition(self)
        return self._partition.value

    # === Compile ===

    def compile(
        self,
        optimizer: Any = "adam",
        weighting: Any = "equal",
        *,
        loss: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Sequence[Any]] | None = None,
        task_learning_rates: Mapping[str, Any] | None = None,
        task_optimizers: Mapping[str, Any] | None = None,
        gradient_method: str = "loop",
        **kwargs,
    ):
        """Configures training; losses and metrics derive from the tasks unless given.

        Args:
            optimizer: as for `keras.Model.compile`.
            weighting: str or `kmtl.weighting.Weighting`. How task losses combine: `"equal"` (sum), `"static"`
                (`Task.loss_weight`), `"uncertainty"` (Kendall et al. 2018), or a strategy object.
            loss: dict `{task_name: loss}` overriding tasks' losses.
            metrics: dict `{task_name: [metrics]}` overriding tasks' metrics.
            task_learning_rates: dict `{task_name: learning rate or schedule}`. The task's own variables (its head
                and tower) train with a copy of `optimizer` at this learning rate; shared variables keep
                `optimizer`'s. Saved and restored with the model (see `kmtl.training.MultiOptimizer`).
            task_optimizers: dict `{task_name: optimizer}`. A different optimizer for a task's own variables.
            gradient_method: `"loop"` (default) or `"jacobian"`. How gradient-level strategies get the per-task
                gradients of the shared parameters: T backward passes, or one vectorised `tape.jacobian`
                (measured by `benchmarks/weighting_speed.py`; the loop was faster on CPU).
            **kwargs: other `keras.Model.compile` arguments (`jit_compile`, `steps_per_execution`, ...).
                `loss_weights` is not accepted: use `Task.loss_weight` with `weighting="static"`.
        """
        if "loss_weights" in kwargs:
            raise ValueError(
                "`loss_weights` is not used by MultiTaskModel. Set `Task.loss_weight` and compile with "
                "weighting='static', or choose another weighting strategy."
            )
        loss, metrics = _check_overrides(loss, metrics)
        for field, given in (("loss", loss), ("metrics", metrics)):
            unknown = [k for k in given if k not in self.task_names]
            if unknown:
                raise ValueError(f"`{field}` names unknown task(s) {unknown}. Valid task names: {self.task_names}.")
        if gradient_method not in GRADIENT_METHODS:
            raise ValueError(
                f"Invalid value for `gradient_method`. Expected one of {list(GRADIENT_METHODS)}. "
                f"Received: gradient_method={gradient_method!r}"
            )
        optimizer = task_optimizer(optimizer, self.task_names, task_learning_rates, task_optimizers)
        super().compile(optimizer=optimizer, **kwargs)
        multi = getattr(self.optimizer, "inner_optimizer", self.optimizer)  # unwrap a LossScaleOptimizer
        if isinstance(multi, MultiOptimizer):
            multi.assign_groups({name: self.task_variables[name] for name in multi.optimizers})
        self._gradient_method = gradient_method
        self._plan = Untracked()
        self._task_state = TaskState(self._tasks, loss, metrics)
        strategy = weighting_lib.get(weighting)
        previous = getattr(self, "weighting", None)
        if previous is not None:
            _keras_internals.untrack(self, previous)  # else its variables stay in the model's and in saved files
            del self.weighting
        strategy.configure(self._tasks, model=self)
        self.weighting = strategy
        if strategy.gradient_level and not self.shared_variables:
            warnings.warn(
                f"weighting={weighting!r} ({type(strategy).__name__}) is gradient-level, but the model has no shared "
                "variables: every variable trains on its own task's loss, so the strategy has nothing to aggregate "
                "and training is the same as with weighting='equal'. Share some layers, or use a loss-level "
                "strategy.",
                UserWarning,
                stacklevel=2,
            )
        self._kmtl_compile_config = {
            "weighting": keras.saving.serialize_keras_object(strategy),
            "loss": {k: keras.saving.serialize_keras_object(v) for k, v in loss.items()},
            "metrics": {k: [keras.saving.serialize_keras_object(m) for m in v] for k, v in metrics.items()},
            "gradient_method": gradient_method,
        }

    def get_compile_config(self):
        config = super().get_compile_config()
        if config is not None and self._task_state is not None:
            config = {**config, **self._kmtl_compile_config}
        return config

    def compile_from_config(self, config):
        config = dict(config)
        for key in ("loss_weights", "weighted_metrics"):
            config.pop(key, None)
        config["weighting"] = weighting_lib.get(config.get("weighting"))
        config["loss"] = {k: keras.saving.deserialize_keras_object(v) for k, v in (config.get("loss") or {}).items()}
        config["metrics"] = {
            k: [keras.saving.deserialize_keras_object(m) for m in v] for k, v in (config.get("metrics") or {}).items()
        }
        config["optimizer"] = keras.saving.deserialize_keras_object(config.get("optimizer"))
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    # === Losses and metrics ===

    def task_losses(self, y, y_pred, sample_weight=None):
        """Per-task masked losses as a float32 tensor `(num_tasks,)`, in task order; alike tasks' losses are computed
        together (`loss_groups`).

        Under `tf.distribute` with several replicas, each replica returns its share of the global batch's loss:
        the sum over its present labels divided by the number of present labels across all replicas, so the
        shares add up to the global batch's masked mean whatever the replicas' counts of missing labels.
        """
        state = self._require_compiled()
        values, counts, order = [], [], []
        for group in state.loss_groups:
            tasks = [self._tasks[i] for i in group]
            order += group
            if len(group) > 1:
                weights = (
                    [task_sample_weight(sample_weight, t.name) for t in tasks]
                    if isinstance(sample_weight, Mapping) else sample_weight
                )
                losses, present = stacked_masked_losses(
                    tasks, state.loss_fns[tasks[0].name], [y[t.name] for t in tasks], [y_pred[t.name] for t in tasks],
                    weights,
                )
                values.append(losses)
                counts.append(present)
                continue
            loss, present = self._task_loss(tasks[0], y, y_pred, sample_weight)
            values.append(ops.reshape(loss, (1,)))
            counts.append(None if present is None else ops.reshape(present, (1,)))
        values = _in_task_order(values, order)
        shares = self._replica_shares(lambda: _in_task_order(counts, order))
        return values if shares is None else values * shares[0] / shares[1]

    def separate_task_losses(self, y, y_pred, sample_weight=None):
        """Each task's masked loss alone, as a list of `num_tasks` scalars in task order: the targets of per-task
        gradients, equal to the entries of `task_losses`.

        A backward pass from an entry of a joined vector sends zeros back through every task's loss and head (the
        gradient of a concatenation feeds all its inputs), so each task's gradient would cost T head passes: at
        T = 8 this made PCGrad's step 1.14x a hand-written per-task loop, against 1.00x from separate losses.
        """
        values, counts = zip(*(self._task_loss(task, y, y_pred, sample_weight) for task in self._tasks))
        shares = self._replica_shares(lambda: ops.stack(counts))
        return [loss if shares is None else loss * shares[0][i] / shares[1][i] for i, loss in enumerate(values)]

    def _task_loss(self, task, y, y_pred, sample_weight):
        """`(masked loss, number of present labels or None)` of one task; the count only under several replicas."""
        weight = task_sample_weight(sample_weight, task.name)
        loss = masked_loss(task, self._require_compiled().loss_fns[task.name], y[task.name], y_pred[task.name], weight)
        if replica_context()[1] == 1:
            return loss, None
        present = label_entries(task, y[task.name], y_pred[task.name], weight)[2]
        return loss, ops.sum(present)

    def _replica_shares(self, counts):
        """Under several replicas, `(this replica's, all replicas')` present labels per task (at least 1 each),
        whose ratio takes each task's mean on this replica to its share of the global batch's; None with one
        replica. `counts()` gives this replica's counts (`(num_tasks,)`)."""
        context, replicas = replica_context()
        if replicas == 1:
            return None
        counts = ops.stop_gradient(counts())
        return ops.maximum(counts, 1.0), ops.maximum(context.all_reduce("sum", counts), 1.0)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Combines the masked task losses with the weighting strategy and adds regularisation losses."""
        losses = self.task_losses(y, y_pred, sample_weight)
        context, replicas = replica_context()
        if replicas > 1:
            # The strategy must combine the global batch's losses. Their value is the sum of the replicas' shares;
            # their gradient on this replica is R times its own share's, and the division by R below (which also
            # makes the optimizer's sum over replicas right for the strategy's variables and the regularisation)
            # gives each replica's share the gradient dcombine/dL at the global losses.
            share = losses
            global_losses = context.all_reduce("sum", ops.stop_gradient(share))
            losses = global_losses + replicas * (share - ops.stop_gradient(share))
        total, weights = self.weighting.combine(losses, training=training)
        self._task_state.update_loss_trackers(ops.stop_gradient(losses), weights, batch_size(y_pred))
        return scale_for_replicas(total + self._regularization_loss())

    def _regularization_loss(self):
        """Layer regularisation losses plus the model's cross-layer penalties, as one float32 scalar."""
        extra = [ops.cast(ops.sum(loss), "float32") for loss in self.losses]
        extra += [ops.cast(penalty.penalty(), "float32") for penalty in self.penalties]
        return ops.sum(ops.stack(extra)) if extra else ops.zeros((), "float32")

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        state = self._require_compiled()
        for indices, grouped in state.metric_groups:
            tasks = [self._tasks[i] for i in indices]
            weights = (
                [task_sample_weight(sample_weight, t.name) for t in tasks]
                if isinstance(sample_weight, Mapping) else sample_weight
            )
            labels, predictions, _, entry_weights = stacked_label_entries(
                tasks, [y[t.name] for t in tasks], [y_pred[t.name] for t in tasks], weights
            )  # once for all their metrics
            for metric in grouped:
                metric.update_state(labels, predictions, entry_weights)
        for task in self._tasks:
            if not state.metrics[task.name]:
                continue
            weight = task_sample_weight(sample_weight, task.name)
            entries = label_entries(task, y[task.name], y_pred[task.name], weight)  # once for all its metrics
            for metric in state.metrics[task.name]:
                update_metric(task, metric, y[task.name], y_pred[task.name], weight, entries)
        return self.get_metrics_result()

    def get_metrics_result(self):
        """`keras.Model.get_metrics_result`, reading every source of several values (the task trackers, grouped
        metrics) in one op, the values in the order of `metrics`."""
        results, sources = {}, {}
        for metric in self.metrics:
            if isinstance(metric, TrackedValue):
                key = id(metric.source)
                if key not in sources:
                    sources[key] = metric.source.result()
                results[metric.name] = sources[key][metric.name]
                continue
            result = metric.result()
            if isinstance(result, dict):
                results.update(result)
            else:
                results[metric.name] = result
        return results

    @property
    def metrics(self):
        metrics = list(super().metrics)
        if self._task_state is not None:
            known = {id(m) for m in metrics}
            metrics += [m for m in self._task_state.all_metrics() if id(m) not in known]
        return metrics

    def _require_compiled(self) -> "TaskState":
        if self._task_state is None:
            raise RuntimeError("The model is not compiled. Call `model.compile(optimizer, weighting=...)` first.")
        return self._task_state

    def make_train_function(self, force=False):
        # Without a distribution strategy Keras builds the optimizer inside the first trace of the train step, and
        # TensorFlow traces a function that created variables a second time: built here, the step traces once
        # (at T = 128 tasks one trace is seconds). Under a strategy Keras has built it already.
        if self.built and self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)
        return super().make_train_function(force=force)

    # === Data checks before training ===

    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit`, after checking the data against the tasks.

        Also adds two callbacks: one that calls the weighting strategy's `on_epoch_end` (for per-epoch strategies
        such as DWA), and a `kmtl.training.TaskNaNGuard` that stops training at the first batch whose loss is not
        finite and names the task (unless `callbacks` already holds a guard, or `nan_guard=False` is passed).
        """
        nan_guard = kwargs.pop("nan_guard", True)
        x, validation_data = check_fit_data(self, x, y, kwargs.get("validation_data"), kwargs.get("sample_weight"))
        if validation_data is not None:
            kwargs["validation_data"] = validation_data  # wrapped: every batch's labels are checked
        positional = len(args) > 3  # callbacks given positionally (batch_size, epochs, verbose, callbacks, ...)
        callbacks = list((args[3] if positional else kwargs.get("callbacks")) or [])
        strategy = getattr(self, "weighting", None)
        if strategy is not None and type(strategy).on_epoch_end is not weighting_lib.Weighting.on_epoch_end:
            callbacks.append(_StrategyEpochEnd(strategy))
        if nan_guard and not any(isinstance(c, TaskNaNGuard) for c in callbacks):
            callbacks.append(TaskNaNGuard())
        verbose = args[2] if len(args) > 2 else kwargs.get("verbose", "auto")
        if verbose != 0 and not any(isinstance(c, keras.callbacks.ProgbarLogger) for c in callbacks):
            callbacks.append(TaskProgbarLogger())  # a line that fits the terminal; History keeps every value
        if positional:
            args = (*args[:3], callbacks, *args[4:])
        else:
            kwargs["callbacks"] = callbacks
        with named_batch_errors():
            return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        x, _ = check_fit_data(self, x, y, sample_weight=kwargs.get("sample_weight"), where="evaluation data")
        with named_batch_errors():
            return super().evaluate(x, y, *args, **kwargs)

    # === Config ===

    def get_config(self):
        config = super().get_config()
        config["tasks"] = [keras.saving.serialize_keras_object(t) for t in self._tasks]
        if self.penalties:
            config["penalties"] = [keras.saving.serialize_keras_object(p) for p in self.penalties]
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        tasks = [
            t if isinstance(t, Task) else keras.saving.deserialize_keras_object(t, custom_objects=custom_objects)
            for t in config.pop("tasks")
        ]
        penalties = [
            keras.saving.deserialize_keras_object(p, custom_objects=custom_objects)
            for p in config.pop("penalties", [])
        ]
        graph = keras.Model.from_config(config, custom_objects=custom_objects)
        return cls(inputs=graph.input, outputs=graph.output, name=graph.name, tasks=tasks, penalties=penalties)


def _in_task_order(parts, order):
    """Joins the groups' `(G,)` vectors into one `(T,)` vector in task order: one gather where groups interleave."""
    joined = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=0)
    if order == sorted(order):
        return joined
    return ops.take(joined, [order.index(i) for i in range(len(order))], axis=0)


class _StrategyEpochEnd(keras.callbacks.Callback):
    """Calls the weighting strategy's `on_epoch_end` after each training epoch (before validation logs matter)."""

    def __init__(self, strategy):
        super().__init__()
        self._strategy = Untracked(strategy)

    def on_epoch_end(self, epoch, logs=None):
        self._strategy.value.on_epoch_end()


def _check_overrides(loss, metrics):
    """`compile`'s `loss` and `metrics` as dicts, after checking their form."""
    if loss is not None and not isinstance(loss, Mapping):
        raise ValueError(
            "`loss` must be a dict {task_name: loss}; a task's own loss comes from Task(loss=...). "
            f"Received: loss={loss!r}"
        )
    if metrics is not None and not isinstance(metrics, Mapping):
        raise ValueError(
            "`metrics` must be a dict {task_name: [metrics]}; a task's own metrics come from Task(metrics=...). "
            f"Received: metrics={metrics!r}"
        )
    for name, given in (metrics or {}).items():
        if not isinstance(given, (list, tuple)):
            raise ValueError(f"`metrics[{name!r}]` must be a list of metrics. Received: {given!r}")
    return dict(loss or {}), dict(metrics or {})


def _check_outputs(tasks, outputs):
    names = [t.name for t in tasks]
    if not isinstance(outputs, Mapping):
        raise ValueError(
            f"`outputs` must be a dict keyed by task name {names}. Received: {type(outputs).__name__}."
        )
    if sorted(outputs) != sorted(names):
        raise ValueError(f"`outputs` keys {sorted(outputs)} must equal the task names {sorted(names)}.")
    for task in tasks:
        width = outputs[task.name].shape[-1]
        if width is not None and width != task.output_units:
            raise ValueError(
                f"Output '{task.name}' has {width} units but {task!r} expects {task.output_units}."
            )
