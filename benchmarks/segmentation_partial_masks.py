"""Closing-note experiment of issue 13: with a fraction of masks kept, does learning both tasks help each?

Trains the segmentation-classification recipe's U-Net on the synthetic lesions as a joint model (mask + class), a
segmentation-only and a classification-only model, each with and without the auxiliary reconstruction decoder,
all with the same data, epochs and settings, over several seeds; prints test Dice (mean per-image Dice of the
thresholded mask) and AUROC as mean ± standard deviation, and writes the PNG grid of the first joint run.

Run: python benchmarks/segmentation_partial_masks.py [--mask-fraction 0.1] [--seeds 3] [--epochs 6]
     [--num-train 600] [--image-size 32] [--widths 8,16,32] [--plots DIR]
"""

from __future__ import annotations

import argparse

import keras
import numpy as np

import kmtl
from kmtl.recipes import segmentation_classification as sc

SETUPS = {
    "joint": ["lesion", "malignant"],
    "segmentation only": ["lesion"],
    "classification only": ["malignant"],
}


def run(names, reconstruction, seed, args):
    keras.utils.set_random_seed(seed)
    tasks = names + (["reconstruction"] if reconstruction else [])
    data = sc.load_data(num_train=args.num_train, num_val=100, num_test=args.num_test, image_size=args.image_size,
                        batch_size=32, seed=seed, mask_fraction=args.mask_fraction, reconstruction=reconstruction,
                        tasks=tasks)
    model = sc.compile_model(sc.build_model(widths=args.widths, dropout=0.1, **data.model_settings), "equal", 2e-3)
    model.fit(data.train, epochs=args.epochs, verbose=0, shuffle=False)
    report = kmtl.evaluate(model, data.test)
    scores = {}
    if "lesion" in names:
        scores["dice"] = report["lesion"]["dice"]
    if "malignant" in names:
        scores["auroc"] = report["malignant"]["auroc"]
    return model, data, scores


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mask-fraction", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--num-train", type=int, default=600)
    parser.add_argument("--num-test", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--widths", default="8,16,32")
    parser.add_argument("--plots", default=None, help="folder for the PNG grid of the first joint run")
    args = parser.parse_args(argv)
    args.widths = tuple(int(w) for w in args.widths.split(","))
    print(f"mask_fraction={args.mask_fraction}, {args.num_train} training images {args.image_size}x{args.image_size}, "
          f"widths {args.widths}, {args.epochs} epochs, seeds 0..{args.seeds - 1}")
    print(f"{'setup':42s} {'Dice':>16s} {'AUROC':>16s}")
    for reconstruction in (False, True):
        for setup, names in SETUPS.items():
            results = []
            for seed in range(args.seeds):
                model, data, scores = run(names, reconstruction, seed, args)
                results.append(scores)
                if args.plots and setup == "joint" and seed == 0 and not reconstruction:
                    print("  grid:", sc.save_plots(model, data.test, args.plots))
            cells = []
            for metric in ("dice", "auroc"):
                values = [r[metric] for r in results if metric in r]
                cells.append(f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "-")
            label = setup + (" + reconstruction" if reconstruction else "")
            print(f"{label:42s} {cells[0]:>16s} {cells[1]:>16s}", flush=True)


if __name__ == "__main__":
    main()
