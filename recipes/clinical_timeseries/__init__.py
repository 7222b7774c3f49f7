"""Clinical time series: one recurrent model learns the MIMIC-III benchmark's four ICU tasks together.

A maintained Keras 3 version of the multitask model of the MIMIC-III benchmark: hourly ICU time series (17
variables discretised to 76 channels with measured-masks) feed a channel-wise LSTM (each variable through its own
small LSTM, then a shared LSTM) or a plain LSTM, read by four task heads:

- `mortality`: in-hospital mortality, binary per stay, predicted from the first 48 hours (read at hour 48);
- `decompensation`: death within the next 24 hours, binary at every hour;
- `length_of_stay`: remaining stay at every hour, as 10 buckets (default) or, with `los="hours"`, as
  `remaining_stay` hours (regression);
- `phenotype`: 25 acute-care conditions of the stay, multilabel (read at the end of the stay).

The default data is kmtl's synthetic ICU stays (no download); `source="mimic3:PATH"` reads the benchmark's
multitask folder and `source="pbcseq"` trains on the embedded PBC follow-up visits with their own tasks.
Models start with a `Normalization` layer holding the training split's statistics, so saved and exported models
take raw discretised features. See `docs/clinical_timeseries.md`.

Example:

>>> from kmtl.recipes import clinical_timeseries as ct
>>> splits = ct.load_data(num_stays=12, batch_size=4)  # doctest: +SKIP
>>> model = ct.build_model("channelwise", **splits.model_settings)  # doctest: +SKIP
>>> ct.compile_model(model).fit(splits.train, validation_data=splits.val, epochs=1)  # doctest: +SKIP
>>> ct.benchmark_metrics(model, splits.test)["mortality"]["auroc"]  # doctest: +SKIP

Reference:
    Harutyunyan, Khachatrian, Kale, Ver Steeg & Galstyan (2019). Multitask learning and benchmarking with clinical
    time series data. Scientific Data 6.
"""

from __future__ import annotations

import numbers
from typing import Mapping, Sequence

import keras

import kmtl
from kmtl.recipe import Recipe
from kmtl.recipes.clinical_timeseries import _data as data_lib
from kmtl.recipes.clinical_timeseries import _models as nets
from kmtl.recipes.clinical_timeseries._data import (
    LOSS_WEIGHTS,
    MORTALITY_STEP,
    READOUT_STEPS,
    ClinicalSplits,
    load_data,
    make_tasks,
)
from kmtl.recipes.clinical_timeseries._metrics import benchmark_metrics

NAME = "clinical-timeseries"
DESCRIPTION = "Channel-wise or plain LSTM for the MIMIC-III benchmark's 4 ICU tasks (or PBC follow-ups), per hour."

# The model's defaults: `build_model`'s argument defaults and the settings `kmtl train` runs with (one source).
MODEL_DEFAULTS = {"model": "channelwise", "channel_units": 8, "shared_units": 64, "units": 64, "depth": 1,
                  "dropout": 0.1, "deep_supervision": 0.0, "stay_readout": "last_mean_and_inputs"}
# Training defaults used by `kmtl train clinical-timeseries`; `QUICK` overrides them for `--quick` runs.
DEFAULTS = {
    "epochs": 8,
    "batch_size": 16,
    "weighting": "uncertainty",
    "learning_rate": 3e-3,
    "source": "synthetic",
    "num_stays": 1200,
    "los": "buckets",
    **MODEL_DEFAULTS,
}
QUICK = {"epochs": 1, "num_stays": 16, "max_steps": 60, "channel_units": 2, "shared_units": 8, "units": 8}

TASKS = make_tasks()


