"""The IR graph: a networkx MultiDiGraph with a few helpers, keyed by stable layer names.

A node holds `op` (Op), `attrs` (the op's frozen dataclass), `shape` (a tuple whose first entry
may be a symbolic batch name such as "N"), `dtype`, `spans` (every source span the node came
from; passes that fuse nodes concatenate them), `params` (role → parameter name, e.g.
{"weight": "layer1.0.conv1.weight"}), and `order` (creation index, for deterministic order).
An edge u → v with key `slot` says that u is v's input number `slot`.
Graph-level data: `inputs` (list of input node names), `outputs` (output name → node name),
`params` (parameter name → ParamSpec), `source_name` (the file it was compiled from).
"""
from __future__ import annotations

from collections.abc import Iterable
from itertools import count
from typing import Any

import networkx as nx

from ..names import unique
from ..source import Span
from .ops import Op
from .shapes import ParamSpec, Shape

__all__ = ["Graph", "ParamSpec", "Shape"]


class Graph(nx.MultiDiGraph):
    """The IR. Subclasses networkx so every networkx algorithm applies directly."""

    def __init__(self, incoming_graph_data=None, **attr):
        super().__init__(incoming_graph_data, **attr)
        self.graph.setdefault("inputs", [])
        self.graph.setdefault("outputs", {})
        self.graph.setdefault("params", {})
        self.graph.setdefault("source_name", "<string>")
        self._counter = count(len(self))

    # ---- building ---------------------------------------------------------------------------
    def add_op(self, name: str, op: Op, attrs: object, inputs: Iterable[str], shape: Shape,
               spans: tuple[Span, ...] = (), params: dict[str, str] | None = None) -> str:
        """Add a node computing `op` on `inputs` (in slot order) and return its name."""
        if name in self:
            raise ValueError(f"duplicate IR node name {name!r}")
        self.add_node(name, op=op, attrs=attrs, shape=tuple(shape), dtype="float32",
                      spans=tuple(spans), params=dict(params or {}), order=next(self._counter))
        for slot, source in enumerate(inputs):
            self.add_edge(source, name, key=slot)
        return name

    def clone(self) -> Graph:
        """A copy that passes may rewrite without touching this graph (attrs are immutable)."""
        other = Graph()
        other.graph.update({key: (dict(value) if isinstance(value, dict) else
                                  list(value) if isinstance(value, list) else value)
                            for key, value in self.graph.items()})
        for name, data in self.nodes(data=True):
            other.add_node(name, **{**data, "params": dict(data["params"])})
        other.add_edges_from(self.edges(keys=True))
        other._counter = count(max((d["order"] for _, d in self.nodes(data=True)), default=-1) + 1)
        return other

    def fresh_name(self, base: str) -> str:
        """`base`, or `base_2`, `base_3`, … (names.unique): a name no node has yet."""
        return unique(base, self)

    # ---- reading ----------------------------------------------------------------------------
    def op(self, name: str) -> Op:
        return self.nodes[name]["op"]

    def attrs(self, name: str) -> Any:  # the op's attrs dataclass (cnnc.ir.ops)
        return self.nodes[name]["attrs"]

    def shape(self, name: str) -> Shape:
        return self.nodes[name]["shape"]

    def inputs_of(self, name: str) -> list[str]:
        """The node's inputs in slot order."""
        edges = sorted(self.in_edges(name, keys=True), key=lambda edge: edge[2])
        return [source for source, _, _ in edges]

    def users(self, name: str) -> list[tuple[str, int]]:
        """(user, slot) for every use of the node's value, outputs not included."""
        return sorted(((user, slot) for _, user, slot in self.out_edges(name, keys=True)),
                      key=lambda use: (self.nodes[use[0]]["order"], use[1]))

    def is_output(self, name: str) -> bool:
        return name in self.graph["outputs"].values()

    def topo_order(self) -> list[str]:
        """Nodes in a topological order that follows source order wherever it can."""
        return list(nx.lexicographical_topological_sort(self, key=lambda n: self.nodes[n]["order"]))

    # ---- rewriting (for passes) -------------------------------------------------------------
    def replace_uses(self, old: str, new: str) -> None:
        """Make every user of `old` (and every output naming it) read `new` instead."""
        for _, user, slot in list(self.out_edges(old, keys=True)):
            self.remove_edge(old, user, key=slot)
            self.add_edge(new, user, key=slot)
        outputs = self.graph["outputs"]
        for out_name, node in outputs.items():
            if node == old:
                outputs[out_name] = new
