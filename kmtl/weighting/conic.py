"""Deprecated alias, removed in the next release: its names moved to
`kmtl.weighting.upgrad`, `kmtl.weighting.dualproj`.
"""

from kmtl._moved import moved

__getattr__ = moved(
    __name__,
    "kmtl.weighting.upgrad",
    "kmtl.weighting.dualproj",
    "kmtl.weighting._dual_cone",
)
