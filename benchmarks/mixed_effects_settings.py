"""The settings behind the mixed-effects recipe's defaults (docs/mixed_effects.md).

The recipe's aim is the maximum-likelihood fit of a linear mixed model, so a setting is judged by how close the
trained model's estimates come to statsmodels' `MixedLM(reml=False)` on the same training rows (the largest
deviation over the fixed intercept and slope, in their standard errors' units, and over the three sds, relative),
and by the validation day's RMSE. Each configuration is trained with the recipe's other defaults and seed 0.

Usage:
    python benchmarks/mixed_effects_settings.py --source sleepstudy --out /tmp/me.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

# label -> settings overrides; the first is the recipe's defaults.
CONFIGS = {
    "defaults (uncertainty, lr 0.05, prior sd 0.5, 10 x 100 steps)": {},
    "lr 0.02": {"learning_rate": 0.02},
    "lr 0.1": {"learning_rate": 0.1},
    "prior sd 1.0": {"prior_stddev": 1.0},
    "prior sd 0.2": {"prior_stddev": 0.2},
    "5 x 100 steps": {"epochs": 5},
    "equal weighting": {"weighting": "equal"},
    "point posterior": {"posterior": "point"},
}
SDS = ("sd_intercept", "sd_slope", "residual_sd")


def run(label, overrides, source, seed):
    import keras

    from kmtl.recipes import mixed_effects as me
    from kmtl.recipes.mixed_effects._data import features

    settings = me.RECIPE.settings(source=source, **overrides)
    data = me.RECIPE.load(settings, seed=seed, tasks=["reaction"])
    keras.utils.set_random_seed(seed)
    model = me.RECIPE.compile(me.RECIPE.build(settings, data), settings)
    start = time.process_time()
    model.fit(data.train, epochs=settings["epochs"], verbose=0, shuffle=False)
    cpu = time.process_time() - start
    train, val, _ = data.parts
    ours, ml = me.estimates(model).values, me.fit_mixedlm(train).values
    predicted = np.asarray(model.predict(features(val), verbose=0)["reaction"], "float64").reshape(-1)
    return {"label": label, "source": source, "seed": seed, "cpu_s": cpu, "ours": ours, "ml": ml,
            "val_rmse": float(np.sqrt(np.mean((predicted - val.reaction) ** 2)))}


def table(records):
    lines = ["| setting | intercept (ms) | slope (ms/day) | sd intercepts | sd slopes | residual sd | "
             "largest sd deviation | validation RMSE (ms) |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    ml = records[0]["ml"]
    lines.append(f"| MixedLM ML | {ml['intercept']:.2f} | {ml['slope']:.2f} | {ml['sd_intercept']:.2f} | "
                 f"{ml['sd_slope']:.2f} | {ml['residual_sd']:.2f} | 0 | |")
    for r in records:
        o = r["ours"]
        deviation = max(abs(o[k] / r["ml"][k] - 1) for k in SDS) if np.isfinite(o["residual_sd"]) else float("nan")
        lines.append(f"| {r['label']} | {o['intercept']:.2f} | {o['slope']:.2f} | {o['sd_intercept']:.2f} | "
                     f"{o['sd_slope']:.2f} | {o['residual_sd']:.2f} | {deviation:.1%} | {r['val_rmse']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="sleepstudy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="JSON lines, appended; the table is drawn from this run's")
    args = parser.parse_args(argv)
    records = []
    for label, overrides in CONFIGS.items():
        records.append(run(label, overrides, args.source, args.seed))
        with open(args.out, "a") as f:
            f.write(json.dumps(records[-1]) + "\n")
        print(label, {k: round(v, 2) for k, v in records[-1]["ours"].items()}, round(records[-1]["val_rmse"], 2),
              flush=True)
    print(table(records))


if __name__ == "__main__":
    main()
