"""The forecasting report: rolling-origin errors of the multi-task model, each target's single-task model and the
naive forecasts (last value, seasonal naive, training mean)."""

from __future__ import annotations

import numpy as np

from kmtl.recipes.forecasting._data import HORIZON

SEASON = 4  # quarters in a year: the seasonal naive forecast's period


def last_value(history: np.ndarray) -> np.ndarray:
    """The naive forecast: every step ahead is the last observed value.

    Args:
        history: array `(N, window, series)`.

    Returns:
        array `(N, HORIZON, series)`.
    """
    return np.repeat(history[:, -1:, :], HORIZON, axis=1)


def seasonal_naive(history: np.ndarray, period: int = SEASON) -> np.ndarray:
    """The seasonal naive forecast: step h ahead is the value one period before it, `y[t + h - period]` (for h beyond
    the period, the last season repeated).

    Args:
        history: array `(N, window, series)` with `window >= period`.
        period: int. Season length in steps.

    Returns:
        array `(N, HORIZON, series)`.
    """
    if history.shape[1] < period:
        raise ValueError(f"The seasonal naive forecast needs a window of at least {period} steps. "
                         f"Received: window={history.shape[1]}")
    season = history[:, -period:, :]
    return season[:, np.arange(HORIZON) % period, :]


def training_mean(train_targets: np.ndarray, count: int) -> np.ndarray:
    """The training targets' mean per step ahead and series, for `count` origins: `(count, HORIZON, series)`."""
    return np.broadcast_to(train_targets.mean(axis=0), (count,) + train_targets.shape[1:])


def naive_forecasts(data) -> dict:
    """The naive forecasts of `data`'s test origins (a `ForecastData`): label -> `(N, HORIZON, series)`."""
    history, targets = data.arrays["test"]
    return {
        "last value": last_value(history),
        "seasonal naive": seasonal_naive(history),
        "training mean": training_mean(data.arrays["train"][1], len(targets)),
    }


def predict(model, data) -> np.ndarray:
    """A trained model's forecasts of `data`'s test origins, `(N, HORIZON, tasks)` in `data.tasks` order."""
    history = data.arrays["test"][0].astype("float32")
    predicted = model({"history": history}, training=False)  # one eager call: no predict function to trace
    return np.stack([np.asarray(predicted[t.name], "float64").reshape(-1, HORIZON) for t in data.tasks], axis=-1)


def trained_report(model, data, settings, seed: int = 0) -> str:
    """What `kmtl train forecasting` prints after its table: the trained model's errors on the test origins beside
    the naive forecasts of the same origins (`errors_table`), one fit, no refitting.

    Args:
        model: the recipe's model trained on `data` (every series a task, in `data.tasks` order).
        data: its `ForecastData`.
        settings: the run's settings (`source`); seed: unused (the report is deterministic given the model).
    """
    targets = data.arrays["test"][1]
    names = [t.name for t in data.tasks]
    primary = tuple(t.name for t in data.tasks if not t.auxiliary)
    forecasts = {"multi-task (split)": predict(model, data), **naive_forecasts(data)}
    dates = data.series.dates
    lines = [
        f"Forecasts of the {len(targets)} test origins ({settings['source']} data, {dates[data.origins['test'][0]]} .. "
        f"{dates[data.origins['test'][-1]]}, 1-{HORIZON} quarters ahead) by the model trained on "
        f"{len(data.arrays['train'][0])} earlier origins, beside the naive forecasts:",
    ]
    lines += errors_table(targets, forecasts, names, primary)
    lines += ["", "vs last: MAE relative to the last value's (negative is better); seasonal naive: the value four "
              "quarters before. `kmtl compare forecasting` refits every model at rolling origins and adds each "
              "target's single-task model."]
    return "\n".join(lines)


def errors_table(targets: np.ndarray, forecasts: dict, names, primary) -> list[str]:
    """Lines of the report's table: per primary series, each forecast's MAE at h = 1..HORIZON, mean MAE and RMSE,
    and its MAE relative to the last value's.

    Args:
        targets: array `(N, HORIZON, series)` of the tested origins.
        forecasts: dict label -> array like `targets` (NaN where a forecaster has no forecast for a series).
        names: the series names (last axis).
        primary: the series to tabulate.
    """
    lines = []
    width = max(len(label) for label in forecasts) + 2
    head = f"{'':{width}s}" + "".join(f"{'h=' + str(h + 1):>8s}" for h in range(HORIZON))
    head += f"{'MAE':>8s}{'RMSE':>8s}{'vs last':>9s}"
    for name in primary:
        column = list(names).index(name)
        truth = targets[:, :, column]
        lines += ["", f"{name}: mean absolute error per quarter ahead", head]
        reference = np.mean(np.abs(forecasts["last value"][:, :, column] - truth))
        for label, values in forecasts.items():
            error = values[:, :, column] - truth
            if np.isnan(error).all():
                continue
            mae = np.mean(np.abs(error))
            lines.append(f"{label:{width}s}" + "".join(f"{v:8.3f}" for v in np.mean(np.abs(error), axis=0))
                         + f"{mae:8.3f}{np.sqrt(np.mean(error ** 2)):8.3f}{(mae / reference - 1) * 100:+8.1f}%")
    return lines
