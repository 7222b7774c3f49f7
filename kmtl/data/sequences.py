"""The common in-memory format of episode sequences (ICU stays, patient follow-ups) and its `tf.data` form.

`SequenceData` holds one float32 array `(steps_i, F)` per episode (discretised, not normalised), labels keyed by
task name, and the patient of each episode for grouped splits. A label is either per episode (a numpy array with
one row per episode) or per step (a list with one array of `steps_i` rows per episode). Missing labels carry the
markers kmtl's tasks use: `-1` in integer labels, `NaN` in float labels.

`to_dataset` batches episodes into `({"features": (B, T, F), "mask": (B, T)}, {task: labels})`, padding each
batch to its longest episode: features 0, mask 0, labels their missing marker.
"""

import dataclasses
import numbers

import numpy as np
import tensorflow as tf

__all__ = ["SequenceData", "missing_marker", "to_dataset"]

MISSING_INT = -1


def missing_marker(dtype):
    """The missing-label marker for a label dtype: `NaN` for floats, `-1` for integers."""
    return float("nan") if np.issubdtype(np.dtype(dtype), np.floating) else MISSING_INT


@dataclasses.dataclass
class SequenceData:
    """Episodes of multivariate sequences with per-episode and per-step labels.

    Args:
        features: list of float32 arrays `(steps_i, F)`, one per episode.
        labels: dict label name -> per-episode labels (array `(N,)` or `(N, k)`) or per-step labels (list of
            arrays `(steps_i,)` or `(steps_i, k)`). Integer labels are int32 with `-1` for missing, float labels
            float32 with `NaN` for missing.
        groups: array `(N,)`. Patient of each episode; episodes of one patient stay together in grouped splits.
        feature_names: list of F str.
        channel_groups: dict variable -> list of its channel indices (value channels, then mask channel).
        continuous_channels: list of int. Channels to normalise.
        episode_ids: list of N str or `None`. A name per episode (e.g. its file), for tracing predictions.

    Raises:
        ValueError: if the parts disagree on the number of episodes, a per-step label's length differs from its
            episode's, or features are not 2D with one width; the message names the label or field.
    """

    features: list
    labels: dict
    groups: np.ndarray
    feature_names: list
    channel_groups: dict = dataclasses.field(default_factory=dict)
    continuous_channels: list = dataclasses.field(default_factory=list)
    episode_ids: list | None = None

    def __post_init__(self):
        self.features = [np.asarray(x, dtype="float32") for x in self.features]
        self.groups = np.asarray(self.groups)
        self.labels = {name: _as_label(name, value) for name, value in self.labels.items()}
        num = len(self.features)
        widths = {x.shape[1] for x in self.features if x.ndim == 2}
        if any(x.ndim != 2 for x in self.features) or len(widths) > 1:
            raise ValueError("`features` must be 2D arrays (steps, F) with one F for all episodes.")
        if widths and len(self.feature_names) != widths.pop():
            raise ValueError(f"`feature_names` has {len(self.feature_names)} names; the features have other width.")
        if self.groups.shape != (num,):
            raise ValueError(f"`groups` must have shape ({num},). Received: groups.shape={self.groups.shape}")
        if self.episode_ids is not None and len(self.episode_ids) != num:
            raise ValueError(f"`episode_ids` must have {num} entries. Received: {len(self.episode_ids)}")
        for name, value in self.labels.items():
            if len(value) != num:
                raise ValueError(f"Label '{name}' has {len(value)} episodes; `features` has {num}.")
            if isinstance(value, list):
                for index, (x, y) in enumerate(zip(self.features, value)):
                    if y.shape[0] != x.shape[0]:
                        raise ValueError(
                            f"Label '{name}' of episode {index} has {y.shape[0]} steps; its features have {x.shape[0]}."
                        )

    def __len__(self) -> int:
        return len(self.features)

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    @property
    def lengths(self) -> np.ndarray:
        """Number of steps of each episode, int64 `(N,)`."""
        return np.array([x.shape[0] for x in self.features], dtype="int64")

    def is_per_step(self, name: str) -> bool:
        """Whether label `name` has one value per step (a list) rather than one per episode (an array)."""
        return isinstance(self.labels[name], list)

    def subset(self, indices) -> "SequenceData":
        """Returns the episodes at `indices` (int array or list), in that order."""
        indices = np.asarray(indices, dtype="int64").reshape(-1)

        def pick(items):
            return [items[i] for i in indices]

        labels = {n: pick(v) if isinstance(v, list) else v[indices] for n, v in self.labels.items()}
        return dataclasses.replace(
            self,
            features=pick(self.features),
            labels=labels,
            groups=self.groups[indices],
            feature_names=list(self.feature_names),
            channel_groups={k: list(v) for k, v in self.channel_groups.items()},
            continuous_channels=list(self.continuous_channels),
            episode_ids=None if self.episode_ids is None else pick(self.episode_ids),
        )

    def split(self, fractions, seed: int = 0, by_group: bool = True) -> tuple:
        """Splits the episodes at random into parts of about the given fractions.

        Args:
            fractions: sequence of float > 0 summing to 1, e.g. `(0.7, 0.15, 0.15)`.
            seed: int. Seed of the shuffle; the same seed gives the same parts.
            by_group: bool. Keep all episodes of a patient (`groups`) in one part, so no patient is in two
                parts; the fractions then hold approximately (a patient is put where the middle of its
                episodes falls).

        Returns:
            A tuple of `SequenceData`, one per fraction, each in the original episode order.
        """
        fractions = np.asarray(fractions, dtype="float64").reshape(-1)
        if fractions.size == 0 or (fractions <= 0).any() or abs(fractions.sum() - 1.0) > 1e-6:
            raise ValueError(
                f"Invalid value for `fractions`. Expected positive numbers summing to 1. "
                f"Received: fractions={fractions.tolist()}"
            )
        rng = np.random.default_rng(seed)
        bounds = np.cumsum(fractions)[:-1] * len(self)
        if by_group:
            names, inverse, counts = np.unique(self.groups, return_inverse=True, return_counts=True)
            order = rng.permutation(names.size)
            middle = np.cumsum(counts[order]) - counts[order] / 2.0
            part_of_group = np.empty(names.size, dtype="int64")
            part_of_group[order] = np.searchsorted(bounds, middle, side="right")
            part = part_of_group[inverse.reshape(-1)]
        else:
            part = np.empty(len(self), dtype="int64")
            part[rng.permutation(len(self))] = np.searchsorted(np.round(bounds), np.arange(len(self)), side="right")
        return tuple(self.subset(np.flatnonzero(part == k)) for k in range(fractions.size))

    def fold_split(self, fold, val_fraction: float, seed: int = 0) -> tuple:
        """Grouped k-fold: the k-th of K folds of patients is the test part; the other patients are split into
        training and validation parts (`val_fraction` of them, grouped too).

        Patients are shuffled by `seed` and dealt to the folds in turn, largest first by episode count, each to the
        fold with fewest episodes so far, so folds hold about the same number of episodes and no patient is in two
        parts. Over k = 0..K-1 every episode is tested exactly once.

        Args:
            fold: `(k, K)` with `0 <= k < K` and `K >= 2`.
            val_fraction: float in (0, 1). Share of the non-test episodes held out for validation.
            seed: int. Seed of the patients' order and of the training/validation split.

        Returns:
            `(train, val, test)` `SequenceData`s, each in the original episode order.
        """
        if not (isinstance(fold, (tuple, list)) and len(fold) == 2
                and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in fold)
                and 0 <= fold[0] < fold[1] and fold[1] >= 2):
            raise ValueError(
                f"Invalid value for `fold`. Expected (k, K) with 0 <= k < K and K >= 2. Received: fold={fold!r}"
            )
        k, num_folds = int(fold[0]), int(fold[1])
        names, inverse, counts = np.unique(self.groups, return_inverse=True, return_counts=True)
        if names.size < num_folds:
            raise ValueError(
                f"Invalid value for `fold`: {num_folds} folds need at least {num_folds} patients (groups). "
                f"Received: {names.size} patients."
            )
        order = np.random.default_rng(seed).permutation(names.size)
        order = order[np.argsort(-counts[order], kind="stable")]
        fold_of_group, sizes = np.empty(names.size, dtype="int64"), np.zeros(num_folds, dtype="int64")
        for group in order:
            fold_of_group[group] = int(np.argmin(sizes))
            sizes[fold_of_group[group]] += counts[group]
        in_test = fold_of_group[inverse.reshape(-1)] == k
        rest = self.subset(np.flatnonzero(~in_test))
        train, val = rest.split((1.0 - val_fraction, val_fraction), seed=seed)
        return train, val, self.subset(np.flatnonzero(in_test))


