"""Regular binning of the MIMIC-III benchmark's irregular ICU time series.

The benchmark (Harutyunyan et al. 2019) writes each ICU stay as a `*_timeseries.csv` whose header is `Hours`
followed by 17 clinical variables; each row is one charting time (hours since ICU admission) with the values
charted then and empty cells elsewhere. `Discretizer` turns such a table into a regular `(steps, 76)` float32
array laid out as the benchmark's own discretizer with masks, so that published models and normaliser statistics
line up channel for channel:

- 59 value channels: one per continuous variable and one per spelling of each categorical variable (the Glasgow
  coma scale components and capillary refill, one-hot, spellings in the benchmark's order), variables in
  `VARIABLES` order;
- 17 mask channels `mask-><variable>`: 1 where the variable was charted in that bin, 0 where it was imputed.

Bin `i` covers hours `(i * timestep, (i + 1) * timestep]` (bin 0 also takes time 0); within a bin the last
charted value wins; an empty bin carries the previous value forward, and a variable not charted yet takes the
benchmark's normal value.
"""

import math
import numbers
from collections.abc import Mapping

import numpy as np

# === The benchmark's variables (spellings as charted in MIMIC-III's CareVue and MetaVision systems) ===

VARIABLES = (
    "Capillary refill rate",
    "Diastolic blood pressure",
    "Fraction inspired oxygen",
    "Glascow coma scale eye opening",
    "Glascow coma scale motor response",
    "Glascow coma scale total",
    "Glascow coma scale verbal response",
    "Glucose",
    "Heart Rate",
    "Height",
    "Mean blood pressure",
    "Oxygen saturation",
    "Respiratory rate",
    "Systolic blood pressure",
    "Temperature",
    "Weight",
    "pH",
)
CATEGORIES = {
    "Capillary refill rate": ("0.0", "1.0"),
    "Glascow coma scale eye opening": (
        "To Pain", "3 To speech", "1 No Response", "4 Spontaneously",
        "None", "To Speech", "Spontaneously", "2 To pain",
    ),
    "Glascow coma scale motor response": (
        "1 No Response", "3 Abnorm flexion", "Abnormal extension", "No response",
        "4 Flex-withdraws", "Localizes Pain", "Flex-withdraws", "Obeys Commands",
        "Abnormal Flexion", "6 Obeys Commands", "5 Localizes Pain", "2 Abnorm extensn",
    ),
    "Glascow coma scale total": ("11", "10", "13", "12", "15", "14", "3", "5", "4", "7", "6", "9", "8"),
    "Glascow coma scale verbal response": (
        "1 No Response", "No Response", "Confused", "Inappropriate Words",
        "Oriented", "No Response-ETT", "5 Oriented", "Incomprehensible sounds",
        "1.0 ET/Trach", "4 Confused", "2 Incomp sounds", "3 Inapprop words",
    ),
}  # fmt: skip
NORMAL_VALUES = {
    "Capillary refill rate": "0.0",
    "Diastolic blood pressure": 59.0,
    "Fraction inspired oxygen": 0.21,
    "Glascow coma scale eye opening": "4 Spontaneously",
    "Glascow coma scale motor response": "6 Obeys Commands",
    "Glascow coma scale total": "15",
    "Glascow coma scale verbal response": "5 Oriented",
    "Glucose": 128.0,
    "Heart Rate": 86.0,
    "Height": 170.0,
    "Mean blood pressure": 77.0,
    "Oxygen saturation": 98.0,
    "Respiratory rate": 19.0,
    "Systolic blood pressure": 118.0,
    "Temperature": 36.6,
    "Weight": 81.0,
    "pH": 7.4,
}
_EPS = 1e-6
_IMPUTE = ("previous", "normal_value", "zero")


def _category_lookup(spellings):
    """Maps each spelling, and the number of each numeric spelling, to its one-hot position."""
    lookup = {spelling: position for position, spelling in enumerate(spellings)}
    for position, spelling in enumerate(spellings):
        try:
            lookup.setdefault(float(spelling), position)
        except ValueError:
            pass
    return lookup


_LOOKUPS = {name: _category_lookup(spellings) for name, spellings in CATEGORIES.items()}
_FAST_CODES = {
    name: {None: math.nan, "": math.nan, **{key: float(code) for key, code in lookup.items()}}
    for name, lookup in _LOOKUPS.items()
}


