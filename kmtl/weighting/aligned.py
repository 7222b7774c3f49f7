"""Deprecated alias, removed in the next release: its names moved to
`kmtl.weighting.aligned_mtl`, `kmtl.weighting.config`.
"""

from kmtl._moved import moved

__getattr__ = moved(
    __name__,
    "kmtl.weighting.aligned_mtl",
    "kmtl.weighting.config",
    "kmtl.weighting._solvers",
)
