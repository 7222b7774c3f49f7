"""Per-step cost of `kmtl.training.TaskNaNGuard`, a batch-level callback, on a tiny model and on an MLP.

Models: (tiny) input 5 -> shared Dense 8 -> 3 heads (regression, binary, 3-class), batch 8; (mlp) input 256 ->
shared Dense 512-512 ReLU -> 4 heads (binary, binary, regression, 5-class), batch 256. Both `MultiTaskModel`s
compiled with Adam and `weighting="equal"`, trained with `fit` on numpy data, `verbose=0`.

Method: one model per size; after a warm-up `fit` (tracing), `fit` calls of `--steps` steps alternate without and
with the guard (`--repeats` each, interleaved in ABBA order so drifts in machine load and any effect of the
order hit both alike). A stamping callback, present
in both, records `time.perf_counter()` at every `on_train_batch_end`; the differences of consecutive stamps are the
step times as `fit` runs them, the first of each call dropped, and each configuration's figure is the median over
all its steps (whole-call wall times also include `fit`'s setup and teardown, which vary by tenths of a second
between calls on these machines and would drown the difference). The same model object serves both, so both run the
same traced train function. On the TensorFlow backend Keras 3.15 runs batch callbacks synchronously and converts the
logs to Python numbers after every step whether or not a callback reads them (`History` is always present; the
backend is not marked thread-safe, so Keras's asynchronous callback dispatch is never used), so the stamping callback
does not change the regime and the guard adds only its own Python work, also timed alone on a realistic log dict
and within Keras's callback dispatch of one batch.

Usage:
    python benchmarks/nan_guard_overhead.py [--steps N] [--repeats R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(2)  # before any op runs
tf.config.threading.set_inter_op_parallelism_threads(2)

import keras  # noqa: E402

import kmtl  # noqa: E402
from _timing import StepTimes  # noqa: E402
from kmtl.training import TaskNaNGuard  # noqa: E402

SIZES = {
    "tiny": {"inputs": 5, "trunk": (8,), "batch": 8,
             "tasks": [("a", "regression"), ("b", "binary"), ("c", "multiclass")], "classes": 3},
    "mlp 256-512-512": {"inputs": 256, "trunk": (512, 512), "batch": 256,
                        "tasks": [("t0", "binary"), ("t1", "binary"), ("t2", "regression"), ("t3", "multiclass")],
                        "classes": 5},
}


def build(size):
    spec = SIZES[size]
    tasks = [kmtl.Task(n, k, **({"num_classes": spec["classes"]} if k == "multiclass" else {})) for n, k in spec["tasks"]]
    keras.utils.set_random_seed(0)
    x = keras.Input((spec["inputs"],), name="x")
    h = x
    for i, units in enumerate(spec["trunk"]):
        h = keras.layers.Dense(units, activation="relu", name=f"shared{i}")(h)
    model = kmtl.builders.hard_sharing(x, h, tasks)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), weighting="equal")
    return model, tasks, spec


def data(tasks, spec, steps):
    n = steps * spec["batch"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, spec["inputs"])).astype("float32")
    y = {}
    for task in tasks:
        if task.kind == "binary":
            y[task.name] = rng.integers(0, 2, (n, 1)).astype("float32")
        elif task.kind == "multiclass":
            y[task.name] = rng.integers(0, spec["classes"], (n,)).astype("int32")
        else:
            y[task.name] = rng.normal(size=(n, 1)).astype("float32")
    return x, y


def measure(size, steps, repeats):
    model, tasks, spec = build(size)
    x, y = data(tasks, spec, steps)
    kwargs = {"batch_size": spec["batch"], "epochs": 1, "verbose": 0, "shuffle": False}
    model.fit(x, y, **kwargs)  # warm-up: tracing
    times = {"without": [], "with": []}
    configurations = [("without", lambda: []), ("with", lambda: [TaskNaNGuard()])]
    for repeat in range(repeats):
        for label, extra in configurations[:: 1 if repeat % 2 == 0 else -1]:  # ABBA: no order bias
            model.fit(x, y, callbacks=[StepTimes(times[label])] + extra(), **kwargs)
    return {k: statistics.median(v) for k, v in times.items()}


def hook_alone(size, calls=20000):
    """Seconds per batch of the guard's hooks on a log dict like the model's (Python floats), the weights check
    (as often as its budget allows for these near-instant batches) included."""
    model, tasks, _ = build(size)
    guard = TaskNaNGuard()
    guard.set_model(model)
    guard.on_train_begin()
    logs = {"loss": 1.0}
    for task in tasks:
        logs.update({f"{task.name}_loss": 0.5, f"{task.name}_weight": 1.0, f"{task.name}_metric": 0.7})
    start = time.perf_counter()
    for i in range(calls):
        # With the batch's begin, as in `fit`: without it the guard knows no step time and checks the weights at
        # every batch.
        guard.on_train_batch_begin(i)
        guard.on_train_batch_end(i, logs)
    return (time.perf_counter() - start) / calls


def dispatch(size, with_guard, batches=5000):
    """Seconds per batch of Keras's callback dispatch (logs as tensors, converted by Keras, History, a stamp)."""
    import tensorflow as tf

    model, tasks, _ = build(size)
    logs = {"loss": tf.constant(1.0)}
    for task in tasks:
        logs.update({f"{task.name}_loss": tf.constant(0.5), f"{task.name}_weight": tf.constant(1.0),
                     f"{task.name}_metric": tf.constant(0.7)})
    callbacks = [StepTimes([])] + ([TaskNaNGuard()] if with_guard else [])
    callback_list = keras.callbacks.CallbackList(callbacks, add_history=True, add_progbar=False, model=model,
                                                 epochs=1, steps=batches)
    callback_list.on_train_begin()
    callback_list.on_epoch_begin(0)
    start = time.perf_counter()
    for i in range(batches):
        callback_list.on_train_batch_begin(i)
        callback_list.on_train_batch_end(i, logs)
    return (time.perf_counter() - start) / batches


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args(argv)
    runs = {False: [], True: []}
    for repeat in range(6):
        for with_guard in (False, True)[:: 1 if repeat % 2 == 0 else -1]:
            runs[with_guard].append(dispatch("tiny", with_guard))
    print("callback dispatch per batch (tiny model's logs): "
          f"{statistics.median(runs[False]) * 1e6:.1f} us without, {statistics.median(runs[True]) * 1e6:.1f} us with")
    print(f"{args.steps} steps per fit call, {args.repeats} calls per configuration; medians of per-step times")
    print(f"{'model':<18}{'without ms/step':>17}{'with ms/step':>14}{'ratio':>8}{'hook alone us':>15}")
    for size in SIZES:
        t = measure(size, args.steps, args.repeats)
        alone = hook_alone(size)
        print(f"{size:<18}{t['without'] * 1e3:>17.3f}{t['with'] * 1e3:>14.3f}{t['with'] / t['without']:>8.3f}"
              f"{alone * 1e6:>15.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
