"""The reference interpreter: evaluate the IR node by node with the reference kernels.

It is the oracle for generated code and for every optimization pass: twelve lines that define
what a graph means.
"""
from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType

import numpy as np

from .ir.graph import Graph
from .ir.ops import Op, kernel_call, record
from .kernels import reference


def eval_graph(graph: Graph, params: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray],
               kernels: ModuleType = reference) -> dict[str, np.ndarray]:
    """Outputs (name → array) of `graph` for `inputs` (input node name → array)."""
    values: dict[str, np.ndarray] = {}
    for name in graph.topo_order():
        node = graph.node(name)
        op, info = node.op, record(node.op)
        args = [values[i] for i in graph.inputs_of(name)]
        if op == Op.INPUT:
            values[name] = np.asarray(inputs[name], dtype=np.float32)
        elif info.kernel is None:  # dropout: the identity at inference
            values[name] = args[0]
        else:
            positional, keywords = kernel_call(op, node.attrs, args, graph.params_of(name), params.__getitem__,
                                               node.shape)
            values[name] = getattr(kernels, info.kernel)(*positional, **keywords)
    return {out: values[node] for out, node in graph.info.outputs.items()}
