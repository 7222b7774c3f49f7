"""Label embedding: a task's predicted distribution as a learned vector."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kmtl")
class LabelEmbedding(keras.layers.Layer):
    """Embeds a predicted label distribution: `probs @ embeddings`.

    Called on class probabilities `(batch, ..., C)` of a lower task, it returns
    the expected label embedding `sum_c p_c * e_c` of shape
    `(batch, ..., output_dim)`, where `e_c` is the learned embedding of class
    `c` (a row of the `(C, output_dim)` `embeddings` weight). A single-column
    input `(batch, ..., 1)` is read as the probability `p` of the positive
    class of a binary task and embedded as the distribution `[1 - p, p]` over
    two classes. Inputs with several sigmoid columns (a multilabel task) are
    used as they are, giving the sum of the active labels' embeddings.

    Args:
        output_dim: int. Size of each label embedding (>= 1).
        embeddings_initializer: Keras initializer (object, name or config) of
            the embeddings. Defaults to `"uniform"`, as in
            `keras.layers.Embedding`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Returns:
        A tensor of shape `(batch, ..., output_dim)`.

    Example:

    >>> layer = LabelEmbedding(2, embeddings_initializer="ones")
    >>> keras.ops.convert_to_numpy(layer(keras.ops.array([[0.25, 0.75]]))).tolist()
    [[1.0, 1.0]]

    Reference:
        Hashimoto, Xiong, Tsuruoka & Socher (2017). A Joint Many-Task Model:
        Growing a Neural Network for Multiple NLP Tasks. EMNLP.
    """

    def __init__(self, output_dim, embeddings_initializer="uniform", **kwargs):
        super().__init__(**kwargs)
        if (
            isinstance(output_dim, bool)
            or not isinstance(output_dim, int)
            or output_dim < 1
        ):
            raise ValueError(
                "Invalid value for `output_dim`. Expected a positive int. "
                f"Received: output_dim={output_dim!r}"
            )
        self.output_dim = output_dim
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.supports_masking = True  # per position: a padding mask on a sequence passes through

    def build(self, input_shape):
        classes = input_shape[-1]
        if classes is None:
            raise ValueError(
                "LabelEmbedding needs a known number of classes (last axis). "
                f"Received input shape: {input_shape}"
            )
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(2 if classes == 1 else classes, self.output_dim),
            initializer=self.embeddings_initializer,
            trainable=True,
        )

    def call(self, inputs):
        probs = ops.cast(inputs, self.compute_dtype)
        if probs.shape[-1] == 1:  # binary: p -> [1 - p, p]
            probs = ops.concatenate([1.0 - probs, probs], axis=-1)
        return ops.matmul(probs, ops.cast(self.embeddings, self.compute_dtype))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.output_dim,)

    def get_config(self):
        return {
            **super().get_config(),
            "output_dim": self.output_dim,
            "embeddings_initializer": keras.initializers.serialize(
                self.embeddings_initializer
            ),
        }
