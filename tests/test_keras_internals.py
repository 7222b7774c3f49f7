"""Every Keras private attribute kmtl relies on, exercised against the installed Keras.

A Keras upgrade that moves one of them fails here, by name, rather than somewhere inside kmtl.
"""

import keras
import numpy as np

from kmtl import _keras_internals as internals


def test_check_finds_everything():
    internals.check()  # raises RuntimeError naming what is missing


def test_untrack_removes_a_sublayer_from_the_model_variables():
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    extra = keras.layers.Dense(3)
    extra.build((None, 2))
    model.extra = extra
    assert len(model.trainable_variables) == 4
    internals.untrack(model, extra)
    del model.extra
    assert len(model.trainable_variables) == 2


def test_loss_tracker_is_the_logged_loss():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, kernel_initializer="ones", use_bias=False)])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    x, y = np.array([[1.0], [2.0]]), np.array([[0.0], [0.0]])
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isclose(logs["loss"], 2.5)  # (1 + 4) / 2
    assert np.isclose(float(internals.loss_tracker(model).result()), 2.5)


def test_call_count_counts_calls():
    shared = keras.layers.Dense(2)
    a, b = keras.Input((2,)), keras.Input((2,))
    shared(a)
    assert internals.call_count(shared) == 1
    shared(b)
    assert internals.call_count(shared) == 2


def test_set_initial_epoch_skips_epochs():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")

    class StartAt(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            internals.set_initial_epoch(self.model, 2)

    history = model.fit(np.zeros((4, 1)), np.zeros((4, 1)), epochs=3, verbose=0, callbacks=[StartAt()])
    assert history.epoch == [2]


def test_keras_mask_reads_an_embedding_mask():
    tokens = np.array([[3, 1, 0, 0]])
    embedded = keras.layers.Embedding(5, 2, mask_zero=True)(tokens)
    np.testing.assert_array_equal(np.asarray(internals.keras_mask(embedded)), [[True, True, False, False]])
    assert internals.keras_mask(np.zeros(3)) is None


def test_keras_logits_are_read_from_a_softmax_and_used_by_crossentropy_once_set():
    logits = keras.ops.convert_to_tensor([[40.0, 0.0, -3.0]])
    probabilities = keras.activations.softmax(logits)
    np.testing.assert_array_equal(np.asarray(internals.keras_logits(probabilities)), np.asarray(logits))
    assert internals.keras_logits(logits) is None
    copy = keras.ops.reshape(probabilities, (1, 3))  # a new tensor: Keras would clip its probability 4e-18 to 1e-7
    internals.set_keras_logits(copy, logits)
    loss = keras.losses.sparse_categorical_crossentropy(np.array([1]), copy)
    np.testing.assert_allclose(np.asarray(loss), [40.0], rtol=1e-6)
