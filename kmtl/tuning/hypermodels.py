"""keras-tuner hypermodels for kmtl's builders: `build(hp)` returns a compiled `MultiTaskModel`."""

from __future__ import annotations

import inspect
import warnings
from typing import Any, Callable, Mapping, Sequence

import keras
import keras_tuner

from kmtl import builders as builders_lib
from kmtl import weighting as weighting_lib
from kmtl.builders._common import vector_features
from kmtl.model import MultiTaskModel
from kmtl.tasks import Task, validate_task_list
from kmtl.tuning.builder_spaces import BUILDER_SPACES, LEARNING_RATE, LR_MULTIPLIER
from kmtl.tuning.objective import MultiTaskObjective, MultiTaskScore
from kmtl.tuning.space import check_space, decode, sample_space


class MultiTaskHyperModel(keras_tuner.HyperModel):
    """Base of kmtl's hypermodels: carries a `MultiTaskObjective` and puts its callback first in `fit`.

    Subclasses set `self.objective` and `self.space` and implement `build(hp)`. Use `hypermodel.objective` as the
    tuner's objective.

    Args:
        objective: `MultiTaskObjective`.
        name: str. Name of the hypermodel.
        tunable: bool. As for `keras_tuner.HyperModel`.
    """

    def __init__(self, objective: MultiTaskObjective, name: str | None = None, tunable: bool = True):
        super().__init__(name=name, tunable=tunable)
        if not isinstance(objective, MultiTaskObjective):
            raise ValueError(
                "Invalid value for `objective`. Expected a kmtl.tuning.MultiTaskObjective. "
                f"Received: objective={objective!r}"
            )
        self.objective = objective
        self.space: dict = {}

    def fit(self, hp, model, *args, callbacks=None, **kwargs):
        """Trains `model` with the objective's `MultiTaskScore` first among the callbacks.

        keras-tuner passes the user's callbacks followed by its own (the best-epoch checkpoint), Keras appends
        `History` last, and the oracle reads the trial's metrics from that `History`; the score must be in the logs
        before any of them reads them.

        At the first `fit` of a search whose objective fits its references (the default), each task's trivial
        predictor is fitted on the training data and scored on the validation data
        (`MultiTaskObjective.fit_references`), so every trial is ranked by the same skills.
        """
        if self.objective.fits_references and self.objective.references is None:
            data = _reference_data(args, kwargs, self.objective.validation)
            if data is not None:
                self.objective.fit_references(model.tasks, *data)
        callbacks = list(callbacks or [])
        if not any(isinstance(c, MultiTaskScore) for c in callbacks):
            callbacks.insert(0, self.objective.callback())
        return model.fit(*args, callbacks=callbacks, **kwargs)

    def decode(self, values: Mapping[str, Any]) -> dict:
        """A trial's values as the search space wrote them (e.g. tuples of widths instead of their repr strings)."""
        return decode(self.space, values)


def _reference_data(args, kwargs, validation: bool):
    """`(train, validation)` for fitting the objective's references from `fit`'s arguments, or None (with a
    warning) when they cannot be read without consuming them (a Python iterator) or never end."""
    x = args[0] if args else kwargs.get("x")
    y = args[1] if len(args) > 1 else kwargs.get("y")
    train = x if y is None else (x, y)
    held_out = kwargs.get("validation_data") if validation else None
    if held_out is None:
        held_out = train  # no validation data (or a training-logs objective): the references are on training data
    for data in (train, held_out):
        if hasattr(data, "__next__") or _endless(data):
            warnings.warn(
                "The objective's references (each task's trivial predictor) are fitted from the training and "
                "validation data, which here is an iterator or an endless dataset; tasks are scored without them "
                "(errors as 1 / (1 + m)). Pass a finite `tf.data.Dataset` or arrays, or `references=` to the "
                "objective.", UserWarning, stacklevel=3,
            )
            return None
    return train, held_out


def _endless(data) -> bool:
    cardinality = getattr(data, "cardinality", None)
    if cardinality is None or not callable(cardinality):
        return False
    import tensorflow as tf

    return bool(cardinality() == tf.data.INFINITE_CARDINALITY)


def supports_task_learning_rates() -> bool:
    """Whether `MultiTaskModel.compile` takes `task_learning_rates={task: lr}`."""
    return "task_learning_rates" in inspect.signature(MultiTaskModel.compile).parameters


