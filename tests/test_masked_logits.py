"""Sigmoid and softmax heads are scored from their logits, alone (`masked_loss`) and stacked with alike tasks
(`stacked_masked_losses`), as Keras scores each such output of a plain model: the values match the closed forms from
the logits even where a probability rounds to 0 or 1 (Keras's clipped-probability path would give -log(1e-7))."""

import keras
import numpy as np
import pytest

from kmtl import Task
from kmtl.losses import masked_loss, resolve_loss
from kmtl.losses.masked import stacked_masked_losses


def _log_softmax(z):
    z = np.asarray(z, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _log_sigmoid(z):
    return -np.logaddexp(0.0, -np.asarray(z, np.float64))


# Extreme logits: the true class's probability is ~e^-40 in the second row, so clipping would cap its loss at 16.1.
CASES = {
    "multiclass": (
        "sparse_categorical_crossentropy",
        np.array([[1.0, 2.0, 0.5], [40.0, 0.0, -3.0], [0.0, 0.0, 0.0], [-2.0, 5.0, 1.0]], "float32"),
        [[2], [1], [-1], [1]],
    ),
    "binary": ("binary_crossentropy", np.array([[0.3], [-40.0], [2.0], [35.0]], "float32"), [[1], [1], [-1], [0]]),
}


def _expected(kind, logits, labels):
    present = [i for i, y in enumerate(labels) if y[0] != -1]
    if kind == "multiclass":
        values = [-_log_softmax(logits[i])[labels[i][0]] for i in present]
    else:
        values = [-(labels[i][0] * _log_sigmoid(logits[i, 0]) + (1 - labels[i][0]) * _log_sigmoid(-logits[i, 0]))
                  for i in present]
    return np.mean(values)


@pytest.mark.parametrize("kind", ["multiclass", "binary"])
def test_alone_and_stacked_scored_from_logits(kind):
    loss, logits, labels = CASES[kind]
    extra = {"num_classes": 3} if kind == "multiclass" else {}
    activation = keras.activations.softmax if kind == "multiclass" else keras.activations.sigmoid
    tasks = [Task(f"t{i}", kind, **extra) for i in range(3)]
    # Three tasks: the case itself, its rows reversed, its rows rotated (each a head's own activation output).
    orders = [[0, 1, 2, 3], [3, 2, 1, 0], [1, 2, 3, 0]]
    y_trues = [np.array([labels[i] for i in order], "int32") for order in orders]
    y_preds = [activation(keras.ops.convert_to_tensor(logits[order])) for order in orders]
    loss_fn = resolve_loss(loss)
    expected = [_expected(kind, logits[order], [labels[i] for i in order]) for order in orders]
    assert expected[0] > 12  # clipped probabilities cap each entry at 16.1: a mean of 6.0 (multiclass), 10.9 (binary)
    alone = [float(masked_loss(t, loss_fn, y, p)) for t, y, p in zip(tasks, y_trues, y_preds)]
    stacked, counts = stacked_masked_losses(tasks, loss_fn, y_trues, y_preds)
    np.testing.assert_allclose(alone, expected, rtol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(stacked), expected, rtol=1e-6)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(counts), [3, 3, 3])
