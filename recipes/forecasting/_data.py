"""Data of the forecasting recipe: related quarterly series (US macro data or the embedded generator), their
forecast windows, the rolling-origin split and the scaling fitted on the training part."""

from __future__ import annotations

import dataclasses
import numbers
from typing import Sequence

import numpy as np

import kmtl
from kmtl.recipe import RecipeData

SOURCES = ("synthetic", "macrodata")
# Quarters ahead forecast from each origin (h = 1..HORIZON).
HORIZON = 4
# Origins right before the test origins (less the HORIZON - 1 whose targets would reach into the test period) that
# validate: 3 years.
VAL_ORIGINS = 12
# Fewest training origins a split may leave.
MIN_TRAIN_ORIGINS = 16

# US macro data (statsmodels.datasets.macrodata): task name -> (column, transform, target offset, target scale).
# "growth": 100 * quarterly change of the log (percent per quarter); "change": first difference (points).
# Offsets and scales are round numbers near each transformed series' mean and spread over 1959-2009 (fixed, not
# fitted: the model's inputs are scaled by the training part's statistics).
MACRO_SERIES = {
    "gdp_growth": ("realgdp", "growth", 0.8, 1.0),
    "unemployment_change": ("unemp", "change", 0.0, 0.4),
    "consumption_growth": ("realcons", "growth", 0.8, 0.7),
    "investment_growth": ("realinv", "growth", 0.8, 5.0),
    "government_growth": ("realgovt", "growth", 0.4, 2.0),
    "income_growth": ("realdpi", "growth", 0.8, 1.0),
    "inflation": ("cpi", "growth", 1.0, 0.8),
    "money_growth": ("m1", "growth", 1.2, 1.3),
    "tbill_change": ("tbilrate", "change", 0.0, 0.9),
}
MACRO_PRIMARY = ("gdp_growth", "unemployment_change")

# The embedded generator's known structure: a common-factor model with a seasonal pattern (see `generate_series`).
SYNTHETIC_PRIMARY = ("target_1", "target_2")
SYNTHETIC_NAMES = SYNTHETIC_PRIMARY + tuple(f"related_{i}" for i in range(1, 7))
# Factor dynamics: f_t = FACTOR_TRANSITION f_{t-1} + N(0, I).
FACTOR_TRANSITION = np.array([[0.8, 0.1], [-0.1, 0.7]])
# Each series' loadings on the two factors (rows in SYNTHETIC_NAMES order).
LOADINGS = np.array([
    [0.8, 0.3], [-0.3, 0.7],
    [0.9, 0.0], [0.6, 0.6], [0.0, 0.9], [0.7, -0.4], [0.4, 0.2], [-0.5, 0.5],
])
# Idiosyncratic noise: AR(1) with this coefficient and innovation sd per series; and a period-4 seasonal amplitude.
NOISE_AR = 0.3
NOISE_SD = np.array([0.5, 0.5, 0.4, 0.6, 0.4, 0.6, 0.8, 0.7])
SEASONAL_AMPLITUDE = np.array([0.3, 0.0, 0.5, 0.0, 0.2, 0.0, 0.6, 0.0])


@dataclasses.dataclass
class SeriesData:
    """Related quarterly series after their stationary transforms.

    Args:
        values: float array `(quarters, series)`.
        names: list of str, the series (task) names, primary first.
        dates: list of str, each row's quarter (`"1959Q2"`; `"t=12"` for generated data).
        primary: tuple of str, the series to forecast; the others are supplementary.
        factors: float array `(quarters, 2)`, the generator's latent factors (None for real data).
    """

    values: np.ndarray
    names: list
    dates: list
    primary: tuple
    factors: np.ndarray | None = None


