"""Deprecated alias, removed in the next release: its names moved to
`kmtl.weighting.static`, `kmtl.weighting.uncertainty`.
"""

from kmtl._moved import moved

__getattr__ = moved(
    __name__,
    "kmtl.weighting.static",
    "kmtl.weighting.uncertainty",
)
