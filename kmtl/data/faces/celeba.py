"""CelebA (aligned and cropped faces) from its official files in a local folder.

Expected layout under `root` (as distributed by the CelebA authors; nothing is downloaded):

    root/
        list_attr_celeba.txt              line 1: number of images; line 2: the 40 attribute names;
                                          then `000001.jpg  -1  1  1 -1 ...` (values -1 or 1)
        list_landmarks_align_celeba.txt   line 1: count; line 2: `lefteye_x lefteye_y ... rightmouth_y`;
                                          then `000001.jpg 69 109 106 113 ...` (pixels of the aligned image)
        list_eval_partition.txt           optional: `000001.jpg 0` (0 = train, 1 = valid, 2 = test)
        img_align_celeba/000001.jpg ...

Mapping to the face tasks: smiling <- Smiling, eyeglasses <- Eyeglasses, gender <- Male (1 = male),
hair_colour <- the one positive attribute of Black_Hair/Blond_Hair/Brown_Hair/Gray_Hair (missing, -1, when none or
several are positive), landmarks <- pixel coordinates divided by the width/height of the decoded image (missing,
NaN, for an image without a landmarks row). CelebA has no age, head pose or ethnicity: those are always missing.

Reference:
    Liu, Luo, Wang, Tang (2015). Deep Learning Face Attributes in the Wild. ICCV.
"""

import os
import warnings

import numpy as np

from kmtl.data import _common

ATTR_FILE = "list_attr_celeba.txt"
LANDMARKS_FILE = "list_landmarks_align_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
IMAGE_DIR = "img_align_celeba"
SPLITS = {"train": 0, "valid": 1, "test": 2}
LANDMARK_COLUMNS = (
    "lefteye_x", "lefteye_y", "righteye_x", "righteye_y", "nose_x", "nose_y",
    "leftmouth_x", "leftmouth_y", "rightmouth_x", "rightmouth_y",
)  # fmt: skip
_HAIR_ATTRIBUTES = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")  # the order of HAIR_COLOURS
_USED_ATTRIBUTES = ("Smiling", "Eyeglasses", "Male") + _HAIR_ATTRIBUTES


def load_celeba(root, split: str | None = None, image_size: int = 64, limit: int | None = None):
    """Loads CelebA images and face-task labels into numpy arrays.

    Args:
        root: str or path-like. Folder holding the CelebA label files and `img_align_celeba/`.
        split: `None` (all images), `"train"`, `"valid"` or `"test"` (needs `list_eval_partition.txt`).
        image_size: int. Side of the square images the originals are resized to.
        limit: int or `None`. Keep only the first `limit` images of the split, in file order.

    Returns:
        A tuple `(images, labels)`: float32 `(N, image_size, image_size, 3)` in `[0, 1]`, and a dict keyed by
        `FACE_TASK_NAMES` laid out as in `generate_faces`, with missing labels `-1` / `NaN`.

    Raises:
        FileNotFoundError: if a label file, the image folder or a listed image is absent.
        ValueError: if an argument is invalid, a label file is malformed (the message names the file and line)
            or an image cannot be decoded.
    """
    paths, labels = _read_labels(root, split, image_size, limit)
    return _common.files_to_numpy(paths, labels, image_size, pixel_landmarks=True)


def celeba_dataset(
    root,
    split: str | None = None,
    image_size: int = 64,
    limit: int | None = None,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    drop_remainder: bool = False,
):
    """Returns CelebA as a batched `tf.data.Dataset` of `({"image": images}, labels)`.

    Labels are read (and checked) at once; images are decoded lazily, so the whole dataset never has to fit in
    memory. See `load_celeba` for the arguments, labels and errors.

    Args:
        batch_size: int. Examples per batch.
        shuffle: bool. Whether to reshuffle (file names, before decoding) every epoch, seeded with `seed`.
        drop_remainder: bool. Whether to drop the last, smaller batch.
    """
    paths, labels = _read_labels(root, split, image_size, limit)
    return _common.batch_dataset(
        _common.files_dataset(paths, labels),
        batch_size,
        shuffle,
        seed,
        drop_remainder,
        map_fn=_common.image_files_map(image_size, pixel_landmarks=True),
    )


