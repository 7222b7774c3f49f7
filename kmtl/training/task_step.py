"""Deprecated alias, removed in the next release: its names moved to `kmtl.model.gradients`, `kmtl.model.partition`, `kmtl.model.replicas`."""

from kmtl._moved import moved

__getattr__ = moved(
    __name__,
    "kmtl.model.gradients",
    "kmtl.model.partition",
    "kmtl.model.replicas",
)
