"""Export for TensorFlow Serving: versioned, atomic SavedModels with named per-task outputs."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kmtl.export.image_bytes import add_bytes_endpoint, image_bytes_input
from kmtl.export.warmup import write_rest_request, write_warmup_requests
from kmtl.layers.crf import crf_decode, crf_log_partition, crf_potentials

SIGNATURE = "serving_default"
# Length given to an input dimension of unknown size (a sequence's time axis) in the default example inputs.
DEFAULT_EXAMPLE_STEPS = 8
# The default example of a string input (tokens padded with ""): this token at the first step, padding elsewhere.
DEFAULT_EXAMPLE_TOKEN = "example"


def for_serving(
    model,
    base_dir: str | os.PathLike,
    version: int | None = None,
    *,
    examples: Any = None,
    warmup: bool = True,
    image_bytes: bool | None = None,
) -> Path:
    """Exports a `MultiTaskModel` as a TF-Serving SavedModel at `base_dir/<version>/`.

    The SavedModel has one signature, `serving_default`, whose inputs are the model's named inputs and whose
    outputs are, per non-auxiliary task: binary → `<task>` (probability of the positive class, shape `(batch,)`);
    multiclass → `<task>` (class probabilities), `<task>_class_id` (int64) and, when the task has label names,
    `<task>_class_name` (string); for a CRF head (`kmtl.layers.CRF`) `<task>` holds the tag marginals, the ids
    and names are the Viterbi path's and `<task>_path_log_probability` `(batch,)` is that path's log p(path | x);
    multilabel → `<task>` (probabilities); regression → `<task>` (values, `(batch,)`
    for one unit). Auxiliary tasks are left out. Loading needs TensorFlow only, not kmtl.

    A per-step task's outputs keep their time axis after the batch axis: `(batch, steps)` for binary,
    one-unit regression, `<task>_class_id` and `<task>_class_name`; `(batch, steps, units)` otherwise. Input
    dimensions the model leaves open (a `None` time axis) stay open in the signature, so it accepts sequences of
    any length; each request is one padded batch. String inputs (tokens `(batch, steps)` padded with `""`, looked
    up inside the model by a `StringLookup`) are served as strings, so a client needs no vocabulary file.

    The version is written to a temporary folder beside it and renamed into place, so a half-written version is
    never visible; an existing version is never overwritten. Beside the SavedModel, `assets.extra/` holds
    `kmtl_model.json` (tasks and outputs), `rest_request.json` (an example REST body) and, when
    `tensorflow-serving-api` is installed and `warmup` is true, `tf_serving_warmup_requests`.

    Args:
        model: `kmtl.MultiTaskModel`.
        base_dir: str or path. The model's folder, e.g. `saved_models/faces`.
        version: int. Version number; defaults to one more than the highest existing version (1 at first).
        examples: optional inputs (a dict of arrays keyed by input name, or one array) for the warm-up records and
            the REST example; only the first example is used, so a list of sequences of different lengths will
            do. Defaults to zeros of the input shapes (for a string input, `""` padding with `DEFAULT_EXAMPLE_TOKEN`
            at the first step), with `DEFAULT_EXAMPLE_STEPS` for a dimension of unknown size. The example must run
            through the model.
        warmup: bool. Whether to write TF-Serving warm-up records.
        image_bytes: bool or None. Whether to add a second signature, `serving_bytes`, taking encoded PNG/JPEG
            bytes `image_bytes` `(batch,)` that the SavedModel decodes, resizes and scales to [0, 1] (see
            `kmtl.export.image_bytes`). None (default): added for a model with one image input and a per-pixel task.

    Returns:
        Path of the version folder.

    Raises:
        FileExistsError: if `base_dir/<version>` exists.
        ValueError: for a model that is not a `MultiTaskModel`, a `base_dir` that is a file, a bad version, a model
            without exportable tasks, or examples that do not fit the inputs.

    Example:

    >>> path = kmtl.export.for_serving(model, "saved_models/faces")  # doctest: +SKIP
    >>> path.name  # doctest: +SKIP
    '1'
    """
    if not hasattr(model, "tasks"):
        raise ValueError(
            "Invalid value for `model`. Expected a kmtl.MultiTaskModel: its tasks define the serving outputs (names, "
            "probabilities, class ids). Build the model with kmtl.builders, or wrap a dict-output model as "
            f"kmtl.MultiTaskModel(inputs, outputs, tasks=[...]). Received: model={type(model).__name__}"
        )
    base = Path(base_dir)
    if base.exists() and not base.is_dir():
        raise ValueError(
            f"Invalid value for `base_dir`. Expected a folder for the model's versions. Received: base_dir={base}, "
            "which is a file."
        )
    version = _resolve_version(base, version)
    target = base / str(version)
    if target.exists():
        raise FileExistsError(f"Version {version} already exists at {target}; kmtl never overwrites an export.")
    exported_tasks = [t for t in model.tasks if not t.auxiliary]
    if not exported_tasks:
        raise ValueError("The model has no non-auxiliary task to export.")
    specs = _input_specs(model)
    batch = _example_batch(specs, examples)
    _check_example_runs(model, specs, batch)
    bytes_input = image_bytes_input(model, specs, image_bytes)
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.partial-", dir=base))
    try:
        export_dir = staging / "model"
        _write_saved_model(model, exported_tasks, specs, export_dir, bytes_input)
        extra = export_dir / "assets.extra"
        extra.mkdir(exist_ok=True)
        (extra / "kmtl_model.json").write_text(json.dumps(_describe(model, exported_tasks, specs), indent=2))
        write_rest_request(extra / "rest_request.json", batch, SIGNATURE)
        if warmup:
            write_warmup_requests(extra / "tf_serving_warmup_requests", batch, SIGNATURE, model.name)
        rename_no_replace(export_dir, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def serving_outputs(tasks, predictions: dict) -> dict:
    """Turns the model's per-task predictions into the named outputs of the serving signature."""
    outputs = {}
    for task in tasks:
        value = predictions[task.name]
        if task.kind == "binary" or (task.kind == "regression" and task.units == 1):
            outputs[task.name] = tf.squeeze(value, axis=-1)  # (batch,), or (batch, steps) for a per-step task
        elif task.kind == "multiclass":
            outputs[task.name] = value
            potentials = crf_potentials(value)
            if potentials is None:
                class_id = tf.argmax(value, axis=-1, output_type=tf.int64)
            else:  # a CRF head: the best tag path, not each step's most likely tag
                class_id, outputs[f"{task.name}_path_log_probability"] = _viterbi(potentials)
            outputs[f"{task.name}_class_id"] = class_id
            if task.label_names:
                outputs[f"{task.name}_class_name"] = tf.gather(tf.constant(task.label_names), class_id)
        else:
            outputs[task.name] = value
    return outputs


