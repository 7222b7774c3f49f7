"""kmtl: multi-task learning for Keras 3.

Declare tasks once, build a model with a builder, train it with `fit`, evaluate each task and export it for
TensorFlow Serving:

    tasks = [kmtl.Task("smiling", "binary"), kmtl.Task("age", "regression")]
    model = kmtl.builders.hard_sharing(inputs, features, tasks)
    model.compile(optimizer="adam", weighting="uncertainty")
    model.fit(train_ds, validation_data=val_ds, epochs=5)
    print(kmtl.evaluate(model, test_ds))
    kmtl.export.for_serving(model, "saved_models/faces")

Names load on first use (PEP 562), so `import kmtl` and the `kmtl` command's `--help` import no TensorFlow. The
first public name used (or `import kmtl` in a process that has imported Keras already) imports every module that
registers Keras objects, so `keras.saving.load_model` then finds all of kmtl's layers, losses and strategies;
`kmtl.load_model(path)` always does.
"""

import importlib
import importlib.abc
import importlib.util
import sys

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
            "backbones", "builders", "data", "evaluation", "export", "grouping", "heads", "layers", "losses",
            "metrics", "preprocessing", "regularizers", "training", "tuning", "weighting",
        )
    },
}

__all__ = sorted(_LAZY)

# The modules whose `@keras.saving.register_keras_serializable` objects a saved model may hold.
_REGISTERING = (
    "kmtl.tasks", "kmtl.model", "kmtl.heads", "kmtl.backbones", "kmtl.builders", "kmtl.layers", "kmtl.losses",
    "kmtl.metrics", "kmtl.preprocessing", "kmtl.regularizers", "kmtl.training", "kmtl.weighting", "kmtl.evaluation",
    "kmtl.export", "kmtl.data", "kmtl.tuning",
)
_registered = False


def _register_all():
    global _registered
    # Not from inside an import of a kmtl module (its `from kmtl import weighting` asks for one module only): the
    # modules would then import each other in an order of that import's choosing.
    busy = any(
        getattr(getattr(module, "__spec__", None), "_initializing", False)
        for name, module in list(sys.modules.items())
        if name.startswith("kmtl.")
    )
    if not _registered and not busy:
        _registered = True
        for module in _REGISTERING:
            importlib.import_module(module)


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _register_all()
    module, attribute = _LAZY[name]
    value = importlib.import_module(module)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


class _RegisterAfterKeras(importlib.abc.MetaPathFinder):
    """Registers kmtl's objects as soon as Keras finishes importing, when `import kmtl` came first.

    So `import kmtl; import keras; keras.saving.load_model(path)` finds kmtl's objects as an eager import would,
    while `import kmtl` alone (and the `kmtl` command's `--help`) still imports no TensorFlow.
    """

    _looking = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras" or self._looking:
            return None
        self._looking = True  # the look-up below asks every finder again, this one included
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._looking = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            execute(module)
            _register_all()

        spec.loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:  # Keras is loaded already: register kmtl's objects now, as an eager import did
    _register_all()
else:
    sys.meta_path.insert(0, _RegisterAfterKeras())
