"""Shared pieces of the face data sources: the label schema, image decoding and dataset assembly.

Every face source (the synthetic generator, CelebA, UTKFace) yields `(inputs, labels)` with
`inputs = {"image": float32 (H, W, 3) in [0, 1]}` and `labels` keyed by `FACE_TASK_NAMES`. A label a source
does not have is marked missing: `-1` for binary and class-id tasks, `NaN` for regression tasks.
"""

import numbers

import numpy as np
import tensorflow as tf

# === Label schema ===

FACE_TASK_NAMES = (
    "smiling",
    "eyeglasses",
    "gender",
    "hair_colour",
    "ethnicity",
    "age",
    "head_pose",
    "landmarks",
)
HAIR_COLOURS = ("black", "blond", "brown", "gray")
ETHNICITIES = ("white", "black", "asian", "indian", "other")
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")

# Per-example label shape of each task; class-id/binary tasks are int32, regression tasks float32.
LABEL_SHAPES = {
    "smiling": (),
    "eyeglasses": (),
    "gender": (),
    "hair_colour": (),
    "ethnicity": (),
    "age": (1,),
    "head_pose": (1,),
    "landmarks": (2 * len(LANDMARK_NAMES),),
}
REGRESSION_TASKS = ("age", "head_pose", "landmarks")
MISSING_CLASS = -1


def missing_labels(num_examples):
    """Returns a label dict for `num_examples` examples with every label missing.

    Args:
        num_examples: int. Number of examples (leading axis of every array).

    Returns:
        A dict keyed by `FACE_TASK_NAMES`: int32 arrays of `-1` for binary and class-id tasks, float32 arrays of
        `NaN` for regression tasks.
    """
    labels = {}
    for name in FACE_TASK_NAMES:
        shape = (num_examples,) + LABEL_SHAPES[name]
        if name in REGRESSION_TASKS:
            labels[name] = np.full(shape, np.nan, dtype="float32")
        else:
            labels[name] = np.full(shape, MISSING_CLASS, dtype="int32")
    return labels


# === Argument checks ===


def check_int(name, value, minimum=1, allow_none=False):
    """Raises `ValueError` unless `value` is an int `>= minimum` (or `None` where allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(
            f"Invalid value for `{name}`. Expected an int >= {minimum}"
            f"{' or None' if allow_none else ''}. Received: {name}={value!r}"
        )


# === Images ===


def decode_image(path, image_size):
    """Reads, decodes (JPEG/PNG/BMP/GIF) and resizes one image with `tf.io`.

    Args:
        path: scalar string tensor. Path of the image file.
        image_size: int. Side of the square output image.

    Returns:
        A tuple `(image, size)`: float32 `(image_size, image_size, 3)` in `[0, 1]`, and the original
        `(height, width)` as a float32 tensor of shape `(2,)`.
    """
    image = tf.io.decode_image(
        tf.io.read_file(path), channels=3, dtype=tf.float32, expand_animations=False
    )
    size = tf.cast(tf.shape(image)[:2], tf.float32)
    image = tf.image.resize(image, (image_size, image_size), antialias=True)
    return tf.clip_by_value(image, 0.0, 1.0), size


def find_undecodable(paths):
    """Returns the first path in `paths` that `tf.io.decode_image` cannot decode, or `None`."""
    for path in paths:
        try:
            tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
            return path
    return None


# === Datasets ===


def batch_dataset(dataset, batch_size=32, shuffle=False, seed=0, drop_remainder=False, map_fn=None):
    """Shuffles (before any costly `map_fn`), maps, batches and prefetches an unbatched dataset.

    Args:
        dataset: `tf.data.Dataset` of single examples with a known cardinality.
        batch_size: int. Examples per batch.
        shuffle: bool. Whether to shuffle the whole dataset, reshuffling each epoch.
        seed: int. Shuffle seed, so the order of each epoch is reproducible.
        drop_remainder: bool. Whether to drop the last, smaller batch.
        map_fn: optional callable applied to each example after shuffling (e.g. image decoding).

    Returns:
        The batched `tf.data.Dataset`.
    """
    check_int("batch_size", batch_size)
    if shuffle:
        buffer = max(int(dataset.cardinality()), 1)
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if map_fn is not None:
        dataset = dataset.map(map_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def files_dataset(paths, labels):
    """Returns an unbatched `tf.data.Dataset` of `(path, labels)` pairs, one per image file."""
    paths = tf.constant(list(paths), dtype=tf.string, shape=[len(paths)])
    return tf.data.Dataset.from_tensor_slices((paths, labels))


def image_files_map(image_size, pixel_landmarks=False):
    """Returns a map function `(path, labels) -> ({"image": image}, labels)` that decodes the image file.

    Args:
        image_size: int. Side of the square output image.
        pixel_landmarks: bool. If True, `labels["landmarks"]` holds pixel `(x, y)` pairs of the original image
            and is divided by the decoded image's width and height.
    """

    def load(path, labels):
        image, size = decode_image(path, image_size)
        if pixel_landmarks:
            labels = dict(labels)
            scale = tf.tile(tf.reverse(size, axis=[0]), [len(LANDMARK_NAMES)])  # (w, h, w, h, ...)
            labels["landmarks"] = labels["landmarks"] / scale
        return {"image": image}, labels

    return load


def files_to_numpy(paths, labels, image_size, pixel_landmarks=False, chunk=256):
    """Decodes image files into one numpy array and finishes their labels, in file order.

    Args:
        paths: list of str. Image files.
        labels: dict of numpy arrays, one row per file.
        image_size: int. Side of the square output images.
        pixel_landmarks: bool. See `image_files_map`.
        chunk: int. Images decoded per step.

    Returns:
        A tuple `(images, labels)`: float32 `(N, image_size, image_size, 3)` and a dict of numpy arrays.

    Raises:
        ValueError: if an image cannot be decoded; the message names the file.
    """
    if not paths:
        empty = np.zeros((0, image_size, image_size, 3), dtype="float32")
        return empty, {name: np.asarray(value) for name, value in labels.items()}
    dataset = batch_dataset(files_dataset(paths, labels), chunk, map_fn=image_files_map(image_size, pixel_landmarks))
    images, parts = [], {name: [] for name in labels}
    try:
        for inputs, batch in dataset:
            images.append(inputs["image"].numpy())
            for name, value in batch.items():
                parts[name].append(value.numpy())
    except tf.errors.InvalidArgumentError as error:
        bad = find_undecodable(paths)
        raise ValueError(f"Could not decode image {bad}: {error.message}") from error
    return np.concatenate(images), {name: np.concatenate(value) for name, value in parts.items()}
