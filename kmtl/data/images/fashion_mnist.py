"""Fashion-MNIST from Debian's `dataset-fashion-mnist` package: clothing images, two class labels and a mask.

The package installs the four gzip idx files of Zalando's Fashion-MNIST in `/usr/share/datasets/fashion-mnist/`
(`apt-get install dataset-fashion-mnist`). Besides the 10-class `category`, each image gets a coarse `group` (top,
bottom or dress, footwear, bag) as a second task, and a `mask` that is **derived**, not annotated: the pixels whose
intensity exceeds `mask_threshold` (the garment against the black background).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from kmtl.data.images.masks import drop_masks

__all__ = ["FASHION_CATEGORIES", "FASHION_GROUPS", "FASHION_MNIST_DIR", "load_fashion_mnist", "read_idx"]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
APT_PACKAGE = "dataset-fashion-mnist"
FASHION_CATEGORIES = ["t_shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                      "ankle_boot"]
FASHION_GROUPS = ["top", "bottom_or_dress", "footwear", "bag"]
# The coarse group of each category.
CATEGORY_GROUP = np.array([0, 1, 0, 1, 0, 2, 0, 2, 3, 2], "int32")
_FILES = {"train": "train", "test": "t10k"}


def read_idx(path: str | Path) -> np.ndarray:
    """Reads a (gzipped) idx file, the MNIST format: a magic number with the dtype and rank, the sizes, the data."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an idx file of unsigned bytes. Received header bytes {list(data[:4])}")
    rank = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    values = np.frombuffer(data, np.uint8, offset=4 + 4 * rank)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {values.size} values.")
    return values.reshape(shape)


def load_fashion_mnist(
    split: str = "train",
    image_size: int = 32,
    limit: int | None = None,
    mask_threshold: float = 0.1,
    mask_fraction: float = 1.0,
    seed: int = 0,
    path: str | Path = FASHION_MNIST_DIR,
) -> tuple[np.ndarray, dict]:
    """Loads a Fashion-MNIST split with `category`, `group` and a derived foreground `mask`.

    Args:
        split: `"train"` (60,000 images) or `"test"` (10,000).
        image_size: int >= 28. The 28x28 images are padded with background to this size (32 suits a U-Net of
            depth up to 5).
        limit: int or None. Keep the first `limit` images.
        mask_threshold: float. A pixel belongs to the mask when its intensity (in [0, 1]) exceeds this.
        mask_fraction: float in [0, 1]. Fraction of images that keep their mask (see `drop_masks`).
        seed: int. Which images keep their mask.
        path: folder of the idx files.

    Returns:
        `(images, labels)`: float32 `(n, size, size, 1)` in [0, 1]; `{"mask": int32 (n, size, size) 0/1 or -1,
        "category": int32 (n,), "group": int32 (n,)}`.

    Raises:
        FileNotFoundError: when the files are absent, naming the apt package that installs them.
    """
    if split not in _FILES:
        raise ValueError(f"Invalid value for `split`. Expected 'train' or 'test'. Received: split={split!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 28:
        raise ValueError(f"Invalid value for `image_size`. Expected an int >= 28. Received: image_size={image_size!r}")
    folder = Path(path)
    prefix = _FILES[split]
    images_file = folder / f"{prefix}-images-idx3-ubyte.gz"
    labels_file = folder / f"{prefix}-labels-idx1-ubyte.gz"
    if not images_file.is_file() or not labels_file.is_file():
        raise FileNotFoundError(
            f"Fashion-MNIST not found: no {images_file.name} in {folder}; install it with "
            f"`apt-get install {APT_PACKAGE}` (Debian/Ubuntu) or pass the folder of the idx files as `path`."
        )
    images = read_idx(images_file)[:limit]
    category = read_idx(labels_file)[:limit].astype("int32")
    before = (image_size - 28) // 2
    after = image_size - 28 - before
    images = np.pad(images, ((0, 0), (before, after), (before, after))).astype("float32") / 255.0
    mask = (images > mask_threshold).astype("int32")
    labels = {
        "mask": drop_masks(mask, mask_fraction, seed),
        "category": category,
        "group": CATEGORY_GROUP[category],
    }
    return images[..., None], labels
