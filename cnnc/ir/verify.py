"""IR invariants, checked after elaboration and after every pass in tests.

A failure here is a bug in cnnc (CnncIRError), never a user error.
"""
from __future__ import annotations

import networkx as nx

from ..errors import CnncIRError
from .graph import INFO_KEY, NODE_KEY, Graph, GraphInfo, Node
from .ops import Op, infer_shape, param_specs, record


def verify(graph: Graph) -> None:
    """Raise CnncIRError naming the node and the broken rule, or return None."""
    _check_storage(graph)
    if not nx.is_directed_acyclic_graph(graph):
        raise CnncIRError("the IR has a cycle", where="graph")
    for name in graph.nodes:
        _check_node(graph, graph.node(name))
    _check_interface(graph)
    _check_layouts(graph)


def _check_storage(graph: Graph) -> None:
    """Graph data is one GraphInfo; each node holds one Node record, named as its key, and no
    two records share an order (which makes traversals deterministic)."""
    if set(graph.graph) != {INFO_KEY} or not isinstance(graph.graph[INFO_KEY], GraphInfo):
        raise CnncIRError(f"graph data must be one GraphInfo under '{INFO_KEY}', got keys {sorted(graph.graph)}",
                          where="graph")
    orders: dict[int, str] = {}
    for name, data in graph.nodes(data=True):
        node = data.get(NODE_KEY)
        if set(data) != {NODE_KEY} or not isinstance(node, Node):
            raise CnncIRError(f"node data must be one Node record under '{NODE_KEY}' (made by Graph.add_op), "
                              f"got keys {sorted(data)}", where=name)
        if node.name != name:
            raise CnncIRError(f"the record stored here is named {node.name!r}", where=name)
        if node.order in orders:
            raise CnncIRError(f"order {node.order} is also {orders[node.order]}'s", where=name)
        orders[node.order] = name


def _check_node(graph: Graph, node: Node) -> None:
    """The node's attrs type, input slots and count, shape and parameters agree with its op's record."""
    name, op = node.name, node.op
    info = record(op)
    if not isinstance(node.attrs, info.attrs):
        raise CnncIRError(f"attrs of type {type(node.attrs).__name__}, expected {info.attrs.__name__}",
                          where=name)
    inputs = graph.inputs_of(name)
    slots = sorted(k for _, _, k in graph.in_edges(name, keys=True))
    if slots != list(range(len(inputs))):
        raise CnncIRError(f"input slots {slots} are not 0..{len(inputs) - 1}", where=name)
    if len(inputs) < info.min_inputs or (info.max_inputs is not None and len(inputs) > info.max_inputs):
        raise CnncIRError(f"{op} has {len(inputs)} inputs", where=name)
    if op == Op.INPUT:
        return
    shapes = [graph.shape(i) for i in inputs]
    expected = infer_shape(op, node.attrs, shapes)
    if tuple(expected) != tuple(node.shape):
        raise CnncIRError(f"shape {node.shape} but its rule gives {expected}", where=name)
    specs = param_specs(op, node.attrs, shapes)
    if set(specs) != set(node.params):
        raise CnncIRError(f"parameters {sorted(node.params)}, expected {sorted(specs)}", where=name)
    declared = graph.info.param_specs
    for role, spec in specs.items():
        pname = node.params[role]
        if pname not in declared or tuple(declared[pname].shape) != tuple(spec.shape):
            raise CnncIRError(f"parameter {pname} missing or of the wrong shape", where=name)


def _layouts(graph: Graph, name: str) -> tuple[str, str]:
    attrs = graph.attrs(name)
    return getattr(attrs, "layout_in", "nchw"), getattr(attrs, "layout_out", "nchw")


def _check_layouts(graph: Graph) -> None:
    """A channels-last array (passes/layout.py) goes from one conv to one conv: its producer has
    no residual and it is no output; its one reader reads it as its data input, channels-last."""
    for name in graph.nodes:
        layout_in, layout_out = _layouts(graph, name)
        if layout_out == "nhwc":
            users = graph.users(name)
            if graph.is_output(name) or len(graph.inputs_of(name)) != 1 or len(users) != 1 or users[0][1] != 0 \
                    or _layouts(graph, users[0][0])[0] != "nhwc":
                raise CnncIRError("a channels-last result must be one conv's channels-last data input, and no "
                                  "output", where=name)
        if layout_in == "nhwc" and _layouts(graph, graph.inputs_of(name)[0])[1] != "nhwc":
            raise CnncIRError("reads its input channels-last, but it is not made channels-last", where=name)


def _check_interface(graph: Graph) -> None:
    """Outputs name nodes; inputs are input nodes."""
    for out_name, node in graph.info.outputs.items():
        if node not in graph:
            raise CnncIRError(f"output '{out_name}' names a missing node {node}", where="graph")
    for node in graph.info.inputs:
        if node not in graph or graph.op(node) != Op.INPUT:
            raise CnncIRError(f"input {node} is not an input node", where="graph")
