"""Face data for the facial-attributes tasks: a synthetic generator and loaders for CelebA and UTKFace.

Every source yields `({"image": float32 (H, W, 3) in [0, 1]}, {task: label})` with the tasks of
`FACE_TASK_NAMES`; a label a source lacks is `-1` (binary / class id) or `NaN` (regression).
"""

from kmtl.data._common import ETHNICITIES
from kmtl.data._common import FACE_TASK_NAMES
from kmtl.data._common import HAIR_COLOURS
from kmtl.data._common import LANDMARK_NAMES
from kmtl.data.celeba import celeba_dataset
from kmtl.data.celeba import load_celeba
from kmtl.data.faces import faces_dataset
from kmtl.data.faces import generate_faces
from kmtl.data.utkface import load_utkface
from kmtl.data.utkface import parse_utkface_name
from kmtl.data.utkface import utkface_dataset

__all__ = [
    "ETHNICITIES",
    "FACE_TASK_NAMES",
    "HAIR_COLOURS",
    "LANDMARK_NAMES",
    "celeba_dataset",
    "faces_dataset",
    "generate_faces",
    "load_celeba",
    "load_utkface",
    "parse_utkface_name",
    "utkface_dataset",
]
