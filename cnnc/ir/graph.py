"""The IR graph: a networkx MultiDiGraph of frozen node records, keyed by stable layer names.

Nodes. Every networkx node holds one `Node` record under the attribute "node" and nothing else
(verify checks both): `op`, `attrs` (the op's frozen dataclass), `shape` (a tuple whose first
entry may be a symbolic batch name such as "N"), `dtype`, `spans` (every source span the node
came from; passes that fuse nodes concatenate them), `params` (role → parameter name, e.g.
{"weight": "layer1.0.conv1.weight"}, a read-only mapping) and `order` (creation index, for
deterministic order). Records are immutable: `Graph.add_op` creates one, `Graph.replace(name,
**changes)` stores a changed copy (name and order stay), and code reads them through
`node(name)` and the readers `op`, `attrs`, `shape`, `spans`, `params_of`, `inputs_of`, `users`.
So passes never edit a node in place, and `clone()` shares the records between graphs.

Edges. An edge u → v with key `slot` says that u is v's input number `slot` (`add(x, x)` is two
edges). Edges carry no data.

Graph data. `graph.info`, a `GraphInfo` stored as networkx's graph attribute "info" (so networkx
copies and views keep it), holds the interface (`inputs`, `outputs`), the parameter specs
(`param_specs`, `user_params`, `derived`), `source_name`, and what passes recorded
(`passes_run`, `fully_convolutional`, `memory_plan`, `source_graph`); each field's docstring
says what it means and who writes it.
"""
from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from itertools import count
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import networkx as nx

from ..errors import CnncError
from ..names import unique
from ..source import Span
from .ops import Op
from .shapes import ParamSpec, Shape

if TYPE_CHECKING:  # types only: the passes import this module
    from ..passes.derived import Derivation
    from ..passes.memory import MemoryPlan
    from .preprocess import Step

__all__ = ["Graph", "GraphInfo", "Node", "ParamSpec", "Shape", "UnknownLayerError"]

NODE_KEY = "node"  # the networkx node attribute holding the node's record (its only attribute)
INFO_KEY = "info"  # the networkx graph attribute holding the GraphInfo (its only attribute)


@dataclass(frozen=True)
class Node:
    """One IR node: `op` applied to the node's inputs (its in-edges, in slot order).

    Frozen, and its containers are immutable too (tuples, a read-only `params` mapping), so
    graphs may share a record. Records compare with ==; they are not hashable (the params
    mapping is not).
    """

    name: str  # the key it is stored under: a stable, hierarchical layer name (`layer2.1.conv1`)
    op: Op
    attrs: Any  # an instance of the op's attrs dataclass (record(op).attrs in cnnc.ir.ops)
    shape: Shape  # the output's shape; dimension 0 may be the batch symbol (e.g. "N")
    dtype: str  # the output's element type ("float32" for every node today)
    spans: tuple[Span, ...]  # every source span it came from (a fused node keeps them all)
    params: Mapping[str, str]  # role → parameter name, e.g. {"weight": "conv1.weight"}
    order: int  # creation index: ties in topo_order and users break by it, so both are deterministic

    def __post_init__(self) -> None:
        # Callers pass lists and dicts; the record keeps immutable copies, so no caller's
        # container can change it afterwards (a frozen dataclass sets fields this way).
        object.__setattr__(self, "shape", tuple(self.shape))
        object.__setattr__(self, "spans", tuple(self.spans))
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))


