"""Embedded lesion images: textured backgrounds with one lesion whose shape and texture decide its class.

A benign lesion is round and smooth (a slightly elliptical disc, even inside); a malignant one is irregular and
spiculated (spikes around a lumpy outline, a grainy inside). Both have the same brightness on average, so the class
is read from shape and texture, not from intensity. Masks are exact: the pixels inside the drawn outline.
"""

from __future__ import annotations

import numpy as np

from kmtl.data.images.masks import MISSING, drop_masks

__all__ = ["LESION_CLASSES", "generate_lesions"]

LESION_CLASSES = ["benign", "malignant"]


def generate_lesions(
    num_images: int,
    image_size: int = 64,
    seed: int = 0,
    mask_fraction: float = 1.0,
) -> tuple[np.ndarray, dict]:
    """Generates lesion images with exact masks and a benign/malignant label, deterministically from `seed`.

    Args:
        num_images: int. Number of images.
        image_size: int >= 16. Height and width.
        seed: int. Same seed, same images.
        mask_fraction: float in [0, 1]. Fraction of the images that keep their mask; the others' masks are all
            `MISSING` (-1), as if never annotated (which images is decided by `seed`).

    Returns:
        `(images, labels)`: float32 `(n, size, size, 1)` in [0, 1]; `{"lesion": int32 (n, size, size) 0/1 masks
        (-1 where dropped), "malignant": int32 (n,) 0 benign / 1 malignant}`, classes balanced.

    Example:

    >>> images, labels = generate_lesions(4, image_size=16, mask_fraction=0.5)
    >>> images.shape, sorted(labels), int((labels["lesion"] == -1).all(axis=(1, 2)).sum())
    ((4, 16, 16, 1), ['lesion', 'malignant'], 2)
    """
    if isinstance(num_images, bool) or not isinstance(num_images, (int, np.integer)) or num_images < 1:
        raise ValueError(f"Invalid value for `num_images`. Expected a positive int. Received: num_images={num_images!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 16:
        raise ValueError(f"Invalid value for `image_size`. Expected an int >= 16. Received: image_size={image_size!r}")
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.arange(num_images) % 2).astype("int32")
    yy, xx = np.mgrid[0:image_size, 0:image_size].astype("float32") + 0.5
    images = np.empty((num_images, image_size, image_size, 1), "float32")
    masks = np.empty((num_images, image_size, image_size), "int32")
    for i, malignant in enumerate(classes):
        images[i, ..., 0], masks[i] = _draw(rng, bool(malignant), xx, yy, image_size)
    return images, {"lesion": drop_masks(masks, mask_fraction, seed), "malignant": classes}


def _draw(rng, malignant: bool, xx, yy, size: int):
    # Background: smooth tissue-like texture (a few low-frequency waves) plus fine noise.
    image = np.full((size, size), 0.35, "float32")
    for _ in range(4):
        fx, fy = rng.uniform(-3, 3, 2) * 2 * np.pi / size
        image += rng.uniform(0.02, 0.05) * np.sin(fx * xx + fy * yy + rng.uniform(0, 2 * np.pi))
    image += rng.normal(0, 0.03, (size, size))
    # Lesion outline in polar coordinates around a random centre.
    cx, cy = rng.uniform(0.35, 0.65, 2) * size
    radius = rng.uniform(0.13, 0.22) * size
    angle = np.arctan2(yy - cy, xx - cx)
    distance = np.hypot(xx - cx, yy - cy)
    phase = rng.uniform(0, 2 * np.pi)
    if malignant:
        spikes = rng.integers(5, 10)
        outline = radius * (0.8 + 0.12 * np.cos(3 * angle + phase) + 0.1 * np.cos(5 * angle + 2 * phase)
                            + rng.uniform(0.2, 0.55) * np.maximum(np.cos(spikes * (angle - phase)), 0.0) ** 6)
        inside = distance <= outline
        texture = rng.normal(0, 0.07, (size, size))  # grainy
    else:
        outline = radius * (1.0 + 0.1 * np.cos(2 * (angle - phase)))
        inside = distance <= outline
        texture = rng.normal(0, 0.03, (size, size))  # smooth
    contrast = rng.uniform(0.25, 0.4)
    # A soft edge one pixel wide, so the boundary is not a hard step (the mask stays the exact outline).
    edge = np.clip(outline - distance + 0.5, 0.0, 1.0)
    image = image + edge * contrast + inside * texture
    return np.clip(image, 0.0, 1.0), inside.astype("int32")


assert MISSING == -1
