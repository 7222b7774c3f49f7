"""The interface every task-weighting strategy implements, and the registry of strategy names.

A strategy's module registers it under the names `compile(weighting=...)` accepts with `@register("name")`;
`kmtl.weighting` imports every method module so that `STRATEGIES` is complete.
"""

from __future__ import annotations

import weakref
from typing import Callable, Sequence

import keras

from kmtl.tasks import Task

# Name -> class (or factory) for `compile(weighting="name")`, filled by `register`.
STRATEGIES: dict[str, Callable[[], "Weighting"]] = {}


def register(name: str):
    """Class (or factory) decorator: `compile(weighting=name)` and `kmtl.weighting.get(name)` then make one.

    Example:

    >>> @register("my_equal")  # doctest: +SKIP
    ... class MyEqual(Weighting): ...

    Raises:
        ValueError: when another strategy already has the name.
    """

    def decorate(factory):
        known = STRATEGIES.get(name)
        if known is not None and _qualified(known) != _qualified(factory):
            raise ValueError(
                f"A weighting strategy named {name!r} is already registered ({_qualified(known)}). "
                f"Received: {_qualified(factory)}"
            )
        STRATEGIES[name] = factory
        return factory

    return decorate


def _qualified(factory) -> str:
    return f"{factory.__module__}.{factory.__qualname__}"


class Weighting(keras.layers.Layer):
    """Base class of task-weighting strategies.

    A strategy is a `Layer` so that its state (learned weights, loss history, ...) is tracked, trained and saved
    with the model. `MultiTaskModel.compile` calls `configure(tasks)` once; the strategy then creates its state.

    Loss-level strategies (`gradient_level = False`) implement `combine(losses, training)`, which turns the vector
    of task losses into the scalar that is differentiated; they run inside `compute_loss`, so they are
    backend-neutral. Gradient-level strategies (`gradient_level = True`, subclass `GradientWeighting`) implement
    `aggregate(grads, losses)` instead: the model computes every task's gradient of the shared variables and the
    strategy combines them into one update direction.

    Args:
        **kwargs: passed to `keras.layers.Layer`.
    """

    gradient_level = False

    def __init__(self, **kwargs):
        kwargs.setdefault("name", _snake(type(self).__name__) + "_weighting")
        super().__init__(**kwargs)
        self.task_names: tuple[str, ...] = ()
        self.task_kinds: tuple[str, ...] = ()
        self.loss_weights: tuple[float, ...] = ()
        self._owner = None  # weak reference to the model this strategy serves

    def configure(self, tasks: Sequence[Task], model=None) -> None:
        """Records the tasks and creates the strategy's state. Called by `MultiTaskModel.compile`.

        A strategy object serves one model: its state (weights, histories) is sized and kept for that model's tasks.
        Compiling the same model again with it is fine, and so is passing it to another model once the first one
        has been compiled with another strategy.

        Args:
            tasks: list of `kmtl.Task`, in the model's order.
            model: the model that will use the strategy (`MultiTaskModel.compile` passes itself), or None.

        Raises:
            ValueError: when the strategy already serves another model.
        """
        if model is not None:
            self._claim(model)
        self.task_names = tuple(t.name for t in tasks)
        self.task_kinds = tuple(t.kind for t in tasks)
        self.loss_weights = tuple(t.loss_weight for t in tasks)
        self.create_state(len(tasks))
        self.built = True

    def _claim(self, model) -> None:
        owner = self._owner() if self._owner is not None else None
        if owner is not None and owner is not model and getattr(owner, "weighting", None) is self:
            raise ValueError(
                f"This Weighting object is already used by model '{owner.name}'; pass a new one (or a name) to each "
                f"model. Received: weighting={self!r}"
            )
        self._owner = weakref.ref(model)

    def create_state(self, num_tasks: int) -> None:
        """Creates variables that depend on the number of tasks. Stateless strategies create none."""

    def _add_state(self, shape, name: str):
        """A float32 non-trainable zero variable for per-task statistics; under `tf.distribute` replicas' updates
        are averaged."""
        return self.add_weight(
            shape=shape, initializer="zeros", name=name, trainable=False, aggregation="mean", dtype="float32"
        )

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def on_epoch_end(self) -> None:
        """Called eagerly by `MultiTaskModel.fit` after every training epoch.

        Strategies that work per epoch (e.g. DWA's loss ratios) update their state here; the default does nothing.
        Use `variable.assign(...)`; this runs outside the traced train step.
        """

    def combine(self, losses, training=True):
        """Combines task losses.

        Args:
            losses: float32 tensor `(num_tasks,)` of task losses, in task order.
            training: bool. Whether this is a training step (strategies may update state only then).

        Returns:
            Tuple `(total_loss, weights)`: the scalar to minimise and a `(num_tasks,)` tensor of the weight each
            task's loss received (logged as `<task>_weight`).
        """
        raise TypeError(f"{type(self).__name__} is gradient-level; it aggregates gradients and has no `combine`.")


class GradientWeighting(Weighting):
    """Base class of gradient-level strategies (PCGrad, MGDA, ... plug in here).

    `MultiTaskModel`'s train step computes the matrix `G` of per-task gradients of the shared trainable variables,
    flattened and stacked to `(num_tasks, num_shared_parameters)`, and calls `aggregate(G, losses)`. The result is
    the update direction of the shared variables; each task's own variables get its own task's gradient.
    Evaluation reports the plain sum of task losses.
    """

    gradient_level = True
    # Whether `aggregate` may be given gradients of the shared representation instead of the shared parameters.
    supports_rep_grad = True

    def __init__(self, rep_grad: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.rep_grad = bool(rep_grad)
        if self.rep_grad and not self.supports_rep_grad:
            raise ValueError(
                f"{type(self).__name__} does not support `rep_grad=True`: {self.rep_grad_refusal} "
                "Use rep_grad=False (gradients of the shared parameters)."
            )

    # Why a strategy refuses rep_grad; shown in the error. Subclasses with `supports_rep_grad = False` set it.
    rep_grad_refusal = ""

    def get_config(self):
        return {**super().get_config(), "rep_grad": self.rep_grad}

    def aggregate(self, grads, losses):
        """Aggregates per-task gradients.

        Runs inside the traced (possibly XLA-compiled) train step: use `keras.ops`, loops of fixed length and no
        Python branching on tensor values. State (e.g. moving averages) lives in non-trainable variables created in
        `create_state` and is updated with `assign`. Under `tf.distribute`, `grads` and `losses` are already
        reduced across replicas.

        Args:
            grads: float32 tensor `(num_tasks, num_shared_parameters)`. With `rep_grad=True`, the columns are
                the entries of the shared representation (batch x features) instead of the shared parameters.
            losses: float32 tensor `(num_tasks,)` of the task losses.

        Returns:
            Tuple `(direction, weights)`: a `(num_shared_parameters,)` tensor and the `(num_tasks,)` weights
            logged as `<task>_weight` (for methods without explicit weights, the coefficients of the rows of
            `grads` in `direction` where they exist, else ones).
        """
        raise TypeError(f"{type(self).__name__} must implement `aggregate(grads, losses)`.")

    def combine(self, losses, training=True):
        # Used for evaluation, where no gradients are taken: the unweighted sum.
        return keras.ops.sum(losses), keras.ops.ones_like(losses)


def _snake(name: str) -> str:
    out = "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
    return out
