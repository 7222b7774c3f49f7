"""The facial-attributes recipe against trivial predictors, and the small search behind its defaults.

Every task is scored beside its trivial predictor, fitted on the training split: the majority class for accuracy
(0.5 for AUC), the training median for an MAE, the mean landmark positions for the normalised mean error (NME,
mean point error over the distance between the eyes). A task's *skill* is the fraction of the trivial predictor's
error the model removes: `(acc - acc_0) / (1 - acc_0)` for accuracy, `1 - mae / mae_0` for an MAE,
`1 - nme / nme_0` for landmarks; 0 is no better than trivial, 1 is perfect. These are the numbers in
docs/facial_attributes.md.

Parts (each run appends one JSON line per model to `--out` and prints a table):
- `score`: trains the recipe's defaults (or with `--set name=value` overrides) and scores the test split, once per
  `--seeds` entry (seed of the data and the weights), then prints each task's mean over the seeds.
- `search`: trains each combination of `--weightings` and `--learning-rates` with the same data, epochs and seed
  (an equal budget; gradient methods cost more time per epoch, and their time is reported) and ranks them by the
  mean skill on the validation split.

Usage:
    python benchmarks/facial_attributes_search.py score --out /tmp/fa.jsonl
    python benchmarks/facial_attributes_search.py score --seeds 0 1 2 --set batch_renorm=False
    python benchmarks/facial_attributes_search.py search --epochs 4 \\
        --weightings equal uncertainty dwa pcgrad imtl_g --learning-rates 1e-3 2e-3 4e-3 --out /tmp/fa.jsonl
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402


def _arrays(dataset):
    """`(images, {task: labels})` of a batched dataset, as numpy arrays."""
    images, labels = [], {}
    for inputs, batch in dataset:
        images.append(inputs["image"].numpy())
        for name, value in batch.items():
            labels.setdefault(name, []).append(value.numpy())
    return np.concatenate(images), {name: np.concatenate(parts) for name, parts in labels.items()}


def _nme(true, pred):
    true, pred = true.reshape(len(true), -1, 2), pred.reshape(len(pred), -1, 2)
    between_eyes = np.linalg.norm(true[:, 0] - true[:, 1], axis=-1)
    return float((np.linalg.norm(true - pred, axis=-1).mean(axis=-1) / between_eyes).mean())


def task_scores(tasks, predictions, labels, train_labels):
    """`{task: {metric: value, "trivial_<metric>": value, "skill": value}}` of predictions on one split."""
    from sklearn.metrics import roc_auc_score

    rows = {}
    for task in tasks:
        y, p, y_train = labels[task.name], predictions[task.name], train_labels[task.name]
        if task.kind in ("binary", "multiclass"):
            majority = np.bincount(y_train.astype(int)).argmax()
            guess = (p[:, 0] > 0.5) if task.kind == "binary" else p.argmax(axis=-1)
            acc, acc_0 = float((guess == y).mean()), float((y == majority).mean())
            rows[task.name] = {"accuracy": acc, "trivial_accuracy": acc_0, "skill": (acc - acc_0) / (1 - acc_0)}
            if task.kind == "binary":
                rows[task.name]["auc"] = float(roc_auc_score(y, p[:, 0]))
        elif task.name == "landmarks":
            error, error_0 = _nme(y, p), _nme(y, np.broadcast_to(y_train.mean(axis=0), y.shape))
            rows[task.name] = {"nme": error, "trivial_nme": error_0, "skill": 1 - error / error_0}
        else:
            error, error_0 = float(np.abs(p - y).mean()), float(np.abs(np.median(y_train) - y).mean())
            rows[task.name] = {"mae": error, "trivial_mae": error_0, "skill": 1 - error / error_0}
    return rows


def train_and_score(settings, seed, split):
    """Trains the recipe with `settings`; returns the scores on `split` ("val" or "test") and timings."""
    import keras

    from kmtl.recipes import facial_attributes as fa

    keras.utils.set_random_seed(seed)
    data = fa.RECIPE.load(settings, seed=seed)
    model = fa.RECIPE.compile(fa.RECIPE.build(settings, data), settings)
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(data.train, epochs=settings["epochs"], verbose=0)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    _, train_labels = _arrays(data.train)
    images, labels = _arrays(data.val if split == "val" else data.test)
    predictions = model.predict({"image": images}, batch_size=256, verbose=0)
    scores = task_scores(data.tasks, predictions, labels, train_labels)
    skill = float(np.mean([row["skill"] for row in scores.values()]))
    return {"split": split, "seed": seed, "skill": skill, "fit_wall_s": wall, "fit_cpu_s": cpu, "tasks": scores}


def _print_tasks(result):
    print(f"\n{'task':12s} {'score':>18s} {'trivial':>9s} {'skill':>6s}")
    for name, row in result["tasks"].items():
        metric = next(k for k in row if k not in ("skill",) and not k.startswith("trivial_"))
        extra = f" (AUC {row['auc']:.3f})" if "auc" in row else ""
        print(f"{name:12s} {metric:>8s} {row[metric]:9.4f} {row['trivial_' + metric]:9.4f} {row['skill']:6.3f}{extra}")
    print(f"mean skill {result['skill']:.3f}; fit {result['fit_wall_s']:.0f} s wall, {result['fit_cpu_s']:.0f} s CPU")


def _parse_overrides(pairs):
    out = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            out[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[name] = value
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("score", "search"))
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0], help="one run per seed (default: 0)")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="recipe setting overrides")
    parser.add_argument("--weightings", nargs="*", default=["equal", "uncertainty", "pcgrad", "imtl_g"])
    parser.add_argument("--learning-rates", nargs="*", type=float, default=None)
    parser.add_argument("--out", default=None, help="a JSON-lines file to append results to")
    args = parser.parse_args(argv)
    from kmtl.recipes import facial_attributes as fa

    base = fa.RECIPE.settings(epochs=args.epochs, **_parse_overrides(args.set))
    if args.part == "score":
        configs, split = [base], "test"
    else:
        rates = args.learning_rates or [base["learning_rate"]]
        configs = [{**base, "weighting": w, "learning_rate": r} for r, w in itertools.product(rates, args.weightings)]
        split = "val"
    results = []
    for settings, seed in itertools.product(configs, args.seeds):
        result = {"part": args.part, "settings": settings, **train_and_score(settings, seed, split)}
        results.append(result)
        print(f"\n{settings['weighting']}, learning rate {settings['learning_rate']:g}, {settings['epochs']} epochs, "
              f"seed {seed}")
        _print_tasks(result)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(result, default=str) + "\n")
    if args.part == "score" and len(args.seeds) > 1:
        print(f"\nmean over seeds {args.seeds}")
        for name in results[0]["tasks"]:
            rows = [r["tasks"][name] for r in results]
            metric = next(k for k in rows[0] if k not in ("skill", "auc") and not k.startswith("trivial_"))
            values = [row[metric] for row in rows]
            print(f"{name:12s} {metric:>8s} {np.mean(values):9.4f} (from {min(values):.4f} to {max(values):.4f})")
    if args.part == "search":
        print(f"\n{'weighting':12s} {'lr':>7s} {'mean skill':>10s} {'fit s':>6s}  per task skill")
        for r in sorted(results, key=lambda r: -r["skill"]):
            per_task = " ".join(f"{row['skill']:.2f}" for row in r["tasks"].values())
            s = r["settings"]
            row = f"{s['weighting']:12s} {s['learning_rate']:7.0e} {r['skill']:10.3f} {r['fit_wall_s']:6.0f}"
            print(f"{row}  {per_task}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
