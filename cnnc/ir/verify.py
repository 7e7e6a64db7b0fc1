"""IR invariants, checked after elaboration and after every pass in tests.

A failure here is a bug in cnnc (CnncIRError), never a user error.
"""
from __future__ import annotations

import networkx as nx

from ..errors import CnncIRError
from .graph import Graph
from .ops import Op, infer_shape, param_specs, record


def verify(graph: Graph) -> None:
    """Raise CnncIRError naming the node and the broken rule, or return None."""
    if not nx.is_directed_acyclic_graph(graph):
        raise CnncIRError("the IR has a cycle", where="graph")
    params = graph.graph["params"]
    for name in graph.nodes:
        data = graph.nodes[name]
        for key in ("op", "attrs", "shape", "spans", "params", "order"):
            if key not in data:
                raise CnncIRError(f"node lacks '{key}'", where=name)
        op: Op = data["op"]
        info = record(op)
        if not isinstance(data["attrs"], info.attrs):
            raise CnncIRError(f"attrs of type {type(data['attrs']).__name__}, expected {info.attrs.__name__}",
                              where=name)
        inputs = graph.inputs_of(name)
        slots = sorted(k for _, _, k in graph.in_edges(name, keys=True))
        if slots != list(range(len(inputs))):
            raise CnncIRError(f"input slots {slots} are not 0..{len(inputs) - 1}", where=name)
        if len(inputs) < info.min_inputs or (info.max_inputs is not None and len(inputs) > info.max_inputs):
            raise CnncIRError(f"{op} has {len(inputs)} inputs", where=name)
        if op == Op.INPUT:
            continue
        expected = infer_shape(op, data["attrs"], [graph.shape(i) for i in inputs])
        if tuple(expected) != tuple(data["shape"]):
            raise CnncIRError(f"shape {data['shape']} but its rule gives {expected}", where=name)
        specs = param_specs(op, data["attrs"], [graph.shape(i) for i in inputs])
        if set(specs) != set(data["params"]):
            raise CnncIRError(f"parameters {sorted(data['params'])}, expected {sorted(specs)}", where=name)
        for role, spec in specs.items():
            pname = data["params"][role]
            if pname not in params or tuple(params[pname].shape) != tuple(spec.shape):
                raise CnncIRError(f"parameter {pname} missing or of the wrong shape", where=name)
    for out_name, node in graph.graph["outputs"].items():
        if node not in graph:
            raise CnncIRError(f"output '{out_name}' names a missing node {node}", where="graph")
    for node in graph.graph["inputs"]:
        if node not in graph or graph.op(node) != Op.INPUT:
            raise CnncIRError(f"input {node} is not an input node", where="graph")