def build_model(
    model: str = MODEL_DEFAULTS["model"],
    *,
    tasks: Sequence[kmtl.Task] | None = None,
    normalizer=None,
    channel_groups: Mapping[str, Sequence[int]] | None = None,
    num_features: int | None = None,
    channel_units: int = MODEL_DEFAULTS["channel_units"],
    shared_units: int = MODEL_DEFAULTS["shared_units"],
    units: int = MODEL_DEFAULTS["units"],
    depth: int = MODEL_DEFAULTS["depth"],
    dropout: float = MODEL_DEFAULTS["dropout"],
    deep_supervision: float = MODEL_DEFAULTS["deep_supervision"],
    readout_steps: Mapping[str, int] | None = None,
    bidirectional: bool = False,
    stay_readout: str = MODEL_DEFAULTS["stay_readout"],
) -> kmtl.MultiTaskModel:
    """Builds a clinical multitask model (uncompiled) with inputs `features` `(batch, steps, F)` and `mask`.

    Args:
        model: str. `"channelwise"` (each variable's channels through its own LSTM, then a shared LSTM) or
            `"lstm"` (the plain LSTM baseline).
        tasks: the tasks to learn; defaults to `make_tasks()` (the four ICU tasks). Pass a subset for single-task
            baselines. Per-step tasks (`per_step=True`) get a prediction at every step; the others one per
            sequence, read at `readout_steps[task]` or at the last real step.
        normalizer: a fitted `kmtl.data.clinical.Normalizer` (from `load_data(...).model_settings`): its
            statistics become the model's first layer. None uses identity statistics (for raw inputs that are
            already standardised).
        channel_groups: dict variable -> channel indices (values, then the variable's mask channel); defaults to
            the ICU discretizer's 17 variables. Used by the channel-wise model.
        num_features: int. Channels per step; defaults to the normaliser's, else 76.
        channel_units: int. Units of each variable's LSTM (channel-wise model).
        shared_units: int. Units of the shared LSTM over all variables (channel-wise model).
        units: int. Units of each LSTM of the plain model.
        depth: int. Stacked LSTMs of the plain model.
        dropout: float. Dropout on the LSTMs' inputs and before the heads.
        deep_supervision: float in [0, 1). Deep supervision (the benchmark's target replication): each whole-stay
            task also gets an auxiliary per-step copy `<task>_per_step`, trained to predict the stay's label at
            every real step (mortality: at every step up to hour 48), with this fraction of the task's loss
            weight; the whole-stay prediction keeps the rest and shares the copy's head. 0 disables it.
        readout_steps: dict task -> step (0-based) at which a whole-stay task is read; defaults to
            `{"mortality": 47}` (hour 48 of hourly steps).
        bidirectional: bool. Run the recurrent layers in both directions. Allowed only when every task is read at
            the end of the sequence without deep supervision: otherwise a prediction at step t would see steps
            after t (the benchmark also runs its multitask models forward only).
        stay_readout: str. How a whole-stay task read at the end of the stay (`phenotype`) reads the sequence:
            `"last"` (the last real step, as the benchmark), `"last_and_mean"` (the last real step's features
            beside their mean over the real steps) or `"last_mean_and_inputs"` (those, and each normalised input
            channel's mean and mean square over the real steps: the pooled statistics a logistic regression on the
            stay reads, next to what the LSTM learned).

    Returns:
        `kmtl.MultiTaskModel` with one output per task (and per deep-supervision copy).

    Raises:
        ValueError: for an unknown model, bad sizes, or `bidirectional` with early predictions.
    """
    if model not in nets.MODELS:
        raise ValueError(f"Invalid value for `model`. Expected one of {nets.MODELS}. Received: model={model!r}")
    if stay_readout not in nets.STAY_READOUTS:
        raise ValueError(
            f"Invalid value for `stay_readout`. Expected one of {nets.STAY_READOUTS}. Received: "
            f"stay_readout={stay_readout!r}"
        )
    for field, value in (("channel_units", channel_units), ("shared_units", shared_units), ("units", units),
                         ("depth", depth)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"Invalid value for `{field}`. Expected a positive int. Received: {field}={value!r}")
    _check_fraction("dropout", dropout)
    _check_fraction("deep_supervision", deep_supervision)
    tasks = list(tasks) if tasks is not None else make_tasks()
    readout_steps = dict(READOUT_STEPS if readout_steps is None else readout_steps)
    if bidirectional:
        nets.check_bidirectional(tasks, readout_steps, deep_supervision)
    if num_features is None:
        num_features = normalizer.num_features if normalizer is not None else data_lib.ICU_FEATURES
    channel_groups = data_lib.icu_channel_groups() if channel_groups is None else channel_groups

    # === Inputs and normalisation ===
    features = keras.Input((None, num_features), name="features")
    mask = keras.Input((None,), name="mask")
    x = nets.normalization_layer(normalizer, num_features)(features)

    # === Trunk ===
    if model == "channelwise":
        sequence = nets.channelwise_trunk(
            x, mask, channel_groups, channel_units=channel_units, shared_units=shared_units, dropout=dropout,
            bidirectional=bidirectional,
        )
    else:
        sequence = nets.lstm_trunk(x, mask, units=units, depth=depth, dropout=dropout, bidirectional=bidirectional)
    if dropout:
        sequence = keras.layers.Dropout(dropout, name="features_dropout")(sequence)

    # === Heads ===
    all_tasks = nets.with_deep_supervision(tasks, deep_supervision)
    outputs = nets.attach_heads(all_tasks, sequence, mask, readout_steps, stay_readout, inputs=x)
    name = f"clinical_{model}"
    return kmtl.MultiTaskModel({"features": features, "mask": mask}, outputs, name=name, tasks=all_tasks)


