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

from kmtl.export.warmup import write_rest_request, write_warmup_requests

SIGNATURE = "serving_default"


def for_serving(
    model,
    base_dir: str | os.PathLike,
    version: int | None = None,
    *,
    examples: Any = None,
    warmup: bool = True,
) -> Path:
    """Exports a `MultiTaskModel` as a TF-Serving SavedModel at `base_dir/<version>/`.

    The SavedModel has one signature, `serving_default`, whose inputs are the model's named inputs and whose
    outputs are, per non-auxiliary task: binary → `<task>` (probability of the positive class, shape `(batch,)`);
    multiclass → `<task>` (class probabilities), `<task>_class_id` (int64) and, when the task has label names,
    `<task>_class_name` (string); multilabel → `<task>` (probabilities); regression → `<task>` (values, `(batch,)`
    for one unit). Auxiliary tasks are left out. Loading needs TensorFlow only, not kmtl.

    The version is written to a temporary folder beside it and renamed into place, so a half-written version is
    never visible; an existing version is never overwritten. Beside the SavedModel, `assets.extra/` holds
    `kmtl_model.json` (tasks and outputs), `rest_request.json` (an example REST body) and, when
    `tensorflow-serving-api` is installed and `warmup` is true, `tf_serving_warmup_requests`.

    Args:
        model: `kmtl.MultiTaskModel`.
        base_dir: str or path. The model's folder, e.g. `saved_models/faces`.
        version: int. Version number; defaults to one more than the highest existing version (1 at first).
        examples: optional inputs (a dict of arrays keyed by input name, or one array) for the warm-up records and
            the REST example; defaults to zeros of the input shapes.
        warmup: bool. Whether to write TF-Serving warm-up records.

    Returns:
        Path of the version folder.

    Raises:
        FileExistsError: if `base_dir/<version>` exists.
        ValueError: for a bad version or a model without exportable tasks.

    Example:

    >>> path = kmtl.export.for_serving(model, "saved_models/faces")  # doctest: +SKIP
    >>> path.name  # doctest: +SKIP
    '1'
    """
    base = Path(base_dir)
    version = _resolve_version(base, version)
    target = base / str(version)
    if target.exists():
        raise FileExistsError(f"Version {version} already exists at {target}; kmtl never overwrites an export.")
    exported_tasks = [t for t in model.tasks if not t.auxiliary]
    if not exported_tasks:
        raise ValueError("The model has no non-auxiliary task to export.")
    specs = _input_specs(model)
    batch = _example_batch(specs, examples)
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.partial-", dir=base))
    try:
        export_dir = staging / "model"
        _write_saved_model(model, exported_tasks, specs, export_dir)
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
            outputs[task.name] = tf.reshape(value, [-1])
        elif task.kind == "multiclass":
            outputs[task.name] = value
            class_id = tf.argmax(value, axis=-1, output_type=tf.int64)
            outputs[f"{task.name}_class_id"] = class_id
            if task.label_names:
                outputs[f"{task.name}_class_name"] = tf.gather(tf.constant(task.label_names), class_id)
        else:
            outputs[task.name] = value
    return outputs


def _write_saved_model(model, tasks, specs, export_dir):
    serving_model = keras.Model(
        inputs=model.input, outputs={t.name: model.output[t.name] for t in tasks}, name=f"{model.name}_serving"
    )
    input_names = list(specs)
    single = not isinstance(model.input, (dict, list, tuple))
    as_list = isinstance(model.input, (list, tuple))

    def serve(inputs):
        if single:
            model_inputs = inputs[input_names[0]]
        elif as_list:
            model_inputs = [inputs[name] for name in input_names]
        else:
            model_inputs = inputs
        return serving_outputs(tasks, serving_model(model_inputs, training=False))

    archive = keras.export.ExportArchive()
    archive.track(serving_model)
    archive.add_endpoint(SIGNATURE, serve, input_signature=[specs])
    archive.write_out(str(export_dir), verbose=False)


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
        return {n: np.zeros([1 if d is None else d for d in s.shape], s.dtype.as_numpy_dtype) for n, s in specs.items()}
    if not isinstance(examples, dict):
        if len(specs) != 1:
            raise ValueError(f"`examples` must be a dict keyed by input names {list(specs)} for this model.")
        examples = {next(iter(specs)): examples}
    missing = [n for n in specs if n not in examples]
    if missing:
        raise ValueError(f"`examples` lacks input(s) {missing}. Expected keys: {list(specs)}.")
    batch = {}
    for name, spec in specs.items():
        value = np.asarray(examples[name])
        expected = tuple(spec.shape)
        fits = value.ndim == len(expected) and all(d is None or d == v for d, v in zip(expected, value.shape))
        if not fits or value.shape[0] == 0:
            shown = tuple("batch" if d is None else d for d in expected)
            raise ValueError(
                f"`examples['{name}']` must have shape {shown} with at least one row. Received shape {value.shape}."
            )
        batch[name] = value[:1].astype(spec.dtype.as_numpy_dtype)
    return batch


def _describe(model, tasks, specs) -> dict:
    outputs = {}
    for task in tasks:
        names = [task.name]
        if task.kind == "multiclass":
            names.append(f"{task.name}_class_id")
            if task.label_names:
                names.append(f"{task.name}_class_name")
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
