"""Deprecated in 0.2, removed in 0.3: the `kmtl` command moved to `kmtl.app.cli` (console entry `kmtl.app.cli:main`).

Kept so that a `kmtl` script installed before 0.2 (pointing at `kmtl.cli:main`) still runs until reinstalled.
"""

_MOVED = ("build_parser", "main")


def __getattr__(name):
    if name in _MOVED:
        import warnings

        from kmtl.app import cli

        warnings.warn(f"`kmtl.cli.{name}` is deprecated; use `kmtl.app.cli.{name}`.", DeprecationWarning,
                      stacklevel=2)
        return getattr(cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
