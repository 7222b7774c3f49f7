"""Deprecated alias, removed in the next release: its names moved to
`kmtl.weighting.dwa`, `kmtl.weighting.rlw`, `kmtl.weighting.gls`, `kmtl.weighting.imtl`, `kmtl.weighting.famo`.
"""

from kmtl._moved import moved

__getattr__ = moved(
    __name__,
    "kmtl.weighting.dwa",
    "kmtl.weighting.rlw",
    "kmtl.weighting.gls",
    "kmtl.weighting.imtl",
    "kmtl.weighting.famo",
)