def make_tasks(names: Sequence[str], primary: Sequence[str], scales: dict | None = None) -> list[kmtl.Task]:
    """One regression task per series, `HORIZON` units (h = 1..HORIZON quarters ahead), MAE reported; supplementary
    series are `auxiliary` (trained, never exported). `scales`: name -> (target offset, target scale)."""
    scales = scales or {}
    return [
        kmtl.Task(name, "regression", units=HORIZON, metrics=["mae"], auxiliary=name not in primary,
                  target_offset=scales.get(name, (0.0, 1.0))[0], target_scale=scales.get(name, (0.0, 1.0))[1])
        for name in names
    ]


def source_tasks(source: str) -> list[kmtl.Task]:
    """The tasks of a data source (their names and target scales depend on it)."""
    if source == "macrodata":
        return make_tasks(list(MACRO_SERIES), MACRO_PRIMARY, {k: v[2:] for k, v in MACRO_SERIES.items()})
    if source == "synthetic":
        return make_tasks(SYNTHETIC_NAMES, SYNTHETIC_PRIMARY)
    raise ValueError(f"Invalid value for `source`. Expected one of {SOURCES}. Received: source={source!r}")


def generate_series(num_quarters: int = 300, seed: int = 0) -> SeriesData:
    """Deterministic related series with known structure: two factors, eight series, a seasonal pattern.

    `f_t = FACTOR_TRANSITION f_{t-1} + u_t` (u ~ N(0, I)); series i is
    `y_it = LOADINGS[i] . f_t + SEASONAL_AMPLITUDE[i] * s(t) + e_it` with `s(t)` = (1, 0, -1, 0) by quarter and
    `e_it = NOISE_AR e_i,t-1 + NOISE_SD[i] v_it`. The two targets share their factors with the six related series,
    so forecasting the related series teaches the factors' dynamics that the targets' forecasts need.

    Args:
        num_quarters: int >= 40. Length of the series.
        seed: int. The same seed gives the same series.
    """
    if isinstance(num_quarters, bool) or not isinstance(num_quarters, numbers.Integral) or num_quarters < 40:
        raise ValueError(
            f"Invalid value for `num_quarters`. Expected an int >= 40. Received: num_quarters={num_quarters!r}"
        )
    rng = np.random.default_rng(seed)
    burn_in = 50
    steps = num_quarters + burn_in
    factors, noise = np.zeros((steps, 2)), np.zeros((steps, len(SYNTHETIC_NAMES)))
    shocks, innovations = rng.normal(size=(steps, 2)), rng.normal(size=noise.shape) * NOISE_SD
    for t in range(1, steps):
        factors[t] = FACTOR_TRANSITION @ factors[t - 1] + shocks[t]
        noise[t] = NOISE_AR * noise[t - 1] + innovations[t]
    factors, noise = factors[burn_in:], noise[burn_in:]
    season = np.array([1.0, 0.0, -1.0, 0.0])[np.arange(num_quarters) % 4]
    values = factors @ LOADINGS.T + season[:, None] * SEASONAL_AMPLITUDE + noise
    return SeriesData(values, list(SYNTHETIC_NAMES), [f"t={t}" for t in range(num_quarters)], SYNTHETIC_PRIMARY,
                      factors)


def load_macrodata(frame=None) -> SeriesData:
    """US quarterly macro data 1959Q1-2009Q3 (statsmodels' `macrodata`), made stationary (`MACRO_SERIES`).

    Growth rates are `100 * diff(log(level))`; rates (unemployment, T-bill) are first differences. The first
    quarter has no change, so the rows are 1959Q2-2009Q3 (202 quarters).

    Args:
        frame: pandas `DataFrame` with `year`, `quarter` and the `MACRO_SERIES` columns, or None to read
            `statsmodels.datasets.macrodata` (`pip install "kmtl[forecasting]"`).

    Raises:
        ImportError: if `frame` is None and statsmodels is not installed.
        ValueError: naming a missing column or a level that is not positive and finite.
    """
    if frame is None:
        try:
            from statsmodels.datasets import macrodata
        except ImportError as error:
            raise ImportError(
                'The macrodata source reads statsmodels.datasets.macrodata: pip install "kmtl[forecasting]"'
            ) from error
        frame = macrodata.load_pandas().data
    columns = ["year", "quarter"] + [column for column, *_ in MACRO_SERIES.values()]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"macrodata: missing column(s) {missing}. Expected the columns {columns}.")
    series = []
    for name, (column, transform, *_) in MACRO_SERIES.items():
        level = frame[column].to_numpy(dtype="float64")
        if not np.all(np.isfinite(level)) or (transform == "growth" and not np.all(level > 0)):
            raise ValueError(f"macrodata: column {column!r} ({name}) must hold finite"
                             f"{' positive' if transform == 'growth' else ''} values.")
        series.append(100.0 * np.diff(np.log(level)) if transform == "growth" else np.diff(level))
    dates = [f"{int(y)}Q{int(q)}" for y, q in zip(frame["year"].to_numpy()[1:], frame["quarter"].to_numpy()[1:])]
    return SeriesData(np.stack(series, axis=1), list(MACRO_SERIES), dates, MACRO_PRIMARY)


