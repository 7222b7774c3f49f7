"""`Task`: one declaration from which heads, losses, metrics, masks and the export signature derive."""

from __future__ import annotations

import math
import numbers
import re
from typing import Any, Sequence

import keras
import numpy as np

from kmtl.tasks.loss import resolve_loss

KINDS = ("binary", "multiclass", "multilabel", "regression")

# Per-kind defaults. Losses are names of `keras.losses` functions; metric names are resolved per kind by
# `kmtl.metrics.resolve`. Heads output probabilities (not logits), so predictions read as users expect.
_DEFAULTS = {
    "binary": {"loss": "binary_crossentropy", "metrics": ("accuracy", "auc"), "activation": "sigmoid"},
    "multiclass": {"loss": "sparse_categorical_crossentropy", "metrics": ("accuracy",), "activation": "softmax"},
    "multilabel": {"loss": "binary_crossentropy", "metrics": ("accuracy", "auc"), "activation": "sigmoid"},
    "regression": {"loss": "mse", "metrics": ("mae", "rmse"), "activation": "linear"},
}
# Per-pixel tasks (`Task(per_pixel=True)`): masks are scored with Dice and IoU by default (see `kmtl.metrics`).
_PER_PIXEL_METRICS = {"binary": ("dice", "iou"), "multiclass": ("dice", "mean_iou"), "regression": ("mae",)}
_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@keras.saving.register_keras_serializable(package="kmtl")
class Task:
    """A task a multi-task model learns: what it predicts and how it is scored.

    Everything else derives from it: the head (units and activation), the loss, the metrics (logged as
    `<name>_<metric>`), the mask of missing labels and the export signature.

    Args:
        name: str. Task name; also the output name, the log prefix and the export key. Letters, digits and
            underscores, starting with a letter.
        kind: str. One of `"binary"`, `"multiclass"`, `"multilabel"`, `"regression"`.
        num_classes: int. Number of classes of a `"multiclass"` task (>= 2). Labels are class ids.
        num_labels: int. Number of labels of a `"multilabel"` task (>= 1). Labels are 0/1 vectors.
        units: int. Output size of a `"regression"` task (>= 1).
        loss: str, callable or `keras.losses.Loss`. Overrides the kind's default loss. It must return one value per
            label entry when called on `(y_true, y_pred)` (all Keras losses do; a `Loss` object's `call` is used).
        metrics: list of str or `keras.metrics.Metric`. Overrides the kind's default metrics.
        activation: str. Overrides the head's activation (default: sigmoid, softmax, sigmoid, linear).
        loss_weight: float. Weight of the task's loss under `"static"` weighting (>= 0).
        auxiliary: bool. An auxiliary task is trained and logged but never exported.
        missing: float or int. Label value that marks a missing label. Defaults to NaN for regression and -1 for
            class ids and multilabel entries. A missing label contributes nothing to loss or metrics.
        label_names: sequence of str. Names of the classes (multiclass), labels (multilabel), the negative and
            positive class (binary) or the output units (regression). Used by reports and the export.
        target_offset: float. Regression only: a typical value of the targets (e.g. their mean).
        target_scale: float. Regression only: a typical spread of the targets (e.g. their standard deviation).
            With an offset and scale, the head learns standardised values `(y - offset) / scale` and rescales its
            output to the targets' units, and the loss is measured in standardised units, so a target in years or
            degrees neither dominates the other tasks' losses nor needs thousands of steps to reach its mean.
            Predictions, metrics and exports stay in the targets' units.
        per_step: bool. Whether the task predicts one output per time step of a sequence. Labels then carry a
            time axis after the batch axis: binary and multiclass `(batch, steps)` (or `(batch, steps, 1)`),
            multilabel `(batch, steps, num_labels)`, regression `(batch, steps, units)` (or `(batch, steps)` for one
            unit); the head reads features `(batch, steps, channels)` and predicts `(batch, steps, output_units)`.
            Padded and unlabelled steps carry the `missing` marker (and a Keras mask on the predictions, from
            `Masking` or `mask_zero`, counts as missing too), so losses and metrics see real, labelled steps only.
        per_pixel: bool. Whether the task predicts one output per pixel of an image (segmentation; or, as a
            regression task, an image such as a reconstruction of the input). Labels carry the image axes after the
            batch axis: binary masks (0/1) and multiclass masks (class ids) `(batch, height, width)` (or
            `(batch, height, width, 1)`), regression `(batch, height, width, units)`; the head reads feature maps
            `(batch, height, width, channels)` and predicts `(batch, height, width, output_units)`. Unlabelled
            pixels carry the `missing` marker, and an image without a mask is all `missing`: it adds nothing to the
            task's loss and metrics (other tasks still train on it). Default metrics: Dice and IoU. A Dice loss
            (`kmtl.losses.DiceLoss`, `DiceCrossEntropy`) scores each image over its labelled pixels.

    Example:

    >>> Task("hair", "multiclass", num_classes=3, label_names=["black", "blond", "brown"]).output_units
    3
    >>> Task("age", "regression").missing
    nan
    >>> Task("vitals", "regression", units=2, per_step=True)
    Task('vitals', 'regression', units=2, per_step=True)
    """

    def __init__(
        self,
        name: str,
        kind: str,
        *,
        num_classes: int | None = None,
        num_labels: int | None = None,
        units: int = 1,
        loss: Any = None,
        metrics: Sequence[Any] | None = None,
        activation: str | None = None,
        loss_weight: float = 1.0,
        auxiliary: bool = False,
        missing: float | int | None = None,
        label_names: Sequence[str] | None = None,
        target_offset: float = 0.0,
        target_scale: float = 1.0,
        per_step: bool = False,
        per_pixel: bool = False,
    ):
        if not isinstance(name, str) or not _NAME_PATTERN.match(name):
            raise ValueError(
                "Invalid value for `name`. Expected letters, digits and underscores, starting with a letter. "
                f"Received: name={name!r}"
            )
        if kind not in KINDS:
            raise ValueError(f"Task '{name}': invalid value for `kind`. Expected one of {KINDS}. Received: kind={kind!r}")
        self.name = name
        self.kind = kind
        self.num_classes = _check_count(name, "num_classes", num_classes, kind == "multiclass", minimum=2)
        self.num_labels = _check_count(name, "num_labels", num_labels, kind == "multilabel", minimum=1)
        if kind == "regression":
            _check_count(name, "units", units, True, minimum=1)
        elif units != 1:
            raise ValueError(f"Task '{name}': `units` applies to regression tasks only. Received: units={units}")
        self.units = int(units)
        self.loss = loss if loss is not None else _DEFAULTS[kind]["loss"]
        if isinstance(loss, keras.losses.Loss):
            resolve_loss(loss, task_name=name)  # refuses a reduction kmtl would ignore
        if not isinstance(per_pixel, (bool, np.bool_)):
            raise ValueError(
                f"Task '{name}': invalid value for `per_pixel`. Expected a bool. Received: per_pixel={per_pixel!r}"
            )
        if per_pixel and (kind == "multilabel" or per_step):
            raise ValueError(
                f"Task '{name}': `per_pixel` applies to binary, multiclass and regression tasks without `per_step`. "
                f"Received: kind={kind!r}, per_step={per_step!r}, per_pixel=True"
            )
        self.per_pixel = bool(per_pixel)
        default_metrics = _PER_PIXEL_METRICS[kind] if self.per_pixel else _DEFAULTS[kind]["metrics"]
        self.metrics = list(metrics) if metrics is not None else list(default_metrics)
        self.activation = activation if activation is not None else _DEFAULTS[kind]["activation"]
        if not _is_real(loss_weight) or not math.isfinite(loss_weight) or loss_weight < 0:
            raise ValueError(
                f"Task '{name}': invalid value for `loss_weight`. Expected a finite number >= 0. "
                f"Received: loss_weight={loss_weight!r}"
            )
        self.loss_weight = float(loss_weight)
        self.auxiliary = bool(auxiliary)
        self.missing = _default_missing(kind) if missing is None else missing
        if kind != "regression" and (not isinstance(self.missing, (int, float)) or math.isnan(self.missing)):
            raise ValueError(
                f"Task '{name}': invalid value for `missing`. Class labels need a number such as -1. "
                f"Received: missing={missing!r}"
            )
        highest_label = self.num_classes - 1 if kind == "multiclass" else 1
        if kind != "regression" and 0 <= self.missing <= highest_label:
            raise ValueError(
                f"Task '{name}': `missing`={self.missing} is also a valid label; choose a value outside "
                f"0..{highest_label}, such as -1."
            )
        if kind != "regression" and (target_offset != 0.0 or target_scale != 1.0):
            raise ValueError(f"Task '{name}': `target_offset` and `target_scale` apply to regression tasks only.")
        if not _is_real(target_scale) or not math.isfinite(target_scale) or target_scale <= 0:
            raise ValueError(
                f"Task '{name}': invalid value for `target_scale`. Expected a finite number > 0. "
                f"Received: target_scale={target_scale!r}"
            )
        if not _is_real(target_offset) or not math.isfinite(target_offset):
            raise ValueError(
                f"Task '{name}': invalid value for `target_offset`. Expected a finite number. "
                f"Received: target_offset={target_offset!r}"
            )
        self.target_offset = float(target_offset)
        self.target_scale = float(target_scale)
        self.label_names = None if label_names is None else [str(n) for n in label_names]
        expected_names = 2 if kind == "binary" else self.output_units
        if self.label_names is not None and len(self.label_names) != expected_names:
            raise ValueError(
                f"Task '{name}': expected {expected_names} `label_names` for a {kind} task. "
                f"Received: label_names={self.label_names}"
            )
        if not isinstance(per_step, (bool, np.bool_)):
            raise ValueError(
                f"Task '{name}': invalid value for `per_step`. Expected a bool. Received: per_step={per_step!r}"
            )
        self.per_step = bool(per_step)

    # --- Derived facts ---------------------------------------------------------------------------------------

    @property
    def output_units(self) -> int:
        """Width of the head's output: 1, num_classes, num_labels or units."""
        return {"binary": 1, "multiclass": self.num_classes, "multilabel": self.num_labels}.get(self.kind, self.units)

    @property
    def label_width(self) -> int:
        """Number of label entries per example: 1 for binary and multiclass (a class id)."""
        return 1 if self.kind in ("binary", "multiclass") else self.output_units

    @property
    def standardizes_targets(self) -> bool:
        """Whether the head and loss work in standardised units (a regression task with offset or scale)."""
        return self.target_offset != 0.0 or self.target_scale != 1.0

    @property
    def missing_is_nan(self) -> bool:
        return isinstance(self.missing, float) and math.isnan(self.missing)

    @property
    def label_expectation(self) -> str:
        """What a label entry may hold, for error messages: e.g. "class ids in 0..2 (or the missing marker -1)"."""
        values = {
            "binary": "labels in [0, 1]",
            "multiclass": f"class ids in 0..{self.output_units - 1}",
            "multilabel": "entries in [0, 1]",
            "regression": "finite values",
        }[self.kind]
        return f"{values} (or the missing marker {self.missing})"

    # --- Label validation ------------------------------------------------------------------------------------

    def validate_labels(self, labels: Any, num_examples: int | None = None) -> None:
        """Checks one task's labels (numpy-like) for shape, dtype and range.

        Args:
            labels: array-like. The task's labels for a batch or a whole dataset, missing entries marked.
            num_examples: int. Expected leading dimension, if known.

        Raises:
            ValueError: naming the task, the field and what was expected.
        """
        array = np.asarray(labels)
        self.validate_label_spec(array.shape, array.dtype)
        if num_examples is not None and array.shape[0] != num_examples:
            raise ValueError(
                f"Task '{self.name}': labels have {array.shape[0]} rows but the inputs have {num_examples}."
            )
        present = array[~self._missing_mask(array)]
        if self.kind == "regression":
            bad = ~np.isfinite(present.astype(np.float64))
            if bad.any():
                raise ValueError(
                    f"Task '{self.name}': labels contain {present[bad][:3].tolist()}; expected finite values "
                    f"(mark a missing label with {self.missing})."
                )
            return
        present = present.astype(np.float64)
        if self.kind == "multiclass":
            valid = (present == np.round(present)) & (present >= 0) & (present < self.num_classes)
            expected = f"class ids in 0..{self.num_classes - 1}"
        else:
            valid = (present >= 0) & (present <= 1)
            expected = "values in [0, 1]"
        if not valid.all():
            raise ValueError(
                f"Task '{self.name}': labels contain {np.unique(present[~valid])[:5].tolist()}; expected {expected} "
                f"or {self.missing} for a missing label."
            )

    def validate_label_spec(self, shape: Sequence[int | None], dtype: Any) -> None:
        """Checks the shape (batch axis first) and dtype of a task's labels without reading values."""
        shape = tuple(shape)
        dtype = np.dtype(getattr(dtype, "as_numpy_dtype", dtype))
        if len(shape) == 0:
            raise ValueError(f"Task '{self.name}': labels must have a batch axis. Received a scalar.")
        self._check_label_shape(shape)
        numeric = np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)
        if not numeric:
            raise ValueError(f"Task '{self.name}': labels must be numeric. Received dtype {dtype}.")
        if self.kind != "regression" and np.issubdtype(dtype, np.unsignedinteger) and self.missing < 0:
            raise ValueError(
                f"Task '{self.name}': labels are unsigned ({dtype}) and cannot hold the missing marker "
                f"{self.missing}; use a signed integer dtype."
            )

    def _check_label_shape(self, shape: tuple) -> None:
        width = self.label_width
        allowed = [(), (1,)] if width == 1 else [(width,)]
        leading = (None, "height", "width") if self.per_pixel else (None, "steps") if self.per_step else (None,)
        inner = tuple(shape[len(leading):])
        if len(shape) >= len(leading) and inner in allowed:
            return
        expected = " or ".join(_shape_text(leading + a) for a in allowed)
        kind = f"{self.kind}, per_step" if self.per_step else self.kind
        if self.per_pixel:
            kind = f"{self.kind}, per_pixel"
            hint = " A per_pixel task needs one label per pixel (a mask), unlabelled pixels marked with `missing`."
        elif self.per_step:
            hint = " A per_step task needs labels per time step, padded steps marked with `missing`."
        else:
            extra_axis = len(shape) > (1 if width == 1 else 2)
            hint = " For labels per time step, declare the task with per_step=True." if extra_axis else ""
        raise ValueError(
            f"Task '{self.name}' ({kind}): labels must have shape {expected}. Received shape {_shape_text(shape)}."
            + hint
        )

    def _missing_mask(self, array: np.ndarray) -> np.ndarray:
        if self.missing_is_nan:
            return np.isnan(array.astype(np.float64))
        return array == self.missing

    # --- Serialisation ---------------------------------------------------------------------------------------

    def get_config(self) -> dict:
        metrics = [m if isinstance(m, str) else keras.saving.serialize_keras_object(m) for m in self.metrics]
        loss = self.loss if isinstance(self.loss, str) else keras.saving.serialize_keras_object(self.loss)
        missing = "nan" if self.missing_is_nan else self.missing
        return {
            "name": self.name,
            "kind": self.kind,
            "num_classes": self.num_classes,
            "num_labels": self.num_labels,
            "units": self.units,
            "loss": loss,
            "metrics": metrics,
            "activation": self.activation,
            "loss_weight": self.loss_weight,
            "auxiliary": self.auxiliary,
            "missing": missing,
            "label_names": self.label_names,
            "target_offset": self.target_offset,
            "target_scale": self.target_scale,
            "per_step": self.per_step,
            "per_pixel": self.per_pixel,
        }

    @classmethod
    def from_config(cls, config: dict) -> "Task":
        config = dict(config)
        if config.get("missing") == "nan":
            config["missing"] = float("nan")
        if isinstance(config.get("loss"), dict):
            config["loss"] = keras.saving.deserialize_keras_object(config["loss"])
        config["metrics"] = [
            m if isinstance(m, str) else keras.saving.deserialize_keras_object(m) for m in config.get("metrics", [])
        ]
        name, kind = config.pop("name"), config.pop("kind")
        return cls(name, kind, **config)

    def __repr__(self) -> str:
        extra = {"multiclass": f", num_classes={self.num_classes}", "multilabel": f", num_labels={self.num_labels}"}
        detail = extra.get(self.kind, f", units={self.units}" if self.kind == "regression" and self.units > 1 else "")
        aux = ", auxiliary=True" if self.auxiliary else ""
        steps = ", per_step=True" if self.per_step else ""
        pixels = ", per_pixel=True" if self.per_pixel else ""
        return f"Task({self.name!r}, {self.kind!r}{detail}{aux}{steps}{pixels})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Task) and _comparable(self.get_config()) == _comparable(other.get_config())

    __hash__ = None


