"""Lowering pooling ops onto fewer, more general ops where that is exact and no slower.

- `global_avg_pool` / `global_max_pool` → `reduce(mean|max, axes=(2, 3), keepdims=True)`:
  one reduction op instead of two (same NumPy call, so the same speed).
- `avg_pool` whose single window is the whole (unpadded) input → `reduce(mean, (2, 3))`: one
  NumPy mean instead of a loop over kh·kw taps (measured 5x faster on a 7x7 pool of
  [1, 1024, 7, 7]: 152 µs → 31 µs; 2x on 8x8 over [1, 2048, 8, 8]: 242 µs → 124 µs).
- `avg_pool` with a constant divisor kh·kw could become a depthwise `conv` with a "fill"
  weight 1/(kh·kw); that form is exact but measured slower for every shape tried (see
  `AVG_POOL_AS_CONV`), so by default such pools stay `avg_pool`.
- `depthwise_pool(size k)` → `reshape` to [N, C/k, k, H, W], then `reduce(mode, axes=(2,))`.
- `max_pool` is left alone: its kernel already is a windowed maximum over strided views (one
  `np.maximum` per tap), which is what any lowering would compute.

Lowered nodes keep their name, spans and shape; only the depthwise pool gains a node (the
reshape, which gets a fresh name and the pool's spans).
"""
from __future__ import annotations

from ..ir import ops as o
from ..ir.graph import Graph
from ..ir.ops import Op, infer_shape
from .derived import derive
from .manager import register

# Whether constant-divisor average pools become depthwise convs. Measured with the NumPy
# kernels (best of 5, 2 CPU cores), avg_pool vs conv with groups = C and weight 1/(kh·kw):
#   3x3 s1 p1 [1, 256, 28, 28]    637 µs vs 1194 µs  (conv 1.9x slower)
#   3x3 s1 p1 [8, 256, 28, 28]   5048 µs vs 11652 µs (2.3x)
#   3x3 s1 p1 [1, 192, 35, 35]   1110 µs vs 1318 µs  (1.2x)
#   3x3 s2 p1 [1, 64, 56, 56]     296 µs vs 438 µs   (1.5x)
#   2x2 s2    [1, 64, 112, 112]   432 µs vs 586 µs   (1.4x)
#   2x2 s2    [1, 512, 14, 14]     90 µs vs 147 µs   (1.6x)
#   5x5 s3    [1, 32, 224, 224]  2686 µs vs 3031 µs  (1.1x)
#   7x7 s1    [1, 1024, 7, 7]     149 µs vs 159 µs   (1.1x; becomes a reduce instead, 31 µs)
# and with a following relu fused into the conv it is still slower (e.g. 713 vs 1261 µs for
# the first shape). The tap loop of avg_pool adds each window slice in place, the depthwise
# conv multiplies each slice by its weight into a temporary first: twice the memory traffic.
# So no class of shapes pays; the rewrite is kept (exact, tested) for a target whose depthwise
# conv is the faster primitive.
AVG_POOL_AS_CONV = False


def _whole_input_window(graph: Graph, name: str) -> bool:
    """Whether the avg pool's only window is exactly its unpadded input (divisor H·W)."""
    attrs: o.AvgPoolAttrs = graph.attrs(name)
    _, _, h, w = graph.shape(graph.inputs_of(name)[0])
    return attrs.kernel == (h, w) and not any(attrs.pads)


def _constant_divisor(graph: Graph, name: str) -> bool:
    """Whether every window of the avg pool divides by kh·kw (PyTorch's divisor rules).

    With count_include_pad the divisor counts the padded extent [-top, H + bottom) but not a
    ceil_mode overhang beyond it; without it, only input pixels. So the divisor is kh·kw iff
    no window reaches past the counted extent.
    """
    attrs: o.AvgPoolAttrs = graph.attrs(name)
    _, _, h, w = graph.shape(graph.inputs_of(name)[0])
    _, _, ho, wo = graph.shape(name)
    (kh, kw), (sh, sw) = attrs.kernel, attrs.stride
    top, left, bottom, right = attrs.pads
    end_h, end_w = (ho - 1) * sh + kh, (wo - 1) * sw + kw  # last window's end, in padded coordinates
    if attrs.count_include_pad:
        return end_h <= top + h + bottom and end_w <= left + w + right
    return top == 0 and left == 0 and end_h <= h and end_w <= w


