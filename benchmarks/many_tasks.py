"""Heads for many tasks: one `kmtl.layers.StackedHeads` layer against T separate Dense heads.

For T = 1, 8, 32, 128 binary tasks, two models share the same small trunk (input 128 -> Dense 256-256 ReLU) and
differ only in their heads: (a) `kmtl.layers.stacked_task_heads`, one `StackedHeads` layer (one einsum with its
(T, 256, 1) kernel) returning a dict of T outputs; (b) T `keras.layers.Dense(1, sigmoid)` layers, one per task, as
`kmtl.heads.task_head` makes them. Both return a dict keyed by task name, start from the same weights (the stacked
kernel holds the Dense kernels) and train with the same step: a masked binary cross-entropy over the (batch, T)
matrix of all outputs (labels ~90% missing, as in drug-discovery assay data) and plain SGD, in one `tf.function`.
The loss is vectorised and identical for both, so the differences are the heads' own cost.

Measured, per T and per variant:
- build: median wall time to create the layers and the Functional model (`keras.Model(inputs, {task: output})`),
  over `--build-repeats` interleaved builds.
- first step: wall time of the first training step, i.e. tracing and optimising the step's graph, then running it.
- step: median wall time of one training step (the loss is read back every step), after the first. Repeats are
  interleaved a, b, a, b, ... so drifts in machine load hit both alike.
A warm-up run (T = 2) first takes one-time costs (TensorFlow's first graph, Keras's first model) out of the table.

A second table wraps the same two variants in `kmtl.MultiTaskModel` (tasks with `metrics=[]`, or with
`--default-metrics` their accuracy and AUC) and times `fit` end to end: the first step of the first `fit` (tracing
included), then the median step of interleaved `fit` calls. It shows the cost of MultiTaskModel's own graph (masked
losses, trackers and metrics, computed per group of alike tasks, not per task). `--heads-only` skips it.

Usage:
    python benchmarks/many_tasks.py [--tasks 1 8 32 128] [--batch-size B] [--steps N] [--repeats R]
        [--build-repeats R] [--jit] [--heads-only] [--default-metrics]
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
from kmtl.layers.stacked_heads import stacked_task_heads  # noqa: E402

INPUT_DIM = 128
TRUNK = (256, 256)
MISSING_FRACTION = 0.9
VARIANTS = ("stacked", "dense")


def make_tasks(num_tasks: int, metrics=None) -> list:
    return [kmtl.Task(f"assay_{i}", "binary", metrics=metrics) for i in range(num_tasks)]


def build(variant: str, tasks, seed: int = 0):
    """The Functional graph of one variant: `(inputs, {task: output})`, built from fresh layers."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((INPUT_DIM,), name="fingerprint")
    x = inputs
    for i, units in enumerate(TRUNK, start=1):
        x = keras.layers.Dense(units, activation="relu", name=f"trunk_{i}")(x)
    if variant == "stacked":
        outputs = stacked_task_heads(tasks, x)
    else:
        outputs = {t.name: kmtl.heads.task_head(t, x) for t in tasks}
    return inputs, outputs


def copy_heads(stacked_model, dense_model, tasks):
    """Gives the dense model the stacked model's weights: trunk layers by name, head t from slice t."""
    for layer in stacked_model.layers:
        if layer.name.startswith("trunk_"):
            dense_model.get_layer(layer.name).set_weights(layer.get_weights())
    heads = stacked_model.get_layer("stacked_heads")
    kernel, bias = heads.kernel.numpy(), heads.bias.numpy()
    for t, task in enumerate(tasks):
        dense_model.get_layer(task.name).set_weights([kernel[t], bias[t]])


def make_data(num_tasks: int, rows: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, INPUT_DIM)).astype("float32")
    y = (rng.random((rows, num_tasks)) < 0.5).astype("float32")
    y[rng.random((rows, num_tasks)) < MISSING_FRACTION] = -1.0
    return x, y


