"""Removing work: identities, dead code, repeated computations, and foldable constant chains."""
from __future__ import annotations

import networkx as nx

from ..ir.graph import Graph
from ..ir.ops import Op, record
from .manager import register
from .rewrite import absorb, bypass


def _is_identity(graph: Graph, name: str) -> bool:
    """The record's identity rule: dropout, zero pads, no-op reshapes/crops/upsamples, 1x1 pools, …"""
    rule = record(graph.op(name)).identity
    return rule is not None and rule(graph.attrs(name), [graph.shape(i) for i in graph.inputs_of(name)],
                                     graph.shape(name))


@register("eliminate_identity", level=1)
def eliminate_identity(graph: Graph) -> bool:
    """Remove nodes that return their input: dropout, zero pads, no-op reshapes/crops, 1x1 pools."""
    identities = [n for n in graph.topo_order() if graph.op(n) != Op.INPUT and _is_identity(graph, n)]
    for name in identities:
        bypass(graph, name)
    return bool(identities)


@register("eliminate_dead_code", level=1, after=("eliminate_common_subexpressions",))
def eliminate_dead_code(graph: Graph) -> bool:
    """Remove nodes no output depends on (inputs stay: they are the network's interface)."""
    live = set(graph.info.outputs.values())
    for node in list(live):
        live |= nx.ancestors(graph, node)
    dead = [n for n in graph.nodes if n not in live and graph.op(n) != Op.INPUT]
    graph.remove_nodes_from(dead)
    return bool(dead)


def _key(graph: Graph, name: str) -> tuple:
    node = graph.node(name)
    return (node.op, node.attrs, tuple(graph.inputs_of(name)), tuple(sorted(node.params.items())))


@register("eliminate_common_subexpressions", level=1, after=("fuse_conv_bias_activation",))
def eliminate_common_subexpressions(graph: Graph) -> bool:
    """Compute each distinct (op, attrs, inputs, parameters) once; later copies read the first."""
    seen: dict[tuple, str] = {}
    changed = False
    for name in graph.topo_order():
        if graph.op(name) == Op.INPUT:
            continue
        key = _key(graph, name)
        if key in seen:
            absorb(graph, seen[key], name)
            changed = True
        else:
            seen[key] = name
    return changed
