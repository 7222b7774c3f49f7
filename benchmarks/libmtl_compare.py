"""Step time of kmtl beside LibMTL (PyTorch) on the same model, side by side in one run.

The model of issue 16 on both sides: input 256, shared MLP 512-512-512 (ReLU), per task a head 128 (ReLU) -> 1, MSE
per task, batch 256, Adam(1e-4), one fixed batch. Timed per T (default 2, 4, 8): equal weighting, PCGrad and MGDA
(no gradient normalisation on either side), and the representation-gradient variants where a library has them
(LibMTL: MGDA only; its PCGrad refuses `rep_grad`). kmtl steps with `train_on_batch` (`jit_compile` on by default;
tasks without metrics, its per-task loss and weight trackers kept); LibMTL steps as its `Trainer.train` loop does
(forward, a tensor of task losses, `zero_grad`, the weighting's `backward`, `optimizer.step`), without its
`_PerformanceMeter`.

Each side runs in its own worker process, started with that side's interpreter, so torch never enters kmtl's
environment. Both workers get the same thread count (`--threads`: TensorFlow's intra- and inter-op pools,
`torch.set_num_threads` / `set_num_interop_threads`, and OMP/MKL variables). Rounds interleave the sides and the
variants (which side goes first alternates), each round timing `--steps` single steps of every entry; the figure is
the median single step, by the process's CPU clock (`--clock cpu`, default: steadier on a shared machine; it also
counts any thread that spins while waiting) or wall time. Ratios are kmtl / LibMTL: below 1, kmtl is faster.
The workers run with `OMP_WAIT_POLICY=PASSIVE` unless it is set: torch's OpenMP threads otherwise spin between
operations, which on a loaded machine multiplied its CPU time per step several-fold (a 2-thread matmul loop: 34 ms
spinning, 6.6 ms passive, 4.8 ms on one thread); TensorFlow's thread pool showed no such cost.

The LibMTL side needs a separate virtual environment (torch is no kmtl dependency):

    python -m venv /tmp/libmtl
    /tmp/libmtl/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu   # or PyPI's torch wheel
    /tmp/libmtl/bin/pip install numpy scipy && /tmp/libmtl/bin/pip install --no-deps LibMTL

LibMTL 1.1.5 pins old torch and torchvision versions (hence `--no-deps`); the only torchvision import it makes is
`torchvision.models.utils.load_state_dict_from_url`, for pretrained ResNets, which newer torchvision lacks. When it
does not import, the worker stands in `torch.hub.load_state_dict_from_url` for it (nothing is downloaded).

    python benchmarks/libmtl_compare.py --torch-python /tmp/libmtl/bin/python
    python benchmarks/libmtl_compare.py --torch-python /tmp/libmtl/bin/python --tasks 4 --rounds 3 --jit off
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

INPUT_DIM = 256
TRUNK = (512, 512, 512)
HEAD = 128
BATCH = 256
LEARNING_RATE = 1e-4
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
# (label, kmtl weighting, LibMTL weighting class, rep_grad); a None side has no such variant.
VARIANTS = (
    ("equal", "equal", "EW", False),
    ("pcgrad", "pcgrad", "PCGrad", False),
    ("mgda", "mgda", "MGDA", False),
    ("rep_grad pcgrad", "pcgrad", None, True),
    ("rep_grad mgda", "mgda", "MGDA", True),
)


def fixed_batch(num_tasks: int):
    """The same numpy batch on both sides: inputs (BATCH, INPUT_DIM) and one (BATCH, 1) target per task."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, INPUT_DIM)).astype("float32")
    return x, {f"t{i}": rng.normal(size=(BATCH, 1)).astype("float32") for i in range(num_tasks)}


# === kmtl worker ===


class KmtlSide:
    def __init__(self, threads: int, jit: bool):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        self.tf, self.jit = tf, jit

    def build(self, num_tasks: int, variant):
        import keras

        import kmtl

        _, weighting, _, rep_grad = variant
        keras.utils.set_random_seed(0)
        tasks = [kmtl.Task(f"t{i}", "regression", metrics=[]) for i in range(num_tasks)]
        x = keras.Input((INPUT_DIM,), name="x")
        h = x
        for i, units in enumerate(TRUNK):
            h = keras.layers.Dense(units, activation="relu", name=f"shared{i}")(h)
        model = kmtl.builders.hard_sharing(x, h, tasks, head_units=(HEAD,))
        strategy = kmtl.weighting.get(weighting)
        if rep_grad:
            strategy = type(strategy)(rep_grad=True)
        model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), weighting=strategy, jit_compile=self.jit)
        x, y = fixed_batch(num_tasks)
        data = (self.tf.constant(x), {k: self.tf.constant(v) for k, v in y.items()})
        return lambda: model.train_on_batch(*data)


# === LibMTL worker ===


