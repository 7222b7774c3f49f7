"""kmtl: multi-task learning for Keras 3.

Declare tasks once, build a model with a builder, train it with `fit`, evaluate each task and export it for
TensorFlow Serving:

    tasks = [kmtl.Task("smiling", "binary"), kmtl.Task("age", "regression")]
    model = kmtl.builders.hard_sharing(inputs, features, tasks)
    model.compile(optimizer="adam", weighting="uncertainty")
    model.fit(train_ds, validation_data=val_ds, epochs=5)
    print(kmtl.evaluate(model, test_ds))
    kmtl.export.for_serving(model, "saved_models/faces")

Names load on first use (PEP 562), so `import kmtl` and the `kmtl` command's `--help` import no TensorFlow.
"""

import importlib

__version__ = "0.1.0"

# Public name -> (module, attribute or None for the module itself).
_LAZY = {
    "EvaluationReport": ("kmtl.evaluation", "EvaluationReport"),
    "MultiTaskModel": ("kmtl.model", "MultiTaskModel"),
    "Recipe": ("kmtl.recipe", "Recipe"),
    "RecipeData": ("kmtl.recipe", "RecipeData"),
    "Task": ("kmtl.tasks", "Task"),
    "evaluate": ("kmtl.evaluation", "evaluate"),
    "load_model": ("kmtl.saving", "load_model"),
    **{
        name: (f"kmtl.{name}", None)
        for name in (
            "backbones", "builders", "data", "evaluation", "export", "heads", "layers", "losses", "metrics",
            "preprocessing", "regularizers", "training", "tuning", "weighting",
        )
    },
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = importlib.import_module(module)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
