"""The ops a `.cnn` file can call: the records' surfaces turned into callable layers.

Each op's record (cnnc/ir/ops.py) lists its spellings (`Surface`): name, arguments with their
converter kind and default, and optionally a builder named here. This module binds the kinds to
the converters of arguments.py and the builder names to the functions below (padding `same`,
a pool's stride defaulting to its kernel, separable convs emitting two nodes, gelu's form
choosing its op). A surface without a builder makes one node whose attrs are exactly its
converted arguments.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..ir import ops as o
from ..ir.ops import REQUIRED, Op, Surface
from . import arguments as a
from .values import Tensor

__all__ = ["LAYER_OPS", "REQUIRED", "ArgSpec", "LayerOp", "same_pads"]


class Emitter(Protocol):
    def emit(self, op: Op, attrs: object, inputs: list[Tensor], suffix: str | None = None) -> Tensor:
        """Add an IR node (named after the layer, plus `.suffix` when given) and return its value."""


@dataclass(frozen=True)
class ArgSpec:
    name: str
    convert: a.Converter
    default: object = REQUIRED


Builder = Callable[[Emitter, list[Tensor], dict], Tensor]


@dataclass(frozen=True)
class LayerOp:
    name: str
    inputs: int | None  # tensor inputs taken first; None: one or more
    args: tuple[ArgSpec, ...]
    build: Builder


def same_pads(size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
              dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """SAME_UPPER (TF/ONNX): output = ceil(input / stride), odd padding goes bottom/right."""
    begin, end = [], []
    for n, k, s, d in zip(size, kernel, stride, dilation):
        total = max((math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0)
        begin.append(total // 2)
        end.append(total - total // 2)
    return (begin[0], begin[1], end[0], end[1])


def _resolve_pads(pad, x: Tensor, kernel, stride, dilation) -> tuple[int, int, int, int]:
    if pad == "valid":
        return (0, 0, 0, 0)
    if pad == "same" and len(x.shape) != 4:  # no H, W to fit: the shape rule reports the rank
        return (0, 0, 0, 0)
    if pad == "same":
        return same_pads((x.shape[2], x.shape[3]), kernel, stride, dilation)
    return pad


def _conv_attrs(x: Tensor, args: dict, filters: int, groups: int, bias: bool) -> o.ConvAttrs:
    return o.ConvAttrs(filters, args["kernel"], args["stride"],
                       _resolve_pads(args["pad"], x, args["kernel"], args["stride"], args["dilation"]),
                       args["dilation"], groups, bias)


def _build_conv(e: Emitter, xs: list[Tensor], args: dict) -> Tensor:
    (x,) = xs
    return e.emit(Op.CONV, _conv_attrs(x, args, args["filters"], args["groups"], args["bias"]), xs)


def _channels(x: Tensor) -> int:
    return x.shape[1] if len(x.shape) > 1 else 1


def _build_depthwise(e: Emitter, xs: list[Tensor], args: dict) -> Tensor:
    (x,) = xs
    c = _channels(x)
    return e.emit(Op.CONV, _conv_attrs(x, args, c * args["multiplier"], c, args["bias"]), xs)


def _build_separable(e: Emitter, xs: list[Tensor], args: dict) -> Tensor:
    (x,) = xs
    c = _channels(x)
    depthwise = e.emit(Op.CONV, _conv_attrs(x, args, c * args["multiplier"], c, False), xs, "depthwise")
    pointwise = o.ConvAttrs(args["filters"], (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, args["bias"])
    return e.emit(Op.CONV, pointwise, [depthwise], "pointwise")


def _build_conv_transpose(e: Emitter, xs: list[Tensor], args: dict) -> Tensor:
    pad = args["pad"]
    if pad == "same":
        raise a.ArgError("pad=same is not available; give the padding explicitly")
    attrs = o.ConvTransposeAttrs(args["filters"], args["kernel"], args["stride"],
                                 (0, 0, 0, 0) if pad == "valid" else pad, args["output_padding"],
                                 args["dilation"], args["groups"], args["bias"])
    return e.emit(Op.CONV_TRANSPOSE, attrs, xs)


def _build_max_pool(e: Emitter, xs: list[Tensor], args: dict) -> Tensor:
    stride = args["stride"] or args["kernel"]
    pads = _resolve_pads(args["pad"], xs[0], args["kernel"], stride, args["dilation"])
    return e.emit(Op.MAX_POOL, o.MaxPoolAttrs(args["kernel"], stride, pads, args["dilation"],
                                              args["ceil_mode"]), xs)


def _build_avg_pool(e: Emitter, xs: list[Tensor], args: dict) -> Tensor:
    stride = args["stride"] or args["kernel"]
    pads = _resolve_pads(args["pad"], xs[0], args["kernel"], stride, (1, 1))
    return e.emit(Op.AVG_POOL, o.AvgPoolAttrs(args["kernel"], stride, pads, args["ceil_mode"],
                                              args["count_include_pad"]), xs)


def _build_pad(e: Emitter, xs: list[Tensor], args: dict) -> Tensor:
    pads = args["pad"]
    if isinstance(pads, str):
        raise a.ArgError("argument 'pad' takes explicit sizes, not same/valid")
    return e.emit(Op.PAD, o.PadAttrs(pads, args["mode"], args["value"]), xs)


def _build_gelu(e: Emitter, xs: list[Tensor], args: dict) -> Tensor:
    """gelu(approximate=none|tanh): each form is its own op (see GELU_FORMS in cnnc/ir/ops.py)."""
    return e.emit(o.GELU_FORMS[args["approximate"]], o.NoAttrs(), xs)


def _build_instance_norm(e: Emitter, xs: list[Tensor], args: dict) -> Tensor:
    """instance_norm is group_norm with one group per channel."""
    return e.emit(Op.GROUP_NORM, o.NormAttrs(args["eps"], _channels(xs[0])), xs)


def _simple(op: Op, attrs_type: type, fixed: tuple[tuple[str, object], ...]) -> Builder:
    """A builder for spellings whose converted arguments (plus `fixed`) are exactly the attrs."""
    def build(e: Emitter, xs: list[Tensor], args: dict) -> Tensor:
        return e.emit(op, attrs_type(**args, **dict(fixed)), xs)
    return build


def _optional_pair(value: object) -> tuple[int, int] | None:
    return None if value is None else a.to_pair(value)


# Converter kinds a record's Arg may name.
CONVERTERS: dict[str, a.Converter] = {
    "int": a.to_int, "positive_int": a.to_positive_int, "count": a.to_count, "float": a.to_float, "bool": a.to_bool,
    "probability": a.to_probability, "fraction": a.to_fraction, "nonnegative_float": a.to_nonnegative_float,
    "pair": a.to_pair, "optional_pair": _optional_pair, "nonnegative_pair": a.to_nonnegative_pair,
    "padding": a.to_padding, "size": a.to_size, "int_tuple": a.to_int_tuple, "anchors": a.to_anchors,
}

# Builders a record's Surface may name.
BUILDERS: dict[str, Builder] = {
    "conv": _build_conv, "depthwise_conv": _build_depthwise, "separable_conv": _build_separable,
    "conv_transpose": _build_conv_transpose, "max_pool": _build_max_pool, "avg_pool": _build_avg_pool,
    "pad": _build_pad, "gelu": _build_gelu, "instance_norm": _build_instance_norm,
}


def _converter(arg: o.Arg) -> a.Converter:
    return a.choice(*arg.choices) if arg.kind == "choice" else CONVERTERS[arg.kind]


def _layer(op: Op, surface: Surface) -> LayerOp:
    build = BUILDERS[surface.builder] if surface.builder else _simple(op, o.record(op).attrs, surface.fixed)
    return LayerOp(surface.name, surface.inputs,
                   tuple(ArgSpec(arg.name, _converter(arg), arg.default) for arg in surface.args), build)


LAYER_OPS: dict[str, LayerOp] = {surface.name: _layer(op, surface)
                                 for op, rec in o.RECORDS.items() for surface in rec.surfaces}