def _shape_text(shape) -> str:
    dims = ["batch" if i == 0 and d is None else "None" if d is None else str(d) for i, d in enumerate(shape)]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _comparable(config: dict) -> dict:
    return {k: (str(v) if k in ("loss", "metrics") else v) for k, v in config.items()}


def _default_missing(kind: str) -> float | int:
    return float("nan") if kind == "regression" else -1


def _check_count(task: str, field: str, value: Any, required: bool, minimum: int) -> int | None:
    if value is None and not required:
        return None
    if value is not None and not required:
        raise ValueError(f"Task '{task}': `{field}` does not apply to this kind of task. Received: {field}={value}")
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(
            f"Task '{task}': invalid value for `{field}`. Expected an int >= {minimum}. Received: {field}={value!r}"
        )
    return int(value)


def validate_task_list(tasks: Sequence[Task]) -> list[Task]:
    """Checks a list of tasks: at least one, all `Task`s, unique names."""
    tasks = list(tasks)
    if not tasks:
        raise ValueError("Invalid value for `tasks`. Expected at least one Task. Received: tasks=[]")
    for task in tasks:
        if not isinstance(task, Task):
            raise ValueError(f"Invalid value for `tasks`. Expected kmtl.Task objects. Received: {task!r}")
    names = [t.name for t in tasks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Invalid value for `tasks`. Task names must be unique. Received duplicates: {duplicates}")
    return tasks