def load_source(source: str, num_quarters: int, seed: int) -> SeriesData:
    if source == "synthetic":
        return generate_series(num_quarters, seed=seed)
    if source == "macrodata":
        return load_macrodata()
    raise ValueError(f"Invalid value for `source`. Expected one of {SOURCES}. Received: source={source!r}")


def windows(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Every forecast origin `t` (`window - 1 <= t <= quarters - 1 - HORIZON`): the history `values[t-window+1:t+1]`
    `(origins, window, series)` and the targets `values[t+1:t+1+HORIZON]` `(origins, HORIZON, series)`."""
    origins = np.arange(window - 1, len(values) - HORIZON)
    history = np.stack([values[t - window + 1 : t + 1] for t in origins])
    targets = np.stack([values[t + 1 : t + 1 + HORIZON] for t in origins])
    return history, targets


def split_origins(num_origins: int, test_origins: int, fold=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the training, validation and test origins (in time order) of the rolling-origin scheme.

    The last `test_origins` origins are the evaluation period. `fold=None` tests all of them; `fold=(k, K)` tests
    the k-th of K consecutive blocks of it. The `VAL_ORIGINS` origins before the tested ones validate and all
    earlier origins train, leaving out the `HORIZON - 1` origins between parts whose targets would reach past the
    next part's first origin: nothing a model is trained or selected on is observed after the first test origin.

    Raises:
        ValueError: for a fold that is not `(k, K)` with `0 <= k < K <= test_origins`, or too few training origins.
    """
    if fold is None:
        block = 0, 1
    elif (isinstance(fold, (tuple, list)) and len(fold) == 2 and all(isinstance(v, numbers.Integral)
                                                                   and not isinstance(v, bool) for v in fold)
          and 0 <= fold[0] < fold[1] <= test_origins):
        block = tuple(int(v) for v in fold)
    else:
        raise ValueError(
            f"Invalid value for `fold`. Expected None or (k, K) with 0 <= k < K <= test_origins={test_origins}. "
            f"Received: fold={fold!r}"
        )
    test = np.array_split(np.arange(num_origins - test_origins, num_origins), block[1])[block[0]]
    val_end = test[0] - HORIZON + 1  # a validation origin v sees its targets by v + HORIZON <= first test origin
    val = np.arange(val_end - VAL_ORIGINS, val_end)
    train = np.arange(0, val[0] - HORIZON + 1)
    if len(train) < MIN_TRAIN_ORIGINS:
        raise ValueError(
            f"Too few training origins ({len(train)}, at least {MIN_TRAIN_ORIGINS} needed) for {num_origins} origins "
            f"with test_origins={test_origins}: use longer series (num_quarters) or fewer test origins."
        )
    return train, val, test


@dataclasses.dataclass
class ForecastData(RecipeData):
    """`(train, val, test)` datasets with the arrays they came from.

    `arrays`: dict split -> `(history (N, window, series), targets (N, HORIZON, series))`; `series`: the
    `SeriesData`; `origins`: dict split -> row indices of the origins in `series.values`.
    """

    arrays: dict = dataclasses.field(default_factory=dict)
    series: SeriesData | None = None
    origins: dict = dataclasses.field(default_factory=dict)


def _positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"Invalid value for `{name}`. Expected an int >= {minimum}. Received: {name}={value!r}")


