"""Metrics for tasks: resolution of metric names per task kind, and metrics Keras lacks."""

from __future__ import annotations

from typing import Any

import keras

from kmtl.metrics.nme import NormalizedMeanError
from kmtl.metrics.segmentation import DiceScore
from kmtl.tasks import Task

__all__ = ["DiceScore", "NormalizedMeanError", "resolve_metrics"]

# Short metric names per task kind. Each resolves to a fresh metric object named `<task>_<short name>`.
_BY_KIND = {
    "binary": {
        "accuracy": keras.metrics.BinaryAccuracy,
        "auc": keras.metrics.AUC,
        "precision": keras.metrics.Precision,
        "recall": keras.metrics.Recall,
    },
    "multiclass": {
        "accuracy": keras.metrics.SparseCategoricalAccuracy,
        "top_2_accuracy": lambda name: keras.metrics.SparseTopKCategoricalAccuracy(k=2, name=name),
        "crossentropy": keras.metrics.SparseCategoricalCrossentropy,
    },
    "regression": {
        "mae": keras.metrics.MeanAbsoluteError,
        "mse": keras.metrics.MeanSquaredError,
        "rmse": keras.metrics.RootMeanSquaredError,
        "nme": NormalizedMeanError,
    },
}
_BY_KIND["multilabel"] = _BY_KIND["binary"]

# Per-pixel tasks (`Task(per_pixel=True)`): mask metrics over labelled pixels, made from the task (classes).
_PER_PIXEL = {
    "binary": {
        "dice": lambda task, name: DiceScore(name=name),
        "iou": lambda task, name: keras.metrics.BinaryIoU(target_class_ids=[1], name=name, dtype="float32"),
    },
    "multiclass": {
        "dice": lambda task, name: DiceScore(num_classes=task.num_classes, name=name),
        "mean_iou": lambda task, name: keras.metrics.MeanIoU(
            task.num_classes, sparse_y_pred=False, name=name, dtype="float32"
        ),
    },
}


def resolve_metrics(task: Task, metrics: list[Any] | None = None) -> list[keras.metrics.Metric]:
    """Fresh metric objects for a task, each named `<task>_<metric>`.

    Args:
        task: `Task`.
        metrics: list of names or `keras.metrics.Metric` objects; defaults to `task.metrics`.

    Returns:
        List of `keras.metrics.Metric`.

    Raises:
        ValueError: for a name that does not apply to the task's kind.
    """
    resolved = []
    for metric in task.metrics if metrics is None else metrics:
        pixel_factory = _PER_PIXEL.get(task.kind, {}).get(metric) if getattr(task, "per_pixel", False) else None
        if isinstance(metric, str) and pixel_factory is not None:
            resolved.append(pixel_factory(task, f"{task.name}_{metric}"))
        elif isinstance(metric, str):
            factory = _BY_KIND[task.kind].get(metric)
            if factory is None:
                known = sorted(_BY_KIND[task.kind])
                if getattr(task, "per_pixel", False):
                    known = sorted(set(known) | set(_PER_PIXEL.get(task.kind, {})))
                raise ValueError(
                    f"Task '{task.name}': unknown metric {metric!r} for a {task.kind} task. "
                    f"Known names: {known}, or pass a keras.metrics.Metric object."
                )
            resolved.append(factory(name=f"{task.name}_{metric}"))
        elif isinstance(metric, keras.metrics.Metric):
            config = metric.get_config()
            config["name"] = f"{task.name}_{config['name']}"
            resolved.append(type(metric).from_config(config))
        else:
            raise ValueError(
                f"Task '{task.name}': invalid metric {metric!r}. Expected a name or a keras.metrics.Metric object."
            )
    return resolved
