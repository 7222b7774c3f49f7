"""Custom Keras layers for multi-task learning (`keras.ops` only).

Importing this package registers every layer under the `kmtl` package name,
so `.keras` files that use them load with `safe_mode=True` and no
`custom_objects`.
"""

from kmtl.layers.cross_stitch import CrossStitch
from kmtl.layers.feature_fusion import FeatureFusion
from kmtl.layers.gradient_reversal import GradientReversal

__all__ = ["CrossStitch", "FeatureFusion", "GradientReversal"]
