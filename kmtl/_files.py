"""Writing a user's file safely: complete or not at all, and never over an existing file unless asked.

Every file kmtl writes for a user (plots, the best-model checkpoint) is written under a temporary name in the same
folder and then published in one step: `os.link` when nothing may be replaced (it fails if the name exists, even if
the file appeared a moment ago), `os.replace` when replacing is allowed. A crash leaves at most a hidden temporary
file, never a half-written file under the user's name.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Callable


def write_file(path: str | os.PathLike, write: Callable[[Path], None], *, overwrite: bool = False) -> Path:
    """Writes `path` by calling `write(temporary_path)`, then publishes the file atomically.

    Args:
        path: str or path of the file to write.
        write: function writing the whole file at the temporary path it is given (which has `path`'s suffix).
        overwrite: bool. Replace an existing file at `path`; otherwise raise FileExistsError and leave it.

    Returns:
        `path` as a `Path`.

    Raises:
        FileExistsError: naming `path` when it exists and `overwrite` is False (checked before and at publishing).
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"Refusing to overwrite existing file {path}; pass overwrite=True or choose another path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(handle)
    temporary = Path(temporary)
    try:
        write(temporary)
        if overwrite:
            os.replace(temporary, path)
        else:
            _link_no_replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


def _link_no_replace(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # fails with FileExistsError if `target` exists
    except FileExistsError:
        raise FileExistsError(
            f"Refusing to overwrite existing file {target}, which appeared while kmtl wrote it; pass overwrite=True "
            "or choose another path."
        ) from None
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        # A file system without hard links: check, then rename (a file appearing in between would be replaced).
        if target.exists():
            raise FileExistsError(f"Refusing to overwrite existing file {target}.") from None
        os.rename(source, target)
