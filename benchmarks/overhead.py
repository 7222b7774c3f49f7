"""Training-step overhead of kmtl's `MultiTaskModel` against a plain `keras.Model` built from the same layers.

Both models have the same layers and sizes: input 256 -> shared Dense 512-512-512 ReLU -> T heads, the kinds cycling
binary, binary, regression, multiclass (5 classes) (T=4 by default). (a) is built with `kmtl.builders.hard_sharing`
and compiled with `weighting="equal"` (so kmtl derives losses and metrics from the tasks, masks missing labels and
logs `<task>_loss`/`<task>_weight`); (b) is a plain `keras.Model` with dict outputs compiled with the same Keras
losses per output (binary_crossentropy, mse, sparse_categorical_crossentropy) and the same metrics kmtl resolves
(binary: accuracy, AUC; multiclass: accuracy; regression: MAE, RMSE). Both start from the same weights (copied by
layer name), use Adam(1e-3), and train on the same numpy data, which has no missing labels.

Timing method: `model.fit` on numpy arrays, `--steps` steps per call (one epoch of `steps * batch_size` rows,
`shuffle=False`, `verbose=0`). A callback stamps `time.perf_counter()` at every `on_train_batch_end`; the differences
between consecutive stamps are the per-step times as `fit` runs them (input slicing, the compiled train function,
metric results and callbacks), the first step of each call being dropped. After one warm-up `fit` per model (tracing,
optimizer build), repeats are interleaved a, b, a, b, ... so drifts in machine load hit both alike; each model's
step time is the median over all its recorded steps (the headline ratio). The table also gives the mean wall time
per step of whole `fit` calls, which adds `fit`'s per-call setup and kmtl's up-front label validation (~0.2 ms); it
is noisier, because on these machines about half of all `fit` calls, of either model, spend a further ~0.2-0.3 s
returning after `on_train_end` (tearing down the tf.data iterator), which the per-step medians exclude.

Usage:
    python benchmarks/overhead.py [--steps N] [--batch-size B] [--tasks T] [--repeats R] [--jit]
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


def build_kmtl(tasks, jit: bool):
    inputs = keras.Input((INPUT_DIM,), name="features")
    model = kmtl.builders.hard_sharing(inputs, trunk(inputs), tasks, name="kmtl_model")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), weighting="equal", jit_compile=jit)
    return model


def plain_metrics(task):
    if task.kind == "binary":
        return [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]
    if task.kind == "multiclass":
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    return [keras.metrics.MeanAbsoluteError(name="mae"), keras.metrics.RootMeanSquaredError(name="rmse")]


def build_plain(tasks, jit: bool):
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
        metrics={t.name: plain_metrics(t) for t in tasks},
        jit_compile=jit,
    )
    return model


def copy_weights(source, target):
    """Copies weights layer by layer (the layers have the same names), so both models compute the same thing."""
    copied = 0
    for layer in source.layers:
        if layer.weights:
            target.get_layer(layer.name).set_weights(layer.get_weights())
            copied += 1
    return copied


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


class StepTimer(keras.callbacks.Callback):
    """Times between consecutive `on_train_batch_end` calls of one `fit`; the first step is dropped."""

    def __init__(self):
        super().__init__()
        self.stamps = []

    def on_train_begin(self, logs=None):
        self.stamps = []

    def on_train_batch_end(self, batch, logs=None):
        self.stamps.append(time.perf_counter())

    @property
    def step_times(self):
        return list(np.diff(self.stamps))


def timed_fit(model, x, y, batch_size: int):
    timer = StepTimer()
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0, callbacks=[timer])
    wall = time.perf_counter() - start
    return timer.step_times, wall, history.history["loss"][-1]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="training steps per timed fit call (default 60)")
    parser.add_argument("--batch-size", type=int, default=256, help="batch size (default 256)")
    parser.add_argument("--tasks", type=int, default=4, help="number of task heads (default 4)")
    parser.add_argument("--repeats", type=int, default=20, help="timed fit calls per model, interleaved (default 20)")
    parser.add_argument("--jit", action="store_true", help="compile both models with jit_compile=True (XLA)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "tasks", "repeats"):
        if getattr(args, name) < 1 or (name == "steps" and args.steps < 2):
            parser.error(f"--{name.replace('_', '-')} must be >= {2 if name == 'steps' else 1}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    tasks = make_tasks(args.tasks)
    models = {"kmtl": build_kmtl(tasks, args.jit), "plain": build_plain(tasks, args.jit)}
    copied = copy_weights(models["kmtl"], models["plain"])
    x, y = make_data(tasks, args.steps * args.batch_size, args.seed)

    print(
        f"kmtl {kmtl.__version__} | TensorFlow {tf.__version__} | Keras {keras.__version__} | threads 2/2 | "
        f"jit_compile={args.jit}"
    )
    print(
        f"model: {INPUT_DIM} -> {'-'.join(map(str, TRUNK))} ReLU -> {len(tasks)} heads "
        f"({', '.join(t.kind + (f'({t.num_classes})' if t.num_classes else '') for t in tasks)}); "
        f"{models['kmtl'].count_params():,} params; {copied} layers' weights copied kmtl -> plain"
    )
    print(f"timing: model.fit, {args.steps} steps x batch {args.batch_size}, {args.repeats} interleaved repeats each")

    warmup_loss = {}
    for name, model in models.items():  # warm-up: tracing, optimizer build, first iterator
        warmup_loss[name] = timed_fit(model, x, y, args.batch_size)[2]
    # Same weights, data and losses: the two models train alike (float round-off aside).
    print("warm-up epoch loss: " + ", ".join(f"{n} {v:.6f}" for n, v in warmup_loss.items()))

    steps = {name: [] for name in models}
    walls = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            step_times, wall, _ = timed_fit(model, x, y, args.batch_size)
            steps[name] += step_times
            walls[name].append(wall / args.steps)

    print()
    print(f"{'model':<8}{'median step ms':>16}{'p10-p90 ms':>16}{'fit wall/step ms':>18}")
    for name in models:
        ms = np.array(steps[name]) * 1e3
        p10, p90 = np.percentile(ms, [10, 90])
        print(
            f"{name:<8}{np.median(ms):>16.2f}{f'{p10:.1f}-{p90:.1f}':>16}"
            f"{statistics.mean(walls[name]) * 1e3:>18.2f}"
        )
    ratio = np.median(steps["kmtl"]) / np.median(steps["plain"])
    wall_ratio = statistics.mean(walls["kmtl"]) / statistics.mean(walls["plain"])
    verdict = "OK" if ratio <= 1.05 else "ABOVE TARGET"
    print(f"\nratio kmtl/plain (median step): {ratio:.3f}  [target <= 1.05: {verdict}]")
    print(f"ratio kmtl/plain (mean fit wall/step, noisier): {wall_ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
