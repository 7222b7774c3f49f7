"""Data for kmtl's recipes: generators of embedded data and loaders for real public formats.

Faces: a synthetic generator and loaders for CelebA and UTKFace, yielding `({"image": float32 (H, W, 3) in [0, 1]},
{task: label})` with the tasks of `FACE_TASK_NAMES`. Clinical time series: `SequenceData` from a synthetic ICU
generator, the mimic3-benchmarks directory layout or the Mayo Clinic PBC follow-up data, turned into padded
batches `({"features", "mask"}, {task: label})` by `to_dataset`. A label a source lacks is `-1` (binary / class id)
or `NaN` (regression).
"""

from kmtl.data._common import ETHNICITIES, FACE_TASK_NAMES, HAIR_COLOURS, LANDMARK_NAMES
from kmtl.data.celeba import celeba_dataset, load_celeba
from kmtl.data.faces import faces_dataset, generate_faces
from kmtl.data.icu import generate_icu_stays, simulate_icu_events
from kmtl.data.mimic3 import LABEL_NAMES as ICU_LABEL_NAMES
from kmtl.data.mimic3 import LOS_BUCKETS, PHENOTYPES, load_mimic3, los_bucket
from kmtl.data.pbcseq import PBCSEQ_FEATURES, PBCSEQ_LABELS, load_pbcseq
from kmtl.data.sequences import SequenceData, to_dataset
from kmtl.data.utkface import load_utkface, parse_utkface_name, utkface_dataset

__all__ = [
    "ETHNICITIES",
    "FACE_TASK_NAMES",
    "HAIR_COLOURS",
    "ICU_LABEL_NAMES",
    "LANDMARK_NAMES",
    "LOS_BUCKETS",
    "PBCSEQ_FEATURES",
    "PBCSEQ_LABELS",
    "PHENOTYPES",
    "SequenceData",
    "celeba_dataset",
    "faces_dataset",
    "generate_faces",
    "generate_icu_stays",
    "load_celeba",
    "load_mimic3",
    "load_pbcseq",
    "load_utkface",
    "los_bucket",
    "parse_utkface_name",
    "simulate_icu_events",
    "to_dataset",
    "utkface_dataset",
]
