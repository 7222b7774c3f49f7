"""Multi-worker training for `MultiTaskModel`: fills two gaps of Keras 3.15's TensorFlow trainer.

The cluster helpers users call (`tf_config`, `local_workers`, `with_auto_shard_policy`) are in
`kmtl.training.distribute`; see `docs/distributed.md`.
"""

from __future__ import annotations

import tensorflow as tf

from kmtl import _keras_internals


def is_multi_worker(strategy) -> bool:
    """Whether `strategy` is a `MultiWorkerMirroredStrategy` over several processes (as `TF_CONFIG` describes).

    Args:
        strategy: a `tf.distribute.Strategy`.

    Returns:
        bool.

    Example:

    >>> is_multi_worker(tf.distribute.get_strategy())
    False
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return sum(len(cluster.get(job, ())) for job in ("chief", "worker")) > 1


class MultiWorkerSupport:
    """Mixin that lets a Keras 3.15 `Model` train and evaluate under `MultiWorkerMirroredStrategy`.

    Keras 3.15's TensorFlow trainer fails with several workers (keras-team/keras#20585) in two places: it learns the
    input shapes by reducing the first batch across replicas, which the strategy cannot do for a nested batch
    ("Attempt to convert a value (PerReplica...)"), and it reduces each step's logs with `reduce(..., axis=0)`,
    which fails for scalar logs ("Invalid reduction dimension 0"). With several workers this mixin builds from one
    replica's share of the first batch and runs each train/test step with `strategy.run`, averaging the logs over
    replicas as Keras does on one machine. The training maths are Keras's own `train_step`/`test_step` (and so
    kmtl's); the steps run as `tf.function`s without XLA. Without several workers it changes nothing. Put it
    before `keras.Model` in the bases.

    Example:

    ```python
    class MyModel(kmtl.model.MultiWorkerSupport, keras.Model):
        ...
    ```

    Reference:
        Keras issue 20585 (2024), "Does Keras 3 work with `tf.distribute.MultiWorkerMirroredStrategy`?",
        https://github.com/keras-team/keras/issues/20585
    """

    def make_train_function(self, force=False):
        if not is_multi_worker(self.distribute_strategy):
            return super().make_train_function(force=force)
        if self.train_function is None or force:
            self.train_function = _multi_worker_function(self, self.train_step)
        return self.train_function

    def make_test_function(self, force=False):
        if not is_multi_worker(self.distribute_strategy):
            return super().make_test_function(force=force)
        if self.test_function is None or force:
            self.test_function = _multi_worker_function(self, self.test_step)
        return self.test_function


def _symbolic_build(self, iterator=None, data_batch=None):
    """Keras builds a model from its first batch; with several workers, from one replica's share of it."""
    if iterator is not None and data_batch is None and is_multi_worker(self.distribute_strategy):
        iterator, data_batch = None, _first_replica_batch(iterator, self.distribute_strategy)
    return getattr(super(MultiWorkerSupport, self), _keras_internals.SYMBOLIC_BUILD)(
        iterator=iterator, data_batch=data_batch
    )


# Keras's hook is private; its name lives in `kmtl._keras_internals`, whose test fails if Keras moves it.
setattr(MultiWorkerSupport, _keras_internals.SYMBOLIC_BUILD, _symbolic_build)


def _first_replica_batch(iterator, strategy):
    """The first batch of a Keras epoch iterator as the first local replica's tensors (shapes and dtypes)."""
    for _, _, batches in iterator:
        batch = next(batches)
        break
    else:
        return None

    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    return tf.nest.map_structure(local, batch)


def _multi_worker_function(model, step):
    """`function(iterator) -> logs` running `step` on every replica for each of `steps_per_execution` batches."""
    strategy = model.distribute_strategy
    layout = {}  # the logs' structure, shapes and dtypes, recorded when the replica function is traced

    def packed_step(data):
        # Each replica packs its logs into one vector, so that one all-reduce (one network round trip between
        # workers) averages them all.
        outputs = step(data)
        flat = [tf.convert_to_tensor(v) for v in tf.nest.flatten(outputs)]
        if not all(v.shape.is_fully_defined() for v in flat):
            raise ValueError(f"Multi-worker training needs logs of known shapes. Received: {outputs}")
        layout.update(structure=outputs, shapes=[v.shape for v in flat], dtypes=[v.dtype for v in flat])
        return tf.concat([tf.reshape(tf.cast(v, tf.float32), [-1]) for v in flat], axis=0)

    def one_step(data):
        packed = strategy.reduce("MEAN", strategy.run(packed_step, args=(data,)), axis=None)
        parts = tf.split(packed, [shape.num_elements() for shape in layout["shapes"]])
        values = [tf.cast(tf.reshape(p, shape), dtype) for p, shape, dtype in zip(parts, layout["shapes"],
                                                                                   layout["dtypes"])]
        return tf.nest.pack_sequence_as(layout["structure"], values)

    def steps(iterator):
        outputs = one_step(next(iterator))
        for _ in range(model.steps_per_execution - 1):
            optional = iterator.get_next_as_optional()
            if not optional.has_value():
                break
            outputs = one_step(optional.get_value())
        return outputs

    if not model.run_eagerly:
        one_step = tf.function(one_step, reduce_retracing=True)
    return steps
