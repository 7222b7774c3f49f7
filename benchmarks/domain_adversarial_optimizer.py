"""Adam against Ganin & Lempitsky's SGD (momentum 0.9, annealed rate) for the domain-adversarial recipe.

For each data set, seed and optimizer, the recipe's model is trained with and without the adversary (`train_both`:
same data, order and initialisation) and scored on the test split (`scores`: target and source accuracy, the domain
head's accuracy and a fresh logistic-regression domain probe on the frozen features). These are the numbers in
docs/domain_adversarial.md.

Usage:
    python benchmarks/domain_adversarial_optimizer.py --data moons --seeds 0 1 2 --out /tmp/da.jsonl
    python benchmarks/domain_adversarial_optimizer.py --data fashion-noise --seeds 0 1 2 --out /tmp/da.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

# data label -> settings overrides
DATA = {
    "moons": {},
    "fashion-noise": {"source": "fashion-mnist", "shift": "noise", "num_train": 5000, "num_test": 2000, "epochs": 10},
}
# optimizer label -> settings overrides
OPTIMIZERS = {
    "adam 1e-3": {"optimizer": "adam", "learning_rate": 1e-3},
    "sgd 0.01 annealed": {"optimizer": "sgd", "learning_rate": 0.01},
    "sgd 0.1 annealed": {"optimizer": "sgd", "learning_rate": 0.1},
}


def run(data_label, optimizer_label, seed):
    from kmtl.recipes import domain_adversarial as da

    settings = da.RECIPE.settings(**DATA[data_label], **OPTIMIZERS[optimizer_label])
    start = time.process_time()
    models, data = da.train_both(settings, seed)
    cpu = time.process_time() - start
    test = data.parts[2]
    main = data.tasks[0].name
    return [{"data": data_label, "optimizer": optimizer_label, "seed": seed, "variant": label, "cpu_s": cpu,
             **da.scores(model, test, main, seed)} for label, model in models.items()]


def table(records):
    lines = ["| data | optimizer | variant | target acc | source acc | domain head acc | domain probe acc |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    groups = {}
    for r in records:
        groups.setdefault((r["data"], r["optimizer"], r["variant"].split(" (")[0]), []).append(r)
    for (data, optimizer, variant), rs in groups.items():
        cells = []
        for key in ("target", "source", "domain_head", "probe"):
            values = [r[key] for r in rs]
            cells.append(f"{np.mean(values):.3f} ({', '.join(f'{v:.3f}' for v in values)})")
        lines.append(f"| {data} | {optimizer} | {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=list(DATA), default="moons")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--optimizers", nargs="+", choices=list(OPTIMIZERS), default=list(OPTIMIZERS)[:2])
    parser.add_argument("--out", required=True, help="JSON lines, appended; the table is drawn from all of them")
    args = parser.parse_args(argv)
    for seed in args.seeds:
        for optimizer in args.optimizers:
            records = run(args.data, optimizer, seed)
            with open(args.out, "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in records)
            for r in records:
                print(seed, optimizer, r["variant"], {k: round(r[k], 3) for k in ("target", "source", "domain_head",
                                                                                 "probe")}, flush=True)
    with open(args.out) as f:
        print(table([r for r in map(json.loads, f) if r["data"] == args.data]))


if __name__ == "__main__":
    main()
