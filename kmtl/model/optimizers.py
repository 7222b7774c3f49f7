"""`MultiOptimizer`: different optimizers (or learning rates) for the shared part and for each task's own part."""

from __future__ import annotations

from typing import Mapping

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kmtl")
class MultiOptimizer(keras.optimizers.Optimizer):
    """Routes each variable to the optimizer of its group: a task's own variables to that task's optimizer, all
    others (shared layers, weighting strategies) to the default one.

    `MultiTaskModel.compile(task_learning_rates=..., task_optimizers=...)` builds one and assigns the groups from
    the model's variable partition, so users rarely construct it. It saves and loads with the model: its config
    holds every optimizer's config, and its variables are the default optimizer's followed by each task
    optimizer's, in task order.

    Clipping: `default`'s `global_clipnorm` clips the gradients of all groups together (the norm of the whole
    update, as with one optimizer), before they are routed; each optimizer's own `clipnorm` and `clipvalue` act per
    variable, and a task optimizer's own `global_clipnorm` then also clips its group alone.

    Args:
        default: optimizer (name, config or instance) of the shared variables and of tasks without their own.
        optimizers: dict `{task_name: optimizer}`.
        name: str. Optimizer name.

    Example:

    >>> model.compile(optimizer="adam", task_learning_rates={"age": 1e-4})  # doctest: +SKIP
    >>> model.optimizer.optimizers["age"].learning_rate  # doctest: +SKIP
    """

    def __init__(self, default, optimizers: Mapping[str, object], name: str = "multi_optimizer", **kwargs):
        super().__init__(learning_rate=0.0, name=name, **kwargs)
        self.default = keras.optimizers.get(default)
        self.optimizers = {k: keras.optimizers.get(v) for k, v in dict(optimizers).items()}
        self._owner: dict[int, str] = {}  # id(variable) -> group; ids, so the tracker adopts no model variables

    def assign_groups(self, groups: Mapping[str, list]) -> None:
        """Sets which variables each task optimizer updates; every other variable goes to `default`."""
        unknown = sorted(set(groups) - set(self.optimizers))
        if unknown:
            raise ValueError(f"No optimizer for group(s) {unknown}. Groups with optimizers: {sorted(self.optimizers)}.")
        self._owner = {id(v): name for name, variables in groups.items() for v in variables}

    def _route(self, grads, variables):
        owner = self._owner
        routed = {name: ([], []) for name in [None, *self.optimizers]}
        for g, v in zip(grads, variables):
            routed[owner.get(id(v))][0].append(g)
            routed[owner.get(id(v))][1].append(v)
        return routed

    def _optimizer(self, group):
        return self.default if group is None else self.optimizers[group]

    def build(self, var_list):
        for group, (_, variables) in self._route([None] * len(var_list), var_list).items():
            self._optimizer(group).build(variables)
        super().build(var_list)

    @property
    def variables(self):
        out = list(self._variables) + list(self.default.variables)
        for name in self.optimizers:
            out += list(self.optimizers[name].variables)
        return out

    def apply(self, grads, trainable_variables=None):
        if trainable_variables is None:
            trainable_variables = self._trainable_variables
        trainable_variables = list(trainable_variables)
        if not self.built:
            self.build(trainable_variables)
        grads = list(grads)
        if self.default.global_clipnorm is not None:
            grads = _clip_by_global_norm(grads, self.default.global_clipnorm)
        for group, (group_grads, variables) in self._route(grads, trainable_variables).items():
            if variables:
                self._optimizer(group).apply(group_grads, variables)
        self._iterations.assign_add(1)

    @property
    def learning_rate(self):
        return self.default.learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        # The base constructor sets a placeholder rate before `default` exists.
        if "default" in self.__dict__:
            self.default.learning_rate = value

    def finalize_variable_values(self, var_list):
        for group, (_, variables) in self._route([None] * len(var_list), list(var_list)).items():
            if variables:
                self._optimizer(group).finalize_variable_values(variables)

    def get_config(self):
        return {
            "name": self.name,
            "default": keras.saving.serialize_keras_object(self.default),
            "optimizers": {k: keras.saving.serialize_keras_object(v) for k, v in self.optimizers.items()},
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        default = keras.saving.deserialize_keras_object(config.pop("default"), custom_objects=custom_objects)
        optimizers = {
            k: keras.saving.deserialize_keras_object(v, custom_objects=custom_objects)
            for k, v in config.pop("optimizers").items()
        }
        return cls(default, optimizers, **config)


def _clip_by_global_norm(grads, clip_norm):
    """Scales all gradients by `min(1, clip_norm / global norm)`; a non-finite norm makes them all NaN (so that a
    loss-scale optimizer still sees the overflow and skips the step)."""
    present = [g for g in grads if g is not None]
    if not present:
        return grads
    norm = ops.sqrt(ops.sum(ops.stack([ops.sum(ops.square(ops.cast(g, "float32"))) for g in present])))
    factor = clip_norm / ops.maximum(norm, clip_norm) + (norm - norm)  # + NaN for an infinite or NaN norm
    return [None if g is None else g * ops.cast(factor, g.dtype) for g in grads]


def with_learning_rate(optimizer, learning_rate):
    """A fresh optimizer configured like `optimizer` but with `learning_rate` (a float or schedule)."""
    optimizer = keras.optimizers.get(optimizer)
    config = optimizer.get_config()
    config["learning_rate"] = keras.saving.serialize_keras_object(learning_rate)
    config["name"] = f"{optimizer.name}_lr"
    return type(optimizer).from_config(config)


def task_optimizer(optimizer, task_names, task_learning_rates=None, task_optimizers=None):
    """The optimizer a `MultiTaskModel` compiles with: `optimizer`, or a `MultiOptimizer` when tasks get their own."""
    task_learning_rates, task_optimizers = dict(task_learning_rates or {}), dict(task_optimizers or {})
    for field, given in (("task_learning_rates", task_learning_rates), ("task_optimizers", task_optimizers)):
        unknown = [k for k in given if k not in list(task_names)]
        if unknown:
            raise ValueError(f"`{field}` names unknown task(s) {unknown}. Valid task names: {list(task_names)}.")
    both = sorted(set(task_learning_rates) & set(task_optimizers))
    if both:
        raise ValueError(f"Task(s) {both} appear in both `task_learning_rates` and `task_optimizers`; give one.")
    if isinstance(getattr(optimizer, "inner_optimizer", optimizer), MultiOptimizer):
        if task_learning_rates or task_optimizers:
            raise ValueError("Pass `task_learning_rates`/`task_optimizers` or a MultiOptimizer, not both.")
        return optimizer
    if not (task_learning_rates or task_optimizers):
        return optimizer
    for name, rate in task_learning_rates.items():
        if isinstance(rate, (int, float)) and not rate > 0:
            raise ValueError(
                f"Invalid learning rate for task '{name}' in `task_learning_rates`. Expected a positive number "
                f"or a schedule. Received: {rate!r}"
            )
    optimizer = keras.optimizers.get(optimizer)
    per_task = {name: with_learning_rate(optimizer, rate) for name, rate in task_learning_rates.items()}
    per_task.update({name: keras.optimizers.get(opt) for name, opt in task_optimizers.items()})
    return MultiOptimizer(optimizer, {n: per_task[n] for n in list(task_names) if n in per_task})
