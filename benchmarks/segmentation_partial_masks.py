"""Closing-note experiment of issue 13: with a fraction of masks kept, does learning both tasks help each?

Trains the segmentation-classification recipe's U-Net on the synthetic lesions as a joint model (mask + class), a
segmentation-only and a classification-only model, each with and without the auxiliary reconstruction decoder,
all with the same data, epochs and settings (the recipe's defaults unless given), over several seeds; prints test
Dice (mean per-image Dice of the thresholded mask) and AUROC as mean ± standard deviation with the per-seed values,
and writes the PNG grid of the first joint run. For scale it also prints what needs no training: the trivial
predictors (all-background mask: Dice 0; the class prior: AUROC 0.5) and the image itself thresholded at the
brightness that gives the best Dice on the training images that kept their mask.

Run: python benchmarks/segmentation_partial_masks.py [--mask-fraction 0.1] [--seeds 3] [--epochs 10]
     [--num-train 1200] [--image-size 64] [--widths 16,32,64] [--weighting equal] [--setups joint,...]
     [--no-reconstruction] [--split test|val] [--plots DIR]
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np

import kmtl
from kmtl.data.images import MISSING, generate_lesions
from kmtl.recipes import segmentation_classification as sc

SETUPS = {
    "joint": ["lesion", "malignant"],
    "segmentation only": ["lesion"],
    "classification only": ["malignant"],
}


def run(names, reconstruction, seed, args):
    keras.utils.set_random_seed(seed)
    tasks = names + (["reconstruction"] if reconstruction else [])
    data = sc.load_data(num_train=args.num_train, num_val=args.num_val, num_test=args.num_test,
                        image_size=args.image_size, batch_size=args.batch_size, seed=seed,
                        mask_fraction=args.mask_fraction, reconstruction=reconstruction, tasks=tasks)
    model = sc.build_model(widths=args.widths, dropout=sc.DEFAULTS["dropout"], **data.model_settings)
    model = sc.compile_model(model, args.weighting, args.learning_rate)
    model.fit(data.train, epochs=args.epochs, verbose=0, shuffle=False)
    report = kmtl.evaluate(model, data.val if args.split == "val" else data.test)
    scores = {}
    if "lesion" in names:
        scores["dice"] = report["lesion"]["dice"]
    if "malignant" in names:
        scores["auroc"] = report["malignant"]["auroc"]
    return model, data, scores


def per_image_dice(predicted, masks):
    """Mean over images of `2 |P and M| / (|P| + |M|)` (1 for an image where both are empty)."""
    overlap = (predicted & (masks == 1)).sum(axis=(1, 2))
    total = predicted.sum(axis=(1, 2)) + (masks == 1).sum(axis=(1, 2))
    return float(np.mean(np.where(total > 0, 2 * overlap / np.maximum(total, 1), 1.0)))


def threshold_baseline(seed, args):
    """Dice on the scored images of the brightness threshold best on the training images that kept their mask."""
    x, labels = generate_lesions(args.num_train, args.image_size, seed=seed, mask_fraction=args.mask_fraction)
    kept = ~(labels["lesion"] == MISSING).all(axis=(1, 2))
    thresholds = np.linspace(0.3, 0.9, 61)
    best = max(thresholds, key=lambda t: per_image_dice(x[kept, ..., 0] > t, labels["lesion"][kept]))
    # load_data's seeds: validation seed + 1000, test seed + 2000.
    size, offset = (args.num_val, 1000) if args.split == "val" else (args.num_test, 2000)
    scored_x, scored_labels = generate_lesions(size, args.image_size, seed=seed + offset)
    return per_image_dice(scored_x[..., 0] > best, scored_labels["lesion"]), float(best)


def main(argv=None):
    defaults = sc.DEFAULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mask-fraction", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=defaults["epochs"])
    parser.add_argument("--num-train", type=int, default=defaults["num_train"])
    parser.add_argument("--num-val", type=int, default=defaults["num_val"])
    parser.add_argument("--num-test", type=int, default=defaults["num_test"])
    parser.add_argument("--split", choices=["test", "val"], default="test",
                        help="where to score (val: for choosing settings, e.g. the weighting)")
    parser.add_argument("--image-size", type=int, default=defaults["image_size"])
    parser.add_argument("--batch-size", type=int, default=defaults["batch_size"])
    parser.add_argument("--learning-rate", type=float, default=defaults["learning_rate"])
    parser.add_argument("--widths", default=",".join(str(w) for w in defaults["widths"]))
    parser.add_argument("--weighting", default=defaults["weighting"])
    parser.add_argument("--setups", default=",".join(SETUPS), help=f"comma-separated among {list(SETUPS)}")
    parser.add_argument("--no-reconstruction", action="store_true", help="skip the runs with reconstruction")
    parser.add_argument("--plots", default=None, help="folder for the PNG grid of the first joint run")
    args = parser.parse_args(argv)
    args.widths = tuple(int(w) for w in args.widths.split(","))
    setups = args.setups.split(",")
    unknown = [s for s in setups if s not in SETUPS]
    if unknown:
        parser.error(f"--setups: unknown {unknown}; expected names among {list(SETUPS)}")
    print(f"mask_fraction={args.mask_fraction}, {args.num_train} training images {args.image_size}x{args.image_size} "
          f"({round(args.mask_fraction * args.num_train)} with a mask), {args.num_test} test images, widths "
          f"{args.widths}, {args.epochs} epochs, batch {args.batch_size}, Adam {args.learning_rate}, "
          f"{args.weighting} weighting, seeds 0..{args.seeds - 1}, scored on {args.split}")
    baselines = [threshold_baseline(seed, args) for seed in range(args.seeds)]
    dices = [d for d, _ in baselines]
    print(f"no training: all-background mask Dice 0, class prior AUROC 0.5; brightness threshold (chosen on the "
          f"kept training masks: {', '.join(f'{t:.2f}' for _, t in baselines)}) Dice "
          f"{np.mean(dices):.3f} ± {np.std(dices):.3f}")
    print(f"{'setup':38s} {'Dice':>14s} {'AUROC':>14s}   per seed (Dice / AUROC), seconds")
    for reconstruction in (False, True) if not args.no_reconstruction else (False,):
        for setup in setups:
            results, seconds = [], []
            for seed in range(args.seeds):
                start = time.perf_counter()
                model, data, scores = run(SETUPS[setup], reconstruction, seed, args)
                seconds.append(time.perf_counter() - start)
                results.append(scores)
                if args.plots and setup == "joint" and seed == 0 and not reconstruction:
                    print("  grid:", sc.save_plots(model, data.test, args.plots), flush=True)
            cells = []
            for metric in ("dice", "auroc"):
                values = [r[metric] for r in results if metric in r]
                cells.append(f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "-")
            seeds = "; ".join(" / ".join(f"{r[m]:.3f}" if m in r else "-" for m in ("dice", "auroc")) for r in results)
            label = setup + (" + reconstruction" if reconstruction else "")
            print(f"{label:38s} {cells[0]:>14s} {cells[1]:>14s}   {seeds}; {np.mean(seconds):.0f} s/run", flush=True)


if __name__ == "__main__":
    main()
