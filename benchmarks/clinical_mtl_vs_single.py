"""Multitask against single-task: the clinical recipe's channel-wise LSTM on each task alone and on all together.

For each data source (kmtl's synthetic ICU stays, and the embedded PBC follow-ups `pbcseq`), one channel-wise LSTM
is trained on all of the source's tasks at once (the recipe's default weighting and read-out), and the same
architecture is trained once per task on that task alone. Every model gets the same budget: the same
training split, batch size, number of epochs (so the same number of steps), learning rate and seed. Each model is
scored on the test split at its last epoch (no early stopping, no tuning) with the recipe's `benchmark_metrics`:
AUROC / AUPRC for binary tasks, linear kappa for length of stay and stage, macro AUROC for phenotypes, mean
absolute deviation for regression. Splits keep each patient in one part.

Usage:
    python benchmarks/clinical_mtl_vs_single.py [--sources synthetic pbcseq] [--num-stays N] [--epochs E]
        [--batch-size B] [--seed S] [--units U] [--stay-readout last|last_and_mean|last_mean_and_inputs]
"""

from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
from kmtl.recipes import clinical_timeseries as ct  # noqa: E402
from kmtl.recipes.clinical_timeseries._models import STAY_READOUTS  # noqa: E402

# Metrics shown per task, higher is better unless listed in LOWER_IS_BETTER.
SHOWN = ("auroc", "auprc", "kappa", "auroc_macro", "mad")
LOWER_IS_BETTER = {"mad"}


def train_and_score(source, tasks, args):
    """Trains one channel-wise model on `tasks` (names; None: all) and returns its test metrics and seconds."""
    keras.utils.set_random_seed(args.seed)
    splits = ct.load_data(source, batch_size=args.batch_size, seed=args.seed, num_stays=args.num_stays,
                          max_steps=args.max_steps, tasks=tasks)
    model = ct.build_model("channelwise", channel_units=args.channel_units, shared_units=args.units,
                           dropout=args.dropout, stay_readout=args.stay_readout, **splits.model_settings)
    ct.compile_model(model, learning_rate=args.learning_rate)
    start = time.perf_counter()
    model.fit(splits.train, epochs=args.epochs, verbose=0, shuffle=False)
    seconds = time.perf_counter() - start
    return ct.benchmark_metrics(model, splits.test), seconds


def compare(source, args) -> list:
    """Rows `(task, metric, multitask, single, n)` for one source."""
    names = [t.name for t in ct.make_tasks(source)]
    together, seconds = train_and_score(source, None, args)
    print(f"  {source}: multitask model trained in {seconds:.0f} s", flush=True)
    rows = []
    for name in names:
        alone, seconds = train_and_score(source, [name], args)
        print(f"  {source}: single-task {name} trained in {seconds:.0f} s", flush=True)
        for metric in SHOWN:
            if metric in together[name]:
                rows.append((name, metric, together[name][metric], alone[name][metric], together[name]["n"]))
    return rows


def table(results: dict) -> str:
    lines = [f"{'source':10s} {'task':16s} {'metric':12s} {'multitask':>9s} {'single':>9s} {'better':>9s} {'n':>6s}"]
    lines.append("-" * len(lines[0]))
    for source, rows in results.items():
        for task, metric, multi, single, n in rows:
            if math.isnan(multi) or math.isnan(single):  # undefined on this test split
                better = "-"
            elif round(multi, 3) == round(single, 3):
                better = "tie"
            elif metric in LOWER_IS_BETTER:
                better = "multitask" if multi < single else "single"
            else:
                better = "multitask" if multi > single else "single"
            lines.append(f"{source:10s} {task:16s} {metric:12s} {multi:9.3f} {single:9.3f} {better:>9s} {n:6d}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", nargs="+", default=["synthetic", "pbcseq"])
    parser.add_argument("--num-stays", type=int, default=400, help="synthetic stays (default: 400)")
    parser.add_argument("--max-steps", type=int, default=None, help="cut episodes to this many steps")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--channel-units", type=int, default=4)
    parser.add_argument("--units", type=int, default=32, help="units of the shared LSTM")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stay-readout", default=ct.DEFAULTS["stay_readout"], choices=STAY_READOUTS,
                        help="how whole-stay tasks read the sequence (default: the recipe's)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = {source: compare(source, args) for source in args.sources}
    print()
    print(table(results))
    print(f"\nepochs={args.epochs}, batch size={args.batch_size}, synthetic stays={args.num_stays}, "
          f"seed={args.seed}; total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
