"""Step time of every task-weighting strategy relative to equal weighting, measured side by side in one run.

The model is a hard-sharing MLP (input 256, shared 512-512-512 ReLU, heads 512-128-1 per task), batch 256, Adam,
two CPU threads, at T = 2, 4 and 8 tasks. Each strategy's step time is the median of all its single
`train_on_batch` steps on one fixed batch, `steps` per round; rounds interleave the strategies, so a slow spell on a
shared machine slows them all alike and the ratios stay fair. Gradient-level strategies are also timed with
`rep_grad=True` and, at the smallest T, with the vectorised `gradient_method="jacobian"`.

    python benchmarks/weighting_speed.py                  # the table in the closing note
    python benchmarks/weighting_speed.py --quick          # a couple of minutes on 2 cores
    python benchmarks/weighting_speed.py --tasks 4 --rounds 3 --steps 10 --only pcgrad mgda

Each cell gives ms/step, the ratio to equal weighting, the ratio to the FLOP floor and, for the strategies in
`--hand-written`, the ratio to a hand-written per-task loop of the same method (`HandWritten`: the method's own
`aggregate`, so the ratio is the cost of kmtl's step around it: masking, trackers, G's checks). A per-task-gradient
method needs one forward pass, T backward passes through the shared part and one through each head, (1 + 2T)/3
times an equal-weighting step for a trunk-dominated model (1 for loss-level strategies and for rep-grad, whose T
backward passes stop at the representation). Tasks have no metrics (kmtl's loss and weight trackers stay). Last, the
time to first step (build + compile + trace + one step) of a T = 128 stacked-heads model
(`kmtl.builders.stacked_heads_model`), without metrics and with the default ones. `--clock cpu` times steps by the
process's CPU time, steadier than wall time when other jobs share the cores.

Targets at T = 4: loss-level <= 1.05x; PCGrad, MGDA, CAGrad, IMTL-G, GradVac, UPGrad, GradNorm <= 2.0x;
Nash-MTL <= 2.5x; with rep-grad <= 1.3x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(2)

import keras  # noqa: E402

import kmtl  # noqa: E402
from kmtl.weighting import STRATEGIES, GradientWeighting  # noqa: E402

BATCH = 256


def build(num_tasks: int, weighting, gradient_method: str = "loop"):
    keras.utils.set_random_seed(0)
    # No metrics: the step is compared with a hand-written loop that computes none (kmtl's loss and weight
    # trackers stay).
    tasks = [kmtl.Task(f"t{i}", "regression", metrics=[]) for i in range(num_tasks)]
    x = keras.Input((256,), name="x")
    h = x
    for i in range(3):
        h = keras.layers.Dense(512, activation="relu", name=f"shared{i}")(h)
    model = kmtl.builders.hard_sharing(x, h, tasks, head_units=(512, 128))
    model.compile(optimizer=keras.optimizers.Adam(1e-4), weighting=weighting, gradient_method=gradient_method)
    return model


def batch(num_tasks: int):
    """One fixed batch as tensors (so no input pipeline is timed)."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(BATCH, 256)).astype("float32"))
    y = {f"t{i}": tf.constant(rng.normal(size=(BATCH, 1)).astype("float32")) for i in range(num_tasks)}
    return x, y


def variants(num_tasks: int, only, rep_grad_at, jacobian_for):
    """(label, weighting factory, gradient_method) for every strategy to time.

    Rep-grad variants are timed for every gradient-level strategy at T in `rep_grad_at` (and for MGDA at every T);
    the jacobian variant for the strategies in `jacobian_for`, at every T.
    """
    out = []
    for name, factory in STRATEGIES.items():
        if only and name not in only and name != "equal":
            continue
        out.append((name, factory, "loop"))
        if isinstance(factory, type) and issubclass(factory, GradientWeighting):
            if factory.supports_rep_grad and (num_tasks in rep_grad_at or name == "mgda"):
                out.append((f"{name} rep-grad", lambda f=factory: f(rep_grad=True), "loop"))
            if name in jacobian_for:
                out.append((f"{name} jacobian", factory, "jacobian"))
    return out


