"""Facial attributes: one CNN learns smiling, eyeglasses, gender, hair colour, ethnicity, age, head pose and landmarks.

A HyperFace-style model: a small CNN trunk whose pooled features from several depths are fused (global features
from early layers help localisation tasks such as landmarks and pose, deep ones help attributes) and read by one
head per task; the trunk's batch renormalisation normalises a face the same way in training and at inference. The
embedded default data is kmtl's deterministic synthetic face generator, where every label is
known exactly and the attributes are correlated as on real faces (docs/facial_attributes.md says what each task
depends on, every task's default score beside its trivial predictor, and how the defaults were chosen);
`load_data(source="celeba:PATH")` and `source="utkface:PATH"` read the real datasets from a local
copy instead, with the tasks they lack marked missing.

Example:

>>> from kmtl.recipes import facial_attributes as fa
>>> model = fa.build_model(image_size=32)
>>> train_ds, val_ds, test_ds = fa.load_data(num_train=64, num_val=32, num_test=32, image_size=32)
>>> model.compile(optimizer="adam", weighting="uncertainty")  # doctest: +SKIP
>>> model.fit(train_ds, validation_data=val_ds, epochs=1)  # doctest: +SKIP

Reference:
    Ranjan, Patel & Chellappa (2019). HyperFace: A Deep Multi-task Learning Framework for Face Detection, Landmark
    Localization, Pose Estimation, and Gender Recognition. IEEE TPAMI.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

import kmtl
from kmtl import data as face_data
from kmtl.layers import FeatureFusion
from kmtl.metrics import NormalizedMeanError
from kmtl.recipe import Recipe, RecipeData

NAME = "facial-attributes"
DESCRIPTION = "CNN with multi-depth feature fusion for 8 face tasks (binary, multiclass, regression, landmarks)."
INPUT_NAME = "image"

# Training defaults used by `kmtl train facial-attributes`; `QUICK` overrides them for `--quick` runs. The weighting
# and learning rate are the best of an equal-budget search (docs/facial_attributes.md, "Defaults chosen by a small
# equal-budget search"); 10 epochs train in about 100 CPU-seconds on the embedded data.
DEFAULTS = {
    "epochs": 10,
    "batch_size": 64,
    "weighting": "equal",
    "learning_rate": 1e-3,
    "num_train": 3000,
    "num_val": 500,
    "num_test": 1000,
    "image_size": 40,
}
QUICK = {"epochs": 1, "num_train": 128, "num_val": 32, "num_test": 64, "image_size": 24}
# What `kmtl tune facial-attributes` searches (see `kmtl.tuning.space` for the entry forms); first choices are the
# defaults. Names are model settings (`build_model` arguments) or `learning_rate`, `weighting`.
SEARCH_SPACE = {
    "filters": [(16, 32, 48), (32, 64, 96)],
    "fusion_units": [96, 192],
    "head_units": [(32,), (64,)],
    "dropout": {"min": 0.0, "max": 0.3, "step": 0.1, "default": 0.1},
    "learning_rate": {"min": 5e-4, "max": 4e-3, "sampling": "log", "default": 1e-3},
    # Equal and uncertainty weighting, and two gradient methods (about 5x the CPU time per epoch at 8 tasks).
    "weighting": ["equal", "uncertainty", "pcgrad", "imtl_g"],
}


def make_tasks() -> list[kmtl.Task]:
    """The recipe's tasks; the label names match `kmtl.data` so reports and exports speak of classes by name."""
    return [
        kmtl.Task("smiling", "binary", label_names=["no", "yes"]),
        kmtl.Task("eyeglasses", "binary", label_names=["no", "yes"]),
        kmtl.Task("gender", "binary", label_names=["female", "male"]),
        kmtl.Task("hair_colour", "multiclass", num_classes=len(face_data.HAIR_COLOURS),
                  label_names=face_data.HAIR_COLOURS),
        kmtl.Task("ethnicity", "multiclass", num_classes=len(face_data.ETHNICITIES),
                  label_names=face_data.ETHNICITIES),
        # Ages in years and yaw in degrees are learned in standardised units (offset and scale are round numbers
        # near the embedded data's mean and spread; CelebA-style landmarks are normalised coordinates).
        kmtl.Task("age", "regression", metrics=["mae"], target_offset=45.0, target_scale=20.0),
        kmtl.Task("head_pose", "regression", metrics=["mae"], target_scale=20.0),
        kmtl.Task("landmarks", "regression", units=2 * len(face_data.LANDMARK_NAMES),
                  metrics=["mae", NormalizedMeanError(name="nme")], target_offset=0.5, target_scale=0.1,
                  label_names=[f"{p}_{axis}" for p in face_data.LANDMARK_NAMES for axis in "xy"]),
    ]


