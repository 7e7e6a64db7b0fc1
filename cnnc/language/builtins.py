"""Arithmetic on compile-time values and the built-in functions (`channels(x)`, `max(a, b)`, …)."""
from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

from ..limits import MAX_INT
from .arguments import ArgError, check_int
from .values import Tensor, describe

Number = int | float


def _number(value: object, what: str) -> Number:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgError(f"{what} needs a number, got {describe(value)}")
    return value


def _tensor_dim(axis: int, label: str) -> Callable[..., int]:
    def read(*values: object) -> int:
        if len(values) != 1:  # `x |> height(2)` passes two
            raise ArgError(f"takes one tensor, got {len(values)} arguments")
        value = values[0]
        if not isinstance(value, Tensor) or len(value.shape) <= axis:
            raise ArgError(f"expected a tensor with a {label} dimension, got {describe(value)}")
        return value.shape[axis]
    return read


def _one_number(function: Callable[[Number], Number], name: str) -> Callable[..., Number]:
    def apply(*values: object) -> Number:
        if len(values) != 1:
            raise ArgError(f"takes one argument, got {len(values)}")
        try:
            return check_int(function(_number(values[0], name)))
        except (OverflowError, ValueError):
            raise ArgError(f"{values[0]} cannot be converted") from None
    return apply


def _fold(function: Callable[..., Number], name: str) -> Callable[..., Number]:
    def apply(*values: object) -> Number:
        if not values:
            raise ArgError("needs at least one argument")
        return function(_number(v, name) for v in values)
    return apply


def _to_int(value: Number) -> int:
    return int(value)


FUNCTIONS: dict[str, Callable[..., object]] = {
    "channels": _tensor_dim(1, "channel"),
    "height": _tensor_dim(2, "height"),
    "width": _tensor_dim(3, "width"),
    "int": _one_number(_to_int, "int"),
    "float": _one_number(float, "float"),
    "round": _one_number(round, "round"),
    "abs": _one_number(abs, "abs"),
    "min": _fold(min, "min"),
    "max": _fold(max, "max"),
}

_ARITHMETIC: dict[str, Callable[[Number, Number], Number]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "//": operator.floordiv, "%": operator.mod, "**": operator.pow,
}
_COMPARISON: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}


def binary(op: str, left: object, right: object) -> object:
    """`left op right` on numbers (and == / != on anything but tensors)."""
    if op in ("==", "!=") and not (isinstance(left, (int, float)) and isinstance(right, (int, float))):
        return _COMPARISON[op](left, right)
    a, b = _number(left, f"'{op}'"), _number(right, f"'{op}'")
    if op in _COMPARISON:
        return _COMPARISON[op](a, b)
    if (op in ("/", "//", "%") and b == 0) or (op == "**" and a == 0 and b < 0):
        raise ArgError(f"division by zero in '{op}'")
    if op == "**":
        _check_power(a, b)
    try:
        result = _ARITHMETIC[op](a, b)
    except OverflowError:
        raise ArgError(f"'{op}' overflows for {a} and {b}") from None
    if isinstance(result, complex) or (isinstance(result, float) and not math.isfinite(result)):
        raise ArgError(f"'{op}' gives no real finite number for {a} and {b}")
    return check_int(result)


def _check_power(base: Number, exponent: Number) -> None:
    """Refuse an integer power past the integer limit before computing it: `2 ** 10 ** 10`
    would otherwise run for minutes."""
    if isinstance(base, int) and isinstance(exponent, int) and abs(base) > 1 and exponent > 0:
        # |base| ** exponent >= 2 ** ((bit_length - 1) * exponent); bound the exponent first
        # so the product itself stays small.
        if exponent > MAX_INT.bit_length() or (abs(base).bit_length() - 1) * exponent > MAX_INT.bit_length():
            raise ArgError(f"'**' gives an integer past the limit (±{MAX_INT}) for {base} and {exponent}")


def unary(op: str, value: object) -> object:
    if op == "not":
        if not isinstance(value, bool):
            raise ArgError(f"'not' needs true or false, got {describe(value)}")
        return not value
    return check_int(-_number(value, "'-'"))
