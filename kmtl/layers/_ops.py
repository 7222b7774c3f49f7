"""Small `keras.ops` helpers shared by kmtl's layers."""

from keras import ops


def softmax(logits, axis=-1):
    """`softmax` written out. Keras warns on a softmax over an axis of one entry, which a one-layer mixture or a
    one-expert gate legitimately has (its weight is then exactly 1)."""
    exp = ops.exp(logits - ops.max(logits, axis=axis, keepdims=True))
    return exp / ops.sum(exp, axis=axis, keepdims=True)
