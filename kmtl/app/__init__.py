"""kmtl's application layer: running recipes (train, compare, tune) and the `kmtl` command line.

The only part of kmtl that imports `kmtl.recipes`; the library below it never imports this package (except the
deprecated aliases kept for one release). Its modules import TensorFlow only when a command runs.

- `kmtl.app.train.train_recipe`: train, report and export a recipe.
- `kmtl.app.compare.compare_recipe`: the recipe's multi-task model against single-task models (Δm).
- `kmtl.app.tune.tune_recipe`: a keras-tuner search over the recipe's search space.
- `kmtl.app.cli.main`: the `kmtl` command.
"""

__all__ = ["compare_recipe", "train_recipe", "tune_recipe"]

_HOMES = {"train_recipe": "train", "compare_recipe": "compare", "tune_recipe": "tune"}


def __getattr__(name):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f"kmtl.app.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
