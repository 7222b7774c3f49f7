"""Default search spaces of the builders, and how a trial's values become each builder's keyword arguments.

Names shared by several builders mean the same thing everywhere:

- `shared_layers`, `shared_units`: depth and width of what the tasks share: the Dense trunk of `hard_sharing` and
  `stacked_heads_model`, the towers of `cross_stitch`, `sluice`, `soft_sharing` and `split` (their `units`), the
  experts of `mmoe` (`expert_hidden` has `shared_layers - 1` layers of `expert_units`);
- `head_units`: one hidden layer of that width in each task's head (or tower, for `mmoe`/`ple`); 0 for none;
- `dropout`: the builder's `dropout`, where it has one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

_TRUNK = {
    "shared_layers": {"min": 1, "max": 3, "default": 1},
    "shared_units": {"values": [16, 32, 64, 128], "default": 32},
}
_HEAD = {"head_units": [0, 16, 32]}
_DROPOUT = {"dropout": {"min": 0.0, "max": 0.3, "step": 0.1, "default": 0.0}}
_EXPERT_UNITS = {"expert_units": {"values": [16, 32, 64], "default": 32}}


def _head(values) -> tuple[int, ...]:
    return (values["head_units"],) if values["head_units"] else ()


def _tower(values) -> tuple[int, ...]:
    return (values["shared_units"],) * values["shared_layers"]


@dataclass(frozen=True)
class BuilderSpace:
    """How `BuilderHyperModel` drives one builder.

    Attributes:
        reads_features: bool. The builder takes `(inputs, features, tasks)`; otherwise `(inputs, tasks)` and an
            optional `input_features`.
        dense_trunk: bool. Without a user `trunk`, `features` is a Dense stack of `shared_layers` x
            `shared_units` (else the inputs themselves).
        space: dict. The default search space (see `kmtl.tuning.space`).
        kwargs: function `values -> builder keyword arguments`.
    """

    reads_features: bool
    dense_trunk: bool
    space: dict = field(default_factory=dict)
    kwargs: Callable[[dict], dict[str, Any]] = lambda values: {}


def _hard_sharing(v):
    return {"head_units": _head(v), "dropout": v["dropout"]}


def _mmoe(v):
    return {
        "num_experts": v["num_experts"],
        "expert_units": v["expert_units"],
        "expert_hidden": (v["expert_units"],) * (v["shared_layers"] - 1),
        "tower_units": _head(v),
        "dropout": v["dropout"],
    }


def _ple(v):
    keys = ("num_levels", "shared_experts", "task_experts", "expert_units", "dropout")
    return {**{k: v[k] for k in keys}, "tower_units": _head(v)}


def _towers(v):
    return {"units": _tower(v), "head_units": _head(v)}


def _sluice(v):
    return {**_towers(v), "subspaces": v["subspaces"]}


def _soft_sharing(v):
    return {"tower_units": _tower(v), "head_units": _head(v), "strength": v["strength"], "dropout": v["dropout"]}


def _split(v):
    return {**_towers(v), "shared_fraction": v["shared_fraction"]}


def _hierarchy(v):
    return {"units": v["shared_units"], "head_units": _head(v)}


BUILDER_SPACES = {
    "hard_sharing": BuilderSpace(True, True, {**_TRUNK, **_HEAD, **_DROPOUT}, _hard_sharing),
    "stacked_heads_model": BuilderSpace(True, True, dict(_TRUNK)),
    "mmoe": BuilderSpace(
        True, False,
        {"shared_layers": {"min": 1, "max": 2, "default": 1}, "num_experts": {"min": 2, "max": 8, "step": 2,
         "default": 4}, **_EXPERT_UNITS, **_HEAD, **_DROPOUT},
        _mmoe,
    ),
    "ple": BuilderSpace(
        True, False,
        {"num_levels": {"min": 1, "max": 3, "default": 2}, "shared_experts": {"min": 1, "max": 3, "default": 2},
         "task_experts": {"min": 1, "max": 2, "default": 1}, **_EXPERT_UNITS, **_HEAD, **_DROPOUT},
        _ple,
    ),
    "cross_stitch": BuilderSpace(False, False, {**_TRUNK, **_HEAD}, _towers),
    # Every `shared_units` choice is even, so 2 subspaces always divide the width.
    "sluice": BuilderSpace(False, False, {**_TRUNK, "subspaces": [2, 1], **_HEAD}, _sluice),
    "soft_sharing": BuilderSpace(
        False, False,
        {**_TRUNK, "strength": {"min": 1e-5, "max": 1e-1, "sampling": "log", "default": 1e-3}, **_HEAD, **_DROPOUT},
        _soft_sharing,
    ),
    "split": BuilderSpace(
        False, False, {**_TRUNK, "shared_fraction": {"min": 0.25, "max": 0.75, "step": 0.25, "default": 0.5}, **_HEAD},
        _split,
    ),
    # The depth of a hierarchy is fixed by its `levels` (pass `builder_kwargs={"levels": {...}}`).
    "hierarchy": BuilderSpace(False, False, {"shared_units": _TRUNK["shared_units"], **_HEAD}, _hierarchy),
}

LEARNING_RATE = {"min": 1e-4, "max": 1e-2, "sampling": "log", "default": 1e-3}
LR_MULTIPLIER = {"min": 0.1, "max": 10.0, "sampling": "log", "default": 1.0}
