"""A folder of images with masks and a labels CSV: `images/x.png`, `masks/x.png`, `labels.csv`.

Layout:

    root/
      images/a.png, images/b.jpg, ...     any PNG/JPEG/BMP/GIF TensorFlow decodes
      masks/a.png, ...                    a PNG per annotated image, same file stem; pixel values are class ids
                                          (0/1 for binary masks), `ignore_value` (255) marks unlabelled pixels
      labels.csv                          a header `image,<task>,...` and one row per image: the image's file
                                          name, then one integer class per task (an empty cell: missing)

An image without a mask file has a missing mask (every pixel `MISSING`); it still carries its class labels.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from kmtl.data.images.masks import MISSING

__all__ = ["load_image_folder"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def load_image_folder(
    path: str | Path,
    image_size: int | None = None,
    channels: int = 1,
    labels_file: str = "labels.csv",
    ignore_value: int = 255,
) -> tuple[np.ndarray, dict]:
    """Reads a folder of images, masks and class labels (see the module docstring for the layout).

    Args:
        path: str or path. The folder.
        image_size: int or None. Resize images (bilinear) and masks (nearest) to `image_size` squared; None keeps
            the files' size, which must then be the same for all.
        channels: int. 1 (grey) or 3 (RGB).
        labels_file: str. The CSV's file name inside the folder.
        ignore_value: int. Mask pixel value that marks an unlabelled pixel.

    Returns:
        `(images, labels)`: float32 `(n, size, size, channels)` in [0, 1], in the CSV's row order; `{"mask": int32
        (n, size, size) class ids or MISSING, <task>: int32 (n,) per CSV column, MISSING where empty}`.

    Raises:
        FileNotFoundError: for a missing folder, CSV or image file.
        ValueError: naming the file, row and column of a bad entry.
    """
    import tensorflow as tf

    root = Path(path)
    csv_path = root / labels_file
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"No labels file {csv_path}. Expected a folder with images/, masks/ and {labels_file}. Received: path={str(path)!r}"
        )
    if channels not in (1, 3):
        raise ValueError(f"Invalid value for `channels`. Expected 1 or 3. Received: channels={channels!r}")
    with open(csv_path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or not rows[0] or rows[0][0] != "image" or len(rows) < 2:
        raise ValueError(
            f"{csv_path}: expected a header `image,<task>,...` and at least one row. Received header: {rows[:1]}"
        )
    tasks = rows[0][1:]
    images, masks, labels = [], [], {task: [] for task in tasks}
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(rows[0]):
            raise ValueError(f"{csv_path}, line {number}: expected {len(rows[0])} cells. Received: {row}")
        name = row[0]
        image_path = root / "images" / name
        if not image_path.is_file():
            raise FileNotFoundError(f"{csv_path}, line {number}: no image file {image_path}. Received: image={name!r}")
        image = tf.io.decode_image(image_path.read_bytes(), channels=channels, expand_animations=False)
        size = (image_size, image_size) if image_size else tuple(image.shape[:2])
        if image_size:
            image = tf.image.resize(tf.cast(image, "float32"), size)
        images.append(np.asarray(image, "float32") / 255.0)
        mask_path = root / "masks" / (Path(name).stem + ".png")
        if mask_path.is_file():
            mask = tf.io.decode_png(mask_path.read_bytes(), channels=1)
            if image_size:
                mask = tf.image.resize(mask, size, method="nearest")
            mask = np.asarray(mask, "int32")[..., 0]
            masks.append(np.where(mask == ignore_value, MISSING, mask))
        else:
            masks.append(np.full(size, MISSING, "int32"))
        for task, cell in zip(tasks, row[1:]):
            try:
                labels[task].append(int(cell) if cell.strip() else MISSING)
            except ValueError:
                raise ValueError(
                    f"{csv_path}, line {number}, column {task!r}: expected an integer class or an empty cell. "
                    f"Received: {cell!r}"
                ) from None
    shapes = {m.shape for m in masks} | {i.shape[:2] for i in images}
    if len(shapes) != 1:
        raise ValueError(
            f"{root}: images and masks have different sizes {sorted(shapes)}; pass `image_size` to resize them."
        )
    out = {"mask": np.stack(masks).astype("int32")}
    out.update({task: np.asarray(values, "int32") for task, values in labels.items()})
    return np.stack(images), out
