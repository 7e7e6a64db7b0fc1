"""Atomic file output: a failed write leaves the old files (or no files), never half a file.

Each file is written to a temporary file beside it and renamed over it only when every file of
the group has been written, so `compile -o net.py` writes the .py/.npz pair both or neither.
Temporary files are created with mode 0666 less the umask, as `open()` would create the file.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import CnncError


def _fail(target: Path, error: OSError) -> CnncError:
    """A missing or read-only folder, or a directory in the way, is the user's to fix: no traceback."""
    return CnncError(f"cannot write the file: {error.strerror or error}", where=str(target))


def _create_temporary(target: Path) -> Path:
    """A new empty file beside `target`, created by the kernel with the umask applied."""
    folder = target.parent
    for _ in range(100):  # a clash of 64 random bits is practically impossible; never loop forever
        candidate = folder / f".{target.name}.{secrets.token_hex(8)}.tmp"
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        except OSError as error:
            raise _fail(target, error) from None
        return candidate
    raise CnncError("cannot create a temporary file", where=str(folder))


@contextmanager
def atomic_writes(targets: Sequence[tuple[str | os.PathLike[str], str]]) -> Iterator[list[IO]]:
    """Open each (path, mode) as a temporary file; on success rename them all into place."""
    paths = [Path(path) for path, _ in targets]
    for path in paths:  # before anything is written: a directory in the way fails the group
        if path.is_dir():
            raise CnncError("cannot write the file: it is a directory", where=str(path))
    temporaries: list[Path] = []
    try:
        with ExitStack() as stack:
            handles = []
            for path, (_, mode) in zip(paths, targets):
                temporaries.append(_create_temporary(path))
                handles.append(stack.enter_context(
                    open(temporaries[-1], mode, encoding=None if "b" in mode else "utf-8")))
            yield handles
        for temporary, path in zip(temporaries, paths):
            try:
                os.replace(temporary, path)
            except OSError as error:
                raise _fail(path, error) from None
    finally:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO]:
    """Write to a temporary file beside `path`, then rename it over `path` on success."""
    with atomic_writes([(path, mode)]) as (handle,):
        yield handle


def save_npz(handle: IO, arrays: Mapping[str, Any]) -> None:
    """An uncompressed .npz of `arrays` by name, into an open binary file."""
    np.savez(handle, **dict(arrays))


def write_npz(path: str | os.PathLike[str], arrays: Mapping[str, Any]) -> None:
    """An uncompressed .npz of `arrays` by name, written atomically."""
    with atomic_write(path, "wb") as handle:
        save_npz(handle, arrays)
