"""Task-weighting strategies, selected by name or object in `MultiTaskModel.compile(weighting=...)`.

Loss-level strategies combine the task losses inside `compute_loss`; gradient-level ones aggregate the per-task
gradients of the shared part (see `GradientWeighting`).
"""

from __future__ import annotations

from typing import Any

import keras

from kmtl.weighting import aligned as _aligned
from kmtl.weighting import conic as _conic
from kmtl.weighting import dynamic as _dynamic
from kmtl.weighting import gradient_level as _gradient_level
from kmtl.weighting import nash_mtl as _nash_mtl
from kmtl.weighting.aligned import AlignedMTL, ConFIG
from kmtl.weighting.base import GradientWeighting, Weighting
from kmtl.weighting.conic import DualProj, UPGrad
from kmtl.weighting.dynamic import DWA, IMTLL, RLW, GeometricMean
from kmtl.weighting.famo import FAMO
from kmtl.weighting.gradient_level import IMTLG, CAGrad, GradDrop, PCGrad
from kmtl.weighting.gradient_stateful import GradNorm, GradVac
from kmtl.weighting.loss_level import Equal, Static, Uncertainty
from kmtl.weighting.min_norm import MGDA
from kmtl.weighting.nash_mtl import NashMTL

__all__ = [
    "AlignedMTL",
    "CAGrad",
    "ConFIG",
    "DWA",
    "DualProj",
    "FAMO",
    "GradDrop",
    "GradNorm",
    "GradVac",
    "IMTLG",
    "IMTLL",
    "MGDA",
    "NashMTL",
    "PCGrad",
    "RLW",
    "STRATEGIES",
    "Equal",
    "GeometricMean",
    "GradientWeighting",
    "Static",
    "UPGrad",
    "Uncertainty",
    "Weighting",
    "get",
]

# Name -> class (or factory) for `compile(weighting="name")`.
STRATEGIES = {
    "equal": Equal,
    "static": Static,
    "uncertainty": Uncertainty,
    **_dynamic.NAMES,
    **_gradient_level.NAMES,
    **_nash_mtl.NAMES,
    **_conic.NAMES,
    **_aligned.NAMES,
}


def get(identifier: Any) -> Weighting:
    """Returns a fresh `Weighting` for a name, a serialised config or a `Weighting` object.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if isinstance(identifier, Weighting):
        return identifier
    if identifier is None:
        return Equal()
    if isinstance(identifier, str):
        if identifier not in STRATEGIES:
            raise ValueError(
                f"Invalid value for `weighting`. Expected one of {sorted(STRATEGIES)} or a kmtl.weighting.Weighting. "
                f"Received: weighting={identifier!r}"
            )
        return STRATEGIES[identifier]()
    if isinstance(identifier, dict):
        strategy = keras.saving.deserialize_keras_object(identifier)
        if isinstance(strategy, Weighting):
            return strategy
    raise ValueError(
        f"Invalid value for `weighting`. Expected a name, config or kmtl.weighting.Weighting. Received: {identifier!r}"
    )
