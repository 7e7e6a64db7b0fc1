"""Removing work: identities, dead code, repeated computations, and foldable constant chains."""
from __future__ import annotations

import networkx as nx

from ..ir.graph import Graph
from ..ir.ops import Op
from .manager import register
from .rewrite import bypass


def _is_identity(graph: Graph, name: str) -> bool:
    op, attrs = graph.op(name), graph.attrs(name)
    inputs = graph.inputs_of(name)
    same_shape = bool(inputs) and tuple(graph.shape(inputs[0])) == tuple(graph.shape(name))
    if op == Op.DROPOUT:
        return True
    if op in (Op.PAD, Op.RESHAPE, Op.CROP, Op.UPSAMPLE) and same_shape:
        return True  # zero padding, a reshape to the same shape, a full crop, a scale of 1
    if op in (Op.MAX_POOL, Op.AVG_POOL) and same_shape:
        return attrs.kernel == (1, 1) and attrs.stride == (1, 1)
    if op == Op.CONCAT and len(inputs) == 1:
        return True
    return False


@register("eliminate_identity", level=1)
def eliminate_identity(graph: Graph) -> bool:
    """Remove nodes that return their input: dropout, zero pads, no-op reshapes/crops, 1x1 pools."""
    identities = [n for n in graph.topo_order() if graph.op(n) != Op.INPUT and _is_identity(graph, n)]
    for name in identities:
        bypass(graph, name)
    return bool(identities)


@register("eliminate_dead_code", level=1)
def eliminate_dead_code(graph: Graph) -> bool:
    """Remove nodes no output depends on (inputs stay: they are the network's interface)."""
    live = set(graph.graph["outputs"].values())
    for node in list(live):
        live |= nx.ancestors(graph, node)
    dead = [n for n in graph.nodes if n not in live and graph.op(n) != Op.INPUT]
    graph.remove_nodes_from(dead)
    return bool(dead)


def _key(graph: Graph, name: str) -> tuple:
    data = graph.nodes[name]
    return (data["op"], data["attrs"], tuple(graph.inputs_of(name)), tuple(sorted(data["params"].items())))


@register("eliminate_common_subexpressions", level=1)
def eliminate_common_subexpressions(graph: Graph) -> bool:
    """Compute each distinct (op, attrs, inputs, parameters) once; later copies read the first."""
    seen: dict[tuple, str] = {}
    changed = False
    for name in graph.topo_order():
        if graph.op(name) == Op.INPUT:
            continue
        key = _key(graph, name)
        if key in seen:
            first = seen[key]
            graph.nodes[first]["spans"] += tuple(s for s in graph.nodes[name]["spans"]
                                                 if s not in graph.nodes[first]["spans"])
            graph.replace_uses(name, first)
            graph.remove_node(name)
            changed = True
        else:
            seen[key] = name
    return changed
