"""Ready-made multi-task recipes: tasks, a model builder and embedded data per domain.

Installed as `kmtl.recipes`. Each recipe module defines `NAME`, `DESCRIPTION`, `TASKS`, `DEFAULTS`, `QUICK`,
`build_model(...)`, `compile_model(model, weighting, learning_rate)` and `load_data(...)`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# CLI name -> module under kmtl.recipes.
RECIPES = {
    "facial-attributes": "facial_attributes",
    "clinical-timeseries": "clinical_timeseries",
}


def get(name: str) -> ModuleType:
    """Imports the recipe called `name` (as listed by `kmtl recipes`)."""
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe {name!r}. Available recipes: {', '.join(sorted(RECIPES))}.")
    return importlib.import_module(f"kmtl.recipes.{RECIPES[name]}")


__all__ = ["RECIPES", "get"]
