"""Clinical time series: sources of `SequenceData` and the preprocessing they share.

Sources: a synthetic ICU generator (`icu`), the MIMIC-III benchmark's task folders (`mimic3`, with the benchmark's
five labels in `benchmark_labels`) and the Mayo Clinic PBC follow-up data (`pbcseq`). Preprocessing: `Discretizer`
(binning irregular events with masks) and `Normalizer` (statistics fitted on training data), formerly in
`kmtl.preprocessing`.
"""

from kmtl.data.clinical.benchmark_labels import LABEL_NAMES, LOS_BUCKETS, PHENOTYPES, los_bucket
from kmtl.data.clinical.discretizer import VARIABLES, Discretizer
from kmtl.data.clinical.icu import generate_icu_stays, simulate_icu_events
from kmtl.data.clinical.mimic3 import load_mimic3
from kmtl.data.clinical.normalizer import Normalizer
from kmtl.data.clinical.pbcseq import PBCSEQ_FEATURES, PBCSEQ_LABELS, load_pbcseq

__all__ = [
    "Discretizer",
    "LABEL_NAMES",
    "LOS_BUCKETS",
    "Normalizer",
    "PBCSEQ_FEATURES",
    "PBCSEQ_LABELS",
    "PHENOTYPES",
    "VARIABLES",
    "generate_icu_stays",
    "load_mimic3",
    "load_pbcseq",
    "los_bucket",
    "simulate_icu_events",
]
