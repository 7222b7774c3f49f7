"""kmtl.layers.CharacterCNN: per-token character features from string tokens."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kmtl.data.text import character_vocabulary
from kmtl.layers import CharacterCNN
from layer_testing import fit_and_round_trip


def _expected(layer, token):
    """The layer's formula in numpy: zero-padded 'same' convolution of the characters' embeddings, tanh, max."""
    ids = [layer.vocabulary.index(c) + 2 if c in layer.vocabulary else 1 for c in token[: layer.max_chars]]
    if not ids:
        return np.zeros(layer.filters)
    table = layer.embedding.embeddings.numpy()
    kernel, bias = (w.numpy() for w in layer.convolution.weights)
    x = np.pad(table[ids], ((1, 1), (0, 0)))  # kernel 3: one zero on each side
    out = np.stack([np.tanh(bias + sum(x[t + k] @ kernel[k] for k in range(3))) for t in range(len(ids))])
    return out.max(axis=0)


def test_features_equal_the_formula():
    keras.utils.set_random_seed(0)
    layer = CharacterCNN(list("abcd"), max_chars=4, embedding_dim=3, filters=5)
    # Unknown characters ("z"), a token cut to its first 4 characters, and padding "".
    tokens = np.array([["ab", "zzabd", ""], ["dcba", "a", "b"]])
    features = keras.ops.convert_to_numpy(layer(tokens))
    for row in range(2):
        for step in range(3):
            np.testing.assert_allclose(features[row, step], _expected(layer, tokens[row, step]), atol=1e-6)
    assert features.shape == (2, 3, 5) and not np.allclose(features[0, 0], features[1, 1])


@pytest.mark.slow  # one fit step and a .keras round trip (a few seconds: TensorFlow traces the string ops)
def test_trains_and_round_trips_with_string_inputs(tmp_path):
    keras.utils.set_random_seed(0)
    layer = CharacterCNN(list("abcd"), max_chars=4, embedding_dim=3, filters=5)
    inputs = keras.Input((None,), dtype="string")
    model = keras.Model(inputs, keras.layers.Dense(1)(layer(inputs)))
    tokens = tf.constant([["ab", "zzabd", ""], ["dcba", "a", "b"]])  # Keras data adapters take string tensors
    fit_and_round_trip(model, tokens, np.ones((2, 3, 1)), tmp_path,
                       watched=[layer.embedding.embeddings, layer.convolution.kernel])


@pytest.mark.parametrize("kwargs, match", [
    ({"vocabulary": []}, "Received: vocabulary=\\[\\]"),
    ({"vocabulary": ["ab"]}, "distinct single characters"),
    ({"vocabulary": ["a"], "filters": 0}, "Received: filters=0"),
])
def test_bad_arguments_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CharacterCNN(**kwargs)


def test_character_vocabulary_most_frequent_first():
    assert character_vocabulary(["aab", "ba", "c"]) == ["a", "b", "c"]
    assert character_vocabulary(["aab", "ba", "c"], max_size=2) == ["a", "b"]
