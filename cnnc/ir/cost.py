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
