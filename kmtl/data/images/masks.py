"""What every image source shares: the missing-mask marker and how masks are dropped for partial supervision."""

from __future__ import annotations

import numpy as np

__all__ = ["MISSING", "drop_masks"]

# Marks an unlabelled pixel, or (every pixel of) an image whose mask is missing; the default `Task.missing`.
MISSING = -1


def drop_masks(masks: np.ndarray, mask_fraction: float, seed: int = 0) -> np.ndarray:
    """Keeps the masks of `round(mask_fraction * n)` images (chosen by `seed`) and marks the others all `MISSING`.

    Args:
        masks: int array `(n, height, width)`.
        mask_fraction: float in [0, 1].
        seed: int.

    Returns:
        A copy of `masks` with the dropped images set to `MISSING`.

    Example:

    >>> dropped = drop_masks(np.zeros((4, 2, 2), "int32"), 0.25)
    >>> int((dropped == MISSING).all(axis=(1, 2)).sum())
    3
    """
    if isinstance(mask_fraction, bool) or not isinstance(mask_fraction, (int, float)) or not 0 <= mask_fraction <= 1:
        raise ValueError(
            f"Invalid value for `mask_fraction`. Expected a number in [0, 1]. Received: mask_fraction={mask_fraction!r}"
        )
    masks = np.array(masks, copy=True)
    keep = int(round(mask_fraction * len(masks)))
    dropped = np.random.default_rng([seed, 7]).permutation(len(masks))[keep:]
    masks[dropped] = MISSING
    return masks
