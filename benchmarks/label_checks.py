"""Per-step cost of kmtl's per-batch label checks on a `tf.data` pipeline, with `jit_compile` off and on.

Models: (tiny) input 5 -> shared Dense 8 -> 4 heads (binary, 3-class, multilabel 3, regression), batch 8; (mlp) input
256 -> shared Dense 512-512 ReLU -> the same 4 kinds of head, batch 256. `MultiTaskModel`s compiled with Adam and
`weighting="equal"`; labels hold missing markers, as real data does.

Method: one model per size and `jit_compile` setting; both configurations run `keras.Model.fit` (so neither adds
kmtl's up-front checks or NaN guard) on the same cached, batched dataset, "with" wrapped by
`kmtl.tasks.batch_checks.checked_batches` exactly as `MultiTaskModel.fit` wraps it. After a warm-up of each, `fit` calls of
`--steps` steps alternate without and with the checks (`--repeats` each, ABBA order so drifts in machine load hit
both alike). A stamping callback records `time.perf_counter()` at every `on_train_batch_end`; differences of
consecutive stamps are the step times as `fit` runs them (the first of each call dropped), and each figure is the
median over all steps of that configuration.

Usage:
    python benchmarks/label_checks.py [--steps N] [--repeats R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras  # noqa: E402

import kmtl  # noqa: E402
from _timing import StepTimes  # noqa: E402
from kmtl.tasks.batch_checks import checked_batches  # noqa: E402

SIZES = {"tiny": {"inputs": 5, "trunk": (8,), "batch": 8}, "mlp 256-512-512": {"inputs": 256, "trunk": (512, 512), "batch": 256}}
TASKS = [
    kmtl.Task("t0", "binary"),
    kmtl.Task("t1", "multiclass", num_classes=3),
    kmtl.Task("t2", "multilabel", num_labels=3),
    kmtl.Task("t3", "regression"),
]


def build(size, jit_compile):
    spec = SIZES[size]
    keras.utils.set_random_seed(0)
    x = keras.Input((spec["inputs"],), name="x")
    h = x
    for i, units in enumerate(spec["trunk"]):
        h = keras.layers.Dense(units, activation="relu", name=f"shared{i}")(h)
    model = kmtl.builders.hard_sharing(x, h, TASKS)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), weighting="equal", jit_compile=jit_compile)
    return model


def data(size, steps):
    spec = SIZES[size]
    n = steps * spec["batch"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, spec["inputs"])).astype("float32")
    y = {
        "t0": rng.integers(-1, 2, (n, 1)).astype("float32"),
        "t1": rng.integers(-1, 3, (n,)).astype("int32"),
        "t2": rng.integers(-1, 2, (n, 3)).astype("int32"),
        "t3": np.where(rng.random((n, 1)) < 0.2, np.nan, rng.normal(size=(n, 1))).astype("float32"),
    }
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(spec["batch"]).cache()


def measure(size, jit_compile, steps, repeats):
    model = build(size, jit_compile)
    plain = data(size, steps)
    configurations = {"without": plain, "with": checked_batches(model, plain, "the training data")}
    for dataset in configurations.values():
        keras.Model.fit(model, dataset, epochs=1, verbose=0)  # warm-up: tracing, cache filled
    times = {"without": [], "with": []}
    order = list(configurations)
    for repeat in range(repeats):
        for label in order[:: 1 if repeat % 2 == 0 else -1]:  # ABBA: no order bias
            keras.Model.fit(model, configurations[label], epochs=1, verbose=0, callbacks=[StepTimes(times[label])])
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args(argv)
    print(f"{args.steps} steps per fit call, {args.repeats} calls per configuration; medians of per-step times")
    print(f"{'model':<18}{'jit':>5}{'without ms/step':>17}{'with ms/step':>14}{'ratio':>8}")
    for size in SIZES:
        for jit_compile in (False, True):
            t = measure(size, jit_compile, args.steps, args.repeats)
            print(f"{size:<18}{str(jit_compile):>5}{t['without'] * 1e3:>17.3f}{t['with'] * 1e3:>14.3f}"
                  f"{t['with'] / t['without']:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
