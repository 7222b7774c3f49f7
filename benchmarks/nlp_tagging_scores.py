"""The nlp-tagging recipe's test scores on the real corpora, over seeds: the numbers in docs/nlp_tagging.md.

Parts (each run appends one JSON line to `--out`):
- `turkish`: the Turkish treebanks' test split; `hierarchy`, `flat` and one model per task (`single:<task>`), all
  with the same settings and epochs (softmax heads); seeds vary the models, the split is fixed.
- `hironsan`: the Japanese corpus' test split; NER (CRF) with POS below it (`hierarchy`) and NER alone (`single:ner`).
- `baseline`: the sklearn-crfsuite baseline on both corpora (deterministic L-BFGS: one run).
Training speed: real (unpadded) training tokens per second of wall time over the epochs after the first (the first
includes tracing), per run.

Usage:
    python benchmarks/nlp_tagging_scores.py turkish --seeds 0 1 2 --epochs 3 --out /tmp/nlp_turkish.jsonl
    python benchmarks/nlp_tagging_scores.py summary /tmp/nlp_*.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

SOURCES = {"turkish": ("turkish-treebank", False), "hironsan": ("hironsan", True)}


class EpochTimes:
    def __init__(self):
        import keras

        class Stamp(keras.callbacks.Callback):
            def on_epoch_begin(inner, epoch, logs=None):
                inner.start = time.perf_counter()

            def on_epoch_end(inner, epoch, logs=None):
                self.times.append(time.perf_counter() - inner.start)

        self.times = []
        self.callback = Stamp()


def train_tokens(dataset) -> int:
    return int(sum(int(np.sum(inputs["tokens"].numpy() != b"")) for inputs, _ in dataset))


def run_model(source, crf, config, seed, args):
    import keras

    from kmtl.recipes import nlp_tagging as nt

    keras.utils.set_random_seed(seed)
    names = None if config in ("hierarchy", "flat") else [config.split(":", 1)[1]]
    layout = "flat" if config == "flat" else "hierarchy"
    data = nt.load_data(batch_size=args.batch_size, seed=seed, tasks=names, source=source, crf=crf)
    model = nt.build_model(layout, embedding_dim=args.embedding_dim, units=args.units,
                           label_embedding_dim=args.label_embedding_dim, dropout=0.2, **data.model_settings)
    nt.compile_model(model, learning_rate=args.learning_rate)
    stamps = EpochTimes()
    model.fit(data.train, validation_data=data.val, epochs=args.epochs, verbose=0, callbacks=[stamps.callback])
    tokens = train_tokens(data.train)
    timed = stamps.times[1:] or stamps.times
    scores = nt.tagging_scores(model, data.test, span_tasks=nt._data.span_tasks(source))
    return {"scores": scores, "tokens_per_second": tokens * len(timed) / sum(timed), "epoch_seconds": stamps.times}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["turkish", "hironsan", "baseline", "summary"])
    parser.add_argument("files", nargs="*", help="summary: the JSON-lines files")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--embedding-dim", type=int, default=32)
    parser.add_argument("--label-embedding-dim", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--out", default="/tmp/nlp_tagging_scores.jsonl")
    args = parser.parse_args(argv)
    if args.part == "summary":
        print(summary([json.loads(line) for f in args.files for line in open(f) if line.strip()]))
        return 0
    settings = {k: getattr(args, k) for k in ("epochs", "units", "embedding_dim", "label_embedding_dim",
                                               "batch_size", "learning_rate")}
    if args.part == "baseline":
        from kmtl.recipes import nlp_tagging as nt

        for part, (source, _) in SOURCES.items():
            start = time.perf_counter()
            scores = nt.baseline_scores(source)
            _write(args.out, {"part": part, "config": "crfsuite", "seed": 0, "scores": scores,
                              "seconds": time.perf_counter() - start})
        return 0
    source, crf = SOURCES[args.part]
    if args.part == "turkish":
        configs = ["hierarchy", "flat", "single:upos", "single:xpos", "single:case", "single:deprel"]
    else:
        configs = ["hierarchy", "single:ner"]
    for seed in args.seeds:  # seeds outermost: every configuration's first seed finishes first
        for config in configs:
            start = time.perf_counter()
            result = run_model(source, crf, config, seed, args)
            _write(args.out, {"part": args.part, "config": config, "seed": seed, "settings": settings,
                              "seconds": time.perf_counter() - start, **result})
    return 0


def _write(path, record):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record), flush=True)


def summary(records) -> str:
    """Markdown tables: per part, task x configuration, mean ± std over seeds (n seeds in brackets)."""
    lines = []
    # One table per corpus and training budget; the (untimed, deterministic) baseline joins each of its corpus.
    groups = sorted({(r["part"], r["settings"]["epochs"]) for r in records if "settings" in r})
    for part, epochs in groups:
        rows = [r for r in records if r["part"] == part and r.get("settings", {"epochs": epochs})["epochs"] == epochs]
        configs = list(dict.fromkeys(r["config"] for r in rows))
        # One model per task: its column gathers the single models.
        columns = list(dict.fromkeys("one model per task" if c.startswith("single:") else c for c in configs))
        tasks = list(dict.fromkeys(t for r in rows for t in r["scores"]))
        lines += [f"\n### {part}, {epochs} epochs", "", "| task | metric | " + " | ".join(columns) + " |",
                  "| --- | --- |" + " --- |" * len(columns)]
        for task in tasks:
            metrics = ["token_accuracy"] + (["span_f1"] if any("span_f1" in r["scores"].get(task, {}) for r in rows)
                                            else [])
            for metric in metrics:
                cells = []
                for column in columns:
                    values = [r["scores"][task][metric] for r in rows if task in r["scores"]
                              and (r["config"] == column or (column == "one model per task"
                                                             and r["config"] == f"single:{task}"))]
                    cells.append(_cell(values))
                lines.append(f"| {task} | {metric} | " + " | ".join(cells) + " |")
        speeds = {}
        for r in rows:
            if "tokens_per_second" in r:
                speeds.setdefault(r["config"], []).append(r["tokens_per_second"])
        if speeds:
            lines += ["", "| model | training tokens/s | fastest seed |", "| --- | --- | --- |"]
            lines += [f"| {c} | {_cell(v, '.0f')} | {max(v):.0f} |" for c, v in speeds.items()]
    return "\n".join(lines)


def _cell(values, fmt=".4f") -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:{fmt}} (n=1)"
    return f"{np.mean(values):{fmt}} ± {np.std(values, ddof=1):{fmt}} (n={len(values)})"


if __name__ == "__main__":
    sys.exit(main())
