"""GroupedLSTM under XLA: the same outputs and gradients as one Keras LSTM per group, with and without jit_compile.

The reference is Keras's own `LSTM` on each group (the same weights), differentiated by `tf.GradientTape`. The jitted
function is traced once with the time axis unknown (`input_signature`), as Keras's `reduce_retracing` train function
is after its second batch length (XLA then compiles per concrete length).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kmtl.layers.channel_groups import ChannelGroups, GroupedLSTM

GROUPS = [[0, 3], [1], [2, 4]]
UNITS = 3


def _data(steps, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, steps, 5)).astype("float32")
    lengths = [steps, steps - 2, 1]  # a full row, a padded row and a row with one real step
    mask = (np.arange(steps)[None, :] < np.array(lengths)[:, None]).astype("float32")
    weights = rng.normal(size=(3, steps, UNITS * len(GROUPS))).astype("float32")  # a loss that reads every output
    return tf.constant(x), tf.constant(mask), tf.constant(weights)


@pytest.fixture(scope="module")
def layer():
    keras.utils.set_random_seed(3)
    grouped = GroupedLSTM(UNITS)
    grouped.build([(None, None, len(g)) for g in GROUPS])
    return grouped


def _reference(grouped, x, mask):
    """One Keras LSTM per group with the grouped layer's weights, outputs concatenated."""
    outputs = []
    for g, part in enumerate(ChannelGroups(GROUPS)(x)):
        lstm = keras.layers.LSTM(UNITS, return_sequences=True)
        lstm.build(part.shape)
        lstm.set_weights([grouped.kernels[g].numpy(), grouped.recurrent_kernel.numpy()[g], grouped.bias.numpy()[g]])
        outputs.append((lstm, lstm(part, mask=mask > 0)))
    weights = [w for lstm, _ in outputs for w in (lstm.cell.kernel, lstm.cell.recurrent_kernel, lstm.cell.bias)]
    return weights, tf.concat([out for _, out in outputs], axis=-1)


def _value_and_gradients(grouped, x, mask, weights):
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = grouped(ChannelGroups(GROUPS)(x), mask=mask)
        loss = tf.reduce_sum(out * weights)
    d_x, d_kernels, d_recurrent, d_bias = tape.gradient(
        loss, [x, grouped.kernels, grouped.recurrent_kernel, grouped.bias]
    )
    return out, d_x, d_kernels, d_recurrent, d_bias


@pytest.mark.slow  # 0.9 s without XLA, 1.6 s with it (one XLA compilation) on an idle machine; 3 and 9 s loaded
@pytest.mark.parametrize("jit", [False, True])
def test_grouped_lstm_equals_keras_lstms_in_values_and_gradients_with_and_without_xla(layer, jit):
    spec = [tf.TensorSpec((None, None, 5)), tf.TensorSpec((None, None)), tf.TensorSpec((None, None, 9))]
    run = tf.function(lambda x, m, w: _value_and_gradients(layer, x, m, w), input_signature=spec, jit_compile=jit)
    steps = 6
    x, mask, weights = _data(steps, seed=0)
    out, d_x, d_kernels, d_recurrent, d_bias = run(x, mask, weights)
    with tf.GradientTape() as tape:
        tape.watch(x)
        ref_weights, expected = _reference(layer, x, mask)
        loss = tf.reduce_sum(expected * weights)
    expected_d_x, *expected_d_w = tape.gradient(loss, [x] + ref_weights)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_allclose(d_x, expected_d_x, atol=1e-5)
    for g in range(len(GROUPS)):
        np.testing.assert_allclose(d_kernels[g], expected_d_w[3 * g], atol=1e-5)
        np.testing.assert_allclose(d_recurrent[g], expected_d_w[3 * g + 1], atol=1e-5)
        np.testing.assert_allclose(d_bias[g], expected_d_w[3 * g + 2], atol=1e-5)
    # The mask is honoured: padded steps repeat the last real output and nothing flows back into them.
    real = mask.numpy() > 0
    assert not np.any(d_x.numpy()[~real])
    last_real = np.array(out)[[1, 2], [steps - 3, 0]]
    np.testing.assert_array_equal(np.array(out)[1, steps - 2 :], np.broadcast_to(last_real[0], (2, 9)))
    np.testing.assert_array_equal(np.array(out)[2, 1:], np.broadcast_to(last_real[1], (steps - 1, 9)))
