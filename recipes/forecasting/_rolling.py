"""Rolling-origin evaluation with refitting: the recipe's models refitted at each of K origins, their forecasts of
the block of origins that follows beside the naive forecasts, and the report's text."""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from kmtl.recipes.forecasting._data import HORIZON
from kmtl.recipes.forecasting._report import errors_table, naive_forecasts, predict

# Origins at which the report refits every model (consecutive blocks of the evaluation period).
REFITS = 4


@dataclasses.dataclass
class RollingForecasts:
    """Forecasts of every tested origin, stacked over the refits.

    Attributes:
        targets: array `(N, HORIZON, series)`.
        forecasts: dict label -> array like `targets` (NaN for series a forecaster does not forecast).
        names: the series names; `primary`: the primary ones.
        blocks: list of `(training origins, first tested date, last tested date)` per refit.
    """

    targets: np.ndarray
    forecasts: dict
    names: list
    primary: tuple
    blocks: list


def rolling_forecasts(recipe, settings: Mapping, seed: int = 0, refits: int = REFITS) -> RollingForecasts:
    """Refits the multi-task model and each primary target's single-task model at each of `refits` origins.

    Refit k trains on the origins before the k-th of `refits` consecutive blocks of the evaluation period (data
    setting `fold=(k, refits)`, with the input normalisation fitted on them) and forecasts that block's origins;
    the naive forecasts read the same histories, the training mean the same training targets. Every model gets
    `settings["epochs"]` epochs after `keras.utils.set_random_seed(seed)`.
    """
    import keras

    if isinstance(refits, bool) or not isinstance(refits, int) or refits < 1:
        raise ValueError(f"Invalid value for `refits`. Expected a positive int. Received: refits={refits!r}")
    parts, blocks = [], []
    for k in range(refits):
        fold_settings = {**settings, "fold": (k, refits)}
        data = recipe.load(fold_settings, seed=seed)
        targets = data.arrays["test"][1]
        names = [t.name for t in data.tasks]
        primary = tuple(t.name for t in data.tasks if not t.auxiliary)
        forecasts = {
            "multi-task (split)": _fit_predict(recipe, fold_settings, data, seed, keras),
            "single-task": np.full(targets.shape, np.nan),
            **naive_forecasts(data),
        }
        for name in primary:
            alone = recipe.load(fold_settings, seed=seed, tasks=[name])
            forecasts["single-task"][:, :, names.index(name)] = _fit_predict(recipe, fold_settings, alone, seed,
                                                                             keras)[:, :, 0]
        parts.append((targets, forecasts))
        dates = data.series.dates
        blocks.append((len(data.arrays["train"][0]), dates[data.origins["test"][0]], dates[data.origins["test"][-1]]))
    targets = np.concatenate([t for t, _ in parts])
    stacked = {label: np.concatenate([f[label] for _, f in parts]) for label in parts[0][1]}
    return RollingForecasts(targets, stacked, names, primary, blocks)


def _fit_predict(recipe, settings, data, seed, keras) -> np.ndarray:
    """Trains the recipe's model on `data` and returns its test forecasts `(N, HORIZON, tasks)` in task order."""
    keras.utils.set_random_seed(seed)
    model = recipe.compile(recipe.build(settings, data), settings)
    model.fit(data.train, epochs=settings["epochs"], verbose=0, shuffle=False)
    return predict(model, data)


def report(recipe, settings: Mapping, seed: int = 0, refits: int = REFITS) -> str:
    """The rolling-origin report as text: the scheme, then per primary target each forecast's MAE per quarter
    ahead, mean MAE, RMSE and MAE relative to the last value's (`rolling_forecasts`)."""
    run = rolling_forecasts(recipe, settings, seed=seed, refits=refits)
    lines = [
        f"Rolling-origin evaluation ({settings['source']} data, {len(run.targets)} origins, forecasts 1-{HORIZON} "
        f"quarters ahead): every model refitted at {refits} origins on the origins before, "
        f"{settings['epochs']} epochs each:",
    ]
    lines += [f"  refit {k + 1}: {count} training origins, tested origins {first} .. {last}"
              for k, (count, first, last) in enumerate(run.blocks)]
    lines += errors_table(run.targets, run.forecasts, run.names, run.primary)
    lines += ["", "vs last: MAE relative to the last value's (negative is better). single-task: the same split "
              "model with only that target's output; seasonal naive: the value four quarters before."]
    return "\n".join(lines)
