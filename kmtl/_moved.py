"""Deprecated aliases of modules that moved: the old module forwards its names, with a `DeprecationWarning`.

An old module is a file of two lines: `__getattr__ = moved(__name__, "new.module", ...)`. Aliases live for one
release.
"""

from __future__ import annotations

import importlib
import warnings


def moved(old: str, *new: str):
    """A module-level `__getattr__` for `old` that finds each name in the modules `new`, in order."""

    def __getattr__(name):
        if not name.startswith("__"):
            for target in new:
                module = importlib.import_module(target)
                if hasattr(module, name):
                    package = importlib.import_module(target.rpartition(".")[0])
                    where = package.__name__ if name in getattr(package, "__all__", ()) else target
                    warnings.warn(
                        f"`{old}` is deprecated and will be removed in the next release. "
                        f"Import `{name}` from `{where}` instead.",
                        DeprecationWarning,
                        stacklevel=2,
                    )
                    return getattr(module, name)
        raise AttributeError(f"module {old!r} has no attribute {name!r}")

    return __getattr__
