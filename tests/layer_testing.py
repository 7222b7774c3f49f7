"""Shared check for layer tests: one training step, then a `.keras` round trip with `safe_mode=True`."""

import keras
import numpy as np


def fit_and_round_trip(model, inputs, labels, tmp_path, watched=(), atol=1e-6):
    """Fits `model` one full-batch SGD step on MSE and checks a `.keras` save/load without custom_objects.

    Asserts the loss is finite, every variable in `watched` changed, and the restored model's predictions equal
    the original's to `atol`. Returns the restored model.
    """
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = [np.array(v.numpy()) for v in watched]
    batch = len(keras.tree.flatten(inputs)[0])
    history = model.fit(inputs, labels, batch_size=batch, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for variable, old in zip(watched, before):
        assert not np.allclose(variable.numpy(), old), f"{variable.path} did not train"
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    expected, actual = model.predict(inputs, verbose=0), restored.predict(inputs, verbose=0)
    for want, got in zip(keras.tree.flatten(expected), keras.tree.flatten(actual)):
        np.testing.assert_allclose(got, want, atol=atol)
    return restored
