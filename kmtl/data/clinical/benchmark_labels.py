"""The five labels of the MIMIC-III benchmark (Harutyunyan et al. 2019) on a stay's time steps.

Shared by the benchmark's loader (`kmtl.data.clinical.mimic3`) and the synthetic ICU generator
(`kmtl.data.clinical.icu`): in-hospital mortality, decompensation (death within 24 h), length of stay in buckets,
remaining stay in hours and the 25 phenotypes. A prediction made at hour `t` (data up to `t`) is the label of step
`int(t / timestep - 1e-6)`, the bin that ends at `t`; the in-hospital mortality prediction belongs to the step that
ends at `IHM_HOURS` (step 47 with hourly bins). A label a stay lacks is `-1` (binary / class id) or `NaN`.

Reference:
    Harutyunyan, Khachatrian, Kale, Ver Steeg, Galstyan (2019). Multitask learning and benchmarking with clinical
    time series data. Scientific Data 6, 96.
"""

import os

import numpy as np

from kmtl.data.sequences import SequenceData

PHENOTYPES = (
    "Acute and unspecified renal failure",
    "Acute cerebrovascular disease",
    "Acute myocardial infarction",
    "Cardiac dysrhythmias",
    "Chronic kidney disease",
    "Chronic obstructive pulmonary disease and bronchiectasis",
    "Complications of surgical procedures or medical care",
    "Conduction disorders",
    "Congestive heart failure; nonhypertensive",
    "Coronary atherosclerosis and other heart disease",
    "Diabetes mellitus with complications",
    "Diabetes mellitus without complication",
    "Disorders of lipid metabolism",
    "Essential hypertension",
    "Fluid and electrolyte disorders",
    "Gastrointestinal hemorrhage",
    "Hypertension with complications and secondary hypertension",
    "Other liver diseases",
    "Other lower respiratory disease",
    "Other upper respiratory disease",
    "Pleurisy; pneumothorax; pulmonary collapse",
    "Pneumonia (except that caused by tuberculosis or sexually transmitted disease)",
    "Respiratory failure; insufficiency; arrest (adult)",
    "Septicemia (except in labor)",
    "Shock",
)
# Remaining stay in days: [0, 1), [1, 2), ..., [7, 8), [8, 14), [14, inf).
LOS_BUCKETS = ("0-1d", "1-2d", "2-3d", "3-4d", "4-5d", "5-6d", "6-7d", "7-8d", "8-14d", "14+d")
LOS_BUCKET_EDGES_HOURS = tuple(24.0 * day for day in (1, 2, 3, 4, 5, 6, 7, 8, 14))
LABEL_NAMES = ("mortality", "decompensation", "length_of_stay", "remaining_stay", "phenotype")
IHM_HOURS = 48.0
_EPS = 1e-6
__all__ = ["IHM_HOURS", "LABEL_NAMES", "LOS_BUCKETS", "PHENOTYPES", "los_bucket"]


def los_bucket(hours):
    """Class id (index of `LOS_BUCKETS`) of a remaining stay in hours, as the benchmark's custom bins.

    Example:

    >>> los_bucket([3.0, 24.0, 200.0, 400.0]).tolist()
    [0, 1, 8, 9]
    """
    return np.searchsorted(LOS_BUCKET_EDGES_HOURS, np.asarray(hours, dtype="float64"), side="right").astype("int32")


# === Benchmark label definitions (shared with the synthetic generator) ===


