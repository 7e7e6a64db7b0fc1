"""Memory planning: free every activation after its last use, run dying elementwise ops in place.

Generated code keeps each value in a Python local, so without a plan every intermediate array
lives until `forward` returns. The plan says, for each statement (in `graph.topo_order()`, the
order code generation emits), which values it is the last use of: the code `del`s them right
after it, and NumPy frees the buffer (or hands it to the next allocation). An elementwise node
whose first input's buffer dies at that node writes its output into that buffer (`out=`).

Buffers, not values, are what liveness is about: a value from flatten, reshape, dropout, crop or
a scale-1 nearest upsample may be (a view of) its input (`cnnc.ir.cost.aliased_inputs`), and an
in-place output *is* its input's buffer. Such values form one buffer, live while any of them is.
The plan is a frozen `MemoryPlan` in `graph.graph["memory_plan"]`; it records the graph it was
made for, and code generation ignores a plan the graph no longer matches.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ..ir.cost import aliased_inputs, read_only
from ..ir.graph import Graph
from ..ir.ops import Op, record
from .manager import register


def fingerprint(graph: Graph) -> tuple:
    """Everything the plan depends on: emission order, ops, attrs, inputs, shapes, dtypes, interface."""
    nodes = tuple((n, graph.op(n).value, graph.attrs(n), tuple(graph.inputs_of(n)), tuple(graph.shape(n)),
                   graph.nodes[n]["dtype"]) for n in graph.topo_order())
    return nodes, tuple(graph.graph["inputs"]), tuple(sorted(graph.graph["outputs"].items()))


@dataclass(frozen=True)
class MemoryPlan:
    """Where each activation dies and which nodes overwrite their first input.

    Immutable (tuples, frozensets), so `Graph.clone()` may share it between graphs.
    """

    order: tuple[str, ...]  # the emission order it was planned for
    fingerprint: tuple  # `fingerprint(graph)` at planning time
    last_use: tuple[int, ...]  # per value in `order`: position of its last use; len(order): an output
    frees: tuple[tuple[str, ...], ...]  # per node in `order`: values to `del` after its statement
    in_place: frozenset[str]  # nodes that write their output into their first input's buffer
    buffers: tuple[tuple[str, ...], ...]  # values sharing one array (aliases, in-place chains)

    @cached_property
    def _positions(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.order)}

    def position(self, value: str) -> int:
        return self._positions[value]

    def last_use_of(self, value: str) -> int:
        return self.last_use[self._positions[value]]

    def frees_after(self, node: str) -> tuple[str, ...]:
        return self.frees[self._positions[node]]

    def matches(self, graph: Graph) -> bool:
        """Whether the plan was made for this graph as it is now (no pass changed it since)."""
        return self.fingerprint == fingerprint(graph)


class _Buffers:
    """Union-find over values: each class is one array in memory."""

    def __init__(self, values: list[str]):
        self.parent = {v: v for v in values}
        self.members = {v: [v] for v in values}

    def find(self, value: str) -> str:
        while self.parent[value] != value:
            value = self.parent[value]
        return value

    def union(self, first: str, second: str) -> None:
        a, b = self.find(first), self.find(second)
        if a != b:
            self.parent[b] = a
            self.members[a] += self.members.pop(b)

    def of(self, value: str) -> list[str]:
        return self.members[self.find(value)]


def _last_uses(graph: Graph, order: list[str]) -> dict[str, int]:
    """Position of each value's last use; outputs live to the end (len(order)); an unused value
    dies at its own statement."""
    position = {n: i for i, n in enumerate(order)}
    outputs = set(graph.graph["outputs"].values())
    return {n: len(order) if n in outputs else max((position[u] for u, _ in graph.users(n)), default=position[n])
            for n in order}


def _same_shape_operands(graph: Graph, name: str) -> bool:
    """Every input has the output's shape: no input is broadcast, so `out=` the first one fits."""
    return all(tuple(graph.shape(i)) == tuple(graph.shape(name)) for i in graph.inputs_of(name))


def _can_run_in_place(graph: Graph, name: str, buffers: _Buffers, last: dict[str, int], here: int) -> bool:
    """Whether `name` may write its output into its first input's buffer. Each precondition:"""
    # an elementwise kernel that accepts out= and reads every element before writing it
    if not record(graph.op(name)).in_place:
        return False
    inputs = graph.inputs_of(name)
    if not _same_shape_operands(graph, name):  # ADD/MUL broadcasting into the first operand: no
        return False
    if any(graph.nodes[n]["dtype"] != "float32" for n in [name, *inputs]):  # the buffer must fit the result
        return False
    shared = buffers.of(inputs[0])
    outputs = set(graph.graph["outputs"].values())
    if any(graph.op(m) == Op.INPUT or m in outputs for m in shared):  # never the user's array or a result
        return False
    # Parameters are never data inputs (kernels get them as params[...]), so they cannot be here.
    if any(read_only(graph, m) for m in shared):  # a broadcast view cannot be written
        return False
    if any(last[m] > here for m in shared):  # every alias of the buffer dies at this node
        return False
    # No other operand reads the buffer: add(x, x) or add(x, reshape(x)) stays out of place.
    return all(buffers.find(i) != buffers.find(inputs[0]) for i in inputs[1:])


def memory_plan(graph: Graph) -> MemoryPlan:
    """Liveness of every buffer over `graph.topo_order()`, the frees and in-place nodes it allows."""
    order = graph.topo_order()
    last = _last_uses(graph, order)
    buffers = _Buffers(order)
    for name in order:  # views share their input's array
        for source in aliased_inputs(graph, name):
            buffers.union(source, name)
    in_place = set()
    for here, name in enumerate(order):  # in order: a decision sees the buffers earlier ones merged
        if _can_run_in_place(graph, name, buffers, last, here):
            in_place.add(name)
            buffers.union(graph.inputs_of(name)[0], name)
    outputs = set(graph.graph["outputs"].values())
    frees: list[list[str]] = [[] for _ in order]
    for name in order:  # inputs are the caller's, outputs are returned: never deleted
        if graph.op(name) != Op.INPUT and name not in outputs:
            frees[last[name]].append(name)
    position = {n: i for i, n in enumerate(order)}.__getitem__
    groups = sorted({buffers.find(n) for n in order}, key=position)
    return MemoryPlan(order=tuple(order), fingerprint=fingerprint(graph),
                      last_use=tuple(last[n] for n in order), frees=tuple(tuple(f) for f in frees),
                      in_place=frozenset(in_place),
                      buffers=tuple(tuple(sorted(buffers.members[g], key=position)) for g in groups))


@register("plan_memory", level=2)
def plan_memory(graph: Graph) -> bool:
    """Plan activation memory: free each value after its last use; run dying elementwise ops in place."""
    plan = memory_plan(graph)
    changed = graph.graph.get("memory_plan") != plan
    graph.graph["memory_plan"] = plan
    return changed
