"""Atomic file output: a failed write leaves the old file (or no file), never half a file."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import CnncError


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO]:
    """Write to a temporary file beside `path`, then rename it over `path` on success."""
    target = Path(path)
    try:
        handle = tempfile.NamedTemporaryFile(mode, dir=target.parent or ".", prefix=f".{target.name}.",
                                             suffix=".tmp", delete=False,
                                             encoding=None if "b" in mode else "utf-8")
    except OSError as error:  # a missing or read-only folder is the user's to fix: no traceback
        raise CnncError(f"cannot write the file: {error.strerror or error}", where=str(target)) from None
    try:
        with handle:
            yield handle
        os.replace(handle.name, target)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def write_npz(path: str | Path, arrays: Mapping[str, Any]) -> None:
    """An uncompressed .npz of `arrays` by name, written atomically."""
    with atomic_write(path, "wb") as handle:
        np.savez(handle, **dict(arrays))
