"""The vocabulary of shape rules: shapes, parameter specs, and the helpers rules share.

The rules themselves live in each op's record (cnnc/ir/ops.py); `infer_shape` and
`param_specs` there apply them. Rules raise ShapeRuleError with a message that names the sizes
involved; the caller attaches the source span. The batch dimension may be symbolic (a str such
as "N"). This module imports nothing from the rest of the IR, so every layer can use it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

Shape = tuple  # tuple[int | str, ...]; only dimension 0 may be a str (the batch symbol)


@dataclass(frozen=True)
class ParamSpec:
    """A parameter's shape and how `cnnc.init_params` fills it (he, glorot, zeros, ones, prelu, derived)."""

    shape: tuple[int, ...]
    init: str
    fan_in: int = 1


class ShapeRuleError(Exception):
    """An op cannot be applied to inputs of these shapes."""


def fmt(shape: Shape) -> str:
    """A shape as the language writes it: [N, 64, 56, 56]."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


def per_example(shape: Shape) -> int:
    """Elements of one example (every dimension but the batch)."""
    return math.prod(int(d) for d in shape[1:])


def need_rank(shape: Shape, ranks: tuple[int, ...], what: str) -> None:
    if len(shape) not in ranks:
        expected = " or ".join(f"{r}-D" for r in ranks)
        raise ShapeRuleError(f"{what} expects a {expected} input, got {fmt(shape)}")


def window_out(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil: bool,
               what: str, axis: str) -> int:
    """Output size of a sliding window along one axis (`pad`: both ends together).

    The one place this formula lives: kernels read the output size off the node's shape.
    """
    span = dilation * (kernel - 1) + 1
    if size + pad < span:
        raise ShapeRuleError(f"{what}: kernel {kernel} (spanning {span}) is larger than the padded "
                             f"input {axis} {size + pad}")
    rounding = math.ceil if ceil else math.floor
    return int(rounding((size + pad - span) / stride)) + 1


def pool_out(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int,
             ceil: bool, what: str, axis: str) -> int:
    """`window_out` with PyTorch's ceil_mode rule for pools."""
    out = window_out(size, kernel, stride, pad_begin + pad_end, dilation, ceil, what, axis)
    if ceil and (out - 1) * stride >= size + pad_begin:
        out -= 1  # PyTorch: the last window must start inside the input or the leading padding
    return out


def broadcast(a: Shape, b: Shape, what: str) -> Shape:
    """NumPy broadcasting of two shapes, with messages that say which dimension disagrees."""
    if len(a) != len(b):
        raise ShapeRuleError(f"{what}: cannot combine {fmt(a)} and {fmt(b)} (different ranks)")
    names = ("batch", "channels", "height", "width") if len(a) == 4 else ()
    out = []
    for axis, (x, y) in enumerate(zip(a, b)):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            label = f" ({names[axis]})" if names else ""
            raise ShapeRuleError(f"{what}: shapes {fmt(a)} and {fmt(b)} differ in dimension "
                                 f"{axis}{label}: {x} vs {y}")
    return tuple(out)