class Discretizer:
    """Bins the benchmark's irregular ICU time series into regular steps, with masks and imputation.

    Args:
        timestep: float. Width of a bin in hours.
        impute: str. How a bin where a variable was not charted is filled: `"previous"` (the last charted value,
            the normal value before the first; the benchmark's choice), `"normal_value"` (always the normal
            value) or `"zero"` (zeros).

    Example:

    >>> d = Discretizer()
    >>> x = d.transform({"Hours": [0.5, 1.5], "Heart Rate": [80, 90]}, end_hours=3)
    >>> x.shape
    (3, 76)
    >>> x[:, d.channel_groups["Heart Rate"]].tolist()  # value channel, then mask channel
    [[80.0, 1.0], [90.0, 1.0], [90.0, 0.0]]

    Reference:
        Harutyunyan, Khachatrian, Kale, Ver Steeg, Galstyan (2019). Multitask learning and benchmarking with
        clinical time series data. Scientific Data 6, 96.
    """

    def __init__(self, timestep: float = 1.0, impute: str = "previous"):
        if isinstance(timestep, bool) or not isinstance(timestep, numbers.Real) or not timestep > 0:
            raise ValueError(
                f"Invalid value for `timestep`. Expected a positive number of hours. Received: timestep={timestep!r}"
            )
        if impute not in _IMPUTE:
            raise ValueError(f"Invalid value for `impute`. Expected one of {_IMPUTE}. Received: impute={impute!r}")
        self.timestep = float(timestep)
        self.impute = impute
        names, self._value_slices, self._mask_index = [], {}, {}
        for name in VARIABLES:
            spellings = CATEGORIES.get(name)
            self._value_slices[name] = (len(names), len(spellings) if spellings else 1)
            names.extend([f"{name}->{s}" for s in spellings] if spellings else [name])
        for name in VARIABLES:
            self._mask_index[name] = len(names)
            names.append(f"mask->{name}")
        self._names = tuple(names)

    # === Layout ===

    @property
    def num_features(self) -> int:
        """Number of output channels: 59 value channels and 17 mask channels."""
        return len(self._names)

    @property
    def feature_names(self) -> list:
        """Channel names as the benchmark writes them: `Var`, `Var->spelling`, `mask->Var`."""
        return list(self._names)

    @property
    def channel_groups(self) -> dict:
        """Maps each variable to its channel indices: its value channel(s), then its mask channel."""
        groups = {}
        for name in VARIABLES:
            start, width = self._value_slices[name]
            groups[name] = list(range(start, start + width)) + [self._mask_index[name]]
        return groups

    @property
    def continuous_channels(self) -> list:
        """Indices of the value channels of the 10 continuous variables, the ones to normalise."""
        return [self._value_slices[name][0] for name in VARIABLES if name not in CATEGORIES]

    def get_config(self) -> dict:
        return {"timestep": self.timestep, "impute": self.impute}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # === Transform ===

    def transform(self, frame_or_rows, end_hours: float | None = None, header=None) -> np.ndarray:
        """Discretises one episode.

        Args:
            frame_or_rows: the episode in the benchmark's timeseries layout: a pandas `DataFrame` or a mapping
                of column name to values, with an `Hours` column and variable columns; a list of dicts, one per
                row; or a list of row sequences in `header` order (e.g. split lines of a `*_timeseries.csv`).
                A missing cell is `None`, `""` or `NaN`; categorical cells use the benchmark's spellings
                (numeric ones such as GCS totals may be numbers). Absent variables count as never charted.
            end_hours: float or `None`. End of the episode in hours: rows after it are dropped and the output
                has `int(end_hours / timestep + 1 - 1e-6)` steps. `None` ends at the last row's time.
            header: list of str or `None`. Column names of row sequences; defaults to `Hours` then `VARIABLES`.

        Returns:
            float32 array `(steps, 76)`.

        Raises:
            ValueError: for an unknown column, a missing `Hours` value, a non-numeric value of a continuous
                variable or an unknown spelling of a categorical one; the message names the variable and value.
        """
        times, columns = _read_columns(frame_or_rows, header)
        if end_hours is None:
            if times.size == 0:
                raise ValueError("Cannot discretise an episode with no rows unless `end_hours` is given.")
            end_hours = float(times.max())
        elif isinstance(end_hours, bool) or not isinstance(end_hours, numbers.Real) or not math.isfinite(end_hours):
            raise ValueError(f"Invalid value for `end_hours`. Expected a number. Received: end_hours={end_hours!r}")
        num_bins = max(int(end_hours / self.timestep + 1.0 - _EPS), 0)
        bins = np.trunc(times / self.timestep - _EPS).astype("int64")
        order = np.argsort(times, kind="stable")
        order = order[(times[order] <= end_hours + _EPS) & (bins[order] >= 0) & (bins[order] < num_bins)]
        out = np.zeros((num_bins, self.num_features), dtype="float32")
        for name in VARIABLES:
            codes = _encode_column(name, columns.get(name), len(times))[order]
            present = ~np.isnan(codes)
            self._fill(out, name, codes[present], bins[order][present])
        return out

    def _fill(self, out, name, codes, bins):
        """Writes one variable's value channel(s) and mask channel; `codes` and `bins` are in time order."""
        num_bins = out.shape[0]
        last = np.ones(bins.shape, dtype=bool)  # the last charted value of each bin wins
        last[:-1] = bins[1:] != bins[:-1]
        codes, bins = codes[last], bins[last]
        out[bins, self._mask_index[name]] = 1.0
        source = np.full(num_bins, -1, dtype="int64")
        source[bins] = np.arange(bins.size)
        if self.impute == "previous" and num_bins:
            source = np.maximum.accumulate(source)
        normal = _encode_value(name, NORMAL_VALUES[name])
        values = np.where(source >= 0, codes[np.maximum(source, 0)] if codes.size else normal, normal)
        rows = np.arange(num_bins) if self.impute != "zero" else np.flatnonzero(source >= 0)
        start, width = self._value_slices[name]
        if width == 1:
            out[rows, start] = values[rows]
        else:
            out[rows, start + values[rows].astype("int64")] = 1.0