def _as_label(name, value):
    """Per-step labels stay a list of arrays; per-episode labels become one array."""
    if isinstance(value, list):
        return [np.asarray(v) for v in value]
    value = np.asarray(value)
    if value.ndim == 0:
        raise ValueError(f"Label '{name}' must have one entry per episode. Received a scalar.")
    return value


def to_dataset(
    data: SequenceData,
    batch_size: int,
    *,
    tasks=None,
    shuffle: bool = False,
    seed: int = 0,
    max_steps=None,
    pad_to=None,
):
    """Returns the episodes as a batched `tf.data.Dataset`, each batch padded to its longest episode (or further,
    to one of a few fixed lengths: `pad_to`).

    Args:
        data: `SequenceData`.
        batch_size: int. Episodes per batch.
        tasks: list of str or `None`. Label names to keep, in this order; `None` keeps all.
        shuffle: bool. Whether to reshuffle the episodes every epoch, seeded with `seed`.
        seed: int. Shuffle seed.
        max_steps: int or `None`. Keep only the first `max_steps` steps of each episode (and of its per-step
            labels).
        pad_to: `None`, `"buckets"` or a list of int. `None` pads each batch to its longest episode, so batches come
            in as many lengths as there are longest episodes, and a compiled (XLA) step compiles once per length.
            A list pads each batch to the smallest of these lengths that holds its longest episode (episodes longer
            than the largest are cut to it), so the step sees at most `len(pad_to)` lengths; `"buckets"` uses
            powers of two from 8 up to the longest episode (the last one capped at `max_steps`). Padded steps are
            masked and their labels missing, so losses and metrics are the same whatever the padding.

    Returns:
        A `tf.data.Dataset` of `({"features": float32 (B, T, F), "mask": float32 (B, T)}, {name: labels})`,
        mask 1 at real steps. Per-step labels are `(B, T)` or `(B, T, k)`, padded with the missing marker
        (`-1` for integer labels, `NaN` for float labels); per-episode labels are `(B,)` or `(B, k)`.

    Example:

    >>> data = SequenceData(
    ...     features=[np.ones((3, 2)), np.ones((1, 2))],
    ...     labels={"alive": np.array([1, 0], "int32"), "risk": [np.zeros(3, "int32"), np.ones(1, "int32")]},
    ...     groups=np.array([0, 1]), feature_names=["a", "b"])
    >>> inputs, labels = next(iter(to_dataset(data, batch_size=2)))
    >>> inputs["mask"].numpy().tolist(), labels["risk"].numpy().tolist()
    ([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]], [[0, 0, 0], [1, -1, -1]])
    """
    for arg, value in (("batch_size", batch_size), ("max_steps", max_steps)):
        if not (value is None and arg == "max_steps") and (
            isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1
        ):
            raise ValueError(f"Invalid value for `{arg}`. Expected a positive int. Received: {arg}={value!r}")
    names = list(data.labels) if tasks is None else list(tasks)
    unknown = [name for name in names if name not in data.labels]
    if unknown:
        raise ValueError(f"Unknown label name(s) {unknown} in `tasks`. Available: {sorted(data.labels)}")
    bounds = _bucket_bounds(pad_to, data.lengths, max_steps)
    if bounds is not None:
        max_steps = bounds[-1] if max_steps is None else min(max_steps, bounds[-1])
    cut = slice(None, max_steps)
    features = [x[cut] for x in data.features]
    inputs = {
        "features": _ragged([x.astype("float32") for x in features]),
        "mask": _ragged([np.ones(x.shape[0], dtype="float32") for x in features]),
    }
    labels, padding = {}, {}
    for name in names:
        value = data.labels[name]
        if isinstance(value, list):
            value = [_label_dtype(v)[cut] for v in value]
            labels[name] = _ragged(value)
            dtype = value[0].dtype if value else np.dtype("float32")
        else:
            labels[name] = tf.constant(_label_dtype(value))
            dtype = labels[name].dtype.as_numpy_dtype
        padding[name] = tf.constant(missing_marker(dtype), dtype=tf.as_dtype(dtype))
    dataset = tf.data.Dataset.from_tensor_slices((inputs, labels))
    if shuffle:
        dataset = dataset.shuffle(max(len(data), 1), seed=seed, reshuffle_each_iteration=True)

    def pad(inputs, labels):
        steps = None
        if bounds is not None:
            longest = tf.reduce_max(inputs["mask"].row_lengths())
            steps = tf.gather(bounds, tf.reduce_sum(tf.cast(bounds < longest, tf.int32)))

        def dense(value, default):
            if steps is None:
                return value.to_tensor(default)
            widths = value.flat_values.shape.as_list()[1:]
            trailing = tf.constant(widths, tf.int64, shape=[len(widths)])
            shape = tf.concat([tf.constant([-1], tf.int64), tf.reshape(steps, [1]), trailing], axis=0)
            return value.to_tensor(default, shape=shape)

        inputs = {key: dense(value, 0.0) for key, value in inputs.items()}
        labels = {
            key: dense(value, padding[key]) if isinstance(value, tf.RaggedTensor) else value
            for key, value in labels.items()
        }
        return inputs, labels

    return dataset.batch(batch_size).map(pad).prefetch(tf.data.AUTOTUNE)


