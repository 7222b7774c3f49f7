"""Step-time ratio of kmtl's `MultiTaskModel` (weighting="equal") to a plain `keras.Model` with the same layers.

Both models have the same layers and sizes: input 256 -> shared Dense 512-512-512 ReLU -> T heads, the kinds cycling
binary, binary, regression, multiclass (5 classes). (a) is built with `kmtl.builders.hard_sharing` and compiled with
`weighting="equal"` (kmtl derives losses and metrics from the tasks, masks missing labels and logs
`<task>_loss`/`<task>_weight`); (b) is a plain `keras.Model` with dict outputs compiled with the same Keras losses per
output (binary_crossentropy, mse, sparse_categorical_crossentropy) and the same metrics kmtl resolves (binary:
accuracy, AUC; multiclass: accuracy; regression: MAE, RMSE), or, with `metrics=none`, no metrics in either (kmtl's
per-task loss and weight trackers kept). Both start from the same weights (copied by layer name), use Adam(1e-3)
and train on the same data, which has no missing labels.

Two ways of stepping, each timed for both models:
- `train_on_batch` on one fixed batch (tensors), one call at a time. Keras resets every metric before
  each call, so this is where metric variables cost most.
- `fit` on numpy arrays, `--fit-steps` steps per call: a callback stamps every `on_train_batch_end`; the median of the
  differences (first step dropped) is the step time as `fit` runs it.

Each sample times kmtl and plain back to back (alternating which goes first), so drifts in machine load
hit both alike; each figure is the median over samples of the pair ratio. Ratios only: the speed cancels out.

Usage:
    python benchmarks/overhead.py                    # T = 2, 4, 8, 16; jit on and off; default metrics and none
    python benchmarks/overhead.py --quick            # a couple of minutes on 2 cores
    python benchmarks/overhead.py --tasks 4 --jit on --metrics default --rounds 9
    python benchmarks/overhead.py --clock cpu        # CPU time of the process: steadier on a shared machine
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

INPUT_DIM = 256
TRUNK = (512, 512, 512)
KINDS = ("binary", "binary", "regression", "multiclass")
NUM_CLASSES = 5
LOSSES = {"binary": "binary_crossentropy", "regression": "mse", "multiclass": "sparse_categorical_crossentropy"}
TARGET = 1.03


def make_tasks(num_tasks: int) -> list:
    tasks = []
    for i in range(num_tasks):
        kind = KINDS[i % len(KINDS)]
        extra = {"num_classes": NUM_CLASSES} if kind == "multiclass" else {}
        tasks.append(kmtl.Task(f"t{i}_{kind}", kind, **extra))
    return tasks


def trunk(inputs):
    x = inputs
    for i, units in enumerate(TRUNK, start=1):
        x = keras.layers.Dense(units, activation="relu", name=f"shared_{i}")(x)
    return x


def build_kmtl(tasks, jit: bool, metrics: bool):
    inputs = keras.Input((INPUT_DIM,), name="features")
    model = kmtl.builders.hard_sharing(inputs, trunk(inputs), tasks, name="kmtl_model")
    given = None if metrics else {t.name: [] for t in tasks}
    model.compile(optimizer=keras.optimizers.Adam(1e-3), weighting="equal", metrics=given, jit_compile=jit)
    return model


def plain_metrics(task):
    if task.kind == "binary":
        return [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]
    if task.kind == "multiclass":
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    return [keras.metrics.MeanAbsoluteError(name="mae"), keras.metrics.RootMeanSquaredError(name="rmse")]


def build_plain(tasks, jit: bool, metrics: bool):
    inputs = keras.Input((INPUT_DIM,), name="features")
    features = trunk(inputs)
    activations = {"binary": "sigmoid", "regression": "linear", "multiclass": "softmax"}
    outputs = {
        t.name: keras.layers.Dense(t.output_units, activation=activations[t.kind], name=t.name, dtype="float32")(
            features
        )
        for t in tasks
    }
    model = keras.Model(inputs, outputs, name="plain_model")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss={t.name: LOSSES[t.kind] for t in tasks},
        metrics={t.name: plain_metrics(t) for t in tasks} if metrics else None,
        jit_compile=jit,
    )
    return model


def copy_weights(source, target):
    """Copies weights layer by layer (the layers have the same names), so both models compute the same thing."""
    for layer in source.layers:
        if layer.weights:
            target.get_layer(layer.name).set_weights(layer.get_weights())


def make_data(tasks, rows: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, INPUT_DIM)).astype("float32")
    y = {}
    for t in tasks:
        if t.kind == "binary":
            y[t.name] = rng.integers(0, 2, size=(rows, 1)).astype("float32")
        elif t.kind == "multiclass":
            y[t.name] = rng.integers(0, NUM_CLASSES, size=(rows, 1)).astype("int32")
        else:
            y[t.name] = rng.normal(size=(rows, 1)).astype("float32")
    return x, y


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


class StepTimer(keras.callbacks.Callback):
    """Times between consecutive `on_train_batch_end` calls of one `fit` by `clock`; the first step is dropped."""

    def __init__(self, clock=time.perf_counter):
        super().__init__()
        self.clock = clock
        self.stamps = []

    def on_train_begin(self, logs=None):
        self.stamps = []

    def on_train_batch_end(self, batch, logs=None):
        self.stamps.append(self.clock())


def fit_step(model, x, y, batch_size: int, clock=time.perf_counter) -> float:
    """The median step time of one `fit` call (one epoch over `x`)."""
    timer = StepTimer(clock)
    model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0, callbacks=[timer])
    return float(np.median(np.diff(timer.stamps)))


def train_on_batch_step(model, x, y, clock=time.perf_counter) -> float:
    start = clock()
    model.train_on_batch(x, y)
    return clock() - start


class Pair:
    """kmtl and plain Keras for one configuration (T, jit, metrics), with their data.

    Every sample times the two models back to back (alternating which goes first), so both see the same machine load;
    the ratio of a configuration is the median over samples of kmtl's time / plain's.
    """

    def __init__(self, num_tasks, jit, metrics, args):
        keras.utils.set_random_seed(args.seed)
        tasks = make_tasks(num_tasks)
        self.key = (num_tasks, jit, metrics)
        self.models = {"kmtl": build_kmtl(tasks, jit, metrics), "plain": build_plain(tasks, jit, metrics)}
        copy_weights(self.models["kmtl"], self.models["plain"])
        self.x, self.y = make_data(tasks, args.fit_steps * args.batch_size, args.seed)
        self.batch = (
            tf.constant(self.x[: args.batch_size]),
            {k: tf.constant(v[: args.batch_size]) for k, v in self.y.items()},
        )
        self.ratios = {mode: [] for mode in args.modes}
        self.plain = {mode: [] for mode in args.modes}
        for model in self.models.values():  # warm-up: tracing, optimizer build, first iterator
            for _ in range(3):
                model.train_on_batch(*self.batch)
            if "fit" in args.modes:
                fit_step(model, self.x, self.y, args.batch_size)

    def sample(self, mode, args, flip: bool):
        times = {}
        clock = CLOCKS[args.clock]
        for name in (["plain", "kmtl"] if flip else ["kmtl", "plain"]):
            model = self.models[name]
            if mode == "fit":
                times[name] = fit_step(model, self.x, self.y, args.batch_size, clock)
            else:
                times[name] = train_on_batch_step(model, *self.batch, clock=clock)
        self.ratios[mode].append(times["kmtl"] / times["plain"])
        self.plain[mode].append(times["plain"])

    def ratio(self, mode):
        return statistics.median(self.ratios[mode]), statistics.median(self.plain[mode])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 4, 8, 16], help="numbers of task heads")
    parser.add_argument("--jit", choices=["on", "off"], nargs="+", default=["on", "off"], help="jit_compile")
    parser.add_argument(
        "--metrics", choices=["default", "none"], nargs="+", default=None, help="default: both (--quick: default)"
    )
    parser.add_argument("--modes", choices=["train_on_batch", "fit"], nargs="+", default=["train_on_batch", "fit"])
    parser.add_argument("--steps", type=int, default=60, help="paired train_on_batch calls per round (default 60)")
    parser.add_argument("--fits", type=int, default=3, help="paired fit calls per round (default 3)")
    parser.add_argument("--fit-steps", type=int, default=12, help="steps per timed fit call (default 12)")
    parser.add_argument("--batch-size", type=int, default=256, help="batch size (default 256)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds over all configurations (default 5)")
    parser.add_argument("--quick", action="store_true", help="T = 2, 8, 16; 3 rounds of 20 calls")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall",
        help="wall time, or the process's CPU time (steadier when other jobs share the cores)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.rounds, args.steps = [2, 8, 16], 3, 20
    if args.metrics is None:
        args.metrics = ["default"] if args.quick else ["default", "none"]
    if min(args.steps, args.fits, args.rounds, args.batch_size, *args.tasks) < 1 or args.fit_steps < 3:
        parser.error("--fit-steps must be >= 3 and --steps, --rounds, --batch-size, --tasks >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    print(
        f"kmtl {kmtl.__version__} | TensorFlow {tf.__version__} | Keras {keras.__version__} | threads 2/2 | "
        f"batch {args.batch_size} | {args.clock} clock | {args.rounds} rounds of {args.steps} paired train_on_batch calls and "
        f"{args.fits} paired fits of {args.fit_steps} steps per configuration",
        flush=True,
    )
    pairs = []
    for num_tasks in args.tasks:
        for jit in args.jit:
            for metrics in args.metrics:
                pairs.append(Pair(num_tasks, jit == "on", metrics == "default", args))
    for r in range(args.rounds):
        for pair in pairs:
            for mode in args.modes:
                calls = args.steps if mode == "train_on_batch" else args.fits
                for i in range(calls):
                    pair.sample(mode, args, flip=bool((i + r) % 2))
    print("\nkmtl (weighting='equal') step time / plain Keras's: median of back-to-back pairs (plain's median ms)\n")
    print("| T | jit | metrics | " + " | ".join(f"{m} (plain ms)" for m in args.modes) + " |")
    print("|---|---|---|" + "---|" * len(args.modes))
    worst = 0.0
    for pair in pairs:
        num_tasks, jit, metrics = pair.key
        cells = []
        for mode in args.modes:
            ratio, plain_s = pair.ratio(mode)
            worst = max(worst, ratio)
            cells.append(f"{ratio:.3f}x ({plain_s * 1e3:.1f})")
        row = [str(num_tasks), "on" if jit else "off", "default" if metrics else "none", *cells]
        print("| " + " | ".join(row) + " |")
    print(f"\nworst ratio {worst:.3f} (target <= {TARGET})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
