"""The model's view of `tf.distribute`: how many replicas share a step, and Keras's division of the loss by them."""

from __future__ import annotations

import tensorflow as tf


def replica_context():
    """`(replica context, number of replicas)` under `tf.distribute` with several replicas, else `(None, 1)`."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None, 1
    return context, context.num_replicas_in_sync


def scale_for_replicas(value):
    """Divides by the number of replicas under `tf.distribute`, as Keras's own losses do."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return value / replicas if replicas > 1 else value