def _to_reduce(graph: Graph, name: str, mode: str, axes: tuple[int, ...], keepdims: bool) -> None:
    """Turn `name` (same inputs, spans and shape) into a reduce node."""
    graph.replace(name, op=Op.REDUCE, attrs=o.ReduceAttrs(mode, axes, keepdims), params={})


def _to_depthwise_conv(graph: Graph, name: str) -> bool:
    """Turn a constant-divisor avg pool into a depthwise conv with weight 1/(kh·kw)."""
    attrs: o.AvgPoolAttrs = graph.attrs(name)
    channels = graph.shape(name)[1]
    kh, kw = attrs.kernel
    conv = o.ConvAttrs(filters=channels, kernel=attrs.kernel, stride=attrs.stride, pads=attrs.pads,
                       dilation=(1, 1), groups=channels, bias=False)
    input_shape = graph.shape(graph.inputs_of(name)[0])
    if infer_shape(Op.CONV, conv, [input_shape]) != tuple(graph.shape(name)):
        return False  # precondition (implied by a constant divisor): floor and ceil sizes agree
    weight = derive(graph, f"{name}.weight~avg", "fill", (), (channels, 1, kh, kw), value=1.0 / (kh * kw))
    graph.replace(name, op=Op.CONV, attrs=conv, params={"weight": weight})
    return True


def _lower_avg_pool(graph: Graph, name: str) -> bool:
    if _whole_input_window(graph, name) and not graph.info.fully_convolutional:
        # One window over the whole input is a global mean at this size only; a fully
        # convolutional graph (dense_to_conv ran) will run at other sizes, where it slides.
        _to_reduce(graph, name, "mean", (2, 3), keepdims=True)
        return True
    if AVG_POOL_AS_CONV and _constant_divisor(graph, name):
        return _to_depthwise_conv(graph, name)
    # Otherwise the divisor varies per window (count_include_pad=False with padding, or a
    # ceil_mode overhang): no convolution computes that, so the pool stays.
    return False


def _lower_depthwise_pool(graph: Graph, name: str) -> None:
    """depthwise_pool(k) = reduce over axis 2 of the input viewed as [N, C/k, k, H, W]."""
    attrs: o.DepthwisePoolAttrs = graph.attrs(name)
    source = graph.inputs_of(name)[0]
    n, c, h, w = graph.shape(source)
    # The channel regrouping keeps H and W last, so fcn.reshape_inputs can resize it.
    target = (c // attrs.size, attrs.size, h, w)
    reshape = graph.add_op(graph.fresh_name(f"{name}.reshape"), Op.RESHAPE, o.ReshapeAttrs(target),
                           [source], (n, *target), graph.spans(name))
    graph.remove_edge(source, name, key=0)
    graph.add_edge(reshape, name, key=0)
    mode = "max" if attrs.mode == "max" else "mean"
    _to_reduce(graph, name, mode, (2,), keepdims=False)


@register("lower_pooling", level=2, after=("fold_constants",))
def lower_pooling(graph: Graph) -> bool:
    """Global pools and whole-input avg pools to reduce, depthwise pools to reshape + reduce."""
    changed = False
    for name in graph.topo_order():
        op = graph.op(name)
        if op == Op.GLOBAL_AVG_POOL:
            _to_reduce(graph, name, "mean", (2, 3), keepdims=True)
            changed = True
        elif op == Op.GLOBAL_MAX_POOL:
            _to_reduce(graph, name, "max", (2, 3), keepdims=True)
            changed = True
        elif op == Op.AVG_POOL:
            changed |= _lower_avg_pool(graph, name)
        elif op == Op.DEPTHWISE_POOL:
            _lower_depthwise_pool(graph, name)
            changed = True
    return changed
