"""kmtl: multi-task learning for Keras 3.

Declare tasks once, build a model with a builder, train it with `fit`, evaluate each task and export it for
TensorFlow Serving.
"""

from kmtl import backbones, builders, heads, losses, metrics, weighting
from kmtl.model import MultiTaskModel
from kmtl.tasks import Task

__version__ = "0.1.0"

__all__ = [
    "MultiTaskModel",
    "Task",
    "backbones",
    "builders",
    "heads",
    "losses",
    "metrics",
    "weighting",
]