TASKS = make_tasks()
# Batch renormalisation: the training step normalises each batch, then corrects it (r, d) to the moving statistics,
# clipped as in the paper's late phase; the moving statistics inference uses are updated the same way, so a face's
# normalised skin tone is the same in training and at inference.
_RENORM = {"momentum": 0.9, "renorm": True, "renorm_momentum": 0.9,
           "renorm_clipping": {"rmin": 1 / 3, "rmax": 3.0, "dmax": 5.0}}


def build_model(
    image_size: int = 40,
    filters: Sequence[int] = (32, 64, 96),
    fusion_units: int = 192,
    head_units: Sequence[int] = (64,),
    dropout: float = 0.1,
    batch_renorm: bool = True,
    tasks: Sequence[kmtl.Task] | None = None,
) -> kmtl.MultiTaskModel:
    """Builds the facial-attributes model (uncompiled).

    Args:
        image_size: int. Height and width of the square RGB input.
        filters: sequence of int. Filters of the trunk's conv stages; each stage halves the resolution.
        fusion_units: int. Width of the fused feature vector.
        head_units: sequence of int. Hidden widths of every task head.
        dropout: float. Dropout on the fused features and in the heads.
        batch_renorm: bool. Batch renormalisation in the trunk (Ioffe, 2017): training normalises with the same
            moving statistics inference uses, so the two agree. False: plain batch normalisation (momentum 0.9),
            whose moving statistics at the end of a short run do not match the final weights (ethnicity, read from
            skin tone, then swings between 0.79 and 0.98 on validation; docs/facial_attributes.md).
        tasks: the tasks to learn; defaults to `make_tasks()` (pass a subset for single-task baselines).

    Returns:
        `kmtl.MultiTaskModel` with input `"image"` and one output per task.
    """
    tasks = list(tasks) if tasks is not None else make_tasks()
    image = keras.Input((image_size, image_size, 3), name=INPUT_NAME)
    x = image
    depths = []
    for i, f in enumerate(filters, start=1):
        x = keras.layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"conv{i}a")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}a", **(_RENORM if batch_renorm else {"momentum": 0.9}))(x)
        x = keras.layers.Activation("relu", name=f"relu{i}a")(x)
        x = keras.layers.Conv2D(f, 3, padding="same", activation="relu", name=f"conv{i}b")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
        depths.append(x)
    fused = FeatureFusion(units=fusion_units, activation="relu", pooling="avg", name="fusion")(depths)
    # Spatial layout matters for landmarks and pose: add the flattened deepest map, reduced by a 1x1 conv.
    spatial = keras.layers.Conv2D(16, 1, activation="relu", name="spatial_reduce")(depths[-1])
    spatial = keras.layers.Flatten(name="spatial_flatten")(spatial)
    features = keras.layers.Concatenate(name="features")([fused, spatial])
    features = keras.layers.Dropout(dropout, name="features_dropout")(features)
    features = keras.layers.Dense(fusion_units, activation="relu", name="shared_dense")(features)
    return kmtl.builders.hard_sharing(
        {INPUT_NAME: image}, features, tasks, head_units=head_units, dropout=dropout, name="facial_attributes"
    )