def load_data(
    source: str = "synthetic",
    *,
    batch_size: int = 32,
    seed: int = 0,
    window: int = 4,
    test_origins: int = 40,
    num_quarters: int = 300,
    passes_per_epoch: int = 10,
    fold=None,
    tasks: Sequence[str] | None = None,
) -> ForecastData:
    """Loads related series, cuts forecast windows and splits them by origin: `({"history"}, {task: (N, 4)})`.

    Args:
        source: `"synthetic"` (the embedded generator, `generate_series`) or `"macrodata"` (statsmodels' US macro
            data, `load_macrodata`).
        batch_size: int. Origins per batch.
        seed: int. Seed of the synthetic series and of the shuffling.
        window: int >= 4. Quarters of history each forecast reads (at least a year, for the seasonal naive forecast).
        test_origins: int. Origins of the evaluation period at the end of the data (see `split_origins`).
        num_quarters: int. Length of the synthetic series (macrodata has 202 quarters after differencing).
        passes_per_epoch: int. Passes over the training origins per epoch: the data is small (about 150 origins)
            and an epoch's fixed cost outweighs a pass, so an epoch repeats it.
        fold: None or `(k, K)`: test the k-th of K consecutive blocks of the evaluation period, trained on the
            origins before it (`kmtl compare forecasting --folds K`: rolling origin with refitting).
        tasks: names of the series to forecast (default: all; primary and supplementary).

    Returns:
        `ForecastData`; `model_settings` holds `window`, the kept `tasks` and `series_mean`, `series_std`: each
        series' mean and standard deviation over the quarters up to the last training origin, which the model's
        input normalisation uses.
    """
    import tensorflow as tf

    _positive_int("batch_size", batch_size)
    _positive_int("window", window, minimum=4)
    _positive_int("test_origins", test_origins)
    _positive_int("passes_per_epoch", passes_per_epoch)
    all_tasks = source_tasks(source)
    names = [t.name for t in all_tasks]
    keep = list(names) if tasks is None else list(tasks)
    if not keep or any(name not in names for name in keep):
        raise ValueError(f"Invalid value for `tasks`. Expected names among {names}. Received: tasks={keep!r}")
    series = load_source(source, num_quarters, seed)
    history, targets = windows(series.values, window)
    if test_origins >= len(history):
        raise ValueError(f"Invalid value for `test_origins`. Expected fewer than the {len(history)} origins of the "
                         f"data. Received: test_origins={test_origins}")
    parts = dict(zip(("train", "val", "test"), split_origins(len(history), test_origins, fold)))
    observed = series.values[: parts["train"][-1] + window]  # the quarters up to the last training origin
    mean, std = observed.mean(axis=0), observed.std(axis=0)
    columns = [names.index(name) for name in keep]
    datasets, arrays = [], {}
    for split, index in parts.items():
        arrays[split] = (history[index], targets[index])
        labels = {name: targets[index][:, :, c].astype("float32") for name, c in zip(keep, columns)}
        ds = tf.data.Dataset.from_tensor_slices(({"history": history[index].astype("float32")}, labels))
        if split == "train":
            ds = ds.shuffle(len(index), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)
        if split == "train":
            ds = ds.repeat(passes_per_epoch)
        datasets.append(ds.prefetch(tf.data.AUTOTUNE))
    chosen = [t for t in all_tasks if t.name in keep]
    settings = {"window": window, "series_mean": mean.tolist(), "series_std": std.tolist(), "tasks": chosen}
    origins = {split: index + window - 1 for split, index in parts.items()}
    return ForecastData(*datasets, tasks=chosen, model_settings=settings, arrays=arrays, series=series, origins=origins)