def sample_labels(los, mortality, death_hours=None, first_event=0.0, shortest=4.0, horizon=24.0):
    """Hourly labels of one stay as the benchmark's `create_multitask` script defines them.

    Args:
        los: float. Length of the ICU stay in hours.
        mortality: int. 1 if the patient died in hospital (in the ICU or after it).
        death_hours: float or `None`. Time of death in hours since ICU admission; `None` if alive.
        first_event: float. Time of the stay's first charted event.
        shortest: float. Predictions start after this many hours (and after the first event).
        horizon: float. Decompensation = death within this many hours.

    Returns:
        A dict: `ihm` `(mask, label)`; `los` `(hours, masks, remaining hours)` for hours `0..floor(los)`;
        `decomp` `(hours, masks, labels)` for hours `0..floor(min(los, death_hours))`.
    """
    lived = 1e18 if death_hours is None else float(death_hours)
    los_times = np.arange(int(np.floor(los + _EPS)) + 1, dtype="float64")
    decomp_times = np.arange(int(np.floor(min(los, lived) + _EPS)) + 1, dtype="float64")

    def masks(times):
        return ((times > shortest) & (times > first_event)).astype("int32")

    ihm_mask = int(los >= IHM_HOURS - _EPS and first_event <= IHM_HOURS + _EPS)
    decomp = (int(mortality) * (lived - decomp_times < horizon)).astype("int32")
    return {
        "ihm": (ihm_mask, int(mortality)),
        "los": (los_times, masks(los_times), los - los_times),
        "decomp": (decomp_times, masks(decomp_times), decomp),
    }


def samples_to_steps(times, masks, values, num_steps, timestep=1.0, fill=-1):
    """Places hourly sample labels on discretised steps: the label at hour `t` goes to step `int(t/timestep - eps)`.

    Unmasked samples and samples past the last step leave `fill`; when several samples fall on one step the
    last one wins, as in the benchmark.
    """
    values = np.asarray(values)
    out = np.full(num_steps, fill, dtype=values.dtype)
    steps = np.trunc(np.asarray(times, dtype="float64") / timestep - _EPS).astype("int64")
    keep = (np.asarray(masks) == 1) & (steps < num_steps)
    steps, values = np.maximum(steps[keep], 0), values[keep]
    last = np.ones(steps.shape, dtype=bool)
    last[:-1] = steps[1:] != steps[:-1]
    out[steps[last]] = values[last]
    return out


def empty_labels(num_steps):
    """Labels of one episode with every label missing."""
    return {
        "mortality": -1,
        "decompensation": np.full(num_steps, -1, dtype="int32"),
        "length_of_stay": np.full(num_steps, -1, dtype="int32"),
        "remaining_stay": np.full(num_steps, np.nan, dtype="float32"),
        "phenotype": np.full(len(PHENOTYPES), -1, dtype="int32"),
    }


def step_labels(samples, num_steps, timestep=1.0, labels=None):
    """Fills an episode's labels from parsed samples: keys `ihm`, `los`, `decomp` as in `sample_labels`."""
    labels = empty_labels(num_steps) if labels is None else labels
    if "ihm" in samples:
        mask, label = samples["ihm"]
        labels["mortality"] = int(label) if mask == 1 else -1
    if "los" in samples:
        times, masks, hours = samples["los"]
        remaining = samples_to_steps(times, masks, np.asarray(hours, dtype="float32"), num_steps, timestep, np.nan)
        labels["remaining_stay"] = remaining
        labels["length_of_stay"] = np.where(np.isnan(remaining), -1, los_bucket(remaining)).astype("int32")
    if "decomp" in samples:
        times, masks, values = samples["decomp"]
        labels["decompensation"] = samples_to_steps(times, masks, np.asarray(values, "int32"), num_steps, timestep)
    return labels


def to_sequence_data(features, labels, names, discretizer):
    """Assembles `SequenceData` from per-episode features, per-episode label dicts and file names."""
    stacked = {
        name: [episode[name] for episode in labels] for name in ("decompensation", "length_of_stay", "remaining_stay")
    }
    stacked["mortality"] = np.array([episode["mortality"] for episode in labels], dtype="int32")
    stacked["phenotype"] = np.array([episode["phenotype"] for episode in labels], dtype="int32").reshape(-1, 25)
    return SequenceData(
        features=features,
        labels={name: stacked[name] for name in LABEL_NAMES},
        groups=_patients(names),
        feature_names=discretizer.feature_names,
        channel_groups=discretizer.channel_groups,
        continuous_channels=discretizer.continuous_channels,
        episode_ids=list(names),
    )


def _patients(names):
    """Patient (subject) of each `<subject>_episode<k>_timeseries.csv` name; ints when all are numeric."""
    subjects = [os.path.basename(name).split("_", 1)[0] for name in names]
    return np.array([int(s) for s in subjects] if all(s.isdigit() for s in subjects) else subjects)
