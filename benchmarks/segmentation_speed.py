"""Training speed of the segmentation-classification recipe's model against the same U-Net in plain Keras.

Both models have the same layers (kmtl.builders.unet's layout, built once by kmtl and once with plain
keras.layers), the same optimiser, losses (Dice + cross-entropy for the mask, binary cross-entropy for the class)
and metrics (Dice, IoU for the mask; accuracy, AUC for the class). The kmtl model is a `MultiTaskModel` trained on
labels where 75% of the masks are missing (its masking at work); the plain model gets every mask (plain Keras
cannot skip missing ones), so the difference is kmtl's masking and per-task bookkeeping, including what kmtl's
`fit` adds (per-batch label checks in the input pipeline, the NaN guard). Both train through `fit` with the same
`jit_compile` (checked). Rounds alternate A B B A; each round is one `fit` of `--epochs-per-round` epochs (so
per-`fit` costs count as they would in a short training run), after a warm-up `fit`. Reported: training images per
second from the median round's wall time, and from its process CPU time (user + system of all threads), which
a busy shared machine disturbs less.

Run: python benchmarks/segmentation_speed.py [--images 512] [--batch-size 32] [--image-size 64] [--rounds 4]
     [--epochs-per-round 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from kmtl.data.images import generate_lesions
from kmtl.metrics import DiceScore
from kmtl.recipes import segmentation_classification as sc


def plain_unet(image_size: int, widths) -> keras.Model:
    """The recipe's default U-Net (same layers, same order) as a plain Keras Functional model."""
    image = keras.Input((image_size, image_size, 1), name="image")

    def block(x, width, prefix):
        for part in ("a", "b"):
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{prefix}_conv_{part}")(x)
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"{prefix}_bn_{part}")(x)  # kmtl's default
            x = keras.layers.Activation("relu", name=f"{prefix}_relu_{part}")(x)
        return x

    x, skips = image, []
    for level, width in enumerate(widths):
        if level:
            x = keras.layers.MaxPooling2D(2)(x)
        x = block(x, width, f"encoder_{level}")
        skips.append(x)
    bottleneck = x
    for level in range(len(widths) - 2, -1, -1):
        x = keras.layers.Conv2DTranspose(widths[level], 2, strides=2)(x)
        x = keras.layers.Concatenate()([x, skips[level]])
        x = block(x, widths[level], f"decoder_{level}")
    lesion = keras.layers.Conv2D(1, 1, activation="sigmoid", name="lesion")(x)
    pooled = keras.layers.Dropout(0.1)(keras.layers.GlobalAveragePooling2D()(bottleneck))
    hidden = keras.layers.Dense(32, activation="relu")(pooled)
    hidden = keras.layers.Dropout(0.1)(hidden)
    malignant = keras.layers.Dense(1, activation="sigmoid", name="malignant")(hidden)
    return keras.Model({"image": image}, {"lesion": lesion, "malignant": malignant})


def dice_crossentropy(y_true, y_pred):
    """Keras's Dice per image plus the mean pixel cross-entropy: the plain counterpart of kmtl's DiceCrossEntropy."""
    rows = keras.ops.shape(y_pred)[0]
    y_pred = keras.ops.reshape(y_pred, (rows, -1, 1))  # Keras may have squeezed the channel axis
    y_true = keras.ops.cast(keras.ops.reshape(y_true, (rows, -1, 1)), y_pred.dtype)
    dice = keras.losses.dice(y_true, y_pred, axis=(1, 2))
    crossentropy = keras.ops.mean(keras.losses.binary_crossentropy(y_true, y_pred), axis=1)
    return dice + crossentropy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--epochs-per-round", type=int, default=2)
    args = parser.parse_args(argv)
    widths = sc.DEFAULTS["widths"]
    x, labels = generate_lesions(args.images, args.image_size, seed=0)
    partial = dict(labels, lesion=generate_lesions(args.images, args.image_size, seed=0, mask_fraction=0.25)[1]["lesion"])

    def dataset(y):
        ds = tf.data.Dataset.from_tensor_slices(({"image": x}, y)).batch(args.batch_size)
        return ds.cache().prefetch(tf.data.AUTOTUNE)  # fully read each epoch

    keras.utils.set_random_seed(0)
    # Equal weighting (not the recipe's default, uncertainty): the same total loss as the plain model's sum.
    kmtl_model = sc.compile_model(sc.build_model(image_size=args.image_size, widths=widths), "equal", 2e-3)
    plain = plain_unet(args.image_size, widths)
    plain.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss={"lesion": dice_crossentropy, "malignant": "binary_crossentropy"},
        metrics={"lesion": [DiceScore(name="dice"), keras.metrics.BinaryIoU(target_class_ids=[1], name="iou")],
                 "malignant": ["accuracy", keras.metrics.AUC(name="auc")]},
    )
    assert kmtl_model.count_params() == plain.count_params(), (kmtl_model.count_params(), plain.count_params())
    runs = {"kmtl": (kmtl_model, dataset(partial)), "plain keras": (plain, dataset(labels))}
    for model, data in runs.values():
        model.fit(data, epochs=1, verbose=0, shuffle=False)  # warm-up: tracing and compilation
    assert kmtl_model.jit_compile == plain.jit_compile, (kmtl_model.jit_compile, plain.jit_compile)
    names = [sorted(m.name for m in model.metrics if m.name.endswith(("dice", "iou", "accuracy", "auc")))
             for model in (kmtl_model, plain)]
    assert names[0] == ["lesion_dice", "lesion_iou", "malignant_accuracy", "malignant_auc"], names
    walls, cpus = {name: [] for name in runs}, {name: [] for name in runs}
    order = ["kmtl", "plain keras", "plain keras", "kmtl"] * ((args.rounds + 1) // 2)
    for name in order[: 2 * args.rounds]:
        model, data = runs[name]
        start, cpu = time.perf_counter(), time.process_time()
        model.fit(data, epochs=args.epochs_per_round, verbose=0, shuffle=False)
        walls[name].append(time.perf_counter() - start)
        cpus[name].append(time.process_time() - cpu)
    images = args.images * args.epochs_per_round
    print(f"{args.images} images {args.image_size}x{args.image_size}, batch {args.batch_size}, widths {widths}, "
          f"jit_compile={plain.jit_compile}, {args.rounds} rounds each (ABBA) of {args.epochs_per_round} epochs, "
          "median round")
    for name in runs:
        print(f"  {name:12s} {images / statistics.median(walls[name]):8.1f} images/s (wall), "
              f"{images / statistics.median(cpus[name]):8.1f} images per CPU-second   rounds: "
              + ", ".join(f"{w:.2f}s/{c:.2f}s cpu" for w, c in zip(walls[name], cpus[name])))
    for what, times in (("wall", walls), ("CPU", cpus)):
        ratio = statistics.median(times["kmtl"]) / statistics.median(times["plain keras"])
        print(f"  kmtl overhead ({what}): {100 * (ratio - 1):+.1f}% (kmtl/plain time ratio {ratio:.3f}; target <= +5%)")


if __name__ == "__main__":
    main()