def masked_bce(labels, outputs, task_names):
    """Mean binary cross-entropy over present labels (-1 = missing) of the (batch, T) matrix of outputs."""
    probs = keras.ops.concatenate([outputs[name] for name in task_names], axis=-1)
    present = keras.ops.cast(labels >= 0, "float32")
    values = keras.losses.binary_crossentropy(
        keras.ops.expand_dims(keras.ops.maximum(labels, 0.0), -1), keras.ops.expand_dims(probs, -1)
    )
    return keras.ops.sum(values * present) / keras.ops.maximum(keras.ops.sum(present), 1.0)


def make_step(model, task_names, learning_rate: float, jit: bool):
    variables = model.trainable_variables

    def step(x, labels):
        with tf.GradientTape() as tape:
            loss = masked_bce(labels, model(x, training=True), task_names)
        for variable, grad in zip(variables, tape.gradient(loss, variables)):
            variable.assign_sub(learning_rate * grad)
        return loss

    return tf.function(step, jit_compile=jit)


def bench_heads(num_tasks: int, args) -> dict:
    """Build, first-step and step times of both variants for one T, measured side by side."""
    tasks = make_tasks(num_tasks)
    names = [t.name for t in tasks]
    x, y = make_data(num_tasks, args.batch_size, seed=num_tasks)
    x, y = tf.constant(x), tf.constant(y)
    models, steps, result = {}, {}, {v: {"step": [], "build": []} for v in VARIANTS}
    for _ in range(args.build_repeats):
        for variant in VARIANTS:
            start = time.perf_counter()
            models[variant] = keras.Model(*build(variant, tasks), name=variant)
            result[variant]["build"].append(time.perf_counter() - start)
    for variant in VARIANTS:
        result[variant]["build"] = statistics.median(result[variant]["build"])
        result[variant]["params"] = models[variant].count_params()
    copy_heads(models["stacked"], models["dense"], tasks)
    for variant in VARIANTS:
        steps[variant] = make_step(models[variant], names, args.learning_rate, args.jit)
        start = time.perf_counter()
        result[variant]["first_loss"] = float(steps[variant](x, y))
        result[variant]["first_step"] = time.perf_counter() - start
    for _ in range(args.repeats):
        for variant in VARIANTS:
            for _ in range(args.steps):
                start = time.perf_counter()
                float(steps[variant](x, y))
                result[variant]["step"].append(time.perf_counter() - start)
    for variant in VARIANTS:
        result[variant]["step"] = statistics.median(result[variant]["step"])
    return result


class StepTimer(keras.callbacks.Callback):
    """Stamps `time.perf_counter()` at the start of `fit` and at every `on_train_batch_end`."""

    def __init__(self):
        super().__init__()
        self.stamps = []

    def on_train_begin(self, logs=None):
        self.stamps = [time.perf_counter()]

    def on_train_batch_end(self, batch, logs=None):
        self.stamps.append(time.perf_counter())


def bench_kmtl(num_tasks: int, args) -> dict:
    """End to end through `kmtl.MultiTaskModel.fit`: the first step of the first `fit` (tracing included), then the
    median step of `--repeats` interleaved `fit` calls of `--steps` steps each (first step of each call dropped)."""
    tasks = make_tasks(num_tasks, metrics=None if args.default_metrics else [])
    x, y_matrix = make_data(num_tasks, args.batch_size * (args.steps + 1), seed=num_tasks)
    y = {t.name: y_matrix[:, i].astype("int32") for i, t in enumerate(tasks)}
    models, result, timer = {}, {v: {"step": []} for v in VARIANTS}, StepTimer()

    def fit(variant):
        models[variant].fit(x, y, batch_size=args.batch_size, epochs=1, shuffle=False, verbose=0, callbacks=[timer])
        return np.diff(timer.stamps)

    for variant in VARIANTS:
        models[variant] = kmtl.MultiTaskModel(*build(variant, tasks), tasks=tasks, name=f"kmtl_{variant}")
        models[variant].compile(optimizer=keras.optimizers.SGD(args.learning_rate), jit_compile=args.jit)
        result[variant]["first_step"] = fit(variant)[0]
    for _ in range(args.repeats):
        for variant in VARIANTS:
            result[variant]["step"] += list(fit(variant)[1:])
    for variant in VARIANTS:
        result[variant]["step"] = statistics.median(result[variant]["step"])
    return result


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "-"


