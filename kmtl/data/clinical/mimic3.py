"""The MIMIC-III benchmark's task folders (Harutyunyan et al. 2019), read into `SequenceData`.

The benchmark's scripts write, under a data root, one folder per task (`multitask`, `in-hospital-mortality`,
`decompensation`, `length-of-stay`, `phenotyping`), each with `train/` and `test/` folders of
`<subject>_episode<k>_timeseries.csv` files and a `listfile.csv`; its `split_train_val` step adds
`train_listfile.csv`, `val_listfile.csv` and `test_listfile.csv` beside them (validation episodes live in
`train/`). Listfile formats, one line per sample after a header:

- `in-hospital-mortality`: `stay,y_true` (stays of at least 48 h; the label is known at 48 h).
- `decompensation`: `stay,period_length,y_true`, one line per hourly prediction time (death within 24 h).
- `length-of-stay`: `stay,period_length,y_true`, `y_true` the remaining hours in the ICU.
- `phenotyping`: `stay,period_length,<the 25 phenotypes>`, `period_length` the stay's length.
- `multitask`: `filename,length of stay,pos;mask;label,masks;labels,25 labels,masks;labels`: in-hospital
  mortality, then remaining stay and decompensation as `;`-separated masks then values, one per hour from 0.

A prediction made at hour `t` (data up to `t`) is the label of step `int(t / timestep - 1e-6)`, the bin that ends
at `t`. Every source yields all five labels of `LABEL_NAMES`, missing where it has none (`-1`, `NaN`). The
in-hospital mortality prediction belongs to the step that ends at `IHM_HOURS` (step 47 with hourly bins).

Reference:
    Harutyunyan, Khachatrian, Kale, Ver Steeg, Galstyan (2019). Multitask learning and benchmarking with clinical
    time series data. Scientific Data 6, 96.
"""

import csv
import os

import numpy as np

from kmtl.data.clinical.benchmark_labels import (  # noqa: F401 (LABEL_NAMES, LOS_BUCKETS, PHENOTYPES re-exported)
    IHM_HOURS,
    LABEL_NAMES,
    LOS_BUCKETS,
    PHENOTYPES,
    los_bucket,
    step_labels,
    to_sequence_data,
)
from kmtl.data.clinical.discretizer import VARIABLES, Discretizer

SOURCES = ("multitask", "in-hospital-mortality", "decompensation", "length-of-stay", "phenotyping")
__all__ = ["LABEL_NAMES", "LOS_BUCKETS", "PHENOTYPES", "SOURCES", "VARIABLES", "load_mimic3", "los_bucket"]

# === Loading ===


def load_mimic3(path, split: str = "train", *, source: str = "multitask", discretizer=None, limit=None):
    """Loads one split of a benchmark task folder: episodes discretised, labels on their steps.

    Args:
        path: str or path-like. The benchmark's data root (holding the task folders), or one task folder.
        split: str. `"train"`, `"val"` or `"test"`. `train` and `test` read `<split>_listfile.csv` when the
            benchmark's train/validation split was run, otherwise `<split>/listfile.csv`; `val` needs
            `val_listfile.csv`.
        source: str. Task folder to read, one of `SOURCES`. `"multitask"` gives every label; a single-task
            folder gives its own labels (its episode ends at 48 h for in-hospital mortality, at the last
            prediction time for decompensation and length of stay), the others missing.
        discretizer: `kmtl.data.clinical.Discretizer` or `None` (hourly bins, carry-forward imputation).
        limit: int or `None`. Read only the first `limit` episodes of the listfile.

    Returns:
        `SequenceData` with labels `LABEL_NAMES`: `mortality` `(N,)` int32 (-1 where unknown, e.g. stays under
        48 h), `decompensation` and `length_of_stay` per-step int32, `remaining_stay` per-step float32 hours,
        `phenotype` `(N, 25)` int32; `groups` the subject ids; `episode_ids` the time-series file names.

    Raises:
        FileNotFoundError: if the task folder, the listfile or a time-series file is missing (names the path).
        ValueError: if an argument is invalid or a file is malformed; names the file, line and field.

    Example:

    >>> train = load_mimic3("mimic3-benchmarks/data", "train")  # doctest: +SKIP
    >>> val = load_mimic3("mimic3-benchmarks/data", "val")  # doctest: +SKIP

    Reference:
        Harutyunyan, Khachatrian, Kale, Ver Steeg, Galstyan (2019). Multitask learning and benchmarking with
        clinical time series data. Scientific Data 6, 96.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"Invalid value for `split`. Expected 'train', 'val' or 'test'. Received: split={split!r}")
    if source not in SOURCES:
        raise ValueError(f"Invalid value for `source`. Expected one of {SOURCES}. Received: source={source!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"Invalid value for `limit`. Expected a positive int or None. Received: limit={limit!r}")
    discretizer = Discretizer() if discretizer is None else discretizer
    listfile, folder = _locate(os.fspath(path), source, split)
    episodes = _PARSERS[source](listfile)
    names = list(episodes)[:limit]
    features, labels = [], []
    for name in names:
        episode = episodes[name]
        x = _read_timeseries(os.path.join(folder, name), episode["end"], discretizer)
        label = step_labels(episode["samples"], x.shape[0], discretizer.timestep)
        if episode.get("phenotype") is not None:
            label["phenotype"] = episode["phenotype"]
        features.append(x)
        labels.append(label)
    return to_sequence_data(features, labels, names, discretizer)


def _locate(root, source, split):
    """Returns `(listfile, time-series folder)` of a split, following the benchmark's layout."""
    task = os.path.join(root, source)
    if not os.path.isdir(task) and (
        os.path.isdir(os.path.join(root, "train")) or os.path.isdir(os.path.join(root, "test"))
    ):
        task = root  # `path` is the task folder itself
    if not os.path.isdir(task):
        raise FileNotFoundError(
            f"No '{source}' task folder in {root}. Expected the benchmark's layout: "
            f"<root>/{source}/train/ and <root>/{source}/test/ with listfile.csv and *_timeseries.csv files."
        )
    folder = os.path.join(task, "test" if split == "test" else "train")
    candidates = [os.path.join(task, f"{split}_listfile.csv")]
    if split != "val":
        candidates.append(os.path.join(folder, "listfile.csv"))
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate, folder
    raise FileNotFoundError(f"No listfile for split '{split}' in {task}. Looked for: {', '.join(candidates)}")


