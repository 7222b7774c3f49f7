"""Two-worker `MultiWorkerMirroredStrategy` training against one process, on the same work.

The work: a hard-sharing MLP (input 256 -> shared Dense 512-512 ReLU -> 4 heads: binary, binary, regression,
5-class), `weighting="equal"`, SGD, global batch `--batch-size` (default 256), `--steps` steps per epoch, 2 epochs;
the first epoch (tracing, collective-group setup) is discarded and each run's time per step is the median of the
second epoch's steps, stamped by a callback at every `on_train_batch_end` (as `benchmarks/overhead.py` does).

Configurations, each in fresh processes started by this script:
- `1 process`: no strategy, TensorFlow given all `--cores` threads;
- `2 workers`: two processes on 127.0.0.1 (free ports, `TF_CONFIG` from `kmtl.training.distribute.tf_config`), each
  given `--cores // 2` threads, data auto-sharded by DATA so each computes half of every global batch; gradients
  are all-reduced over gRPC every step.
Both see the same global batches, so the speed-up, if any, is what a second machine would buy minus the cost of the
all-reduce. On one machine with 2 shared cores, the two workers share the cores that one process uses alone.

Usage:
    python benchmarks/multiworker_timing.py [--steps N] [--batch-size B] [--cores C] [--repeats R]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

TIMEOUT = 600  # seconds per configuration; children are killed when it runs out


def _worker(args):
    """One training process: prints `RESULT {json}` with its median step time."""
    threads = max(1, args.threads)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    if "TF_CONFIG" in os.environ:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    import keras
    import numpy as np

    import kmtl
    from kmtl.training.distribute import MultiWorkerSupport, with_auto_shard_policy

    kinds = [("t0", "binary"), ("t1", "binary"), ("t2", "regression"), ("t3", "multiclass")]
    tasks = [kmtl.Task(n, k, **({"num_classes": 5} if k == "multiclass" else {})) for n, k in kinds]
    with strategy.scope():
        keras.utils.set_random_seed(0)
        x = keras.Input((256,), name="x")
        h = x
        for i, units in enumerate((512, 512)):
            h = keras.layers.Dense(units, activation="relu", name=f"shared{i}")(h)
        built = kmtl.builders.hard_sharing(x, h, tasks)
        cls = kmtl.MultiTaskModel
        if not issubclass(cls, MultiWorkerSupport):
            cls = type("MultiWorkerMultiTaskModel", (MultiWorkerSupport, kmtl.MultiTaskModel), {})
        model = cls(built.input, built.output, tasks=tasks)
        model.compile(optimizer=keras.optimizers.SGD(1e-3), weighting="equal")
    n = args.steps * args.batch_size
    rng = np.random.default_rng(0)
    features = rng.normal(size=(n, 256)).astype("float32")
    labels = {
        "t0": rng.integers(0, 2, (n, 1)).astype("float32"),
        "t1": rng.integers(0, 2, (n, 1)).astype("float32"),
        "t2": rng.normal(size=(n, 1)).astype("float32"),
        "t3": rng.integers(0, 5, (n,)).astype("int32"),
    }
    dataset = tf.data.Dataset.from_tensor_slices((features, labels)).batch(args.batch_size).cache()
    dataset = with_auto_shard_policy(dataset, "data")

    stamps = []

    class Stamp(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            stamps.clear()
            stamps.append(time.perf_counter())

        def on_train_batch_end(self, batch, logs=None):
            stamps.append(time.perf_counter())

    model.fit(dataset, epochs=2, verbose=0, shuffle=False, callbacks=[Stamp()])
    steps = [b - a for a, b in zip(stamps, stamps[1:])][1:]  # the epoch's first step waits on the iterator
    result = {"median_step_s": statistics.median(steps), "replicas": strategy.num_replicas_in_sync}
    print("RESULT " + json.dumps(result), flush=True)


def _launch(num_workers, args):
    """Runs one configuration; returns each process's result dict."""
    from kmtl.training.distribute import local_workers, tf_config

    threads = max(1, args.cores // num_workers)
    base = [sys.executable, os.path.abspath(__file__), "--worker", "--threads", str(threads),
            "--steps", str(args.steps), "--batch-size", str(args.batch_size)]
    addresses = local_workers(num_workers) if num_workers > 1 else []
    processes = []
    try:
        for index in range(num_workers):
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
            env.pop("TF_CONFIG", None)
            if num_workers > 1:
                env["TF_CONFIG"] = tf_config(addresses, index)
            processes.append(subprocess.Popen(base, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                              text=True))
        outputs = [p.communicate(timeout=TIMEOUT)[0] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    results = []
    for output in outputs:
        lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
        if not lines:
            raise RuntimeError(f"A worker printed no result:\n{output[-3000:]}")
        results.append(json.loads(lines[-1][len("RESULT "):]))
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args)
        return 0
    times = {1: [], 2: []}
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit both alike
        for workers in (1, 2):
            results = _launch(workers, args)
            assert all(r["replicas"] == workers for r in results), results
            times[workers].append(max(r["median_step_s"] for r in results))  # a step ends when all workers do
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(f"global batch {args.batch_size}, {args.steps} steps/epoch, {args.cores} cores, {args.repeats} repeats")
    print(f"{'configuration':<34}{'ms/step':>10}{'examples/s':>12}")
    print(f"{'1 process, ' + str(args.cores) + ' threads':<34}{one * 1e3:>10.1f}{args.batch_size / one:>12.0f}")
    label = f"2 workers, {max(1, args.cores // 2)} thread(s) each"
    print(f"{label:<34}{two * 1e3:>10.1f}{args.batch_size / two:>12.0f}")
    print(f"2 workers / 1 process time per step: {two / one:.2f}x")
    print("per-repeat ms/step:", {k: [round(t * 1e3, 1) for t in v] for k, v in times.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
