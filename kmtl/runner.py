"""Deprecated in 0.2, removed in 0.3: running a recipe moved to the application layer, `kmtl.app.train`."""

_MOVED = ("RecipeRun", "recipe_settings", "train_recipe")


def __getattr__(name):
    if name in _MOVED:
        import warnings

        from kmtl.app import train

        warnings.warn(f"`kmtl.runner.{name}` is deprecated; use `kmtl.app.train.{name}`.", DeprecationWarning,
                      stacklevel=2)
        return getattr(train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