def compile_model(model: kmtl.MultiTaskModel, weighting="equal", learning_rate: float = 1e-3):
    """Compiles with Adam and the given weighting; returns the model."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), weighting=weighting)
    return model


def load_data(
    num_train: int = 3000,
    num_val: int = 500,
    num_test: int = 1000,
    image_size: int = 40,
    batch_size: int = 64,
    seed: int = 0,
    source: str = "synthetic",
    tasks: Sequence[str] | None = None,
):
    """Loads the faces of a source and returns batched datasets of `({"image": x}, {task: labels})`.

    Args:
        num_train, num_val, num_test: int. Split sizes (for real data: caps, None for all).
        image_size: int. Images are resized to `image_size` x `image_size`.
        batch_size: int. Batch size.
        seed: int. Seed of the synthetic data and of shuffling.
        source: `"synthetic"` (embedded, no download), `"celeba:PATH"` or `"utkface:PATH"` (a local copy).
        tasks: names of the tasks to keep in the labels (default: all); for single-task baselines.

    Returns:
        `kmtl.RecipeData`: unpacks as `(train, val, test)` batched `tf.data.Dataset`s of
        `({"image": x}, {task: labels})`; `tasks` holds the kept tasks.
    """
    keep = list(tasks) if tasks is not None else [t.name for t in TASKS]
    known = [t.name for t in TASKS]
    if not keep or any(name not in known for name in keep):
        raise ValueError(f"Invalid value for `tasks`. Expected names among {known}. Received: tasks={keep!r}")
    splits = _load_arrays(source, num_train, num_val, num_test, image_size, seed)
    out = []
    for i, (images, labels) in enumerate(splits):
        labels = {k: labels[k] for k in keep}
        ds = tf.data.Dataset.from_tensor_slices(({INPUT_NAME: images}, labels))
        if i == 0:
            ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
        out.append(ds.batch(batch_size).prefetch(tf.data.AUTOTUNE))
    return RecipeData(*out, tasks=[t for t in make_tasks() if t.name in keep])


def _load_arrays(source, num_train, num_val, num_test, image_size, seed):
    if source == "synthetic":
        sizes = (num_train, num_val, num_test)
        return [face_data.generate_faces(n, image_size=image_size, seed=seed + 1000 * i) for i, n in enumerate(sizes)]
    kind, _, path = source.partition(":")
    if kind == "celeba" and path:
        return [
            face_data.load_celeba(path, split=split, image_size=image_size, limit=limit)
            for split, limit in (("train", num_train), ("valid", num_val), ("test", num_test))
        ]
    if kind == "utkface" and path:
        images, labels = face_data.load_utkface(path, image_size=image_size)
        order = np.random.default_rng(seed).permutation(len(images))
        cut1, cut2 = int(0.8 * len(order)), int(0.9 * len(order))
        parts = (order[:cut1][:num_train], order[cut1:cut2][:num_val], order[cut2:][:num_test])
        return [(images[p], {k: v[p] for k, v in labels.items()}) for p in parts]
    raise ValueError(
        f"Invalid value for `source`. Expected 'synthetic', 'celeba:PATH' or 'utkface:PATH'. Received: source={source!r}"
    )


RECIPE = Recipe(
    name=NAME,
    description=DESCRIPTION,
    tasks=TASKS,
    build_model=build_model,
    compile_model=compile_model,
    load_data=load_data,
    defaults=DEFAULTS,
    quick=QUICK,
    data_settings=("num_train", "num_val", "num_test", "image_size", "source"),
    model_settings=("image_size", "filters", "fusion_units", "head_units", "dropout", "batch_renorm"),
    search_space=SEARCH_SPACE,
    sources="synthetic (default), celeba:PATH, utkface:PATH",
)


def __getattr__(name):
    # Deprecated in 0.2, removed in 0.3: the hypermodel lives once, in `kmtl.tuning.RecipeHyperModel`.
    if name == "hypermodel":
        import warnings

        from kmtl.tuning.recipe_hypermodel import RecipeHyperModel

        warnings.warn(
            "`facial_attributes.hypermodel(**kwargs)` is deprecated; use "
            "`kmtl.tuning.RecipeHyperModel(facial_attributes.RECIPE, **kwargs)`.",
            DeprecationWarning,
            stacklevel=2,
        )
        return lambda **kwargs: RecipeHyperModel(RECIPE, **kwargs)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