_BAD_PAD_TO = (
    'Invalid value for `pad_to`. Expected None, "buckets" or a list of positive int. Received: pad_to={pad_to!r}'
)


def _bucket_bounds(pad_to, lengths, max_steps):
    """The padded lengths `pad_to` allows, as a sorted int64 array, or None for "each batch's longest"."""
    if pad_to is None:
        return None
    longest = int(lengths.max()) if len(lengths) else 1
    if max_steps is not None:
        longest = min(longest, max_steps)
    if isinstance(pad_to, str):
        if pad_to != "buckets":
            raise ValueError(_BAD_PAD_TO.format(pad_to=pad_to))
        bounds = [8]
        while bounds[-1] < longest:
            bounds.append(bounds[-1] * 2)
        if max_steps is not None:
            bounds = sorted({min(b, max_steps) for b in bounds})  # never longer than the episodes may be
        return np.array(bounds, dtype="int64")
    bounds = sorted(set(pad_to)) if isinstance(pad_to, (list, tuple)) else []
    if not bounds or any(isinstance(b, bool) or not isinstance(b, numbers.Integral) or b < 1 for b in bounds):
        raise ValueError(_BAD_PAD_TO.format(pad_to=pad_to))
    return np.array(bounds, dtype="int64")


def _label_dtype(value):
    """int32 for integer (and boolean) labels, float32 for float labels."""
    value = np.asarray(value)
    return value.astype("float32") if np.issubdtype(value.dtype, np.floating) else value.astype("int32")


def _ragged(arrays):
    """A `tf.RaggedTensor` `(N, None, ...)` from a list of arrays that differ in their first axis."""
    lengths = np.array([a.shape[0] for a in arrays], dtype="int64")
    flat = np.concatenate(arrays, axis=0) if arrays else np.zeros((0,), dtype="float32")
    return tf.RaggedTensor.from_row_lengths(flat, lengths)
