"""Receptive fields: which part of the network input each layer's output sees.

For every node whose output is an image-like `[N, C, H, W]` value, `receptive_fields` gives a
`Field`: the receptive field of one output position (height, width, in input pixels) and the
cumulative stride (`jump`: input pixels between neighbouring output positions), by the standard
recurrence (Araujo et al., "Computing receptive fields of convolutional neural networks",
Distill 2019), axis by axis:

    rf_out   = rf_in + (k - 1) · dilation · jump_in
    jump_out = jump_in · stride

An input node starts at rf = 1, jump = 1. The rules per op:

- windows (conv, winograd_conv, max_pool, avg_pool): the recurrence with the op's kernel,
  stride and dilation (`window`). Padding moves a field but does not change its size.
- conv_transpose with stride s: an output position reads ceil(((k - 1)·d + 1) / s) input
  positions, so rf_out = rf_in + (ceil(((k - 1)·d + 1) / s) - 1)·jump_in and jump_out = jump_in / s;
  upsample by s: jump / s (bilinear reads 2 positions: rf + jump_in); pixel_shuffle by r: jump / r.
  Jumps are `Fraction`s, so a decoder that comes back to full resolution has jump exactly 1.
- adaptive pooling to a size other than 1x1: its largest window (PyTorch's start/end rule) and
  stride in/out.
- per-position ops (activations, batch norm, layer norm, elementwise arithmetic, concat, pad,
  crop, slice, channel shuffle, depthwise pooling, a channel-wise softmax or reduce, a permute or
  reshape that keeps H and W where they are): the field of their inputs.
- merges (add, concat, mul, a fused residual input, ...): the maximum over the inputs, size and
  jump separately, axis by axis.
- everything that mixes all positions (global pools, reduce or softmax over H or W, flatten,
  dense, group_norm, matmul, detection ops, any op not named above): the whole input
  (`whole=True`, `size` = the input's size, `jump` None), and so does everything after it.
  A merge with a whole input is whole (a squeeze-and-excitation gate makes its block whole).

The field is the theoretical one: it is not clipped to the input (ResNet-50's final 7x7 map
has rf 427 on a 224x224 input; padding supplies the rest). Nodes without a spatial field (a
network on vectors, an input that is not [N, C, H, W]) map to None.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from .graph import Graph
from .ops import Op

Pair = tuple[int, int]

__all__ = ["Field", "Window", "receptive_fields", "window"]


@dataclass(frozen=True)
class Window:
    """A sliding window's geometry: kernel, stride and dilation, each (height, width)."""

    kernel: Pair
    stride: Pair
    dilation: Pair


@dataclass(frozen=True)
class Field:
    """The receptive field of one output position, in network-input pixels."""

    size: Pair  # (height, width); for a whole field, the input's size
    jump: tuple[Fraction, Fraction] | None  # cumulative stride; None when whole (one position sees all)
    whole: bool  # the output depends on every input position
    extent: Pair  # the size (height, width) of the network input it refers to (the largest, with several)


_WINDOW_OPS = (Op.CONV, Op.CONV_TRANSPOSE, Op.MAX_POOL, Op.AVG_POOL)

# Ops whose output at a position reads only that position of each input.
_PER_POSITION = frozenset({
    Op.BATCH_NORM, Op.RELU, Op.LEAKY_RELU, Op.RELU6, Op.SIGMOID, Op.TANH, Op.HARDSIGMOID, Op.HARDSWISH,
    Op.SILU, Op.GELU, Op.GELU_TANH, Op.DROPOUT, Op.LRN, Op.LAYER_NORM, Op.LAYER_SCALE, Op.CLIP, Op.PRELU,
    Op.ADD, Op.MUL, Op.SUB, Op.DIV, Op.CONCAT, Op.PAD, Op.CROP, Op.SLICE, Op.CHANNEL_SHUFFLE,
    Op.DEPTHWISE_POOL, Op.CHANNEL_AFFINE, Op.SCALAR_AFFINE,
})

_SPATIAL_AXES = frozenset({2, 3})


def window(graph: Graph, name: str) -> Window | None:
    """The node's sliding window (conv, its Winograd form, conv_transpose, max and avg pool), or
    None for ops without one. The summary's kernel and stride columns read it too."""
    op, attrs = graph.op(name), graph.attrs(name)
    if op is Op.WINOGRAD_CONV:  # always 3x3, stride 1, undilated (WinogradConvAttrs)
        return Window((3, 3), (1, 1), (1, 1))
    if op in _WINDOW_OPS:
        kernel, stride, dilation = attrs.kernel, attrs.stride, getattr(attrs, "dilation", (1, 1))
        return Window((kernel[0], kernel[1]), (stride[0], stride[1]), (dilation[0], dilation[1]))
    return None