def _read_labels(root, split, image_size, limit):
    """Parses the label files; returns image paths and labels with landmarks still in pixels."""
    if split is not None and split not in SPLITS:
        raise ValueError(
            f"Invalid value for `split`. Expected None or one of {sorted(SPLITS)}. Received: split={split!r}"
        )
    _common.check_int("image_size", image_size)
    _common.check_int("limit", limit, allow_none=True)
    root = os.fspath(root)
    image_dir = os.path.join(root, IMAGE_DIR)
    if not os.path.isdir(image_dir):
        raise FileNotFoundError(f"CelebA image folder not found: {image_dir}")
    attr_path = os.path.join(root, ATTR_FILE)
    columns, attr_rows = _read_table(attr_path, header=True, convert=_attribute_values)
    missing = [name for name in _USED_ATTRIBUTES if name not in columns]
    if missing:
        raise ValueError(f"{attr_path}, line 2: missing attribute columns {missing}. Received: {columns}")
    landmarks_path = os.path.join(root, LANDMARKS_FILE)
    landmark_columns, landmark_rows = _read_table(landmarks_path, header=True, convert=_pixel_values)
    if sorted(landmark_columns) != sorted(LANDMARK_COLUMNS):
        raise ValueError(
            f"{landmarks_path}, line 2: expected the columns {list(LANDMARK_COLUMNS)}. Received: {landmark_columns}"
        )
    names = list(attr_rows)
    if split is not None:
        names = _filter_split(os.path.join(root, PARTITION_FILE), names, SPLITS[split], attr_path)
    names = names[:limit]
    paths = [os.path.join(image_dir, name) for name in names]
    for name, path in zip(names, paths):
        if not os.path.isfile(path):
            line = attr_rows[name][0]
            raise FileNotFoundError(f"Image {name} listed in {attr_path}, line {line}, not found: {path}")
    values = b"".join(attr_rows[name][1] for name in names)
    positive = np.frombuffer(values, dtype="uint8").reshape(len(names), len(columns)).astype(bool)
    order = [landmark_columns.index(column) for column in LANDMARK_COLUMNS]
    pixels = np.full((len(names), len(LANDMARK_COLUMNS)), np.nan, dtype="float32")
    for row, name in enumerate(names):
        if name in landmark_rows:
            pixels[row] = np.asarray(landmark_rows[name][1], dtype="float32")[order]
    return paths, _labels(positive, columns, pixels)


def _labels(positive_matrix, columns, pixels):
    """Maps the (images, attributes) matrix of positive attributes and the pixel landmarks onto the face tasks."""

    def positive(name):
        return positive_matrix[:, columns.index(name)]

    labels = _common.missing_labels(len(positive_matrix))
    labels["smiling"] = positive("Smiling").astype("int32")
    labels["eyeglasses"] = positive("Eyeglasses").astype("int32")
    labels["gender"] = positive("Male").astype("int32")
    hair = np.stack([positive(name) for name in _HAIR_ATTRIBUTES], axis=1)
    labels["hair_colour"] = np.where(hair.sum(axis=1) == 1, hair.argmax(axis=1), -1).astype("int32")
    labels["landmarks"] = pixels
    return labels


def _filter_split(path, names, split_id, attr_path):
    """Keeps the names whose partition in `path` is `split_id`."""
    _, partition = _read_table(path, header=False, convert=_partition_value)
    for name in names:
        if name not in partition:
            raise ValueError(f"Image {name} of {attr_path} has no row in {path}.")
    return [name for name in names if partition[name][1] == split_id]


def _read_table(path, header, convert):
    """Reads a CelebA list file.

    Args:
        path: str. The file.
        header: bool. Whether line 1 is the image count and line 2 the column names.
        convert: callable `(tokens, where) -> values` checking and converting the values of one row.

    Returns:
        A tuple `(columns, rows)`: the column names (`None` without header) and a dict, in file order,
        `file name -> (line number, values)`.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CelebA file not found: {path}")
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    columns, count, first = None, None, 0
    if header:
        if len(lines) < 2:
            raise ValueError(f"{path}: expected the image count on line 1 and column names on line 2.")
        try:
            count = int(lines[0].strip())
        except ValueError:
            raise ValueError(f"{path}, line 1: expected the number of images. Received: {lines[0]!r}") from None
        columns, first = lines[1].split(), 2
    rows = {}
    for index in range(first, len(lines)):
        tokens = lines[index].split()
        if not tokens:
            continue
        where = f"{path}, line {index + 1}"
        num_values = len(columns) if header else 1
        if len(tokens) != num_values + 1:
            raise ValueError(
                f"{where}: expected a file name and {num_values} values, got {len(tokens) - 1} values. "
                f"Received: {lines[index]!r}"
            )
        if tokens[0] in rows:
            raise ValueError(f"{where}: {tokens[0]} is listed twice (first on line {rows[tokens[0]][0]}).")
        rows[tokens[0]] = (index + 1, convert(tokens[1:], where))
    if count is not None and count != len(rows):
        warnings.warn(f"{path}: line 1 gives {count} images but {len(rows)} rows follow.", stacklevel=4)
    return columns, rows


def _attribute_values(tokens, where):
    if not set(tokens) <= {"-1", "1"}:
        bad = next(token for token in tokens if token not in ("-1", "1"))
        raise ValueError(f"{where}: attribute values must be -1 or 1. Received: {bad!r}")
    return bytes(token == "1" for token in tokens)  # compact: 40 bytes per image, 1 = positive


def _pixel_values(tokens, where):
    try:
        return [float(token) for token in tokens]
    except ValueError:
        raise ValueError(f"{where}: landmark coordinates must be numbers. Received: {tokens}") from None


def _partition_value(tokens, where):
    if tokens[0] not in ("0", "1", "2"):
        raise ValueError(f"{where}: the partition must be 0, 1 or 2. Received: {tokens[0]!r}")
    return int(tokens[0])
