"""Winograd convolution: 3x3 stride-1 convs computed with 4x fewer multiplies.

Winograd's minimal filtering algorithm F(4x4, 3x3) (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", 2016) computes each 4x4 output tile from a 6x6 input tile with
36 multiplies per (input, output) channel pair instead of 144. Per tile d and filter g:

    Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A

Summed over input channels, the 36 elementwise products become 36 GEMMs [O, C]·[C, tiles], so
the work moves from one GEMM with K = 9C to 36 GEMMs with K = C: 4x fewer multiply-adds, plus
input and output transforms that are cheap next to them when C and O are large.

The pass rewrites an eligible `conv` node into `winograd_conv` with the same name, inputs, spans
and epilogue. Its weight is a derived parameter `<conv>.weight~winograd` = G g Gᵀ, stored
[36, O, C]: computed once from the user's (or BN-folded) weight whenever that changes, never
per call. It runs after fusion, so the epilogue (bias, activation, residual) is already known.

Eligible convs (measured on the 2-core Xeon in docs/kernels.md and BENCHMARKS.md, where below these
sizes the transforms cost more than the multiplies saved): kernel 3x3, stride 1, dilation 1,
groups 1, at least MIN_CHANNELS input and output channels and an output of at least MIN_SIZE x
MIN_SIZE; or at least SMALL_MAP_CHANNELS channels and a SMALL_MAP_SIZE x SMALL_MAP_SIZE output
(14x14: with 256 or more channels even with im2col at batch 1 and 1.28-1.48x at batch 4, where the
kernel puts several images' tiles in one GEMM; with 96-160 channels, GoogLeNet's, 0.6-0.7x at
batch 1; 7x7 is not faster).

Accuracy: the transforms' coefficients (up to 8 in Aᵀ, 5 in Bᵀ) add float32 rounding; the
error relative to the output's scale stays below 1e-4 on He-initialized layers (docs/kernels.md,
tests/test_winograd.py), about ten times direct convolution's.
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ir.ops import ConvAttrs, Op, WinogradConvAttrs
from .derived import derive
from .manager import register

MIN_CHANNELS = 32
MIN_SIZE = 16
SMALL_MAP_SIZE = 14
SMALL_MAP_CHANNELS = 256


def eligible(graph: Graph, name: str) -> bool:
    """Whether the conv node `name` is one winograd_conv computes faster (see the module docs)."""
    if graph.op(name) != Op.CONV:
        return False
    attrs: ConvAttrs = graph.attrs(name)
    if attrs.kernel != (3, 3) or attrs.stride != (1, 1) or attrs.dilation != (1, 1) or attrs.groups != 1:
        return False
    channels = graph.shape(graph.inputs_of(name)[0])[1]
    _, filters, height, width = graph.shape(name)
    fewest, side = min(channels, filters), min(height, width)
    return (fewest >= MIN_CHANNELS and side >= MIN_SIZE) or (fewest >= SMALL_MAP_CHANNELS and side >= SMALL_MAP_SIZE)


@register("winograd", level=2, after=("eliminate_dead_code",), before=("plan_memory",))
def winograd(graph: Graph) -> bool:
    """Turn eligible 3x3 stride-1 convs into winograd_conv nodes with transformed weights."""
    changed = False
    for name in graph.topo_order():
        if not eligible(graph, name):
            continue
        attrs: ConvAttrs = graph.attrs(name)
        params = graph.params_of(name)
        channels = graph.shape(graph.inputs_of(name)[0])[1]
        weight = derive(graph, f"{name}.weight~winograd", "winograd_weight", (params["weight"],),
                        (36, attrs.filters, channels))
        graph.replace(name, op=Op.WINOGRAD_CONV,
                      attrs=WinogradConvAttrs(attrs.filters, attrs.pads, attrs.bias, attrs.activation, attrs.slope),
                      params={**params, "weight": weight})
        changed = True
    return changed
