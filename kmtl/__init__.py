"""kmtl: multi-task learning for Keras 3.

Declare tasks once, build a model with a builder, train it with `fit`, evaluate each task and export it for
TensorFlow Serving:

    tasks = [kmtl.Task("smiling", "binary"), kmtl.Task("age", "regression")]
    model = kmtl.builders.hard_sharing(inputs, features, tasks)
    model.compile(optimizer="adam", weighting="uncertainty")
    model.fit(train_ds, validation_data=val_ds, epochs=5)
    print(kmtl.evaluate(model, test_ds))
    kmtl.export.for_serving(model, "saved_models/faces")
"""

from kmtl import (
    backbones,
    builders,
    data,
    export,
    heads,
    layers,
    losses,
    metrics,
    preprocessing,
    regularizers,
    training,
    tuning,
    weighting,
)
from kmtl.evaluation import EvaluationReport, evaluate
from kmtl.model import MultiTaskModel
from kmtl.tasks import Task

__version__ = "0.1.0"

__all__ = [
    "EvaluationReport",
    "MultiTaskModel",
    "Task",
    "backbones",
    "builders",
    "data",
    "evaluate",
    "export",
    "heads",
    "layers",
    "losses",
    "metrics",
    "preprocessing",
    "regularizers",
    "training",
    "tuning",
    "weighting",
]
