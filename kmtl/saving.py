"""`kmtl.load_model`: loads a `.keras` file after checking that it is a complete Keras archive.

Keras 3.15's `keras.saving.load_model` answers a truncated or foreign file with "File not found" for a file that
exists. kmtl cannot change Keras, so every `.keras` file kmtl loads goes through `load_model` here, which opens the
archive first (its central directory, each entry's CRC-32 and the entries Keras writes) and says what is wrong.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import keras

# Entries every `.keras` archive written by `Model.save` holds.
REQUIRED_ENTRIES = ("config.json", "metadata.json")


def load_model(path: str | os.PathLike, *, compile: bool = True, safe_mode: bool = True, custom_objects=None):
    """Loads a model from a `.keras` file, refusing a missing, truncated or foreign file with a clear error.

    kmtl's layers, losses, strategies and `MultiTaskModel` are registered with Keras, so no `custom_objects` are
    needed for them, and `safe_mode=True` (no arbitrary code) is the default.

    Args:
        path: str or path of a `.keras` file.
        compile: bool. Whether to compile the model after loading (as `keras.saving.load_model`).
        safe_mode: bool. Refuse to deserialise arbitrary code such as `Lambda` layers.
        custom_objects: optional dict of the user's own registered-elsewhere objects.

    Returns:
        The model, e.g. a `kmtl.MultiTaskModel`.

    Raises:
        FileNotFoundError: when nothing is at `path`.
        ValueError: for a path that is not a `.keras` file, or a file that is not a complete Keras archive (e.g. a
            copy cut short): `"not a valid .keras file (truncated or not a Keras archive): PATH"` and why.

    Example:

    >>> model.save("model.keras")  # doctest: +SKIP
    >>> model = kmtl.load_model("model.keras")  # doctest: +SKIP
    """
    check_keras_file(path)
    return keras.saving.load_model(os.fspath(path), custom_objects=custom_objects, compile=compile,
                                   safe_mode=safe_mode)


def check_keras_file(path: str | os.PathLike) -> Path:
    """Raises unless `path` is a complete `.keras` archive; returns it as a `Path`. See `load_model`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No file at {path}. Expected a .keras file written by `model.save`.")
    if path.is_dir():
        raise ValueError(
            f"Invalid value for `path`. Expected a .keras file. Received: {path}, which is a folder (a TF-Serving "
            "export from `kmtl.export.for_serving` loads with `tf.saved_model.load`)."
        )
    if path.suffix != ".keras":
        raise ValueError(f"Invalid value for `path`. Expected a path ending in .keras. Received: {path}")
    invalid = f"{path} is not a valid .keras file (truncated or not a Keras archive): {path}"
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            bad = archive.testzip()  # reads every entry and checks its CRC-32
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise ValueError(f"{invalid}. Its zip structure cannot be read ({error}); save the model again.") from None
    if bad is not None:
        raise ValueError(f"{invalid}. Entry {bad} fails its checksum (the file is damaged); save the model again.")
    missing = [name for name in REQUIRED_ENTRIES if name not in names]
    if missing:
        raise ValueError(
            f"{invalid}. The archive lacks {', '.join(missing)}, which `model.save` writes. "
            f"Received entries: {sorted(names)[:10]}"
        )
    return path
