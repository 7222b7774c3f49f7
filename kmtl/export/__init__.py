"""Export to TensorFlow Serving."""

from kmtl.export.serving import for_serving, serving_outputs

__all__ = ["for_serving", "serving_outputs"]
