"""What a network costs: parameters, multiply-accumulates and activation memory per node."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .graph import Graph
from .ops import Op


@dataclass(frozen=True)
class NodeCost:
    params: int
    macs: int  # multiply-accumulates for one example (batch 1)
    activation_bytes: int  # the node's output, float32, batch 1


def _per_example(shape: tuple) -> int:
    return math.prod(d for d in shape[1:])


def node_cost(graph: Graph, name: str) -> NodeCost:
    """Cost of one node. MACs count the multiply-adds of conv, conv_transpose and dense layers."""
    data = graph.nodes[name]
    op, attrs, shape = data["op"], data["attrs"], data["shape"]
    params = sum(math.prod(graph.graph["params"][p].shape) for p in data["params"].values())
    macs = 0
    if op == Op.CONV:
        c = graph.shape(graph.inputs_of(name)[0])[1]
        macs = _per_example(shape) * (c // attrs.groups) * attrs.kernel[0] * attrs.kernel[1]
    elif op == Op.CONV_TRANSPOSE:
        x = graph.shape(graph.inputs_of(name)[0])
        macs = _per_example(x) * (attrs.filters // attrs.groups) * attrs.kernel[0] * attrs.kernel[1]
    elif op == Op.DENSE:
        features = graph.shape(graph.inputs_of(name)[0])[1]
        macs = attrs.units * features
    return NodeCost(params, macs, 4 * _per_example(shape))


# ---- activation memory of the generated code ---------------------------------------------------
#
# What each NumPy kernel returns, read from cnnc/kernels/numpy_kernels.py (tests/test_pass_memory.py
# checks it on every kernel):
#   _FRESH ops           always a new array, whatever the attrs (concat of one input, np.pad,
#                        reductions over no axis and slice_axis's explicit copy included);
#   flatten, reshape     x.reshape(...): a view of x whenever x is contiguous (always, in practice);
#   dropout              no kernel: generated code assigns the same object;
#   crop                 np.ascontiguousarray(x[...]) returns the slice itself, a view, whenever the
#                        slice is contiguous (a full crop; a band of rows when N = C = 1);
#   upsample             mode "nearest" at scale (1, 1): a read-only broadcast view of x; else new.
# An op not listed here (a new one) is assumed to return a read-only view of any of its inputs.

_FRESH = frozenset({
    Op.CONV, Op.CONV_TRANSPOSE, Op.DENSE, Op.BATCH_NORM, Op.RELU, Op.LEAKY_RELU, Op.RELU6, Op.SIGMOID,
    Op.TANH, Op.SOFTMAX, Op.LRN, Op.MAX_POOL, Op.AVG_POOL, Op.GLOBAL_AVG_POOL, Op.GLOBAL_MAX_POOL,
    Op.DEPTHWISE_POOL, Op.ADD, Op.MUL, Op.CONCAT, Op.PAD, Op.CHANNEL_AFFINE, Op.REDUCE, Op.SLICE, Op.IOU,
    Op.NMS, Op.YOLO_DECODE})
_VIEWS = frozenset({Op.FLATTEN, Op.RESHAPE, Op.DROPOUT, Op.CROP})  # writable views of input 0


def _classified(op: Op) -> bool:
    return op in _FRESH or op in _VIEWS or op in (Op.INPUT, Op.UPSAMPLE)


def _upsample_view(graph: Graph, name: str) -> bool:
    attrs = graph.attrs(name)
    return attrs.mode == "nearest" and tuple(attrs.scale) == (1, 1)


def aliased_inputs(graph: Graph, name: str) -> list[str]:
    """The inputs whose buffer the node's output may share (be that array, or a view of it)."""
    op = graph.op(name)
    inputs = graph.inputs_of(name)
    if op in _FRESH or op == Op.INPUT:
        return []
    if op in _VIEWS or op == Op.UPSAMPLE:
        return inputs[:1] if op != Op.UPSAMPLE or _upsample_view(graph, name) else []
    return inputs  # not classified: assume the worst


def read_only(graph: Graph, name: str) -> bool:
    """Whether the node's output may be a read-only array (a broadcast view) that `out=` cannot take."""
    op = graph.op(name)
    return (op == Op.UPSAMPLE and _upsample_view(graph, name)) or not _classified(op)


def allocates(graph: Graph, name: str) -> bool:
    """Whether the node's kernel allocates a new activation array (the user's inputs do not).

    A crop that may be a view, or an op not classified above, counts as allocating: an overestimate.
    """
    op = graph.op(name)
    return op != Op.INPUT and (op == Op.CROP or not _classified(op) or not aliased_inputs(graph, name))


def activation_bytes(graph: Graph, name: str) -> int:
    """Bytes of the node's float32 output for one example (batch 1)."""
    return 4 * _per_example(graph.shape(name))


def peak_without_plan(graph: Graph) -> int:
    """Peak activation bytes (batch 1) of code that keeps every value until `forward` returns, as
    Python locals do: the sum of the arrays the kernels allocate (views cost nothing, inputs are
    the caller's)."""
    return sum(activation_bytes(graph, n) for n in graph.nodes if allocates(graph, n))


def peak_with_plan(graph: Graph, plan) -> int:
    """Peak activation bytes (batch 1) of code following `plan` (a `cnnc.passes.memory.MemoryPlan`).

    Each of the plan's buffers (values sharing memory: aliases and in-place chains, counted once)
    is live from its first value's statement to its last value's last use (outputs: to the end);
    a statement's inputs and output are live together. Kernel workspace is not counted.
    """
    live = [0] * (len(plan.order) + 1)
    for members in plan.buffers:
        size = sum(activation_bytes(graph, n) for n in members
                   if allocates(graph, n) and n not in plan.in_place)
        start = min(plan.position(n) for n in members)
        end = max(plan.last_use_of(n) for n in members)
        for step in range(start, end + 1):
            live[step] += size
    return max(live, default=0)
