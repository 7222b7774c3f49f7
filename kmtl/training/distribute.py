"""Helpers for multi-worker training: `TF_CONFIG` for a cluster, local worker addresses, explicit auto-sharding.

`tf.distribute.MultiWorkerMirroredStrategy` reads the cluster from the `TF_CONFIG` environment variable of each
worker process, which must be set before the strategy is created (in practice, before the process starts).
These helpers build that variable and a dataset whose sharding across workers is stated instead of left to
TensorFlow's default guess. See `docs/distributed.md`.
"""

from __future__ import annotations

import json
import numbers
import socket
from typing import Sequence

import tensorflow as tf

AUTO_SHARD_POLICIES = {
    "auto": tf.data.experimental.AutoShardPolicy.AUTO,
    "data": tf.data.experimental.AutoShardPolicy.DATA,
    "file": tf.data.experimental.AutoShardPolicy.FILE,
    "off": tf.data.experimental.AutoShardPolicy.OFF,
}


def tf_config(workers: Sequence[str], index: int, task_type: str = "worker") -> str:
    """The `TF_CONFIG` value of one member of a cluster of workers, as a JSON string.

    Args:
        workers: sequence of str. `"host:port"` of every worker, in the same order in every process; worker 0 is
            the chief (it writes checkpoints and logs in Keras's multi-worker conventions).
        index: int. This process's position in `workers`.
        task_type: str. `"worker"` (the only type `MultiWorkerMirroredStrategy` needs).

    Returns:
        str. JSON for `os.environ["TF_CONFIG"]`.

    Raises:
        ValueError: for no workers, an address without a port, or an index out of range.

    Example:

    >>> tf_config(["10.0.0.1:2222", "10.0.0.2:2222"], index=1)
    '{"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}, "task": {"type": "worker", "index": 1}}'

    Reference:
        TensorFlow (2019-). Multi-worker training with Keras: the TF_CONFIG environment variable.
        https://www.tensorflow.org/tutorials/distribute/multi_worker_with_keras
    """
    workers = list(workers)
    if not workers:
        raise ValueError(f"Invalid value for `workers`. Expected at least one 'host:port'. Received: workers={workers}")
    for address in workers:
        host, _, port = str(address).rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(
                f"Invalid value for `workers`. Expected 'host:port' entries. Received: workers={workers}"
            )
    if isinstance(index, bool) or not isinstance(index, numbers.Integral) or not 0 <= index < len(workers):
        raise ValueError(
            f"Invalid value for `index`. Expected an int in [0, {len(workers) - 1}]. Received: index={index!r}"
        )
    if task_type != "worker":
        raise ValueError(f"Invalid value for `task_type`. Expected 'worker'. Received: task_type={task_type!r}")
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": task_type, "index": int(index)}})


def local_workers(num_workers: int, host: str = "127.0.0.1") -> list[str]:
    """`"host:port"` addresses on free ports of this machine, for a cluster of local worker processes.

    The ports are free when chosen; another program could take one before the workers bind it, so use them at once.

    Args:
        num_workers: int. How many addresses.
        host: str. The interface to bind.

    Returns:
        list of str, distinct ports.

    Example:

    >>> len(set(local_workers(2)))
    2
    """
    if isinstance(num_workers, bool) or not isinstance(num_workers, numbers.Integral) or num_workers < 1:
        raise ValueError(
            f"Invalid value for `num_workers`. Expected a positive int. Received: num_workers={num_workers!r}"
        )
    sockets = []
    try:
        for _ in range(num_workers):  # hold every socket until all are chosen, so the ports differ
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [f"{host}:{s.getsockname()[1]}" for s in sockets]
    finally:
        for s in sockets:
            s.close()


def with_auto_shard_policy(dataset: tf.data.Dataset, policy: str = "data") -> tf.data.Dataset:
    """The dataset with its multi-worker auto-shard policy set explicitly.

    With `"data"` every worker reads the whole pipeline and keeps its share of each global batch, so a run on W
    workers sees the same global batches, in the same order, as one process (the property kmtl's tests check);
    `"file"` gives each worker whole input files (fewer reads, but the batches differ from a single process's);
    `"off"` makes every worker train on every example.

    Args:
        dataset: `tf.data.Dataset`, batched with the global batch size.
        policy: str. One of `"auto"`, `"data"`, `"file"`, `"off"`.

    Returns:
        `tf.data.Dataset`.

    Example:

    >>> ds = with_auto_shard_policy(tf.data.Dataset.range(8).batch(4))
    >>> ds.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA
    True
    """
    if policy not in AUTO_SHARD_POLICIES:
        raise ValueError(
            f"Invalid value for `policy`. Expected one of {list(AUTO_SHARD_POLICIES)}. Received: policy={policy!r}"
        )
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = AUTO_SHARD_POLICIES[policy]
    return dataset.with_options(options)



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
    class MyModel(kmtl.training.distribute.MultiWorkerSupport, keras.Model):
        ...
    ```

    Reference:
        Keras issue 20585 (2024), "Does Keras 3 work with `tf.distribute.MultiWorkerMirroredStrategy`?",
        https://github.com/keras-team/keras/issues/20585
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None and data_batch is None and is_multi_worker(self.distribute_strategy):
            iterator, data_batch = None, _first_replica_batch(iterator, self.distribute_strategy)
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

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