class LibmtlSide:
    def __init__(self, threads: int, jit: bool):
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)
        self.torch = torch
        try:
            import torchvision.models.utils  # noqa: F401
        except ImportError:  # see the module docstring
            import types

            stand_in = types.ModuleType("torchvision.models.utils")
            stand_in.load_state_dict_from_url = torch.hub.load_state_dict_from_url
            for name in ("torchvision", "torchvision.models"):
                sys.modules.setdefault(name, types.ModuleType(name))
            sys.modules["torchvision.models.utils"] = stand_in
        import LibMTL.architecture
        import LibMTL.weighting

        self.architecture, self.weighting = LibMTL.architecture, LibMTL.weighting

    def build(self, num_tasks: int, variant):
        torch = self.torch
        nn = torch.nn
        _, _, weighting, rep_grad = variant
        torch.manual_seed(0)
        names = [f"t{i}" for i in range(num_tasks)]

        class Encoder(nn.Sequential):
            def __init__(self):
                layers, width = [], INPUT_DIM
                for units in TRUNK:
                    layers += [nn.Linear(width, units), nn.ReLU()]
                    width = units
                super().__init__(*layers)

        decoders = nn.ModuleDict(
            {n: nn.Sequential(nn.Linear(TRUNK[-1], HEAD), nn.ReLU(), nn.Linear(HEAD, 1)) for n in names}
        )

        # As `LibMTL.Trainer._prepare_model` builds it: the architecture and the weighting mixed into one module.
        class MTLModel(self.architecture.HPS, getattr(self.weighting, weighting)):
            def __init__(self):
                super().__init__(names, Encoder, decoders, rep_grad, False, torch.device("cpu"))
                self.init_param()

            def zero_grad_share_params(self):
                # LibMTL 1.1.5 was written for torch 1.x, whose `zero_grad` zeroed gradients in place; torch 2
                # sets them to None, which its `_reset_grad` cannot write into.
                self.encoder.zero_grad(set_to_none=False)

        model = MTLModel()
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        x, y = fixed_batch(num_tasks)
        x, y = torch.from_numpy(x), {k: torch.from_numpy(v) for k, v in y.items()}
        kwargs = {"mgda_gn": "none"} if weighting == "MGDA" else {}

        def step():  # as the body of `LibMTL.Trainer.train`'s batch loop
            model.train()
            predictions = model(x)
            losses = torch.zeros(num_tasks)
            for i, name in enumerate(names):
                losses[i] = nn.functional.mse_loss(predictions[name], y[name])
            optimizer.zero_grad(set_to_none=False)  # torch 1.x's behaviour, which LibMTL expects
            model.backward(losses, **kwargs)
            optimizer.step()
            return losses.detach().numpy()

        return step


SIDES = {"kmtl": KmtlSide, "libmtl": LibmtlSide}


def worker(side: str, threads: int, jit: bool, clock: str):
    """Answers the driver's JSON lines on stdin: `build` (T), then `time` (label, steps) -> seconds per step."""
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr  # anything the libraries print stays off the protocol
    runner = SIDES[side](threads, jit)
    steps = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request["cmd"] == "build":
            steps = {}
            for variant in VARIANTS:
                if variant[1 if side == "kmtl" else 2] is None:
                    continue
                steps[variant[0]] = step = runner.build(request["tasks"], variant)
                for _ in range(3):  # trace, compile, warm up
                    step()
            reply = sorted(steps)
        else:
            step, times = steps[request["label"]], []
            for _ in range(request["steps"]):
                start = CLOCKS[clock]()
                step()
                times.append(CLOCKS[clock]() - start)
            reply = times
        protocol.write(json.dumps(reply) + "\n")
        protocol.flush()


class Worker:
    def __init__(self, python: str, side: str, args):
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see the module docstring
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        command = [python, os.path.abspath(__file__), "--worker", side, "--threads", str(args.threads),
                   "--jit", args.jit, "--clock", args.clock]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def ask(self, **request):
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"The worker {self.process.args[:3]} stopped (its error is above).")
        return json.loads(line)

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--torch-python", help="interpreter of the venv with torch and LibMTL (see the docstring)")
    parser.add_argument("--kmtl-python", default=sys.executable, help="interpreter with kmtl (default: this one)")
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="single steps per entry per round")
    parser.add_argument("--threads", type=int, default=2, help="threads of each side")
    parser.add_argument("--jit", choices=("on", "off"), default="on", help="kmtl's jit_compile")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    parser.add_argument("--worker", choices=sorted(SIDES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.threads, args.jit == "on", args.clock)
    if not args.torch_python:
        parser.error("--torch-python is required: the interpreter of a venv with torch and LibMTL (see --help)")
    workers = {"kmtl": Worker(args.kmtl_python, "kmtl", args), "libmtl": Worker(args.torch_python, "libmtl", args)}
    results = {}
    try:
        for num_tasks in args.tasks:
            print(f"T = {num_tasks} ...", flush=True)
            labels = {side: w.ask(cmd="build", tasks=num_tasks) for side, w in workers.items()}
            times = {(side, label): [] for side in workers for label in labels[side]}
            for r in range(args.rounds):
                for label, *_ in VARIANTS:
                    for side in (list(workers) if r % 2 == 0 else list(workers)[::-1]):
                        if label in labels[side]:
                            times[side, label] += workers[side].ask(cmd="time", label=label, steps=args.steps)
            results[num_tasks] = {key: statistics.median(t) * 1e3 for key, t in times.items()}
    finally:
        for w in workers.values():
            w.close()
    print(f"\nms per step ({args.clock} clock, median of {args.rounds} interleaved rounds of {args.steps} steps; "
          f"{args.threads} threads each; kmtl jit_compile {args.jit}): kmtl / LibMTL (ratio)\n")
    print("| variant | " + " | ".join(f"T={t}" for t in args.tasks) + " |")
    print("|" + "---|" * (len(args.tasks) + 1))
    for label, *_ in VARIANTS:
        cells = []
        for t in args.tasks:
            k, lib = results[t].get(("kmtl", label)), results[t].get(("libmtl", label))
            if k is None or lib is None:
                cells.append(f"{k:.1f} / - " if k is not None else "-")
            else:
                cells.append(f"{k:.1f} / {lib:.1f} ({k / lib:.2f}x)")
        print(f"| {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
