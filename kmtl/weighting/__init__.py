"""Task-weighting strategies, selected by name or object in `MultiTaskModel.compile(weighting=...)`.

Loss-level strategies combine the task losses inside `compute_loss`; gradient-level ones aggregate the per-task
gradients of the shared part (see `GradientWeighting`). One module per method (or family), named after it; each
registers its names in `STRATEGIES` with `base.register`, so this module imports them all.
"""

from __future__ import annotations

from typing import Any

import keras

from kmtl.weighting.base import STRATEGIES, GradientWeighting, Weighting

# Importing a method's module registers it; the order below (loss-level first, "equal" first) is the order of
# `STRATEGIES`.
# isort: off
from kmtl.weighting.static import Equal, Static
from kmtl.weighting.uncertainty import Uncertainty
from kmtl.weighting.dwa import DWA
from kmtl.weighting.rlw import RLW
from kmtl.weighting.gls import GeometricMean
from kmtl.weighting.famo import FAMO
from kmtl.weighting.pcgrad import PCGrad
from kmtl.weighting.graddrop import GradDrop
from kmtl.weighting.mgda import MGDA
from kmtl.weighting.imtl import IMTLG, IMTLL
from kmtl.weighting.cagrad import CAGrad
from kmtl.weighting.gradvac import GradVac
from kmtl.weighting.gradnorm import GradNorm
from kmtl.weighting.nash_mtl import NashMTL
from kmtl.weighting.upgrad import UPGrad
from kmtl.weighting.dualproj import DualProj
from kmtl.weighting.aligned_mtl import AlignedMTL
from kmtl.weighting.config import ConFIG

# isort: on

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


def get(identifier: Any) -> Weighting:
    """Returns the `Weighting` that `compile(weighting=identifier)` uses.

    A name (a key of `STRATEGIES`) or a serialised config makes a new strategy; None makes `Equal()`. A
    `Weighting` object is returned as it is: it keeps its state for the one model it is compiled with (compiling
    a second model with it raises a `ValueError`; pass each model its own object, or a name).

    Raises:
        ValueError: for an unknown name, listing the known ones, or anything else that is not a strategy.
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
