"""Deprecated alias, removed in the next release: its names moved to `kmtl.model.nan_guard`."""

from kmtl._moved import moved

__getattr__ = moved(
    __name__,
    "kmtl.model.nan_guard",
)
