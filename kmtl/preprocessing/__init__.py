"""Deprecated alias (0.2, removed in 0.3): the clinical preprocessing moved to `kmtl.data.clinical`.

`kmtl.preprocessing.Discretizer`, `Normalizer` and `VARIABLES` still work and warn `DeprecationWarning`; so do the
old module paths `kmtl.preprocessing.discretizer` and `kmtl.preprocessing.normalizer` (aliases of
`kmtl.data.clinical.discretizer` and `.normalizer`).
"""

import importlib
import sys
import warnings

__all__ = ["VARIABLES", "Discretizer", "Normalizer"]

_MODULES = {"discretizer": "kmtl.data.clinical.discretizer", "normalizer": "kmtl.data.clinical.normalizer"}
for _old, _new in _MODULES.items():
    sys.modules.setdefault(f"{__name__}.{_old}", importlib.import_module(_new))


def __getattr__(name):
    if name in __all__ or name in _MODULES:
        warnings.warn(
            f"`kmtl.preprocessing.{name}` is deprecated; use `kmtl.data.clinical.{name}`.",
            DeprecationWarning,
            stacklevel=2,
        )
        clinical = importlib.import_module("kmtl.data.clinical")
        return getattr(clinical, name) if name in __all__ else sys.modules[_MODULES[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
