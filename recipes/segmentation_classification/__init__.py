"""Segmentation + classification from one encoder, with partial mask supervision.

A U-Net learns a lesion's mask (per pixel) and its class (per image) together: the segmentation decoder reads the
encoder through skip connections, the classifier reads the pooled bottleneck, and both train the encoder. Masks are
expensive, so most images in practice only have a class label: `mask_fraction` keeps the masks of that fraction of
the training images and marks the others missing. An image without a mask adds nothing to the segmentation loss
and metrics but still trains the classifier (and, through it, the shared encoder). With `reconstruction=True` a
second decoder, without skip connections, reconstructs the input from the bottleneck as an auxiliary task (trained,
never exported).

Sources: embedded synthetic lesions (default; the outline's irregularity, which the exact mask shows, and weakly the
inside's grain decide benign vs malignant, the classes overlapping), `folder:PATH` (images/, masks/, labels.csv) and
`fashion-mnist` (Debian's `dataset-fashion-mnist`; 10 categories, 4 coarse groups and a derived thresholded mask).
The export has `serving_default` (image in; mask and class probabilities out) and `serving_bytes` (encoded PNG/JPEG
in). See docs/segmentation_classification.md.

Example:

>>> from kmtl.recipes import segmentation_classification as sc
>>> data = sc.load_data(num_train=8, num_val=4, num_test=4, image_size=16, batch_size=4)
>>> model = sc.build_model(widths=(4, 8), **data.model_settings)
>>> sorted(model.output)
['lesion', 'malignant']

Reference:
    Le, Tran, Chung et al. (2019). Multitask classification and segmentation for cancer diagnosis in mammography.
    MIDL. Amyar, Modzelewski, Li & Ruan (2020). Multi-task deep learning based CT imaging analysis for COVID-19
    pneumonia: classification and segmentation. Computers in Biology and Medicine 126.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import keras

import kmtl
from kmtl.recipe import Recipe
from kmtl.recipes.segmentation_classification._data import (
    INPUT_NAME,
    RECONSTRUCTION,
    load_data,
    make_tasks,
    reconstruction_task,
)
from kmtl.recipes.segmentation_classification._plots import save_prediction_grid

NAME = "segmentation-classification"
DESCRIPTION = "U-Net with a classifier on its bottleneck: lesion masks (partly annotated) and lesion class."

DEFAULTS = {
    "epochs": 10,
    "batch_size": 32,
    "weighting": "uncertainty",  # best of an equal-budget search, docs/segmentation_classification.md
    "learning_rate": 2e-3,
    "source": "synthetic",
    "num_train": 1200,
    "num_val": 200,
    "num_test": 400,
    "image_size": 64,
    "mask_fraction": 0.25,
    "reconstruction": False,
    "widths": (16, 32, 64),
    "dropout": 0.1,
}
QUICK = {"epochs": 1, "num_train": 32, "num_val": 16, "num_test": 16, "image_size": 16, "widths": (4, 8)}
SEARCH_SPACE = {
    "widths": [(16, 32, 64), (16, 32, 64, 128), (8, 16, 32)],
    "dropout": {"min": 0.0, "max": 0.3, "step": 0.1, "default": 0.1},
    "learning_rate": {"min": 5e-4, "max": 5e-3, "sampling": "log", "default": 2e-3},
    "weighting": ["equal", "uncertainty"],
}

TASKS = make_tasks()


def build_model(
    image_size: int = 64,
    channels: int = 1,
    widths: Sequence[int] = (16, 32, 64),
    dropout: float = 0.1,
    reconstruction: bool = False,
    tasks: Sequence[kmtl.Task] | None = None,
) -> kmtl.MultiTaskModel:
    """Builds the U-Net (uncompiled): per-pixel tasks on the decoder, class tasks on the pooled bottleneck.

    Args:
        image_size: int. Height and width of the square input, divisible by `2 ** (len(widths) - 1)`.
        channels: int. Image channels (1 grey, 3 RGB).
        widths: sequence of int. Filters per encoder level; the last is the bottleneck (see `kmtl.builders.unet`).
        dropout: float. Dropout on the pooled bottleneck and in the class heads.
        reconstruction: bool. With the default tasks, add the auxiliary `reconstruction` task.
        tasks: the tasks (default: `make_tasks(reconstruction)`). Per-pixel regression tasks (reconstruction) get
            their own decoder without skip connections.

    Returns:
        `kmtl.MultiTaskModel` with input `"image"`.
    """
    tasks = list(tasks) if tasks is not None else make_tasks(reconstruction)
    image = keras.Input((image_size, image_size, channels), name=INPUT_NAME)
    autoencoders = [t.name for t in tasks if t.per_pixel and t.kind == "regression"]
    heads = {t.name: (32,) for t in tasks if not t.per_pixel}
    return kmtl.builders.unet({INPUT_NAME: image}, tasks, widths=widths, head_units=heads, dropout=dropout,
                              autoencoder_tasks=autoencoders, name="segmentation_classification")


def compile_model(model: kmtl.MultiTaskModel, weighting="uncertainty", learning_rate: float = 2e-3):
    """Compiles with Adam and the given weighting (default: the recipe's, uncertainty); returns the model."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), weighting=weighting)
    return model


def save_plots(model, dataset, directory: str | Path, num_images: int = 8) -> Path:
    """Writes `<directory>/predictions.png`: inputs, true and predicted masks, class probabilities."""
    return save_prediction_grid(model, dataset, Path(directory) / "predictions.png", num_images)


RECIPE = Recipe(
    name=NAME,
    description=DESCRIPTION,
    tasks=TASKS,
    build_model=build_model,
    compile_model=compile_model,
    load_data=load_data,
    defaults=DEFAULTS,
    quick=QUICK,
    data_settings=("num_train", "num_val", "num_test", "image_size", "source", "mask_fraction", "reconstruction"),
    model_settings=("image_size", "widths", "dropout"),
    derived_settings=("tasks", "image_size", "channels"),
    search_space=SEARCH_SPACE,
    sources="synthetic (default), folder:PATH, fashion-mnist",
    plots=save_plots,
)

__all__ = [
    "DEFAULTS",
    "RECIPE",
    "RECONSTRUCTION",
    "build_model",
    "compile_model",
    "load_data",
    "make_tasks",
    "reconstruction_task",
    "save_plots",
]
