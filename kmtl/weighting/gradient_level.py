"""Deprecated alias, removed in the next release: its names moved to
`kmtl.weighting.pcgrad`, `kmtl.weighting.graddrop`, `kmtl.weighting.imtl`, `kmtl.weighting.cagrad`,
`kmtl.weighting.mgda`, `kmtl.weighting.gradvac`, `kmtl.weighting.gradnorm`.
"""

from kmtl._moved import moved

__getattr__ = moved(
    __name__,
    "kmtl.weighting.pcgrad",
    "kmtl.weighting.graddrop",
    "kmtl.weighting.imtl",
    "kmtl.weighting.cagrad",
    "kmtl.weighting.mgda",
    "kmtl.weighting.gradvac",
    "kmtl.weighting.gradnorm",
    "kmtl.weighting._gradients",
    "kmtl.weighting._solvers",
)
