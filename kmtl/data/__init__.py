"""Data for kmtl's recipes: generators of embedded data and loaders for real public formats.

Grouped by domain: `kmtl.data.faces`, `kmtl.data.clinical` and `kmtl.data.images` (images with masks: synthetic
lesions, a folder loader, Fashion-MNIST); `sequences` (`SequenceData`, `to_dataset`) serves
every domain. Every public name is re-exported here.

Faces: a synthetic generator and loaders for CelebA and UTKFace, yielding `({"image": float32 (H, W, 3) in [0, 1]},
{task: label})` with the tasks of `FACE_TASK_NAMES`. Clinical time series: `SequenceData` from a synthetic ICU
generator, the mimic3-benchmarks directory layout or the Mayo Clinic PBC follow-up data, turned into padded
batches `({"features", "mask"}, {task: label})` by `to_dataset`. A label a source lacks is `-1` (binary / class id)
or `NaN` (regression).
"""

import importlib
import sys
import warnings

from kmtl.data import clinical, faces, images
from kmtl.data._common import ETHNICITIES, FACE_TASK_NAMES, HAIR_COLOURS, LANDMARK_NAMES
from kmtl.data.clinical import LABEL_NAMES as ICU_LABEL_NAMES
from kmtl.data.clinical import (
    LOS_BUCKETS,
    PBCSEQ_FEATURES,
    PBCSEQ_LABELS,
    PHENOTYPES,
    generate_icu_stays,
    load_mimic3,
    load_pbcseq,
    los_bucket,
    simulate_icu_events,
)
from kmtl.data.faces import (
    celeba_dataset,
    faces_dataset,
    generate_faces,
    load_celeba,
    load_utkface,
    parse_utkface_name,
    utkface_dataset,
)
from kmtl.data.images import generate_lesions, load_fashion_mnist, load_image_folder
from kmtl.data.sequences import SequenceData, to_dataset

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
    "generate_lesions",
    "load_celeba",
    "load_fashion_mnist",
    "load_image_folder",
    "load_mimic3",
    "load_pbcseq",
    "load_utkface",
    "los_bucket",
    "parse_utkface_name",
    "simulate_icu_events",
    "to_dataset",
    "utkface_dataset",
]

# Deprecated in 0.2, removed in 0.3: the loaders' modules before they were grouped by domain. `import` of an old
# path keeps working (an alias in `sys.modules`); reaching one as an attribute of `kmtl.data` warns.
_MOVED = {
    "celeba": "kmtl.data.faces.celeba",
    "utkface": "kmtl.data.faces.utkface",
    "icu": "kmtl.data.clinical.icu",
    "mimic3": "kmtl.data.clinical.mimic3",
    "pbcseq": "kmtl.data.clinical.pbcseq",
}
for _old, _new in _MOVED.items():
    sys.modules.setdefault(f"{__name__}.{_old}", importlib.import_module(_new))


def __getattr__(name):
    if name in _MOVED:
        warnings.warn(f"`kmtl.data.{name}` is deprecated; use `{_MOVED[name]}`.", DeprecationWarning, stacklevel=2)
        return sys.modules[_MOVED[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
