"""Classical models a user would try first: scikit-learn logistic or ridge regression on simple numeric features.

Features, standardised (`StandardScaler`), from the numeric inputs (string inputs such as tokens are left out; a
task whose inputs are all strings is skipped with that reason):

- per-example tasks: an input of at most `MAX_FEATURES` values per example is flattened; an image `(H, W, C)` is
  pooled to a coarse grid of block means (at most `MAX_FEATURES` values); a sequence `(T, F)` is flattened when it
  is a short fixed window (at most `MAX_FEATURES` values, no padded steps: e.g. a forecast's last quarters, where
  each step's own weight is what a user would fit first) and averaged over its steps otherwise (long or
  variable-length sequences; steps whose inputs are all zero, i.e. padding, left out); the detail says which;
- per-step tasks: each labelled step is a row, with the features of the inputs at that step;
- per-pixel tasks: each labelled pixel is a row, with the input's channels at that pixel.

A whole-sequence task that the model reads at a fixed step (`windows`, found by
`kmtl.evaluation.windows.input_windows(model)`: mortality at hour 48 of a stay) gets its sequence inputs cut to the
steps up to that one before they are pooled, so its classical model reads no later step than the model may.

Integer inputs that are categories, not quantities (`categorical`: a subject, patient or token id; by
`categorical_inputs(model)`, those the model feeds to an `Embedding`, a lookup or encoding layer or
`kmtl.layers.RandomEffects`) are one-hot encoded instead (scikit-learn `OneHotEncoder`, `handle_unknown="ignore"`: an
id unseen in training gets no column; at most `MAX_FEATURES` categories, the rarer ones pooled); an input with several
ids per row (a token sequence) becomes the counts of each id (a bag of ids). Read as a number, an id gives every
subject the same slope in its arbitrary numbering, and the model cannot learn the subject's own level.

Binary, multiclass and multilabel tasks (one model per label) get `LogisticRegression`, regression tasks `RidgeCV`
(the penalty chosen among `RIDGE_ALPHAS` by efficient leave-one-out on the training rows: with a fixed penalty of
1, the 32-36 weights of a flattened forecasting window over-fitted 137-235 rows and did worse than the mean over
steps; with the penalty chosen, the flattened window is the better of the two on every task measured).
Fitted on at most `MAX_EXAMPLES` training examples (or `MAX_ROWS` steps or pixels), drawn at random with the seed,
so each task takes a few seconds at most. Missing labels are left out when fitting and scoring. A training split
that repeats its examples within an epoch (whole passes over one set) is fitted on its distinct examples, and the
detail says so (`kmtl.evaluation.references.distinct_examples`).
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from kmtl.evaluation.arrays import collect_examples
from kmtl.evaluation.references import ReferenceScore, score_predictions, training_examples
from kmtl.evaluation.scores import present_entries
from kmtl.evaluation.windows import checked_windows, windowed
from kmtl.evaluation.windows import describe as describe_window
from kmtl.tasks import Task, validate_task_list

MAX_FEATURES = 256
MAX_EXAMPLES = 2_000
MAX_ROWS = 20_000
# Penalties `RidgeCV` chooses among (on standardised features).
RIDGE_ALPHAS = tuple(np.logspace(-2, 4, 13))


def classical_scores(
    tasks: Sequence[Task],
    train: Any,
    test: Any,
    *,
    seed: int = 0,
    categorical: Sequence[str] = (),
    windows: Mapping[str, Mapping[str, int]] | None = None,
) -> dict[str, ReferenceScore]:
    """Fits each task's classical model on `train` and scores it on `test` (see the module docstring).

    Args:
        tasks: list of `kmtl.Task`.
        train: a `tf.data.Dataset` of `(inputs, {task: labels})` batches or a tuple `(x, y_dict)`.
        test: test data in the same forms; read whole.
        seed: int. Seed of the subsample.
        categorical: names of integer inputs holding categories (ids) to one-hot encode, e.g.
            `categorical_inputs(model)`; `"input"` names a single unnamed input.
        windows: dict `{task: {input: steps}}` or None: for a whole-sequence task the model reads at a fixed step,
            the leading steps of each sequence input it may read (e.g. `input_windows(model)`); the task's classical
            model reads only those.

    Returns:
        dict `{task: ReferenceScore}` named `"logistic"` or `"ridge"` (scores empty and `detail` saying why when
        skipped).

    Example:

    >>> x = np.linspace(-1, 1, 40)[:, None]
    >>> y = {"a": (x[:, 0] > 0).astype(int)}
    >>> classical_scores([Task("a", "binary")], (x, y), (x, y))["a"].scores["auroc"]
    1.0
    """
    tasks = validate_task_list(tasks)
    examples = training_examples(train, tasks)
    train_x, train_y = examples.inputs, examples.labels
    test_x, test_y = collect_examples(test, tasks)
    if not isinstance(train_x, dict):
        train_x, test_x = {"input": train_x}, {"input": test_x}
    windows = checked_windows(windows, tasks, train_x)
    strings = sorted(k for k, v in train_x.items() if v.dtype.kind not in "biuf")
    train_x = {k: v for k, v in train_x.items() if k not in strings}
    test_x = {k: test_x[k] for k in train_x}
    categorical = _checked_categorical(categorical, train_x)
    out = {}
    for task in tasks:
        name = "ridge" if task.kind == "regression" else "logistic"
        if not train_x:
            out[task.name] = ReferenceScore(name, {}, f"skipped: no numeric input ({', '.join(strings)} hold strings)")
            continue
        window = windows.get(task.name, {})
        try:
            rows_train, rows_test, described = _features(
                task, windowed(train_x, window), windowed(test_x, window), train_y[task.name], categorical)
        except _Skip as skip:
            out[task.name] = ReferenceScore(name, {}, f"skipped: {skip}")
            continue
        rng = np.random.default_rng(seed)
        predictions, fitted_on = _fit_predict(task, rows_train, train_y[task.name], rows_test, rng, examples)
        left_out = f"; string inputs {', '.join(strings)} left out" if strings else ""
        out[task.name] = ReferenceScore(
            name, score_predictions(task, test_y[task.name], predictions),
            f"{described}{describe_window(window)}, {fitted_on}{left_out}",
        )
    return out


class _Skip(Exception):
    """A task the classical model cannot be fitted for, with the reason."""


def categorical_inputs(model) -> list[str]:
    """Names of a model's integer inputs that it reads as categories: those fed to an `Embedding`, an
    `IntegerLookup`, `StringLookup`, `Hashing` or `CategoryEncoding` layer, or a `kmtl.layers.RandomEffects` layer.

    Args:
        model: a Functional `keras.Model` (e.g. a `kmtl.MultiTaskModel`); an input of a model with one unnamed input
            is named `"input"`, as `classical_scores` names it.

    Returns:
        sorted list of input names.

    Example:

    >>> import keras
    >>> subject, days = keras.Input((), dtype="int32", name="subject"), keras.Input((1,), name="days")
    >>> level = keras.layers.Flatten()(keras.layers.Embedding(10, 1)(subject))
    >>> categorical_inputs(keras.Model({"subject": subject, "days": days}, keras.layers.Add()([level, days])))
    ['subject']
    """
    import keras

    from kmtl.layers import RandomEffects

    lookups = (keras.layers.Embedding, keras.layers.IntegerLookup, keras.layers.StringLookup, keras.layers.Hashing,
               keras.layers.CategoryEncoding, RandomEffects)
    structure = getattr(model, "input", None)
    named = structure.items() if isinstance(structure, dict) else [("input", structure)]
    integers = {id(t): name for name, t in named if "int" in str(getattr(t, "dtype", ""))}
    found = set()
    for layer in model.layers:
        if not isinstance(layer, lookups):
            continue
        try:
            tensors = keras.tree.flatten(layer.input)
        except (AttributeError, ValueError):  # a layer never called in this graph
            continue
        found |= {integers[id(t)] for t in tensors if id(t) in integers}
    return sorted(found)


def _checked_categorical(categorical, inputs) -> list[str]:
    if isinstance(categorical, str):
        categorical = [categorical]
    categorical = list(categorical or ())
    unknown = [k for k in categorical if k not in inputs]
    if unknown:
        raise ValueError(f"Invalid value for `categorical`: {unknown} are not numeric inputs of the data. Expected "
                         f"names among {sorted(inputs)}. Received: categorical={categorical!r}")
    floats = [k for k in categorical if inputs[k].dtype.kind not in "biu"]
    if floats:
        raise ValueError(f"Invalid value for `categorical`: inputs {floats} hold floats, not integer ids. Received: "
                         f"categorical={categorical!r}")
    return categorical


class _Categories:
    """One-hot columns of an integer input's ids, fitted on the training rows: a row with several ids (e.g. a token
    sequence) gets the count of each id (at most `MAX_FEATURES` ids, the rarer pooled; unseen ids get no column)."""

    def __init__(self, train: np.ndarray):
        from sklearn.preprocessing import OneHotEncoder

        values = np.asarray(train).reshape(len(train), -1)
        self.positions = values.shape[1]
        self.encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False, max_categories=MAX_FEATURES,
                                     dtype=np.float64)
        self.encoder.fit(values.reshape(-1, 1))
        self.size = len(self.encoder.get_feature_names_out())

    def __call__(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values).reshape(len(values), -1)
        encoded = self.encoder.transform(values.reshape(-1, 1)) if values.size else np.zeros((0, self.size))
        return encoded.reshape(len(values), values.shape[1], self.size).sum(axis=1)

    def describe(self) -> str:
        kind = "one-hot" if self.positions == 1 else f"counts over its {self.positions} values"
        return f"{kind} ({self.size} categories, an id read as a category)"


# --- Features ----------------------------------------------------------------------------------------------------


def _features(task, train_x, test_x, labels, categorical=()):
    """`(train rows, test rows, description)`: one row per example, or per step or pixel of per-step/pixel tasks."""
    if task.per_step or task.per_pixel:
        axes = 1 if task.per_step else 2
        what = "step" if task.per_step else "pixel"
        grid = np.asarray(labels).shape[1 : 1 + axes]
        chosen = [k for k, v in train_x.items() if v.ndim > axes and v.shape[1 : 1 + axes] == grid]
        if not chosen:
            raise _Skip(f"no input has the labels' {what} axes {grid}")

        def per_row(inputs, key):  # (examples x steps or pixels, values at one)
            value = inputs[key]
            return value.reshape(value.shape[: 1 + axes] + (-1,)).reshape(-1, int(np.prod(value.shape[1 + axes :])))

        encoders = {k: _Categories(per_row(train_x, k)) for k in chosen if k in categorical}

        def rows(inputs):
            return np.concatenate([encoders[k](per_row(inputs, k)) if k in encoders else
                                   per_row(inputs, k).astype(np.float64) for k in chosen], axis=-1)

        described = ", ".join(f"{k} {encoders[k].describe()}" if k in encoders else k for k in chosen)
        return rows(train_x), rows(test_x), f"the inputs {described} at each {what}"
    train_parts, test_parts, described = [], [], []
    for key in train_x:
        if key in categorical:
            encoder = _Categories(train_x[key])
            train, test, text = encoder(train_x[key]), encoder(test_x[key]), encoder.describe()
        else:
            train, test, text = _pooled(train_x[key], test_x[key])
        train_parts.append(train)
        test_parts.append(test)
        described.append(f"{key} {text}")
    return np.concatenate(train_parts, axis=1), np.concatenate(test_parts, axis=1), ", ".join(described)


def _pooled(train: np.ndarray, test: np.ndarray):
    """One input's per-example features for the training and test examples, and how they were made."""
    size = int(np.prod(train.shape[1:]))
    if train.ndim == 4 and size > MAX_FEATURES:  # an image: block means over a coarse grid
        grid = max(1, min(train.shape[1], train.shape[2], int(np.sqrt(MAX_FEATURES / train.shape[3]))))
        return _grid_means(train, grid), _grid_means(test, grid), f"{grid}x{grid} block means"
    if train.ndim == 3:  # a sequence: a short fixed window flattened, else the mean over its real steps
        padded = any(np.all(part[:, -1] == 0, axis=-1).any() for part in (train, test) if len(part))
        if size <= MAX_FEATURES and train.shape[1:] == test.shape[1:] and not padded:
            flat = (train.reshape(len(train), -1), test.reshape(len(test), -1))
            described = f"flattened ({train.shape[1]} steps x {train.shape[2]} values, a fixed window)"
            return flat[0].astype(np.float64), flat[1].astype(np.float64), described
        why = ("variable length: padded steps" if padded or train.shape[1:] != test.shape[1:] else
               f"{train.shape[1]} steps, over {MAX_FEATURES} values")
        return _step_means(train), _step_means(test), f"mean over steps ({why})"
    if size <= MAX_FEATURES and train.shape[1:] == test.shape[1:]:
        flat = (train.reshape(len(train), -1), test.reshape(len(test), -1))
        return flat[0].astype(np.float64), flat[1].astype(np.float64), "flattened"
    axes = tuple(range(1, train.ndim - 1)) or (1,)
    return (train.mean(axis=axes).reshape(len(train), -1).astype(np.float64),
            test.mean(axis=axes).reshape(len(test), -1).astype(np.float64), "mean over positions")