def _viterbi(potentials) -> tuple:
    """A CRF head's Viterbi path `(batch, steps)` int64 and its log-probability `(batch,)`."""
    path, score = crf_decode(*potentials)
    return tf.cast(path, tf.int64), score - crf_log_partition(*potentials)


def _write_saved_model(model, tasks, specs, export_dir, bytes_input=None):
    serving_model = keras.Model(
        inputs=model.input, outputs={t.name: model.output[t.name] for t in tasks}, name=f"{model.name}_serving"
    )

    def serve(inputs):
        return serving_outputs(tasks, serving_model(_model_inputs(model, specs, inputs), training=False))

    archive = keras.export.ExportArchive()
    archive.track(serving_model)
    archive.add_endpoint(SIGNATURE, serve, input_signature=[specs])
    if bytes_input is not None:
        add_bytes_endpoint(archive, serve, specs, bytes_input)
    archive.write_out(str(export_dir), verbose=False)


def _model_inputs(model, specs, inputs):
    """Arranges a dict of named inputs as the model takes them: one tensor, a list or a dict."""
    names = list(specs)
    if not isinstance(model.input, (dict, list, tuple)):
        return inputs[names[0]]
    if isinstance(model.input, (list, tuple)):
        return [inputs[name] for name in names]
    return inputs


def _check_example_runs(model, specs, batch) -> None:
    """Runs the example batch through the model, so TF Serving never gets warm-up records it cannot replay."""
    try:
        model(_model_inputs(model, specs, {n: tf.constant(v) for n, v in batch.items()}), training=False)
    except Exception as error:  # any failure means TF Serving could not replay the example either
        shapes = {n: v.shape for n, v in batch.items()}
        raise ValueError(
            f"The example inputs {shapes} do not run through the model; pass `examples` that do. Error: {error}"
        ) from error


def _input_specs(model) -> dict:
    specs = {}
    for tensor in keras.tree.flatten(model.input):
        name = tensor.name
        if name in specs:
            raise ValueError(f"Two model inputs are named {name!r}; serving inputs need unique names.")
        specs[name] = tf.TensorSpec(shape=tensor.shape, dtype=tensor.dtype, name=name)
    return specs


