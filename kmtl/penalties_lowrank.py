"""Deprecated alias, removed in the next release: its names moved to `kmtl.regularizers.low_rank`."""

from kmtl._moved import moved

__getattr__ = moved(__name__, "kmtl.regularizers.low_rank")