class BuilderHyperModel(MultiTaskHyperModel):
    """A hypermodel over one of `kmtl.builders`: sharing depth and width, heads, dropout, weighting, learning rates.

    The default search space of each builder is `kmtl.tuning.builder_spaces.BUILDER_SPACES[builder].space`, plus
    `learning_rate` (log-uniform in `[1e-4, 1e-2]`), `weighting` (a choice of `weightings`) and, with
    `task_learning_rates=True`, `lr_multiplier_<task>` for each task (log-uniform in `[0.1, 10]`; the task's
    learning rate is `learning_rate` times it). `search_space` replaces entries by name (a list for a choice, a
    `{"min", "max"}` dict for a range, a plain value to fix it; see `kmtl.tuning.space`).

    Each build makes fresh `keras.Input`s from `inputs`, computes the shared features (a Dense trunk of
    `shared_layers` x `shared_units` for `hard_sharing` and `stacked_heads_model`, the inputs themselves for
    `mmoe`/`ple`; `trunk(inputs, hp)` when given), calls the builder and compiles with Adam and the weighting.

    Args:
        builder: str. One of `"hard_sharing"`, `"mmoe"`, `"ple"`, `"cross_stitch"`, `"sluice"`, `"soft_sharing"`,
            `"split"`, `"hierarchy"`, `"stacked_heads_model"`.
        inputs: int (width of one vector input named `"features"`), a shape tuple, or a dict `{name: shape}`.
        tasks: list of `kmtl.Task`.
        search_space: dict. Entries replacing the defaults, by name.
        builder_kwargs: dict. Fixed builder arguments (e.g. `levels` for `hierarchy`, `activation`); they may not
            set an argument the search space tunes.
        weightings: list of str. Weighting strategies to choose from (names in `kmtl.weighting.STRATEGIES`);
            defaults to all of them, `"equal"` first (the default).
        task_learning_rates: bool. Tune a learning-rate multiplier per task (needs
            `MultiTaskModel.compile(task_learning_rates=...)`).
        trunk: function `(inputs, hp) -> features` computing the shared `(batch, d)` features the builder reads.
            It is called after the space is sampled, so it may read e.g. `hp.get("shared_units")`.
        compile_kwargs: dict. Other `MultiTaskModel.compile` arguments (e.g. `jit_compile`, `run_eagerly`).
        objective: `MultiTaskObjective`. Defaults to `MultiTaskObjective.from_tasks(tasks)`.
        name: str. Model name; defaults to the builder's name.

    Example:

    >>> import kmtl, keras_tuner
    >>> tasks = [kmtl.Task("a", "binary"), kmtl.Task("b", "regression")]
    >>> hypermodel = BuilderHyperModel("mmoe", inputs=8, tasks=tasks, weightings=["equal", "uncertainty"])
    >>> model = hypermodel.build(keras_tuner.HyperParameters())
    >>> sorted(model.output), type(model.weighting).__name__
    (['a', 'b'], 'Equal')
    >>> tuner = keras_tuner.RandomSearch(hypermodel, objective=hypermodel.objective, max_trials=2)  # doctest: +SKIP

    Reference:
        Bergstra & Bengio (2012). Random Search for Hyper-Parameter Optimization. JMLR 13.
        O'Malley, Bursztein, Long, Chollet, Jin, Invernizzi et al. (2019). KerasTuner.
        github.com/keras-team/keras-tuner.
    """

    def __init__(
        self,
        builder: str = "hard_sharing",
        *,
        inputs: int | Sequence[int] | Mapping[str, Sequence[int]],
        tasks: Sequence[Task],
        search_space: Mapping[str, Any] | None = None,
        builder_kwargs: Mapping[str, Any] | None = None,
        weightings: Sequence[str] | None = None,
        task_learning_rates: bool = False,
        trunk: Callable | None = None,
        compile_kwargs: Mapping[str, Any] | None = None,
        objective: MultiTaskObjective | None = None,
        name: str | None = None,
    ):
        if builder not in BUILDER_SPACES:
            raise ValueError(
                f"Invalid value for `builder`. Expected one of {sorted(BUILDER_SPACES)}. Received: builder={builder!r}"
            )
        self.tasks = validate_task_list(tasks)
        super().__init__(objective or MultiTaskObjective.from_tasks(self.tasks), name=name or builder)
        self.builder = builder
        self.input_shapes = _check_inputs(inputs)
        if trunk is not None and not callable(trunk):
            raise ValueError(f"Invalid value for `trunk`. Expected a function (inputs, hp). Received: trunk={trunk!r}")
        self.trunk = trunk
        self.weightings = _check_weightings(weightings)
        self.task_learning_rates = bool(task_learning_rates)
        self.space = self._default_space()
        self._apply_overrides(check_space(search_space or {}))
        self.builder_kwargs = dict(builder_kwargs or {})
        self.compile_kwargs = dict(compile_kwargs or {})
        self._check_fixed_kwargs()

    def _apply_overrides(self, overrides):
        unknown = [k for k in overrides if k not in self.space]
        if unknown:
            raise ValueError(
                f"`search_space` names {unknown}, which the `{self.builder}` hypermodel does not use. "
                f"Its hyper-parameters: {sorted(self.space)}."
            )
        self.space.update(overrides)

    def _check_fixed_kwargs(self):
        clash = sorted({"optimizer", "weighting", "task_learning_rates"} & set(self.compile_kwargs))
        if clash:
            raise ValueError(
                f"`compile_kwargs` sets {clash}, which the hypermodel sets from the trial's values. "
                f"Received: compile_kwargs={self.compile_kwargs!r}"
            )
        tuned = set(self._spec.kwargs(_defaults(self.space))) | {"inputs", "features", "tasks", "input_features"}
        clash = sorted(tuned & set(self.builder_kwargs))
        if clash:
            raise ValueError(
                f"`builder_kwargs` sets {clash}, which the hypermodel sets itself; fix a tuned value with "
                f"`search_space={{name: value}}` instead. Received: builder_kwargs={self.builder_kwargs!r}"
            )

    @property
    def _spec(self):
        return BUILDER_SPACES[self.builder]

    def _default_space(self) -> dict:
        space = {**self._spec.space, "learning_rate": LEARNING_RATE, "weighting": list(self.weightings)}
        if self.task_learning_rates:
            space.update({f"lr_multiplier_{t.name}": LR_MULTIPLIER for t in self.tasks})
        return space

    def build(self, hp) -> MultiTaskModel:
        """Builds and compiles the model for the trial's hyper-parameters `hp`."""
        values = sample_space(hp, self.space)
        inputs = self._make_inputs()
        features = self._features(inputs, values, hp)
        kwargs = {**self._spec.kwargs(values), **self.builder_kwargs}
        kwargs.setdefault("name", self.name)
        build = getattr(builders_lib, self.builder)
        if self._spec.reads_features:
            model = build(inputs, features, self.tasks, **kwargs)
        else:
            if features is not None:
                kwargs["input_features"] = features
            model = build(inputs, self.tasks, **kwargs)
        compile_kwargs = dict(self.compile_kwargs)
        if self.task_learning_rates:
            rate = values["learning_rate"]
            compile_kwargs["task_learning_rates"] = {
                t.name: rate * values[f"lr_multiplier_{t.name}"] for t in self.tasks
            }
        model.compile(
            optimizer=keras.optimizers.Adam(values["learning_rate"]), weighting=values["weighting"], **compile_kwargs
        )
        return model

    def _make_inputs(self):
        if isinstance(self.input_shapes, dict):
            return {name: keras.Input(shape, name=name) for name, shape in self.input_shapes.items()}
        return keras.Input(self.input_shapes, name="features")

    def _features(self, inputs, values, hp):
        if self.trunk is not None:
            return self.trunk(inputs, hp)
        if not self._spec.reads_features:
            return None
        x = vector_features(inputs, None, self.builder)
        if self._spec.dense_trunk:
            for i in range(1, values["shared_layers"] + 1):
                x = keras.layers.Dense(values["shared_units"], activation="relu", name=f"shared_dense_{i}")(x)
        return x