def _example_batch(specs, examples) -> dict:
    if examples is None:
        return {n: _default_example(s) for n, s in specs.items()}
    if not isinstance(examples, dict):
        if len(specs) != 1:
            raise ValueError(f"`examples` must be a dict keyed by input names {list(specs)} for this model.")
        examples = {next(iter(specs)): examples}
    missing = [n for n in specs if n not in examples]
    if missing:
        raise ValueError(f"`examples` lacks input(s) {missing}. Expected keys: {list(specs)}.")
    batch = {}
    for name, spec in specs.items():
        first, received = _first_example(examples[name])
        expected = tuple(spec.shape)
        fits = first is not None and first.ndim == len(expected) - 1
        if not fits or not all(d is None or d == v for d, v in zip(expected[1:], first.shape)):
            raise ValueError(
                f"`examples['{name}']` must have shape {_shape_text(expected)} with at least one row. "
                f"Received shape {received}."
            )
        batch[name] = first[None].astype(spec.dtype.as_numpy_dtype)
    return batch


def _shape_text(shape) -> str:
    dims = [("batch" if i == 0 else "any") if d is None else str(d) for i, d in enumerate(shape)]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _first_example(value) -> tuple:
    """The first example of a batch (an array, or a list such as sequences of different lengths), and its shape."""
    if isinstance(value, (list, tuple)):
        if not value:
            return None, (0,)
        first = np.asarray(value[0])
        return first, (len(value),) + first.shape
    value = np.asarray(value)
    if value.ndim == 0 or len(value) == 0:
        return None, value.shape
    return value[0], value.shape


def _default_example(spec) -> np.ndarray:
    """Zeros of the spec's shape; for strings `""` (padding) with `DEFAULT_EXAMPLE_TOKEN` at the first step."""
    shape = _default_shape(spec.shape)
    if spec.dtype != tf.string:
        return np.zeros(shape, spec.dtype.as_numpy_dtype)
    example = np.full(shape, "", dtype=object)
    example[(slice(None), *([0] * (len(shape) - 1)))] = DEFAULT_EXAMPLE_TOKEN
    return example


def _default_shape(shape) -> list:
    """One example: batch 1, `DEFAULT_EXAMPLE_STEPS` for another dimension of unknown size."""
    return [1] + [DEFAULT_EXAMPLE_STEPS if d is None else d for d in list(shape)[1:]]


def _describe(model, tasks, specs) -> dict:
    outputs = {}
    for task in tasks:
        names = [task.name]
        if task.kind == "multiclass":
            names.append(f"{task.name}_class_id")
            if task.label_names:
                names.append(f"{task.name}_class_name")
            if getattr(task.loss, "sequence_level", False):  # a CRF head (kmtl.losses.CRFLoss)
                names.append(f"{task.name}_path_log_probability")
        outputs[task.name] = names
    return {
        "model": model.name,
        "signature": SIGNATURE,
        "inputs": {n: {"shape": list(s.shape), "dtype": s.dtype.name} for n, s in specs.items()},
        "outputs": outputs,
        "tasks": [t.get_config() for t in tasks],
    }


def rename_no_replace(source: Path, target: Path) -> None:
    """Renames `source` to `target` atomically, failing with FileExistsError if `target` exists (even empty).

    Uses Linux's `renameat2(RENAME_NOREPLACE)` where available; elsewhere checks, then renames (a plain rename still
    never replaces a non-empty folder).
    """
    if not _renameat2_no_replace(source, target):
        if target.exists():
            raise FileExistsError(f"{target} appeared during the export; kmtl never overwrites an export.")
        try:
            os.rename(source, target)
        except OSError as error:
            if target.exists():
                raise FileExistsError(f"{target} appeared during the export; kmtl never overwrites an export.") from error
            raise


def _renameat2_no_replace(source: Path, target: Path) -> bool:
    """Tries `renameat2(..., RENAME_NOREPLACE)`; returns False if the platform lacks it."""
    import ctypes
    import errno
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_noreplace = -100, 1
    result = renameat2(at_fdcwd, os.fsencode(source), at_fdcwd, os.fsencode(target), rename_noreplace)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code == errno.EEXIST or code == errno.ENOTEMPTY:
        raise FileExistsError(f"{target} appeared during the export; kmtl never overwrites an export.")
    if code in (errno.ENOSYS, errno.EINVAL):
        return False  # kernel or file system without RENAME_NOREPLACE
    raise OSError(code, os.strerror(code), str(target))


def _resolve_version(base: Path, version) -> int:
    if version is None:
        existing = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()] if base.exists() else []
        return max(existing, default=0) + 1
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1:
        raise ValueError(f"Invalid value for `version`. Expected an int >= 1. Received: version={version!r}")
    return int(version)