def receptive_fields(graph: Graph) -> dict[str, Field | None]:
    """Every node's `Field` (None where its value has no spatial field), in one pass in
    topological order."""
    fields: dict[str, Field | None] = {}
    for name in graph.topo_order():
        fields[name] = _field(graph, name, [fields[i] for i in graph.inputs_of(name)])
    return fields


def _field(graph: Graph, name: str, inputs: list[Field | None]) -> Field | None:
    op, shape = graph.op(name), graph.shape(name)
    if op is Op.INPUT:
        return Field((1, 1), (Fraction(1), Fraction(1)), False, (shape[2], shape[3])) if len(shape) == 4 else None
    known = [f for f in inputs if f is not None]
    if not known:
        return None
    first = inputs[0]
    changed = None
    if first is not None and not first.whole and len(shape) == 4:
        changed = _transfer(graph, name, first, graph.shape(graph.inputs_of(name)[0]))
    if changed is None:  # it mixes all positions, or reads a whole field
        return _whole_of(_merge(known).extent)
    return _merge([changed, *(f for f in inputs[1:] if f is not None)])


def _transfer(graph: Graph, name: str, field: Field, in_shape: tuple) -> Field | None:
    """What the node does to the field of its first input; None: it mixes all positions."""
    op, attrs, out_shape = graph.op(name), graph.attrs(name), graph.shape(name)
    assert field.jump is not None
    win = window(graph, name)
    if win is not None and op is Op.CONV_TRANSPOSE:
        taps = [math.ceil(((k - 1) * d + 1) / s) for k, s, d in zip(win.kernel, win.stride, win.dilation)]
        return _step(field, taps, [Fraction(1, s) for s in win.stride])
    if win is not None:
        return _step(field, [(k - 1) * d + 1 for k, d in zip(win.kernel, win.dilation)],
                     [Fraction(s) for s in win.stride])
    if op in _PER_POSITION:
        return field
    if op is Op.UPSAMPLE:
        reads = 2 if attrs.mode == "bilinear" else 1
        return _step(field, [reads, reads], [Fraction(1, s) for s in attrs.scale])
    if op is Op.PIXEL_SHUFFLE:
        return _step(field, [1, 1], [Fraction(1, attrs.factor)] * 2)
    if op is Op.ADAPTIVE_POOL:
        if tuple(attrs.size) == (1, 1) or len(in_shape) != 4:
            return None
        sizes = [(int(i), int(o)) for i, o in zip(in_shape[2:], attrs.size)]
        taps = [max(-(-(j + 1) * i // o) - (j * i // o) for j in range(o)) for i, o in sizes]
        return _step(field, taps, [Fraction(i, o) for i, o in sizes])
    if op is Op.SOFTMAX:
        return None if attrs.axis % 4 in _SPATIAL_AXES else field
    if op is Op.REDUCE:
        return None if {a % len(in_shape) for a in attrs.axes} & _SPATIAL_AXES else field
    if op is Op.PERMUTE:
        return field if tuple(attrs.order[2:]) == (2, 3) else None
    if op is Op.RESHAPE:
        return field if len(in_shape) == 4 and tuple(out_shape[2:]) == tuple(in_shape[2:]) else None
    return None


def _step(field: Field, taps: list[int], strides: list[Fraction]) -> Field:
    """The recurrence along both axes: `taps` input positions per output, `strides` (in input
    positions) between outputs."""
    assert field.jump is not None
    size = tuple(int(rf + (t - 1) * j) for rf, t, j in zip(field.size, taps, field.jump))
    jump = tuple(j * s for j, s in zip(field.jump, strides))
    return Field((size[0], size[1]), (jump[0], jump[1]), False, field.extent)


def _merge(fields: list[Field]) -> Field:
    """The maximum over `fields` (at least one), axis by axis; whole if any is."""
    extent = (max(f.extent[0] for f in fields), max(f.extent[1] for f in fields))
    jumps = [f.jump for f in fields]
    if any(j is None for j in jumps) or any(f.whole for f in fields):
        return _whole_of(extent)
    return Field((max(f.size[0] for f in fields), max(f.size[1] for f in fields)),
                 (max(j[0] for j in jumps if j), max(j[1] for j in jumps if j)), False, extent)


def _whole_of(extent: Pair) -> Field:
    return Field(extent, None, True, extent)