def _defaults(space) -> dict:
    """The value of each entry under an empty `HyperParameters` (the defaults)."""
    return sample_space(keras_tuner.HyperParameters(), space)


def _check_inputs(inputs):
    def shape_of(value):
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return (value,)
        if isinstance(value, (tuple, list)) and value and all(
            d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0) for d in value
        ):
            return tuple(value)
        raise ValueError(
            "Invalid value for `inputs`. Expected a positive int, a shape tuple or a dict {name: shape}. "
            f"Received: inputs={inputs!r}"
        )

    if isinstance(inputs, Mapping):
        if not inputs:
            raise ValueError(f"Invalid value for `inputs`. Expected at least one input. Received: inputs={inputs!r}")
        return {str(name): shape_of(shape) for name, shape in inputs.items()}
    return shape_of(inputs)


def _check_weightings(weightings):
    names = sorted(weighting_lib.STRATEGIES)
    if weightings is None:
        return ["equal"] + [n for n in names if n != "equal"] if "equal" in names else names
    valid = isinstance(weightings, (list, tuple)) and len(weightings) > 0
    if not valid or any(not isinstance(w, str) or w not in weighting_lib.STRATEGIES for w in weightings):
        raise ValueError(
            f"Invalid value for `weightings`. Expected a non-empty list of names from {names}. "
            f"Received: weightings={weightings!r}"
        )
    return list(weightings)