class HandWritten:
    """A hand-written per-task loop of a gradient-level method, for comparison with kmtl's step on the same model.

    One `tf.function`: forward pass, plain MSE per task, one `tape.gradient` per task of the shared and that task's
    own variables, the shared rows flattened and stacked into `G`, the method's own `aggregate` (its solver
    included), the direction split back, one `apply_gradients`. No masking, no trackers, no metrics.
    """

    def __init__(self, model, factory):
        self.model = model
        self.strategy = factory()
        self.strategy.configure(model.tasks)
        self.shared = model.shared_variables
        self.own = model.task_variables
        self.names = model.task_names
        self.optimizer = keras.optimizers.Adam(1e-4)
        self.optimizer.build(self.shared + [v for name in self.names for v in self.own[name]])
        self.step = tf.function(self._step)

    def _step(self, x, y):
        with tf.GradientTape(persistent=True) as tape:
            outputs = self.model(x, training=True)
            losses = [tf.reduce_mean(tf.square(y[name] - outputs[name])) for name in self.names]
        rows, pairs = [], []
        for name, loss in zip(self.names, losses):
            grads = tape.gradient(loss, self.shared + self.own[name])
            rows.append(tf.concat([tf.reshape(g, [-1]) for g in grads[: len(self.shared)]], axis=0))
            pairs += zip(grads[len(self.shared):], self.own[name])
        direction, _ = self.strategy.aggregate(tf.stack(rows), tf.stack(losses))
        parts = tf.split(direction, [int(np.prod(v.shape)) for v in self.shared])
        pairs += [(tf.reshape(p, v.shape), v) for p, v in zip(parts, self.shared)]
        self.optimizer.apply_gradients(pairs)
        return tf.stack(losses)

    def train_on_batch(self, x, y):
        return self.step(x, y).numpy()


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def time_steps(model, data, steps: int, clock=time.perf_counter) -> list:
    """Seconds of each of `steps` `train_on_batch` calls (each returns its logs, so every step is waited for), by
    `clock`: wall time, or the process's CPU time (both threads' work; steadier when other jobs share the cores)."""
    x, y = data
    times = []
    for _ in range(steps):
        start = clock()
        model.train_on_batch(x, y)
        times.append(clock() - start)
    return times


def run(num_tasks: int, rounds: int, steps: int, only, rep_grad_at, jacobian_for, hand_written=(), clock="wall"):
    data = batch(num_tasks)
    entries = []
    for label, factory, method in variants(num_tasks, only, rep_grad_at, jacobian_for):
        model = build(num_tasks, factory(), method)
        for _ in range(3):  # trace and compile
            model.train_on_batch(*data)
        entries.append((label, model, data, []))
        if method == "loop" and " " not in label and label in hand_written:
            loop = HandWritten(build(num_tasks, "equal"), factory)
            for _ in range(3):
                loop.train_on_batch(*data)
            entries.append((f"{label} hand-written", loop, data, []))
    for _ in range(rounds):
        for label, model, data, times in entries:
            times += time_steps(model, data, steps, CLOCKS[clock])
    # The median single step: a slow spell on a shared machine spoils a few steps of every strategy, not a mean.
    medians = {label: statistics.median(times) for label, _, _, times in entries}
    return medians


def floor(label: str, num_tasks: int) -> float:
    """The FLOP floor of a strategy's step in equal-weighting steps (see the module docstring)."""
    name = label.split(" ")[0]
    factory = STRATEGIES.get(name)
    gradient = isinstance(factory, type) and issubclass(factory, GradientWeighting)
    return (1 + 2 * num_tasks) / 3 if gradient and "rep-grad" not in label else 1.0


