"""Character features of string tokens: a per-token character CNN, max-pooled over each token's characters.

The layer takes the tokens themselves, strings `(batch, steps)` padded with `""`, so a model with character
features still takes raw text and its export needs no vocabulary file: the characters are split and looked up by a
`keras.layers.TextVectorization` inside the layer, whose character vocabulary is saved with the model.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kmtl")
class CharacterCNN(keras.layers.Layer):
    """One vector per token from its characters: embeddings, a 1-D convolution and a max over the characters.

    Each token is split into its Unicode characters (the first `max_chars`), the characters are looked up in
    `vocabulary` (others share an out-of-vocabulary id) and embedded, a convolution of width `kernel_size` with
    `filters` tanh units runs along them, and the maximum over the token's real characters is its feature vector
    (Ma & Hovy 2016). A padding token `""` has no characters, gets zeros and is masked. Concatenate the output
    with the word embeddings: words outside the word vocabulary still get their affixes' evidence (a suffix
    marks Turkish case).

    Args:
        vocabulary: the characters to give ids (e.g. those of the training split's tokens), without duplicates.
        max_chars: int. Characters read per token (its first ones); longer tokens are cut.
        embedding_dim: int. Size of each character's embedding.
        filters: int. Output size: one feature per convolution filter.
        kernel_size: int. Width of the convolution, in characters.
        **kwargs: Base layer keyword arguments, such as `name`.

    Example:

    >>> layer = CharacterCNN(list("abc"), filters=5)
    >>> tuple(layer(keras.ops.convert_to_tensor([["ab", "c", ""]])).shape)
    (1, 3, 5)

    Reference:
        Ma & Hovy (2016). End-to-end Sequence Labeling via Bi-directional LSTM-CNNs-CRF. ACL.
    """

    def __init__(self, vocabulary: Sequence[str], max_chars: int = 24, embedding_dim: int = 16, filters: int = 32,
                 kernel_size: int = 3, **kwargs):
        super().__init__(**kwargs)
        vocabulary = list(vocabulary)
        if not vocabulary or not all(isinstance(c, str) and len(c) == 1 for c in vocabulary) or \
                len(set(vocabulary)) != len(vocabulary):
            raise ValueError(f"Invalid value for `vocabulary`. Expected distinct single characters (at least one). "
                             f"Received: vocabulary={vocabulary[:20]!r}")
        for field, value in (("max_chars", max_chars), ("embedding_dim", embedding_dim), ("filters", filters),
                             ("kernel_size", kernel_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Invalid value for `{field}`. Expected a positive int. Received: {field}={value!r}")
        self.vocabulary = vocabulary
        self.max_chars = max_chars
        self.embedding_dim = embedding_dim
        self.filters = filters
        self.kernel_size = kernel_size
        # Id 0: padding (no character), 1: out of vocabulary, then `vocabulary` in order.
        self.lookup = keras.layers.TextVectorization(
            standardize=None, split="character", output_mode="int", output_sequence_length=max_chars,
            vocabulary=vocabulary, name="character_ids")
        self.embedding = keras.layers.Embedding(len(vocabulary) + 2, embedding_dim, name="character_embeddings")
        self.convolution = keras.layers.Conv1D(filters, kernel_size, padding="same", activation="tanh",
                                               name="character_convolution")

    def build(self, input_shape):
        self.embedding.build((None, self.max_chars))
        self.convolution.build((None, self.max_chars, self.embedding_dim))

    def call(self, tokens):
        shape = ops.shape(tokens)
        ids = self.lookup(ops.reshape(tokens, (-1, 1)))  # (batch * steps, max_chars); 0 past a token's end
        real = ops.not_equal(ids, 0)[..., None]
        # Zeros past the token's end, as the convolution's own zero padding before its start.
        x = self.convolution(self.embedding(ids) * ops.cast(real, self.compute_dtype))
        x = ops.max(ops.where(real, x, ops.full_like(x, -2.0)), axis=1)  # tanh > -2: a real character wins
        x = ops.where(ops.any(real, axis=1), x, ops.zeros_like(x))
        return ops.reshape(x, (shape[0], shape[1], self.filters))

    def compute_mask(self, tokens, mask=None):
        # Padding tokens are masked, as a word embedding's: `Concatenate` keeps a step if any input does.
        return ops.not_equal(tokens, "")

    def compute_output_shape(self, input_shape):
        return (*input_shape[:2], self.filters)

    def get_config(self):
        return {**super().get_config(), "vocabulary": list(self.vocabulary), "max_chars": self.max_chars,
                "embedding_dim": self.embedding_dim, "filters": self.filters, "kernel_size": self.kernel_size}