def _grid_means(images: np.ndarray, grid: int) -> np.ndarray:
    images = images.astype(np.float64)
    for axis in (1, 2):
        edges = np.linspace(0, images.shape[axis], grid + 1).astype(int)[:-1]
        counts = np.diff(np.append(edges, images.shape[axis]))
        shape = [1] * images.ndim
        shape[axis] = grid
        images = np.add.reduceat(images, edges, axis=axis) / counts.reshape(shape)
    return images.reshape(len(images), -1)


def _step_means(sequences: np.ndarray) -> np.ndarray:
    values = sequences.astype(np.float64)
    real = np.any(values != 0, axis=2, keepdims=True)
    return (values * real).sum(axis=1) / np.maximum(real.sum(axis=1), 1)


# --- Models ------------------------------------------------------------------------------------------------------


def _fit_predict(task, train_rows, labels, test_rows, rng, examples):
    """Predictions `(test rows, output_units)` of the task's model and a phrase on what it was fitted on (the
    training `Examples`' repetition undone, if any)."""
    from sklearn.exceptions import ConvergenceWarning

    entries = np.asarray(labels).reshape(len(train_rows), task.label_width)
    present = present_entries(task, entries)
    train_rows, test_rows = np.nan_to_num(train_rows), np.nan_to_num(test_rows)
    limit = MAX_ROWS if task.per_step or task.per_pixel else MAX_EXAMPLES
    unit = "steps" if task.per_step else "pixels" if task.per_pixel else "examples"
    counts = []
    predictions = np.zeros((len(test_rows), task.output_units))
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    # One BLAS thread: these problems are small, and threads only contend with the training that follows.
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)  # a capped iteration count is part of "cheap"
        columns = range(task.label_width) if task.kind in ("multilabel",) else [None]
        for k in columns:
            rows = present[:, k] if k is not None else present.all(axis=1)
            chosen = _subsample(np.flatnonzero(rows), limit, rng)
            counts.append(len(chosen))
            x, y = train_rows[chosen], entries[chosen]
            if task.kind == "regression":
                predictions[:] = _ridge(x, y.astype(np.float64), test_rows, task.output_units)
            elif task.kind == "multiclass":
                predictions[:] = _logistic(x, y[:, 0].astype(int), test_rows, task.num_classes)
            else:
                target = (y[:, 0 if k is None else k].astype(np.float64) >= 0.5).astype(int)
                predictions[:, 0 if k is None else k] = _logistic(x, target, test_rows, 2)[:, 1]
    total = int(present.any(axis=1).sum())
    distinct = "distinct " if examples.repeated else ""
    return predictions, f"fitted on {max(counts)} of {total} {distinct}labelled training {unit}{examples.rows_note()}"


def _subsample(indices, limit, rng):
    return indices if len(indices) <= limit else np.sort(rng.choice(indices, limit, replace=False))


def _ridge(x, y, test, units):
    from sklearn.linear_model import Ridge, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(x) == 0:
        return np.zeros((len(test), units))
    # Leave-one-out needs a few rows; below that, the plain penalty of 1.
    ridge = RidgeCV(alphas=RIDGE_ALPHAS) if len(x) >= 3 else Ridge(alpha=1.0)
    model = make_pipeline(StandardScaler(), ridge).fit(x, y)
    return np.asarray(model.predict(test)).reshape(len(test), units)


def _logistic(x, y, test, classes):
    """Class probabilities `(len(test), classes)`; the training prior when fewer than two classes are present."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    present = np.unique(y)
    if len(present) < 2:
        prior = np.bincount(y, minlength=classes)[:classes].astype(np.float64)
        prior = prior / prior.sum() if prior.sum() else np.full(classes, 1.0 / classes)
        return np.tile(prior, (len(test), 1))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(x, y)
    out = np.zeros((len(test), classes))
    out[:, present] = model.predict_proba(test)
    return out
