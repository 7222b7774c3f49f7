"""Deprecated alias, removed in the next release: its names moved to `kmtl.model.progress`."""

from kmtl._moved import moved

__getattr__ = moved(
    __name__,
    "kmtl.model.progress",
)
