"""UTKFace from a local folder of images whose file names carry the labels.

UTKFace names each image `[age]_[gender]_[race]_[date&time].jpg` (`.jpg.chip.jpg` in the aligned and cropped
set): age in years, gender 0 = male / 1 = female, race 0..4 = white, black, asian, indian, other. Mapping to the
face tasks: age <- age (years), gender <- 1 - gender (our 1 = male), ethnicity <- race (same order as
`ETHNICITIES`). UTKFace has no smiling, eyeglasses, hair colour, head pose or landmarks: those are always missing.

Only the files directly in `root` are read (no subfolders), sorted by name. Files without an image extension
(.jpg, .jpeg, .png) are ignored. Image files whose names do not parse — the real set has a few with a field
missing, e.g. `61_1_20170109142408075.jpg.chip.jpg` — are skipped, with one warning naming them: with a field
missing there is no telling which one it is, so keeping them would risk wrong labels.

Reference:
    Zhang, Song, Qi (2017). Age Progression/Regression by Conditional Adversarial Autoencoder. CVPR.
"""

import os
import warnings

import numpy as np

from kmtl.data import _common

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_MAX_AGE = 150
_MAX_LISTED = 10  # malformed names quoted in the warning


def load_utkface(root, image_size: int = 64, limit: int | None = None):
    """Loads UTKFace images and face-task labels into numpy arrays.

    Args:
        root: str or path-like. Folder holding the UTKFace images.
        image_size: int. Side of the square images the originals are resized to.
        limit: int or `None`. Keep only the first `limit` well-named images, in sorted order.

    Returns:
        A tuple `(images, labels)`: float32 `(N, image_size, image_size, 3)` in `[0, 1]`, and a dict keyed by
        `FACE_TASK_NAMES` laid out as in `generate_faces`, with missing labels `-1` / `NaN`.

    Raises:
        FileNotFoundError: if `root` is not a folder.
        ValueError: if an argument is invalid, no image in `root` has a well-formed name, or an image cannot be
            decoded.
    """
    paths, labels = _read_labels(root, image_size, limit)
    return _common.files_to_numpy(paths, labels, image_size)


def utkface_dataset(
    root,
    image_size: int = 64,
    limit: int | None = None,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    drop_remainder: bool = False,
):
    """Returns UTKFace as a batched `tf.data.Dataset` of `({"image": images}, labels)`.

    Labels are parsed at once; images are decoded lazily. See `load_utkface` for the arguments, labels and
    errors.

    Args:
        batch_size: int. Examples per batch.
        shuffle: bool. Whether to reshuffle (file names, before decoding) every epoch, seeded with `seed`.
        drop_remainder: bool. Whether to drop the last, smaller batch.
    """
    paths, labels = _read_labels(root, image_size, limit)
    return _common.batch_dataset(
        _common.files_dataset(paths, labels),
        batch_size,
        shuffle,
        seed,
        drop_remainder,
        map_fn=_common.image_files_map(image_size),
    )


def parse_utkface_name(file_name: str):
    """Parses `[age]_[gender]_[race]_[date&time].jpg(.chip.jpg)`.

    Args:
        file_name: str. The base name of a UTKFace image.

    Returns:
        A tuple `(age, gender, race)` of ints as UTKFace codes them (gender 0 = male), or `None` if the name
        does not have four fields or a field is out of range.

    Example:

    >>> parse_utkface_name("26_1_2_20170116174525125.jpg.chip.jpg")
    (26, 1, 2)
    >>> parse_utkface_name("61_1_20170109142408075.jpg.chip.jpg") is None
    True
    """
    fields = file_name.split(".", 1)[0].split("_")
    if len(fields) != 4 or not all(field.isdigit() for field in fields[:3]) or not fields[3]:
        return None
    age, gender, race = (int(field) for field in fields[:3])
    if age > _MAX_AGE or gender > 1 or race >= len(_common.ETHNICITIES):
        return None
    return age, gender, race


def _read_labels(root, image_size, limit):
    """Lists and parses the image names in `root`; returns image paths and labels."""
    _common.check_int("image_size", image_size)
    _common.check_int("limit", limit, allow_none=True)
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"UTKFace folder not found: {root}")
    kept, malformed = [], []
    for name in sorted(os.listdir(root)):
        if not name.lower().endswith(IMAGE_EXTENSIONS) or not os.path.isfile(os.path.join(root, name)):
            continue
        parsed = parse_utkface_name(name)
        if parsed is None:
            malformed.append(name)
        else:
            kept.append((name, parsed))
    if malformed:
        listed = ", ".join(malformed[:_MAX_LISTED]) + (", ..." if len(malformed) > _MAX_LISTED else "")
        warnings.warn(
            f"Skipped {len(malformed)} UTKFace image(s) in {root} whose names are not "
            f"[age]_[gender]_[race]_[date&time]: {listed}",
            stacklevel=3,
        )
    if not kept:
        raise ValueError(
            f"No UTKFace image with a well-formed name ([age]_[gender]_[race]_[date&time].jpg) in {root}."
        )
    kept = kept[:limit]
    codes = np.array([parsed for _, parsed in kept], dtype="int32")
    labels = _common.missing_labels(len(kept))
    labels["age"] = codes[:, :1].astype("float32")
    labels["gender"] = 1 - codes[:, 1]
    labels["ethnicity"] = codes[:, 2]
    return [os.path.join(root, name) for name, _ in kept], labels