# === Reading the benchmark's table ===


def _read_columns(frame_or_rows, header):
    """Returns `(times, columns)`: float64 hours and a dict variable -> list of cell values, one per row."""
    if hasattr(frame_or_rows, "columns") or isinstance(frame_or_rows, Mapping):
        names = list(frame_or_rows.columns if hasattr(frame_or_rows, "columns") else frame_or_rows.keys())
        table = {name: list(_as_list(frame_or_rows[name])) for name in names}
    else:
        rows = list(frame_or_rows)
        if rows and isinstance(rows[0], Mapping):
            names = list(dict.fromkeys(key for row in rows for key in row))
            table = {name: [row.get(name) for row in rows] for name in names}
        else:
            names = ["Hours", *VARIABLES] if header is None else list(header)
            for number, row in enumerate(rows):
                if len(row) != len(names):
                    raise ValueError(f"Row {number} has {len(row)} cells; the header has {len(names)}: {names}")
            table = {name: list(column) for name, column in zip(names, zip(*rows))} if rows else {}
            table.setdefault("Hours", [])
    unknown = [name for name in names if name != "Hours" and name not in NORMAL_VALUES]
    if unknown:
        raise ValueError(f"Unknown column(s) {unknown} in the time series. Expected 'Hours' and {list(VARIABLES)}.")
    if "Hours" not in table:
        raise ValueError(f"The time series has no 'Hours' column. Received columns: {names}")
    hours = table.pop("Hours")
    times = _encode_column("Hours", hours, len(hours)) if hours else np.zeros((0,))
    if np.isnan(times).any():
        raise ValueError(f"Missing 'Hours' value in row {int(np.flatnonzero(np.isnan(times))[0])} of the time series.")
    return times, table


def _as_list(column):
    return column.tolist() if hasattr(column, "tolist") else column


def is_missing(value) -> bool:
    """Whether a cell is empty: `None`, `""` or `NaN`."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    return isinstance(value, numbers.Real) and math.isnan(value)


def _encode_column(name, values, num_rows):
    """Float64 codes of a column: the number (continuous) or one-hot position (categorical); NaN if missing."""
    if values is None:
        return np.full(num_rows, np.nan)
    if name not in CATEGORIES:
        try:
            return np.asarray(values, dtype="float64")
        except (TypeError, ValueError):
            pass  # empty strings or bad cells: go cell by cell for a precise error
    table = _FAST_CODES.get(name, {})
    return np.array([_lookup(table, name, v) for v in values], dtype="float64")


def _lookup(table, name, value):
    """Code of one cell: a dictionary hit for the common cases, else the careful path."""
    try:
        code = table.get(value)
    except TypeError:  # unhashable cell
        code = None
    if code is not None:
        return code
    return np.nan if is_missing(value) else _encode_value(name, value)


def _encode_value(name, value):
    """Code of one present cell; raises `ValueError` naming the variable and value if it cannot be read."""
    lookup = _LOOKUPS.get(name)
    if lookup is None:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"Variable '{name}': expected a number. Received: {value!r}") from None
    key = value.strip() if isinstance(value, str) else value
    if key in lookup:
        return float(lookup[key])
    try:
        return float(lookup[float(key)])
    except (TypeError, ValueError, KeyError):
        raise ValueError(
            f"Variable '{name}': unknown value {value!r}. Expected one of the benchmark's spellings "
            f"{list(CATEGORIES[name])}."
        ) from None
