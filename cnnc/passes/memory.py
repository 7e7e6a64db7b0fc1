"""Memory planning: free every activation after its last use, run dying elementwise ops in place.

Generated code keeps each value in a Python local, so without a plan every intermediate array
lives until `forward` returns. The plan says, for each statement (in `graph.topo_order()`, the
order code generation emits), which values it is the last use of: the code `del`s them right
after it, and NumPy frees the buffer (or hands it to the next allocation). An elementwise node
whose first input's buffer dies at that node writes its output into that buffer (`out=`).

Buffers, not values, are what liveness is about: a value from flatten, reshape, dropout, crop or
a scale-1 nearest upsample may be (a view of) its input, and an in-place output *is* its input's
buffer. Such values form one buffer, live while any of them is. The analysis (last uses, buffers,
the in-place preconditions) is cnnc.ir.liveness's, shared with the CuPy buffer plan.
The plan is a frozen `MemoryPlan` in `graph.info.memory_plan`; it records the graph it was
made for, and code generation ignores a plan the graph no longer matches.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ..ir.graph import Graph
from ..ir.liveness import NUMPY_VIEWS, buffers, liveness, plan_in_place
from ..ir.ops import Op
from .manager import register


def fingerprint(graph: Graph) -> tuple:
    """Everything the plan depends on: emission order, ops, attrs, inputs, shapes, dtypes, interface."""
    nodes = tuple((n, graph.op(n).value, graph.attrs(n), tuple(graph.inputs_of(n)), tuple(graph.shape(n)),
                   graph.node(n).dtype) for n in graph.topo_order())
    return nodes, tuple(graph.info.inputs), tuple(sorted(graph.info.outputs.items()))


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


def current_plan(graph: Graph) -> MemoryPlan | None:
    """The plan_memory pass's plan if it still describes `graph` (None: no plan, or a stale one)."""
    plan = graph.info.memory_plan
    return plan if plan is not None and plan.matches(graph) else None


def memory_plan(graph: Graph) -> MemoryPlan:
    """Liveness of every buffer over `graph.topo_order()`, the frees and in-place nodes it allows."""
    live = liveness(graph)
    shared = buffers(graph, live, NUMPY_VIEWS)
    in_place = plan_in_place(graph, shared)
    outputs = set(graph.info.outputs.values())
    frees: list[list[str]] = [[] for _ in live.order]
    for name in live.order:  # inputs are the caller's, outputs are returned: never deleted
        if graph.op(name) != Op.INPUT and name not in outputs:
            frees[live.last_use[name]].append(name)
    return MemoryPlan(order=live.order, fingerprint=fingerprint(graph),
                      last_use=tuple(live.last_use[n] for n in live.order), frees=tuple(tuple(f) for f in frees),
                      in_place=in_place, buffers=shared.classes())


@register("plan_memory", level=2, after=("eliminate_dead_code",))
def plan_memory(graph: Graph) -> bool:
    """Plan activation memory: free each value after its last use; run dying elementwise ops in place."""
    plan = memory_plan(graph)
    changed = graph.info.memory_plan != plan
    graph.info.memory_plan = plan
    return changed