@dataclass
class GraphInfo:
    """Graph-level data of the IR: its interface, its parameters and what the passes recorded."""

    inputs: list[str] = field(default_factory=list)
    """Input node names in declaration order. Elaboration appends one per `input` statement."""

    outputs: dict[str, str] = field(default_factory=dict)
    """Output name → the node computing it. Elaboration fills it; `Graph.replace_uses` redirects
    it when a pass removes or merges the node."""

    param_specs: dict[str, ParamSpec] = field(default_factory=dict)
    """Parameter name → ParamSpec (shape, initializer) of every parameter a node reads.
    Elaboration declares the user's; `derive` (cnnc/passes/derived.py) adds derived ones and
    `prune` drops those no node reads any more."""

    source_name: str = "<string>"
    """The name of the source the program came from (module headers, comments, the IR dump);
    set by elaboration."""

    user_params: dict[str, ParamSpec] | None = None
    """The parameters the user supplies (`net.params`), as elaboration declared them. `optimize`
    sets it from `param_specs` before the first pass; None on a graph no pass ran on, whose
    `param_specs` are the user's (`user_param_specs()` gives either)."""

    derived: dict[str, Derivation] = field(default_factory=dict)
    """Derived parameter name → Derivation (rule, inputs, constants), in dependency order:
    values passes compute from the user's parameters (folded BN weights, …). `derive` adds,
    `prune` drops, `materialize` computes them (cnnc/passes/derived.py)."""

    passes_run: list[str] = field(default_factory=list)
    """The passes `optimize` ran to make this graph, in order (each `optimize` starts it anew)."""

    fully_convolutional: bool = False
    """Set by dense_to_conv: the graph will run at other input sizes, so later passes must not
    bake the declared size in (lower_pooling keeps an avg pool whose window is the whole input)."""

    memory_plan: MemoryPlan | None = None
    """The plan_memory pass's plan (frozen). It records the graph it was made for, and code
    generation ignores it once stale (`current_plan` in cnnc/passes/memory.py)."""

    preprocess: dict[str, tuple[Step, ...]] = field(default_factory=dict)
    """Input name → how an image becomes it, for inputs with a `prepare` clause (the others get
    `default_steps`; cnnc/ir/preprocess.py). Set by elaboration."""

    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Output name → its class names, for outputs the program declared `labels` for (in class
    order; cnnc/labels)."""

    source_graph: Graph | None = None
    """The un-optimized graph that `build_graph` optimized into this one (ONNX export and
    `net.source_graph` read it)."""

    def user_param_specs(self) -> dict[str, ParamSpec]:
        """The parameters the user supplies: `user_params` once optimized, else `param_specs`."""
        return self.param_specs if self.user_params is None else self.user_params

    def copy(self) -> GraphInfo:
        """A copy with new lists and dicts, so a pass may edit them; what they hold and the other
        fields (frozen specs, derivations and plan, the source graph) are shared."""
        return GraphInfo(**{f.name: _copy_container(getattr(self, f.name)) for f in fields(self)})


def _copy_container(value: Any) -> Any:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    return value


class UnknownLayerError(CnncError, KeyError):
    """A layer name the graph does not have (`net.graph.node("layer1.0.conv")`): one message with
    a "did you mean", and a KeyError as a missing key must be. `key` is the name asked for."""

    def __init__(self, key: object, known: list[str]):
        self.key = key
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6) if isinstance(key, str) else []
        hint = f"; did you mean '{close[0]}'?" if close else ""
        super().__init__(f"the network has no layer {key!r}{hint}", where="graph")

    def __str__(self) -> str:  # KeyError's would quote the whole message
        return self.render()


class Graph(nx.MultiDiGraph):
    """The IR. Subclasses networkx so every networkx algorithm applies directly."""

    def __init__(self, incoming_graph_data=None, **attr):
        super().__init__(incoming_graph_data, **attr)
        self.graph.setdefault(INFO_KEY, GraphInfo())
        self._counter = count(len(self))

    @property
    def info(self) -> GraphInfo:
        """The graph-level data: interface, parameter specs, what the passes recorded."""
        return self.graph[INFO_KEY]

    # ---- building ---------------------------------------------------------------------------
    def add_op(self, name: str, op: Op, attrs: object, inputs: Iterable[str], shape: Shape,
               spans: tuple[Span, ...] = (), params: Mapping[str, str] | None = None) -> str:
        """Add a node computing `op` on `inputs` (in slot order) and return its name."""
        if name in self:
            raise ValueError(f"duplicate IR node name {name!r}")
        node = Node(name, op, attrs, shape, "float32", spans, params or {}, next(self._counter))
        self.add_node(name, **{NODE_KEY: node})
        for slot, source in enumerate(inputs):
            self.add_edge(source, name, key=slot)
        return name

    def clone(self) -> Graph:
        """A copy that passes may rewrite without touching this graph: the node records (being
        immutable) are shared, the graph data is copied as `GraphInfo.copy` says."""
        other = Graph()
        other.graph[INFO_KEY] = self.info.copy()
        other.add_nodes_from(self.nodes(data=True))  # new attribute dicts, the same records
        other.add_edges_from(self.edges(keys=True))
        other._counter = count(max((self.node(n).order for n in self), default=-1) + 1)
        return other

    def fresh_name(self, base: str) -> str:
        """`base`, or `base_2`, `base_3`, … (names.unique): a name no node has yet."""
        return unique(base, self)

    # ---- reading ----------------------------------------------------------------------------
    def node(self, name: str) -> Node:
        """The node's record; an UnknownLayerError (a KeyError) naming the near names for a miss."""
        try:
            return self.nodes[name][NODE_KEY]
        except (KeyError, TypeError):
            raise UnknownLayerError(name, list(self)) from None

    def op(self, name: str) -> Op:
        return self.node(name).op

    def attrs(self, name: str) -> Any:  # the op's attrs dataclass (cnnc.ir.ops)
        return self.node(name).attrs

    def shape(self, name: str) -> Shape:
        return self.node(name).shape

    def spans(self, name: str) -> tuple[Span, ...]:
        return self.node(name).spans

    def params_of(self, name: str) -> dict[str, str]:
        """The node's parameters, role → parameter name, as a new dict: editing it changes no
        node (`replace(name, params=...)` does)."""
        return dict(self.node(name).params)

    def inputs_of(self, name: str) -> list[str]:
        """The node's inputs in slot order."""
        # networkx's own adjacency (source → {slot: data}) rather than an in_edges view: this is
        # the IR's most frequent query, and the view costs several times the lookup.
        slots = [(slot, source) for source, keyed in self._pred[name].items() for slot in keyed]
        slots.sort()
        return [source for _, source in slots]

    def users(self, name: str) -> list[tuple[str, int]]:
        """(user, slot) for every use of the node's value, outputs not included."""
        return sorted(((user, slot) for _, user, slot in self.out_edges(name, keys=True)),
                      key=lambda use: (self.node(use[0]).order, use[1]))

    def is_output(self, name: str) -> bool:
        return name in self.info.outputs.values()

    def topo_order(self) -> list[str]:
        """Nodes in a topological order that follows source order wherever it can."""
        return list(nx.lexicographical_topological_sort(self, key=lambda n: self.node(n).order))

    # ---- rewriting (for passes) -------------------------------------------------------------
    def replace(self, name: str, /, **changes: Any) -> Node:  # `/`: a `name=` change reaches the check
        """Store a copy of the node's record with `changes` (as dataclasses.replace) and return it.

        The one way a node changes after `add_op`. Its name (its key) and order (its place in
        every traversal) stay: changing either raises ValueError.
        """
        fixed = sorted({"name", "order"} & set(changes))
        if fixed:
            raise ValueError(f"node {name!r}: {' and '.join(fixed)} cannot change")
        node = dataclasses.replace(self.node(name), **changes)
        self.nodes[name][NODE_KEY] = node
        return node

    def replace_uses(self, old: str, new: str) -> None:
        """Make every user of `old` (and every output naming it) read `new` instead."""
        for _, user, slot in list(self.out_edges(old, keys=True)):
            self.remove_edge(old, user, key=slot)
            self.add_edge(new, user, key=slot)
        outputs = self.info.outputs
        for out_name, node in outputs.items():
            if node == old:
                outputs[out_name] = new
