"""Channels-last values between 1x1 and depthwise convolutions (the NumPy code's memory layout).

A depthwise conv's taps are multiply-adds over whole channel vectors only when its input is laid
out channels-last ([N, H, W, C]); in NCHW they run over image rows, short and strided. NumPy
pays a transpose to get there (for MobileNetV2's 112x112 layers the transposes cost as much as
the taps). A 1x1 conv is one GEMM whichever way its operands lie, since BLAS reads a transposed
matrix for free: [O, C]·[C, H·W] gives NCHW, [H·W, C]·[C, O] the same numbers channels-last.
So where a 1x1 conv feeds a depthwise conv, or a depthwise conv a 1x1 conv (MobileNet's
inverted residual blocks, Xception's separable convs, EfficientNet's MBConv without its SE),
the value between them is kept channels-last: the producer gets `layout_out="nhwc"`, the
consumer `layout_in="nhwc"`, and no transpose is made at all.

The shapes in the IR stay the logical [N, C, H, W]; only these two conv attributes say how the
array between the two nodes lies. A value is marked only when its one reader is the other conv
and it is no output, and never when the producer adds a residual (the residual is NCHW), so no
other kernel ever sees a channels-last array (ir/verify.py checks this). The CuPy backend runs
everything NCHW (`nchw_everywhere`).

Measured in BENCHMARKS.md ("channels-last"); the pass runs after fusion and Winograd, before
memory planning.
"""
from __future__ import annotations

from dataclasses import replace

from ..ir.graph import Graph
from ..ir.ops import ConvAttrs, Op
from .manager import register
from .rewrite import sole_user


def conv_kind(graph: Graph, name: str) -> str | None:
    """"1x1" for a conv the NumPy kernel computes as one plain GEMM (1x1, stride 1, unpadded, one
    group), "depthwise" for one filter per channel (groups = C = filters), else None."""
    if graph.op(name) != Op.CONV:
        return None
    a: ConvAttrs = graph.attrs(name)
    if a.kernel == (1, 1) and a.stride == (1, 1) and not any(a.pads) and a.groups == 1:
        return "1x1"
    channels = graph.shape(graph.inputs_of(name)[0])[1]
    return "depthwise" if a.groups == channels == a.filters and channels > 1 else None


@register("channels_last", level=2, after=("winograd",), before=("plan_memory",))
def channels_last(graph: Graph) -> bool:
    """Keep the values between 1x1 and depthwise convs channels-last (see the module docstring)."""
    changed = False
    for producer in graph.topo_order():
        if conv_kind(graph, producer) is None or len(graph.inputs_of(producer)) != 1:  # a residual is NCHW
            continue
        consumer = sole_user(graph, producer)
        if consumer is None or graph.inputs_of(consumer)[0] != producer:
            continue
        if {conv_kind(graph, producer), conv_kind(graph, consumer)} != {"1x1", "depthwise"}:  # one of each
            continue
        graph.replace(producer, attrs=replace(graph.attrs(producer), layout_out="nhwc"))
        graph.replace(consumer, attrs=replace(graph.attrs(consumer), layout_in="nhwc"))
        changed = True
    return changed


def nchw_everywhere(graph: Graph) -> Graph:
    """`graph` with every conv reading and writing NCHW (a copy when any did not): for backends
    that have no channels-last kernels (CuPy)."""
    marked = [n for n in graph.nodes if graph.op(n) == Op.CONV
              and (graph.attrs(n).layout_in, graph.attrs(n).layout_out) != ("nchw", "nchw")]
    if not marked:
        return graph
    result = graph.clone()
    for name in marked:
        result.replace(name, attrs=replace(result.attrs(name), layout_in="nchw", layout_out="nchw"))
    return result
