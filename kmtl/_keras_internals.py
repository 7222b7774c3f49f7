"""Every access kmtl makes to Keras's private API, in one place.

Keras 3 offers no public way to do the few things below. Each helper says why kmtl needs it; the test
`tests/test_keras_internals.py` calls every one against the installed Keras, so an upgrade that moves an attribute
fails there, loudly and in one file, instead of silently in the modules that use them.
"""

from __future__ import annotations

import inspect

import keras

# The private names this module reads or writes, checked by `check()`.
MODEL_ATTRIBUTES = ("_tracker", "_loss_tracker", "_initial_epoch")
# Keras's private hook that `kmtl.model.MultiWorkerSupport` overrides, with the parameters it forwards.
SYMBOLIC_BUILD = "_maybe_symbolic_build"
SYMBOLIC_BUILD_PARAMETERS = ("self", "iterator", "data_batch")


def untrack(model: keras.Model, value) -> None:
    """Stops Keras tracking `value` (a sublayer such as a weighting strategy) as part of `model`.

    Why: recompiling a model replaces its strategy; without untracking, the old strategy's variables would stay in
    `trainable_variables` and in saved files. Keras has no public `untrack`.
    """
    model._tracker.untrack(value)


def loss_tracker(model: keras.Model):
    """Keras's own `loss` metric of a compiled model.

    Why: kmtl's gradient-level train step replaces `keras.Model.train_step`, and the `loss` Keras logs is updated
    by Keras's `compute_loss` only; the step updates the same tracker so `history["loss"]` means the same thing
    under every strategy.
    """
    return model._loss_tracker


def call_count(layer: keras.layers.Layer) -> int:
    """How many times `layer` was called in Functional graphs (one inbound node per call).

    Why: `rep_grad` needs each shared layer's output to be one tensor; Keras has no public count of a layer's calls.
    """
    return len(getattr(layer, "_inbound_nodes", ()))


def set_initial_epoch(model: keras.Model, epoch: int | None) -> None:
    """Sets the epoch `fit` starts from, as Keras's own `BackupAndRestore` does.

    Why: `kmtl.training.BackupAndResume` restores a run mid-way; `fit`'s `initial_epoch` argument cannot be changed
    from a callback, and Keras's own backup callback writes this same attribute.
    """
    model._initial_epoch = epoch


def keras_mask(tensor):
    """The Keras mask a layer attached to `tensor` (e.g. `Embedding(mask_zero=True)`, `Masking`), or None.

    Why: per-step tasks must not count padded steps; Keras's own losses read this attribute, and there is no public
    accessor in Keras 3.
    """
    return getattr(tensor, "_keras_mask", None)


def keras_logits(tensor):
    """The logits a Keras sigmoid or softmax left on its output `tensor`, or None.

    Why: Keras's crossentropies read them to compute the loss from the logits (one fused op, exact where a
    probability rounds to 0 or 1); the masked losses reshape and stack heads' outputs, which drops the attribute, so
    they carry it over (`set_keras_logits`). No public accessor in Keras 3.
    """
    return getattr(tensor, "_keras_logits", None)


def set_keras_logits(tensor, logits) -> None:
    """Attaches `logits` to `tensor` as a Keras sigmoid or softmax does to its output (see `keras_logits`)."""
    tensor._keras_logits = logits


def check() -> None:
    """Raises `RuntimeError` naming whatever this module relies on that the installed Keras no longer has."""
    missing = []
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    missing += [f"keras.Model.{name}" for name in MODEL_ATTRIBUTES if not hasattr(model, name)]
    if not hasattr(model._tracker, "untrack"):
        missing.append("keras.Model._tracker.untrack")
    if not hasattr(model.layers[0], "_inbound_nodes"):
        missing.append("keras.layers.Layer._inbound_nodes")
    hook = getattr(keras.Model, SYMBOLIC_BUILD, None)
    if hook is None or tuple(inspect.signature(hook).parameters) != SYMBOLIC_BUILD_PARAMETERS:
        missing.append(f"keras.Model.{SYMBOLIC_BUILD}{SYMBOLIC_BUILD_PARAMETERS[1:]}")
    if missing:
        raise RuntimeError(
            f"kmtl relies on Keras private API that Keras {keras.__version__} no longer has: {missing}. "
            "See kmtl/_keras_internals.py."
        )
