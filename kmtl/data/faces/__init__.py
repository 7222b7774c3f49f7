"""Face data: a synthetic generator and loaders for CelebA and UTKFace.

Each yields `({"image": float32 (H, W, 3) in [0, 1]}, {task: label})` with the tasks of
`kmtl.data.FACE_TASK_NAMES`; a label a source lacks is `-1` (binary / class id) or `NaN` (regression).
"""

from kmtl.data.faces.celeba import celeba_dataset, load_celeba
from kmtl.data.faces.synthetic import faces_dataset, generate_faces
from kmtl.data.faces.utkface import load_utkface, parse_utkface_name, utkface_dataset

__all__ = [
    "celeba_dataset",
    "faces_dataset",
    "generate_faces",
    "load_celeba",
    "load_utkface",
    "parse_utkface_name",
    "utkface_dataset",
]
