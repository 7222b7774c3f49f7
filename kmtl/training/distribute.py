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

from kmtl.model.multi_worker import MultiWorkerSupport, is_multi_worker  # noqa: F401  (users' names live here too)

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
