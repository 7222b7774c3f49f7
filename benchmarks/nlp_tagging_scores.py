"""The nlp-tagging recipe's test scores over seeds: the numbers in docs/nlp_tagging.md.

Parts (each run appends one JSON line to `--out`):
- `synthetic`: the embedded grammar's test split (the recipe's default data); `hierarchy`, `flat` and one model per
  task. Run it at the recipe's defaults with `--defaults`.
- `turkish`: the Turkish treebanks' test split; `hierarchy`, `flat` and one model per task (`single:<task>`), all
  with the same settings and epochs; seeds vary the models, the split is fixed.
- `hironsan`: the Japanese corpus' test split; NER (CRF) with POS below it (`hierarchy`) and NER alone (`single:ner`).
- `weighting`: the synthetic data's `hierarchy` under each of `--weightings` (equal budget: same epochs and data).
- `baseline`: the sklearn-crfsuite baseline on every corpus (deterministic L-BFGS: one run).
- `trivial`: the trivial predictor on every corpus: each word's most frequent training tag (unseen words: the most
  frequent tag overall), per task.
Models of the `synthetic` and `weighting` parts have CRFs (`--crf`, on by default there: the span tasks), the
`hironsan` part's NER always; `--crf` puts CRFs on the Turkish tasks (all four: no span tasks), `--char-features`
adds the character CNN. `--configs` picks some of a part's models.
Training speed: real (unpadded) training tokens per second of wall time over the epochs after the first (the first
includes tracing), per run.

Usage:
    python benchmarks/nlp_tagging_scores.py turkish --seeds 0 1 2 --epochs 3 --out /tmp/nlp_turkish.jsonl
    python benchmarks/nlp_tagging_scores.py synthetic --defaults --seeds 0 1 2 --out /tmp/nlp_synthetic.jsonl
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

# Part -> (source, CRF always on).
SOURCES = {"synthetic": ("synthetic", True), "turkish": ("turkish-treebank", False), "hironsan": ("hironsan", True)}
CONFIGS = {
    "synthetic": ["hierarchy", "flat", "single:pos", "single:chunk", "single:ner"],
    "turkish": ["hierarchy", "flat", "single:upos", "single:xpos", "single:case", "single:deprel"],
    "hironsan": ["hierarchy", "single:ner"],
    "weighting": ["hierarchy"],
}


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


def run_model(source, crf, config, seed, args, weighting="equal"):
    import keras

    from kmtl.recipes import nlp_tagging as nt

    keras.utils.set_random_seed(seed)
    names = None if config in ("hierarchy", "flat") else [config.split(":", 1)[1]]
    layout = "flat" if config == "flat" else "hierarchy"
    data = nt.load_data(batch_size=args.batch_size, seed=seed, tasks=names, source=source, crf=crf,
                        num_sentences=args.num_sentences)
    model = nt.build_model(layout, embedding_dim=args.embedding_dim, units=args.units,
                           label_embedding_dim=args.label_embedding_dim, dropout=args.dropout,
                           char_features=args.char_features, **data.model_settings)
    nt.compile_model(model, weighting=weighting, learning_rate=args.learning_rate)
    stamps = EpochTimes()
    model.fit(data.train, validation_data=data.val, epochs=args.epochs, verbose=0, callbacks=[stamps.callback])
    tokens = train_tokens(data.train)
    timed = stamps.times[1:] or stamps.times
    scores = nt.tagging_scores(model, data.test, span_tasks=nt._data.span_tasks(source))
    return {"scores": scores, "tokens_per_second": tokens * len(timed) / sum(timed), "epoch_seconds": stamps.times}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["synthetic", "turkish", "hironsan", "weighting", "baseline", "trivial",
                                         "summary"])
    parser.add_argument("files", nargs="*", help="summary: the JSON-lines files")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--embedding-dim", type=int, default=32)
    parser.add_argument("--label-embedding-dim", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--num-sentences", type=int, default=600, help="synthetic sentences")
    parser.add_argument("--defaults", action="store_true",
                        help="the recipe's default model sizes and epochs (its DEFAULTS) instead of the flags'")
    parser.add_argument("--crf", action="store_true", help="CRFs on the Turkish tasks too")
    parser.add_argument("--char-features", action="store_true", help="the character CNN beside the word embeddings")
    parser.add_argument("--configs", nargs="+", help="some of the part's models (default: all)")
    parser.add_argument("--weightings", nargs="+", default=["equal", "uncertainty", "pcgrad", "cagrad"])
    parser.add_argument("--out", default="/tmp/nlp_tagging_scores.jsonl")
    args = parser.parse_args(argv)
    if args.part == "summary":
        print(summary([json.loads(line) for f in args.files for line in open(f) if line.strip()]))
        return 0
    if args.defaults:
        from kmtl.recipes import nlp_tagging as nt

        for name in ("epochs", "units", "embedding_dim", "label_embedding_dim", "batch_size", "learning_rate",
                     "dropout", "num_sentences"):
            setattr(args, name, nt.DEFAULTS[name])
    settings = {k: getattr(args, k) for k in ("epochs", "units", "embedding_dim", "label_embedding_dim",
                                               "batch_size", "learning_rate", "dropout", "char_features")}
    if args.part in ("baseline", "trivial"):
        from kmtl.recipes import nlp_tagging as nt

        for part, (source, _) in SOURCES.items():
            start = time.perf_counter()
            if args.part == "baseline":
                scores = nt.baseline_scores(source, num_sentences=args.num_sentences)
            else:
                scores = trivial_scores(source, args.num_sentences)
            _write(args.out, {"part": part, "config": "crfsuite" if args.part == "baseline" else "trivial",
                              "seed": 0, "scores": scores, "seconds": time.perf_counter() - start})
        return 0
    source, crf = SOURCES["synthetic" if args.part == "weighting" else args.part]
    crf = crf or args.crf
    settings["crf"] = crf
    configs = args.configs or CONFIGS[args.part]
    weightings = args.weightings if args.part == "weighting" else ["equal"]
    for seed in args.seeds:  # seeds outermost: every configuration's first seed finishes first
        for config in configs:
            for weighting in weightings:
                start = time.perf_counter()
                result = run_model(source, crf, config, seed, args, weighting)
                label = config + ("+chars" if args.char_features else "") + \
                    (f"/{weighting}" if args.part == "weighting" else "")
                _write(args.out, {"part": args.part, "config": label, "seed": seed, "settings": settings,
                                  "seconds": time.perf_counter() - start, **result})
    return 0


def trivial_scores(source: str, num_sentences: int = 600) -> dict:
    """The trivial predictor's test scores: per task, each word's most frequent training tag (ties: the tag first
    in sorted order); words unseen in training get the most frequent training tag."""
    from collections import Counter

    from kmtl.recipes import nlp_tagging as nt

    train, _, test = nt._data.test_sentences(source, 0, num_sentences)
    gold, predicted = {}, {}
    for task, *_ in nt._data.spec_of(source):
        per_word, overall = {}, Counter()
        for sentence in train:
            for word, tag in zip(sentence["tokens"], sentence.get(task) or ()):
                if tag is not None:
                    per_word.setdefault(word, Counter())[tag] += 1
                    overall[tag] += 1
        top = lambda counts: min(counts, key=lambda tag: (-counts[tag], tag))  # noqa: E731
        fallback = top(overall)
        guess = {word: top(counts) for word, counts in per_word.items()}
        evaluated = [s for s in test if s.get(task) and None not in s[task]]
        gold[task] = [list(s[task]) for s in evaluated]
        predicted[task] = [[guess.get(word, fallback) for word in s["tokens"]] for s in evaluated]
    return nt._metrics.tag_scores(gold, predicted, nt._data.span_tasks(source))


def _write(path, record):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record), flush=True)


def summary(records) -> str:
    """Markdown tables: per part, task x configuration, mean ± std over seeds (n seeds in brackets)."""
    lines = []
    # One table per part and training budget (epochs, BiLSTM units, CRF); the (untimed, deterministic) baseline and
    # trivial predictor join each table of their corpus.
    corpus = lambda part: "synthetic" if part == "weighting" else part  # noqa: E731
    budget = lambda r: (r["part"], r["settings"]["epochs"], r["settings"]["units"],  # noqa: E731
                        r["settings"].get("crf", SOURCES[corpus(r["part"])][1]))
    groups = list(dict.fromkeys(budget(r) for r in records if "settings" in r))
    for part, epochs, units, crf in groups:
        rows = [r for r in records if ("settings" not in r and r["part"] == corpus(part))
                or ("settings" in r and budget(r) == (part, epochs, units, crf))]
        if part == "weighting":  # equal weighting: the synthetic part's hierarchy at the same budget
            rows += [{**r, "config": f"{r['config']}/equal"} for r in records if "settings" in r
                     and r["config"] == "hierarchy" and budget(r) == ("synthetic", epochs, units, crf)]
        rows.sort(key=lambda r: r["config"] not in ("trivial", "crfsuite"))
        configs = list(dict.fromkeys(r["config"] for r in rows))
        # One model per task: its column gathers the single models.
        columns = list(dict.fromkeys(_column(c)[0] for c in configs))
        tasks = list(dict.fromkeys(t for r in rows for t in r["scores"]))
        lines += [f"\n### {part}, {epochs} epochs, {units} units, {'CRF' if crf else 'softmax'}", "",
                  "| task | metric | " + " | ".join(columns) + " |", "| --- | --- |" + " --- |" * len(columns)]
        for task in tasks:
            metrics = ["token_accuracy"] + (["span_f1"] if any("span_f1" in r["scores"].get(task, {}) for r in rows)
                                            else [])
            for metric in metrics:
                cells = []
                for column in columns:
                    values = [r["scores"][task][metric] for r in rows if task in r["scores"]
                              and _column(r["config"])[0] == column and _column(r["config"])[1] in (None, task)]
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


def _column(config: str) -> tuple[str, str | None]:
    """A configuration's table column and, for one model per task (`single:<task>[+chars][/weighting]`), its task."""
    if not config.startswith("single:"):
        return config, None
    rest = config[len("single:"):]
    cut = min([i for i in (rest.find("+"), rest.find("/")) if i >= 0], default=len(rest))
    return "one model per task" + rest[cut:], rest[:cut]


def _cell(values, fmt=".4f") -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:{fmt}} (n=1)"
    return f"{np.mean(values):{fmt}} ± {np.std(values, ddof=1):{fmt}} (n={len(values)})"


if __name__ == "__main__":
    sys.exit(main())
