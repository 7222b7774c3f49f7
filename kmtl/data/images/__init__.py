"""Images with masks and class labels, for segmentation + classification: `(images, {task: labels})`.

Every source returns float32 images `(n, height, width, channels)` in [0, 1] and a dict of labels: masks
`(n, height, width)` of class ids (0/1 for binary masks) with `MISSING` (-1) for unlabelled pixels and for every
pixel of an image without a mask, and image-level classes `(n,)` with `MISSING` where unknown.

- `generate_lesions`: embedded synthetic lesions whose outline irregularity (and, weakly, grain) decides the class
  with overlap, exact masks.
- `load_image_folder`: `images/x.png`, `masks/x.png` and a labels CSV.
- `load_fashion_mnist`: Debian's `dataset-fashion-mnist` package, with a derived (thresholded) foreground mask.
"""

from kmtl.data.images.fashion_mnist import FASHION_CATEGORIES, FASHION_GROUPS, load_fashion_mnist, read_idx
from kmtl.data.images.folder import load_image_folder
from kmtl.data.images.masks import MISSING, drop_masks
from kmtl.data.images.synthetic import LESION_CLASSES, LESION_FACTORS, generate_lesions

__all__ = [
    "FASHION_CATEGORIES",
    "FASHION_GROUPS",
    "LESION_CLASSES",
    "LESION_FACTORS",
    "MISSING",
    "drop_masks",
    "generate_lesions",
    "load_fashion_mnist",
    "load_image_folder",
    "read_idx",
]