def print_heads_table(rows: dict) -> None:
    header = (f"{'T':>4} | {'build ms':>18} {'ratio':>6} | {'first step s':>16} {'ratio':>6} | "
              f"{'step ms':>16} {'ratio':>6} | {'dense/stacked step':>18}")
    print(header)
    print(f"{'':>4} | {'stacked    dense':>18} {'s/d':>6} | {'stacked   dense':>16} {'s/d':>6} | "
          f"{'stacked   dense':>16} {'s/d':>6} |")
    print("-" * len(header))
    for t, r in rows.items():
        s, d = r["stacked"], r["dense"]
        print(
            f"{t:>4} | {s['build'] * 1e3:>8.1f} {d['build'] * 1e3:>9.1f} {ratio(s['build'], d['build']):>6} | "
            f"{s['first_step']:>7.2f} {d['first_step']:>8.2f} {ratio(s['first_step'], d['first_step']):>6} | "
            f"{s['step'] * 1e3:>7.2f} {d['step'] * 1e3:>8.2f} {ratio(s['step'], d['step']):>6} | "
            f"{ratio(d['step'], s['step']):>18}"
        )


def print_kmtl_table(rows: dict, metrics: str = "metrics=[]") -> None:
    print(f"\nkmtl.MultiTaskModel.fit end to end ({metrics}):\n{'T':>4} | {'first fit step s':>18} {'ratio':>6} | "
          f"{'fit step ms':>16} {'ratio':>6}")
    print(f"{'':>4} | {'stacked     dense':>18} {'s/d':>6} | {'stacked   dense':>16} {'s/d':>6}")
    for t, r in rows.items():
        s, d = r["stacked"], r["dense"]
        first = ratio(s["first_step"], d["first_step"])
        print(f"{t:>4} | {s['first_step']:>8.2f} {d['first_step']:>9.2f} {first:>6} | "
              f"{s['step'] * 1e3:>7.2f} {d['step'] * 1e3:>8.2f} {ratio(s['step'], d['step']):>6}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[1, 8, 32, 128], help="numbers of tasks T")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats per variant")
    parser.add_argument("--build-repeats", type=int, default=3, help="interleaved model builds per variant")
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--jit", action="store_true", help="compile the steps with XLA")
    parser.add_argument("--heads-only", action="store_true", help="skip the end-to-end kmtl.MultiTaskModel.fit table")
    parser.add_argument(
        "--default-metrics", action="store_true",
        help="the fit table's tasks keep their default metrics (accuracy, AUC)",
    )
    args = parser.parse_args(argv)
    print(f"TF {tf.__version__}, Keras {keras.__version__}, 2 threads; trunk {INPUT_DIM}-{'-'.join(map(str, TRUNK))}, "
          f"binary heads, batch {args.batch_size}, {args.repeats} x {args.steps} steps, jit={args.jit}")
    bench_heads(2, argparse.Namespace(**{**vars(args), "steps": 2, "repeats": 1, "build_repeats": 1}))  # warm-up
    rows = {}
    for num_tasks in args.tasks:
        rows[num_tasks] = bench_heads(num_tasks, args)
        s, d = rows[num_tasks]["stacked"], rows[num_tasks]["dense"]
        if not np.isclose(s["first_loss"], d["first_loss"], rtol=1e-4):  # same weights, same loss: a sanity check
            print(f"warning: T={num_tasks}: first losses differ ({s['first_loss']} vs {d['first_loss']})")
    print_heads_table(rows)
    if not args.heads_only:
        metrics = "default metrics" if args.default_metrics else "metrics=[]"
        print_kmtl_table({t: bench_kmtl(t, args) for t in args.tasks}, metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