def compile_model(
    model: kmtl.MultiTaskModel, weighting=None, learning_rate: float | None = None, jit_compile: bool = False
):
    """Compiles with Adam and a weighting; defaults are the recipe's (`DEFAULTS`, chosen by the search in
    `docs/clinical_timeseries.md`).

    XLA is off by default. `load_data` pads batches to a few lengths (powers of two), so with `jit_compile=True`
    XLA compiles once per length (and batch size), not once per batch; with `load_data(pad_to=None)` every new
    longest episode would compile again. Both models train under XLA. On CPU the channel-wise model's XLA step
    took 0.87x the time of the plain one, but its first step compiled for about 15 s longer per padded length,
    which pays back only after several hundred steps; that is why XLA stays off by default.
    """
    weighting = DEFAULTS["weighting"] if weighting is None else weighting
    learning_rate = DEFAULTS["learning_rate"] if learning_rate is None else learning_rate
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), weighting=weighting, jit_compile=jit_compile)
    return model


def _check_fraction(field: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ValueError(f"Invalid value for `{field}`. Expected a float in [0, 1). Received: {field}={value!r}")


__all__ = [
    "DEFAULTS",
    "DESCRIPTION",
    "LOSS_WEIGHTS",
    "MORTALITY_STEP",
    "NAME",
    "QUICK",
    "RECIPE",
    "TASKS",
    "ClinicalSplits",
    "benchmark_metrics",
    "build_model",
    "compile_model",
    "load_data",
    "make_tasks",
]


# What `kmtl tune clinical-timeseries` searches (see `kmtl.tuning.space`); first choices are the defaults. Names are
# `build_model` arguments, or `compile_model`'s (`learning_rate`, `weighting`).
# The weighting table of docs/clinical_timeseries.md: `kmtl tune clinical-timeseries --max-trials 5 --epochs 4`.
SEARCH_SPACE = {
    "weighting": ["uncertainty", "equal", "static", "pcgrad", "cagrad"],
}


RECIPE = Recipe(
    name=NAME,
    description=DESCRIPTION,
    tasks=TASKS,
    build_model=build_model,
    compile_model=compile_model,
    load_data=load_data,
    defaults=DEFAULTS,
    quick=QUICK,
    data_settings=("source", "num_stays", "los", "deep_supervision", "max_steps", "fold"),
    model_settings=("model", "channel_units", "shared_units", "units", "depth", "dropout", "deep_supervision",
                    "bidirectional", "stay_readout"),
    derived_settings=("tasks", "normalizer", "channel_groups"),
    search_space=SEARCH_SPACE,
    models=nets.MODELS,
    sources="synthetic (default), mimic3:PATH, pbcseq",
)


def __getattr__(name):
    # Deprecated in 0.2, removed in 0.3: the hypermodel lives once, in `kmtl.tuning.RecipeHyperModel`.
    if name == "hypermodel":
        import warnings

        from kmtl.tuning.recipe_hypermodel import RecipeHyperModel

        warnings.warn(
            "`clinical_timeseries.hypermodel(**kwargs)` is deprecated; use "
            "`kmtl.tuning.RecipeHyperModel(clinical_timeseries.RECIPE, **kwargs)`.",
            DeprecationWarning,
            stacklevel=2,
        )
        return lambda **kwargs: RecipeHyperModel(RECIPE, **kwargs)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
