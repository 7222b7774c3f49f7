"""Forecasting: several related quarterly series forecast 1-4 quarters ahead by split layers.

Each series is a regression task with four outputs (h = 1..4 quarters ahead), read from the same window of past
quarters of every series. The model is `kmtl.builders.split`: every layer has shared units and units of each task.
A few series are the primary targets; the others are supplementary targets, declared `auxiliary` (trained, never
exported) with a lower loss weight, so they only shape the shared units (Caruana 1997).

Data: `source="synthetic"` (default, no extra needed) is a deterministic common-factor model with a seasonal
pattern and known structure (`generate_series`); `source="macrodata"` is statsmodels' US macro data (quarterly,
1959-2009): primary real GDP growth and the change in unemployment, supplementary seven more series, all made
stationary (growth rates or differences). The last `test_origins` forecast origins are the evaluation period: the
default split tests all of them with a model fitted on the origins before it, and `fold=(k, K)` (`kmtl compare
forecasting --folds K`) tests the k-th of K blocks with a model fitted up to that block: a rolling origin with
refitting, which `report` runs and prints beside the naive forecasts and each target forecast alone. The model's
input normalisation is fitted on the quarters up to the last training origin. See `docs/forecasting.md`.

Example:

>>> from kmtl.recipes import forecasting as fc
>>> data = fc.load_data("synthetic")  # doctest: +SKIP
>>> model = fc.compile_model(fc.build_model(**data.model_settings))  # doctest: +SKIP
>>> model.fit(data.train, epochs=100)  # doctest: +SKIP
>>> print(fc.report(fc.RECIPE.settings()))  # doctest: +SKIP

Reference:
    Caruana (1997). Multitask Learning. Machine Learning 28 (supplementary outputs that help a primary task).
    Tashman (2000). Out-of-sample tests of forecasting accuracy: an analysis and review. International Journal of
    Forecasting 16(4) (rolling-origin evaluation).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import keras
import numpy as np

import kmtl
from kmtl.builders import split
from kmtl.recipe import Recipe
from kmtl.recipes.forecasting._data import (
    FACTOR_TRANSITION,
    HORIZON,
    LOADINGS,
    MACRO_SERIES,
    SOURCES,
    ForecastData,
    SeriesData,
    generate_series,
    load_data,
    load_macrodata,
    make_tasks,
    source_tasks,
    split_origins,
    windows,
)
from kmtl.recipes.forecasting._report import last_value, naive_forecasts, seasonal_naive, trained_report
from kmtl.recipes.forecasting import _rolling
from kmtl.recipes.forecasting._rolling import REFITS, RollingForecasts

NAME = "forecasting"
DESCRIPTION = "Split layers forecast related quarterly series 1-4 quarters ahead (US macro data), rolling origin."

# Training defaults used by `kmtl train forecasting`; `QUICK` overrides them for `--quick` runs. The signal in these
# series is weak: a wider model or more passes (units (32, 32), 8 epochs) fitted the training origins and forecast
# worse than the training mean on both sources. `shared_fraction` 0.75 and the static weighting are the best of an
# equal-budget search on the synthetic source's validation origins (benchmarks/forecasting_search.py; the weightings
# tied within 0.01, the split mattered more; docs/forecasting.md).
DEFAULTS = {
    "epochs": 4,
    "batch_size": 32,
    "weighting": "static",
    "learning_rate": 0.002,
    "source": "synthetic",
    "window": 4,
    "test_origins": 40,
    "num_quarters": 300,
    "passes_per_epoch": 10,
    "units": (16,),
    "shared_fraction": 0.75,
    "supplementary_weight": 0.3,
}
QUICK = {"epochs": 1, "num_quarters": 80, "test_origins": 8, "passes_per_epoch": 2, "units": (8,)}
# What `kmtl tune forecasting` searches (see `kmtl.tuning.space`); first choices are the defaults.
SEARCH_SPACE = {
    "shared_fraction": [0.75, 0.5, 0.25, 1.0],
    "supplementary_weight": [0.3, 0.1, 1.0],
    "units": [(16,), (8,), (32,), (16, 16)],
    "learning_rate": {"min": 5e-4, "max": 1e-2, "sampling": "log", "default": 0.002},
}

TASKS = source_tasks("synthetic")


def build_model(
    window: int = 4,
    series_mean: Sequence[float] | None = None,
    series_std: Sequence[float] | None = None,
    *,
    units: Sequence[int] = DEFAULTS["units"],
    shared_fraction: float = DEFAULTS["shared_fraction"],
    supplementary_weight: float = DEFAULTS["supplementary_weight"],
    tasks: Sequence[kmtl.Task] | None = None,
) -> kmtl.MultiTaskModel:
    """Builds the split-layer forecaster (uncompiled): input `history` `(batch, window, series)`, one output per
    task `(batch, 4)`: the series 1-4 quarters ahead, in its own units.

    The history is normalised per series (`series_mean`, `series_std`, fitted on the training part by `load_data`),
    flattened and read by `kmtl.builders.split`. Each task's loss weight is `1 / target_scale**2`, so the static
    weighting sums the tasks' squared errors in standardised units, times `supplementary_weight` for the
    supplementary (auxiliary) tasks.

    Args:
        window: int. Quarters of history (`load_data(...).model_settings`).
        series_mean, series_std: sequences of float, one per series of the input (`load_data(...).model_settings`);
            None: 0 and 1 for each of the tasks' series.
        units: sequence of int. Units each task sees per split layer.
        shared_fraction: float in [0, 1]. Fraction of each layer's units that is shared.
        supplementary_weight: float >= 0. Relative loss weight of the supplementary tasks.
        tasks: the tasks to learn (default: the synthetic source's); the input keeps every series either way.

    Returns:
        `kmtl.MultiTaskModel`.
    """
    tasks = list(tasks) if tasks is not None else source_tasks("synthetic")
    if not tasks:
        raise ValueError("Invalid value for `tasks`. Expected at least one task. Received: tasks=[]")
    if isinstance(supplementary_weight, bool) or not isinstance(supplementary_weight, (int, float)) or not (
        np.isfinite(supplementary_weight) and supplementary_weight >= 0
    ):
        raise ValueError("Invalid value for `supplementary_weight`. Expected a finite float >= 0. "
                         f"Received: supplementary_weight={supplementary_weight!r}")
    mean = np.zeros(len(tasks)) if series_mean is None else np.asarray(series_mean, "float64")
    std = np.ones(len(tasks)) if series_std is None else np.asarray(series_std, "float64")
    if mean.shape != std.shape or mean.ndim != 1 or not np.all(std > 0):
        raise ValueError("Invalid values for `series_mean` and `series_std`. Expected equal-length sequences, the "
                         f"standard deviations > 0. Received: series_mean={series_mean!r}, series_std={series_std!r}")
    weighted = [
        kmtl.Task.from_config({**t.get_config(), "loss_weight": (supplementary_weight if t.auxiliary else 1.0)
                               / t.target_scale**2})
        for t in tasks
    ]
    primary = [t.name for t in weighted if not t.auxiliary] or None

    # === Inputs: the normalised, flattened history ===
    history = keras.Input((window, len(mean)), name="history")
    x = keras.layers.Normalization(mean=mean, variance=std**2, name="history_normalized")(history)
    x = keras.layers.Flatten(name="history_flat")(x)

    # === Split layers and heads ===
    return split({"history": history}, weighted, units=units, shared_fraction=shared_fraction, primary=primary,
                 supplementary_weight=None, input_features=x, name="forecasting")


def compile_model(model: kmtl.MultiTaskModel, weighting="static", learning_rate: float = 0.002):
    """Compiles with Adam and the given weighting; `"static"` (default) uses the tasks' loss weights (the
    supplementary tasks' lower weight)."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), weighting=weighting)
    return model


def rolling_forecasts(settings: Mapping | None = None, seed: int = 0, refits: int = REFITS) -> RollingForecasts:
    """Forecasts of the evaluation period by every model refitted at `refits` rolling origins, and the naive
    forecasts (`settings`: `RECIPE.settings(...)`, default the recipe's; see `_rolling.rolling_forecasts`)."""
    return _rolling.rolling_forecasts(RECIPE, RECIPE.settings() if settings is None else settings, seed, refits)


def report(settings: Mapping | None = None, seed: int = 0, refits: int = REFITS) -> str:
    """The forecasting report: rolling-origin errors per primary target of the multi-task model, the target's
    single-task model, last value, seasonal naive and the training mean, each model refitted at `refits` origins.

    `kmtl compare forecasting` prints it (the recipe's `baselines`) after its own comparison.
    """
    return _rolling.report(RECIPE, RECIPE.settings() if settings is None else settings, seed, refits)


def baselines(settings: Mapping, seed: int = 0) -> str:
    """`report(settings, seed)`: what `kmtl compare forecasting` prints beside the comparison."""
    return report(settings, seed=seed)


RECIPE = Recipe(
    name=NAME,
    description=DESCRIPTION,
    tasks=TASKS,
    build_model=build_model,
    compile_model=compile_model,
    load_data=load_data,
    defaults=DEFAULTS,
    quick=QUICK,
    data_settings=("source", "window", "test_origins", "num_quarters", "passes_per_epoch", "fold"),
    model_settings=("units", "shared_fraction", "supplementary_weight"),
    derived_settings=("window", "series_mean", "series_std", "tasks"),
    search_space=SEARCH_SPACE,
    sources="synthetic (default), macrodata",
    baselines=baselines,
    report=trained_report,
)

__all__ = [
    "DEFAULTS",
    "DESCRIPTION",
    "FACTOR_TRANSITION",
    "HORIZON",
    "LOADINGS",
    "MACRO_SERIES",
    "NAME",
    "QUICK",
    "RECIPE",
    "REFITS",
    "RollingForecasts",
    "SOURCES",
    "TASKS",
    "ForecastData",
    "SeriesData",
    "build_model",
    "compile_model",
    "generate_series",
    "last_value",
    "load_data",
    "load_macrodata",
    "make_tasks",
    "naive_forecasts",
    "report",
    "rolling_forecasts",
    "seasonal_naive",
    "source_tasks",
    "split_origins",
    "trained_report",
    "windows",
]
