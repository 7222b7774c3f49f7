"""Stop-gradient layer: a task reads another task's estimate without training it."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kmtl")
class StopGradient(keras.layers.Layer):
    """Identity forward; no gradient flows back through it.

    Placed between task A's prediction and a layer of task B that reads it
    ("estimate as feature"), it lets B use A's estimate while B's loss never
    changes A's parameters. It replaces the Lambda layer around `tf.stop_gradient` that
    Keras 3 refuses to load with `safe_mode=True`.

    Args:
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Returns:
        The inputs, unchanged (a tensor or any nested structure of tensors).

    Example:

    >>> import tensorflow as tf
    >>> x = tf.Variable([1.0, 2.0])
    >>> with tf.GradientTape() as tape:
    ...     y = keras.ops.sum(StopGradient()(x) * x)
    >>> tape.gradient(y, x).numpy().tolist()  # only the second factor's gradient
    [1.0, 2.0]

    Reference:
        Hashimoto, Xiong, Tsuruoka & Socher (2017). A Joint Many-Task Model:
        Growing a Neural Network for Multiple NLP Tasks. EMNLP. (Higher tasks
        read lower tasks' predictions; kmtl's `hierarchy` builder uses this
        layer for links whose gradient must not reach the lower task.)
    """

    def call(self, inputs):
        return keras.tree.map_structure(ops.stop_gradient, inputs)

    def compute_output_shape(self, input_shape):
        return input_shape