def first_step_seconds(num_tasks: int, metrics: bool) -> float:
    """Build + compile + the first `train_on_batch` (tracing included) of a stacked-heads model with binary tasks."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, 128)).astype("float32")
    y = {
        f"assay_{i}": np.where(rng.uniform(size=(BATCH, 1)) < 0.9, -1, rng.integers(0, 2, (BATCH, 1))).astype("float32")
        for i in range(num_tasks)
    }
    start = time.perf_counter()
    tasks = [kmtl.Task(f"assay_{i}", "binary", metrics=None if metrics else []) for i in range(num_tasks)]
    inputs = keras.Input((128,), name="fingerprint")
    h = keras.layers.Dense(256, activation="relu")(inputs)
    h = keras.layers.Dense(256, activation="relu")(h)
    model = kmtl.builders.stacked_heads_model(inputs, h, tasks)
    model.compile(optimizer="adam")
    model.train_on_batch(x, y)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--only", nargs="*", default=None, help="strategy names to time (equal always is)")
    parser.add_argument("--rep-grad-at", type=int, nargs="*", default=[4], help="T values with rep-grad variants")
    parser.add_argument("--jacobian-for", nargs="*", default=["mgda", "pcgrad"], help="strategies timed with jacobian")
    parser.add_argument(
        "--first-step-tasks", type=int, default=128, help="T of the time-to-first-step model (0: not timed)"
    )
    parser.add_argument(
        "--hand-written", nargs="*", default=["pcgrad", "mgda", "cagrad", "graddrop"],
        help="gradient-level strategies also timed as a hand-written per-task loop",
    )
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="wall time or process CPU time")
    parser.add_argument(
        "--quick", action="store_true", help="T = 2, 4; 8 rounds of 1 step; no rep-grad or jacobian variants"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.rounds, args.steps, args.rep_grad_at, args.jacobian_for = [2, 4], 8, 1, [], []
    first_step_seconds(2, False)  # warm-up: TensorFlow's first graph and Keras's first model
    hand_written = [name for name in args.hand_written if not args.only or name in args.only]
    results = {}
    for num_tasks in args.tasks:
        print(f"T = {num_tasks} ...", flush=True)
        results[num_tasks] = run(
            num_tasks, args.rounds, args.steps, args.only, args.rep_grad_at, args.jacobian_for, hand_written, args.clock
        )
    labels = []
    for per_t in results.values():
        labels += [label for label in per_t if label not in labels and not label.endswith(" hand-written")]
    header = "| strategy | " + " | ".join(f"T={t}: ms, x equal, x floor, x hand-written" for t in args.tasks) + " |"
    print(f"\nStep time ({args.clock} clock, median of interleaved rounds), its ratio to equal weighting's, to the "
          "FLOP floor and to a hand-written per-task loop of the same method (`HandWritten`)\n")
    print(header)
    print("|" + "---|" * (len(args.tasks) + 1))
    for label in labels:
        cells = []
        for t in args.tasks:
            if label not in results[t]:
                cells.append("-")
                continue
            ratio = results[t][label] / results[t]["equal"]
            cell = f"{results[t][label] * 1e3:.1f}, {ratio:.2f}x, {ratio / floor(label, t):.2f}x"
            loop = results[t].get(f"{label} hand-written")
            cells.append(cell + (f", {results[t][label] / loop:.2f}x" if loop else ""))
        print(f"| {label} | " + " | ".join(cells) + " |")
    if args.first_step_tasks <= 0:
        return
    print(f"\nTime to first step (build + compile + trace + step), T = {args.first_step_tasks} stacked heads:")
    for metrics in ([False] if args.quick else [False, True]):
        seconds = first_step_seconds(args.first_step_tasks, metrics)
        print(f"  {'default metrics' if metrics else 'no metrics'}: {seconds:.1f} s")


if __name__ == "__main__":
    main()
