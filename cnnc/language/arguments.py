"""Argument converters: turn a value written in a `.cnn` file into what an op's attrs hold.

Each converter takes the value and returns the converted value or raises ArgError with a
message; the caller adds the argument's name and source span.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ..limits import MAX_INT, MAX_SIZE
from .values import Symbol, Tensor, describe

Converter = Callable[[object], object]
T = TypeVar("T")


class ArgError(Exception):
    """The value does not fit the argument."""


def check_int(value: T) -> T:
    """`value`, refused when it is an integer past the integer limit (docs/language.md, Limits)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise ArgError(f"the result is an integer past the limit (±{MAX_INT})")
    return value


def to_int(value: object) -> int:
    """An integer; a float that is a whole number (`channels(x) / 4`) is accepted."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgError(f"expected an integer, got {describe(value)}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ArgError(f"expected an integer, got {describe(value)}")
        return int(check_int(int(value)))
    return value


def to_positive_int(value: object) -> int:
    """A size, count, stride or dilation: from 1 to MAX_SIZE (NumPy's strided views multiply a
    stride by the bytes of a row, which must stay within 64 bits)."""
    return _sized(value, 1, "a positive integer", "a size")


def to_count(value: object) -> int:
    """A count that may be zero (extra columns carried along): from 0 to MAX_SIZE."""
    return _sized(value, 0, "a count of 0 or more", "a count")


def _sized(value: object, low: int, expected: str, what: str) -> int:
    number = to_int(value)
    if number < low:
        raise ArgError(f"expected {expected}, got {number}")
    if number > MAX_SIZE:
        raise ArgError(f"expected {what} of at most {MAX_SIZE}, got {number}")
    return number


def to_float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgError(f"expected a number, got {describe(value)}")
    return float(value)


def to_probability(value: object) -> float:
    number = to_float(value)
    if not 0.0 <= number < 1.0:
        raise ArgError(f"expected a rate in [0, 1), got {number:g}")
    return number


def to_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ArgError(f"expected true or false, got {describe(value)}")
    return value


def to_pair(value: object) -> tuple[int, int]:
    """`3`, `3x3`, or `(3, 3)` → (3, 3); every entry a positive integer."""
    if isinstance(value, tuple) and len(value) == 2:
        return (to_positive_int(value[0]), to_positive_int(value[1]))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = to_positive_int(value)
        return (number, number)
    raise ArgError(f"expected an integer, a size like 3x3, or a pair (h, w), got {describe(value)}")


def to_nonnegative_pair(value: object) -> tuple[int, int]:
    pair = value if isinstance(value, tuple) else (value, value)
    if len(pair) != 2:
        raise ArgError(f"expected an integer or a pair (h, w), got {describe(value)}")
    result = tuple(to_int(v) for v in pair)
    if min(result) < 0:
        raise ArgError(f"expected non-negative values, got {describe(value)}")
    return result  # type: ignore[return-value]


def to_padding(value: object) -> str | tuple[int, int, int, int]:
    """`same`, `valid`, an int, (h, w), or (top, left, bottom, right)."""
    if isinstance(value, (Symbol, str)):
        word = value.name if isinstance(value, Symbol) else value
        if word in ("same", "valid"):
            return word
        raise ArgError(f"expected same, valid, an integer or a tuple, got {describe(value)}")
    if isinstance(value, tuple) and len(value) == 4:
        pads = tuple(to_int(v) for v in value)
    elif isinstance(value, tuple) and len(value) == 2:
        ph, pw = (to_int(v) for v in value)
        pads = (ph, pw, ph, pw)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        p = to_int(value)
        pads = (p, p, p, p)
    else:
        raise ArgError("expected same, valid, an integer, (h, w) or (top, left, bottom, right), "
                       f"got {describe(value)}")
    if min(pads) < 0:
        raise ArgError(f"padding must not be negative, got {pads}")
    return pads  # type: ignore[return-value]


def to_int_tuple(value: object) -> tuple[int, ...]:
    if isinstance(value, tuple):
        return tuple(to_int(v) for v in value)
    return (to_int(value),)


def to_size(value: object) -> tuple[int, int]:
    """A spatial size (h, w), or the spatial size of a tensor given as a reference."""
    if isinstance(value, Tensor):
        if len(value.shape) != 4:
            raise ArgError(f"expected a 4-D tensor as a size reference, got {describe(value)}")
        return (value.shape[2], value.shape[3])
    return to_pair(value)


def to_fraction(value: object) -> float:
    """A number in [0, 1] (an IoU threshold)."""
    number = to_float(value)
    if not 0.0 <= number <= 1.0:
        raise ArgError(f"expected a number in [0, 1], got {number:g}")
    return number


def to_nonnegative_float(value: object) -> float:
    number = to_float(value)
    if number < 0.0:
        raise ArgError(f"expected a non-negative number, got {number:g}")
    return number


def to_anchors(value: object) -> tuple[tuple[float, float], ...]:
    """`((w, h), (w, h), …)`: one or more pairs of positive numbers (a single pair is one anchor)."""
    pairs = value if isinstance(value, tuple) and value and isinstance(value[0], tuple) else (value,)
    anchors = []
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise ArgError(f"expected anchors as pairs ((w, h), (w, h), …), got {describe(value)}")
        w, h = (to_float(v) for v in pair)
        if w <= 0 or h <= 0:
            raise ArgError(f"anchor sizes must be positive, got ({w:g}, {h:g})")
        anchors.append((w, h))
    return tuple(anchors)


def choice(*words: str) -> Converter:
    """A word from a fixed set, written bare (`mode=bilinear`) or quoted."""
    def convert(value: object) -> str:
        word = value.name if isinstance(value, Symbol) else value
        if isinstance(word, str) and word in words:
            return word
        raise ArgError(f"expected one of {', '.join(words)}, got {describe(value)}")
    return convert
