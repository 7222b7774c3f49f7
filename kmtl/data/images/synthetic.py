"""Embedded lesion images: one lesion on a textured background; its outline's irregularity decides its class.

Every image is drawn from a few latent factors (returned with `return_factors=True`):

- `irregularity` in [0, 1], the main cue: how lobulated and spiculated the outline is. Drawn from a normal
  distribution of mean 0.38 (benign) or 0.62 (malignant), standard deviation 0.15, clipped, so the two classes
  overlap: some benign lesions are spikier than some malignant ones. The outline's radius at angle `t` is
  `R (1 + e cos 2(t - a) + irregularity (0.12 lobes(t) + 0.6 spikes(t)))`, lobes a mix of 3 and 5 bumps, spikes
  `k` narrow peaks (`k` from 5 to 9), `R` rescaled so spiky lesions are not larger on average.
- `grain` in [0, 1], a weak second cue: the standard deviation of the noise inside the lesion (0.015 + 0.05
  grain). Normal of mean 0.42 or 0.58, standard deviation 0.25, clipped.
- Nuisance factors, independent of the class: position, size (`R` from 0.12 to 0.22 of the image), elongation
  `e`, rotation, contrast (0.12 to 0.35 above the background), edge blur (0.3 to 1.5% of the image), background
  waves and noise (standard deviation 0.02 to 0.05), and in half of the images a bright vessel-like band that
  crosses the image and may overlap the lesion (not part of the mask).

The mask is exact: the pixels inside the outline. It therefore shows the shape (the irregularity, without the blur,
noise and vessels that hide it in the image) but not the grain. Neither brightness nor size tells the class. The
class is not a deterministic function of what the image shows: a perfect reader of `irregularity` and `grain`
would reach an AUROC of about 0.93, of the mask's shape alone about 0.9 (both measured in
tests/test_data_images.py).
"""

from __future__ import annotations

import numpy as np

from kmtl.data.images.masks import MISSING, drop_masks

__all__ = ["LESION_CLASSES", "LESION_FACTORS", "generate_lesions"]

LESION_CLASSES = ["benign", "malignant"]
# The latent factors `generate_lesions(..., return_factors=True)` returns, one float per image each.
LESION_FACTORS = ["irregularity", "grain", "radius", "contrast", "noise", "vessel"]


def generate_lesions(
    num_images: int,
    image_size: int = 64,
    seed: int = 0,
    mask_fraction: float = 1.0,
    return_factors: bool = False,
):
    """Generates lesion images with exact masks and a benign/malignant label, deterministically from `seed`.

    See the module's docstring for what decides the class and what the mask shows.

    Args:
        num_images: int. Number of images.
        image_size: int >= 16. Height and width.
        seed: int. Same seed, same images.
        mask_fraction: float in [0, 1]. Fraction of the images that keep their mask; the others' masks are all
            `MISSING` (-1), as if never annotated (which images is decided by `seed`).
        return_factors: bool. Also return the latent factors.

    Returns:
        `(images, labels)`: float32 `(n, size, size, 1)` in [0, 1]; `{"lesion": int32 (n, size, size) 0/1 masks
        (-1 where dropped), "malignant": int32 (n,) 0 benign / 1 malignant}`, classes balanced. With
        `return_factors`, `(images, labels, factors)`, `factors` a dict of float32 `(n,)` arrays named in
        `LESION_FACTORS` (`radius`, `contrast` and `noise` as fractions of the image size and of full brightness;
        `vessel` 1.0 where a vessel is drawn).

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
    factors = {name: np.empty(num_images, "float32") for name in LESION_FACTORS}
    for i, malignant in enumerate(classes):
        images[i, ..., 0], masks[i], drawn = _draw(rng, bool(malignant), xx, yy, image_size)
        for name in LESION_FACTORS:
            factors[name][i] = drawn[name]
    labels = {"lesion": drop_masks(masks, mask_fraction, seed), "malignant": classes}
    return (images, labels, factors) if return_factors else (images, labels)


def _draw(rng, malignant: bool, xx, yy, size: int):
    # === Latent factors: the class shifts irregularity and grain; everything else is independent of it ===
    irregularity = float(np.clip(rng.normal(0.65 if malignant else 0.35, 0.15), 0.0, 1.0))
    grain = float(np.clip(rng.normal(0.58 if malignant else 0.42, 0.25), 0.0, 1.0))
    radius = rng.uniform(0.12, 0.22)
    contrast = rng.uniform(0.15, 0.35)
    noise = rng.uniform(0.02, 0.05)
    vessel = rng.random() < 0.5

    # === Background: tissue-like waves and fine noise ===
    image = np.full((size, size), 0.35, "float32")
    for _ in range(4):
        fx, fy = rng.uniform(-3, 3, 2) * 2 * np.pi / size
        image += rng.uniform(0.01, 0.04) * np.sin(fx * xx + fy * yy + rng.uniform(0, 2 * np.pi))
    image += rng.normal(0, noise, (size, size))

    # === Lesion outline, in polar coordinates around a random centre ===
    cx, cy = rng.uniform(0.3, 0.7, 2) * size
    angle = np.arctan2(yy - cy, xx - cx)
    distance = np.hypot(xx - cx, yy - cy)
    turn, lobe_phase, spike_phase = rng.uniform(0, 2 * np.pi, 3)
    spikes = rng.integers(5, 10)
    lobes = 0.6 * np.cos(3 * angle + lobe_phase) + 0.4 * np.cos(5 * angle + 2 * lobe_phase)
    peaks = np.maximum(np.cos(spikes * (angle - spike_phase)), 0.0) ** 8  # mean over angles ~0.137
    scale = radius * size / (1.0 + 0.9 * 0.137 * irregularity)  # spiky lesions are not larger on average
    outline = scale * (1.0 + rng.uniform(0.0, 0.15) * np.cos(2 * (angle - turn))
                       + irregularity * (0.15 * lobes + 0.9 * peaks))
    inside = distance <= outline

    # === Lesion pixels: a blurred edge (the mask stays the exact outline) and a grainy inside ===
    blur = rng.uniform(0.003, 0.012) * size
    edge = np.clip((outline - distance) / (2 * blur) + 0.5, 0.0, 1.0)
    image += edge * (contrast + rng.normal(0, 0.015 + 0.05 * grain, (size, size)))

    # === A vessel-like band across the image, over the lesion or not ===
    if vessel:
        direction = rng.uniform(0, np.pi)
        offset = rng.uniform(-0.35, 0.35) * size
        across = (xx - size / 2) * np.sin(direction) - (yy - size / 2) * np.cos(direction) - offset
        width = rng.uniform(0.015, 0.04) * size
        image += rng.uniform(0.08, 0.2) * np.exp(-0.5 * (across / width) ** 2)

    factors = {"irregularity": irregularity, "grain": grain, "radius": radius, "contrast": contrast,
               "noise": noise, "vessel": float(vessel)}
    return np.clip(image, 0.0, 1.0), inside.astype("int32"), factors


assert MISSING == -1