def _read_timeseries(path, end, discretizer):
    """Reads and discretises one `*_timeseries.csv`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Time-series file listed in the listfile not found: {path}")
    with open(path, newline="", encoding="utf-8") as file:
        rows = [row for row in csv.reader(file) if row]
    if not rows or rows[0][0].strip() != "Hours":
        raise ValueError(
            f"{path}: the header must start with 'Hours'. Received: {rows[0] if rows else 'an empty file'}"
        )
    try:
        return discretizer.transform(rows[1:], end_hours=end, header=[name.strip() for name in rows[0]])
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


# === Listfiles ===


def _lines(path, header):
    """Yields `(where, fields)` for each data line of a listfile after checking its header."""
    with open(path, encoding="utf-8") as file:
        first = file.readline().rstrip("\r\n").split(",")
        if [field.strip() for field in first[: len(header)]] != list(header):
            raise ValueError(
                f"{path}: expected a header starting with {','.join(header)!r}. Received: {','.join(first)!r}"
            )
        for number, line in enumerate(file, start=2):
            line = line.rstrip("\r\n")
            if line.strip():
                yield f"{path}, line {number}", line.split(",")


def _number(text, kind, where, field):
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{where}: field '{field}' must hold {kind.__name__} values. Received: {text!r}") from None


def _fields(fields, count, where):
    if len(fields) != count:
        raise ValueError(f"{where}: expected {count} comma-separated fields. Received {len(fields)}: {fields}")
    return fields


def _hourly(text, kind, where, field):
    """Parses `masks;values` (one of each per hour from 0) into `(times, masks, values)`."""
    parts = [] if text == "" else text.split(";")
    if len(parts) % 2:
        raise ValueError(f"{where}: field '{field}' must hold as many masks as values. Received {len(parts)} entries.")
    half = len(parts) // 2
    masks = np.array([_number(p, int, where, field) for p in parts[:half]], dtype="int32")
    values = np.array([_number(p, kind, where, field) for p in parts[half:]])
    return np.arange(half, dtype="float64"), masks, values


def _parse_multitask(path):
    header = ("filename", "length of stay")
    episodes = {}
    for where, fields in _lines(path, header):
        name, los, ihm, stay, pheno, decomp = _fields(fields, 6, where)
        ihm = [_number(p, int, where, "in-hospital mortality task (pos;mask;label)") for p in ihm.split(";")]
        pheno = [_number(p, int, where, "phenotyping task (labels)") for p in pheno.split(";")]
        if len(ihm) != 3 or len(pheno) != len(PHENOTYPES):
            raise ValueError(
                f"{where}: expected 3 in-hospital mortality values and {len(PHENOTYPES)} phenotype labels. "
                f"Received {len(ihm)} and {len(pheno)}."
            )
        samples = {
            "ihm": (ihm[1], ihm[2]),
            "los": _hourly(stay, float, where, "length of stay task (masks;labels)"),
            "decomp": _hourly(decomp, int, where, "decompensation task (masks;labels)"),
        }
        end = _number(los, float, where, "length of stay")
        episodes[name] = {"end": end, "samples": samples, "phenotype": np.array(pheno, dtype="int32")}
    return episodes


def _parse_ihm(path):
    episodes = {}
    for where, fields in _lines(path, ("stay", "y_true")):
        name, label = _fields(fields, 2, where)
        episodes[name] = {"end": IHM_HOURS, "samples": {"ihm": (1, _number(label, int, where, "y_true"))}}
    return episodes


def _parse_per_hour(kind, key):
    """Parser of a listfile with one `stay,period_length,y_true` line per prediction time."""

    def parse(path):
        rows = {}
        for where, fields in _lines(path, ("stay", "period_length", "y_true")):
            name, period, label = _fields(fields, 3, where)
            rows.setdefault(name, []).append(
                (_number(period, float, where, "period_length"), _number(label, kind, where, "y_true"))
            )
        episodes = {}
        for name, samples in rows.items():
            samples.sort(key=lambda sample: sample[0])
            times = np.array([t for t, _ in samples])
            values = np.array([y for _, y in samples])
            episodes[name] = {
                "end": float(times.max()),
                "samples": {key: (times, np.ones(len(times), "int32"), values)},
            }
        return episodes

    return parse


def _parse_phenotyping(path):
    episodes = {}
    for where, fields in _lines(path, ("stay", "period_length", *PHENOTYPES)):
        fields = _fields(fields, 2 + len(PHENOTYPES), where)
        labels = [_number(value, int, where, phenotype) for value, phenotype in zip(fields[2:], PHENOTYPES)]
        end = _number(fields[1], float, where, "period_length")
        episodes[fields[0]] = {"end": end, "samples": {}, "phenotype": np.array(labels, dtype="int32")}
    return episodes


_PARSERS = {
    "multitask": _parse_multitask,
    "in-hospital-mortality": _parse_ihm,
    "decompensation": _parse_per_hour(int, "decomp"),
    "length-of-stay": _parse_per_hour(float, "los"),
    "phenotyping": _parse_phenotyping,
}
