"""Reading a `.cnn` file from disk: regular files of bounded size only.

A FIFO would block forever and `/dev/zero` never ends, so the file is checked (`stat`) before it
is opened and read no further than the size limit. Failures are `ReadFailure`s carrying one
readable reason; the caller (the main file, an `import`) words the error and gives its place.
"""
from __future__ import annotations

import stat
from pathlib import Path

from ..limits import MAX_SOURCE_BYTES


class ReadFailure(Exception):
    """The file cannot be read as a program; `str()` is the reason, `missing` tells "no such file"."""

    def __init__(self, reason: str, missing: bool = False):
        super().__init__(reason)
        self.missing = missing


def resolve_path(path: Path) -> Path:
    """`path` made absolute with symlinks followed; a null byte or a symlink loop is a ReadFailure."""
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError) as error:  # RuntimeError: a loop; ValueError: a null byte
        raise ReadFailure(_reason(error)) from None


def read_program(path: Path) -> str:
    """The UTF-8 text of the program file at `path`."""
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise ReadFailure("it is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise ReadFailure("not a regular file (a pipe or a device is never read)")
        if info.st_size > MAX_SOURCE_BYTES:
            raise ReadFailure(f"{info.st_size} bytes is more than cnnc reads ({MAX_SOURCE_BYTES})")
        with open(path, "rb") as handle:  # it may grow after stat: read one byte past the limit
            data = handle.read(MAX_SOURCE_BYTES + 1)
    except FileNotFoundError as error:
        raise ReadFailure(_reason(error), missing=True) from None
    except (OSError, ValueError) as error:
        raise ReadFailure(_reason(error)) from None
    if len(data) > MAX_SOURCE_BYTES:
        raise ReadFailure(f"more than {MAX_SOURCE_BYTES} bytes, more than cnnc reads")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ReadFailure(str(error)) from None


def _reason(error: Exception) -> str:
    """The readable part of an error: an OS error's strerror, else its message."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return "a symbolic link loop" if isinstance(error, RuntimeError) else str(error)
