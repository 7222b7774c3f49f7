"""The recipe's data: one output format, `({"image": x}, {task: labels})`, from three sources."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

import kmtl
from kmtl.data import images as image_data
from kmtl.losses import DiceCrossEntropy
from kmtl.recipe import RecipeData

INPUT_NAME = "image"
RECONSTRUCTION = "reconstruction"


def segmentation_task(name: str, num_classes: int = 2) -> kmtl.Task:
    """A mask task: binary (2 classes) or multiclass, scored by Dice + cross-entropy over labelled pixels."""
    if num_classes <= 2:
        return kmtl.Task(name, "binary", per_pixel=True, loss=DiceCrossEntropy())
    return kmtl.Task(name, "multiclass", num_classes=num_classes, per_pixel=True, loss=DiceCrossEntropy())


def class_task(name: str, num_classes: int, label_names: Sequence[str] | None = None) -> kmtl.Task:
    if num_classes <= 2:
        return kmtl.Task(name, "binary", label_names=label_names)
    return kmtl.Task(name, "multiclass", num_classes=num_classes, label_names=label_names)


def reconstruction_task(channels: int) -> kmtl.Task:
    """Auxiliary: the image itself, predicted by a decoder without skip connections (never exported)."""
    return kmtl.Task(RECONSTRUCTION, "regression", units=channels, per_pixel=True, auxiliary=True, metrics=["mae"],
                     loss="mse", activation="sigmoid")


def make_tasks(reconstruction: bool = False) -> list[kmtl.Task]:
    """The synthetic lesions' tasks: `lesion` (mask), `malignant` (class), and optionally `reconstruction`."""
    tasks = [segmentation_task("lesion"), class_task("malignant", 2, image_data.LESION_CLASSES)]
    return tasks + ([reconstruction_task(1)] if reconstruction else [])


def load_data(
    num_train: int = 1200,
    num_val: int = 200,
    num_test: int = 400,
    image_size: int = 64,
    batch_size: int = 32,
    seed: int = 0,
    source: str = "synthetic",
    mask_fraction: float = 0.25,
    reconstruction: bool = False,
    tasks: Sequence[str] | None = None,
) -> RecipeData:
    """Loads a source as batched datasets of `({"image": x}, {task: labels})`.

    Args:
        num_train, num_val, num_test: int. Split sizes (caps for real data).
        image_size: int. Synthetic and folder images are this size; Fashion-MNIST is padded to 32.
        batch_size: int. Batch size.
        seed: int. Seed of the data, of which training masks are kept and of shuffling.
        source: `"synthetic"` (embedded), `"folder:PATH"` (see `kmtl.data.images.load_image_folder`) or
            `"fashion-mnist"` (Debian's `dataset-fashion-mnist` package).
        mask_fraction: float in [0, 1]. Fraction of training images that keep their mask; validation and test
            masks are all kept, to measure Dice.
        reconstruction: bool. Add the auxiliary `reconstruction` task (its label is the image).
        tasks: names of the tasks to keep (single-task baselines); default all.

    Returns:
        `kmtl.RecipeData` whose `model_settings` hold the tasks, the image size and the channels.
    """
    splits, all_tasks = _load_arrays(source, num_train, num_val, num_test, image_size, seed, mask_fraction)
    channels = int(splits[0][0].shape[-1])
    if reconstruction:
        all_tasks = all_tasks + [reconstruction_task(channels)]
    known = [t.name for t in all_tasks]
    keep = list(tasks) if tasks is not None else known
    if not keep or any(name not in known for name in keep):
        raise ValueError(f"Invalid value for `tasks`. Expected names among {known}. Received: tasks={keep!r}")
    datasets = []
    for i, (x, labels) in enumerate(splits):
        labels = dict(labels)
        if RECONSTRUCTION in keep:
            labels[RECONSTRUCTION] = x
        labels = {name: labels[name] for name in keep}
        ds = tf.data.Dataset.from_tensor_slices(({INPUT_NAME: x}, labels))
        if i == 0:
            ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        datasets.append(ds.batch(batch_size).prefetch(tf.data.AUTOTUNE))
    chosen = [t for t in all_tasks if t.name in keep]
    size = int(splits[0][0].shape[1])
    return RecipeData(*datasets, tasks=chosen, model_settings={"tasks": chosen, "image_size": size,
                                                               "channels": channels})


def _load_arrays(source, num_train, num_val, num_test, image_size, seed, mask_fraction):
    if source == "synthetic":
        sizes, fractions = (num_train, num_val, num_test), (mask_fraction, 1.0, 1.0)
        splits = [image_data.generate_lesions(n, image_size, seed=seed + 1000 * i, mask_fraction=f)
                  for i, (n, f) in enumerate(zip(sizes, fractions))]
        return splits, make_tasks()
    if source == "fashion-mnist":
        train = image_data.load_fashion_mnist("train", limit=num_train + num_val, seed=seed)
        test = image_data.load_fashion_mnist("test", limit=num_test, seed=seed)
        parts = [_take(train, slice(0, num_train)), _take(train, slice(num_train, None)), test]
        parts[0] = (parts[0][0], {**parts[0][1], "mask": image_data.drop_masks(parts[0][1]["mask"], mask_fraction, seed)})
        tasks = [segmentation_task("mask"), class_task("category", 10, image_data.FASHION_CATEGORIES),
                 class_task("group", 4, image_data.FASHION_GROUPS)]
        return parts, tasks
    kind, _, path = source.partition(":")
    if kind == "folder" and path:
        x, labels = image_data.load_image_folder(path, image_size=image_size)
        order = np.random.default_rng(seed).permutation(len(x))
        cut1, cut2 = int(0.8 * len(order)), int(0.9 * len(order))
        parts = [_take((x, labels), p) for p in (order[:cut1][:num_train], order[cut1:cut2][:num_val],
                                                  order[cut2:][:num_test])]
        parts[0] = (parts[0][0], {**parts[0][1], "mask": image_data.drop_masks(parts[0][1]["mask"], mask_fraction, seed)})
        tasks = [segmentation_task("mask", max(2, int(labels["mask"].max()) + 1))]
        tasks += [class_task(name, max(2, int(values.max()) + 1)) for name, values in labels.items() if name != "mask"]
        return parts, tasks
    raise ValueError(
        "Invalid value for `source`. Expected 'synthetic', 'folder:PATH' or 'fashion-mnist'. "
        f"Received: source={source!r}"
    )


def _take(split, index):
    x, labels = split
    return x[index], {name: values[index] for name, values in labels.items()}
