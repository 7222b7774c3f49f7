"""Deprecated alias, removed in the next release: its names moved to `kmtl.weighting.mgda`, `kmtl.weighting.cagrad`."""

from kmtl._moved import moved

__getattr__ = moved(
    __name__,
    "kmtl.weighting.mgda",
    "kmtl.weighting.cagrad",
    "kmtl.weighting._gradients",
    "kmtl.weighting._solvers",
)
