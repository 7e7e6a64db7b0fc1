"""What a network costs: parameters, multiply-accumulates and activation memory per node."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .graph import Graph
from .liveness import allocates
from .ops import record
from .shapes import per_example


@dataclass(frozen=True)
class NodeCost:
    params: int
    macs: int  # multiply-accumulates for one example (batch 1)
    activation_bytes: int  # the node's output, float32, batch 1


def node_cost(graph: Graph, name: str) -> NodeCost:
    """Cost of one node. MACs are the record's cost rule (conv, conv_transpose and dense count)."""
    node = graph.node(name)
    op, attrs, shape = node.op, node.attrs, node.shape
    params = sum(math.prod(graph.info.param_specs[p].shape) for p in node.params.values())
    rule = record(op).macs
    macs = rule(attrs, [graph.shape(i) for i in graph.inputs_of(name)], shape) if rule else 0
    return NodeCost(params, macs, 4 * per_example(shape))


def network_macs(graph: Graph) -> int:
    """Multiply-accumulates of one example through the whole graph (the nodes' cost rules)."""
    return sum(node_cost(graph, name).macs for name in graph.nodes)


# ---- activation memory of the generated code ---------------------------------------------------
#
# Which arrays the NumPy kernels allocate and which values share one is cnnc.ir.liveness's.


def activation_bytes(graph: Graph, name: str) -> int:
    """Bytes of the node's float32 output for one example (batch 1)."""
    return 4 * per_example(graph.shape(name))


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
