"""Liveness and aliasing of a graph's values: one analysis for the NumPy and the CuPy backend.

Generated code computes the values in `graph.topo_order()`, the emission order. This module
says, for that order, where each value is computed and last read (`Liveness`), which values
share one array in memory (`Buffers`: a view shares its input's array, an in-place result *is*
its input's array), and which elementwise nodes may write their output into their first
input's array (`plan_in_place`). The plan_memory pass (cnnc/passes/memory.py: NumPy `del`s and
`out=`) and the CuPy buffer plan (cnnc/codegen/cupy.py: slots) are both built from it.

What a view is depends on the backend, so the analysis takes the output kinds that alias
(`cnnc.ir.ops.Output`) as a parameter: a NumPy kernel may also return a view of its input for a
crop (MAYBE_VIEW) or a scale-1 nearest upsample (READ_ONLY_VIEW), whereas the CuPy backend
writes those into storage of their own (`out=`), so there only VIEW ops share their input's.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from .graph import Graph
from .ops import Op, Output, output_kind, record

NUMPY_VIEWS = frozenset({Output.VIEW, Output.MAYBE_VIEW, Output.READ_ONLY_VIEW})
CUPY_VIEWS = frozenset({Output.VIEW})


# ---- what each node's result is --------------------------------------------------------------
#
# What each NumPy kernel returns is its record's `output` (dropout has no kernel: generated
# code assigns the same object). tests/test_pass_memory.py checks every kernel against it.


def aliased_inputs(graph: Graph, name: str, views: Collection[Output] = NUMPY_VIEWS) -> list[str]:
    """The inputs whose array the node's output may share (be that array, or a view of it), when
    results of the output kinds in `views` are views."""
    if graph.op(name) == Op.INPUT:
        return []
    return graph.inputs_of(name)[:1] if output_kind(graph.op(name), graph.attrs(name)) in views else []


def read_only(graph: Graph, name: str) -> bool:
    """Whether the node's NumPy output may be a read-only array (a broadcast view) that `out=` cannot take."""
    return output_kind(graph.op(name), graph.attrs(name)) == Output.READ_ONLY_VIEW


def allocates(graph: Graph, name: str) -> bool:
    """Whether the node's NumPy kernel allocates a new activation array (the user's inputs do not).

    A result that may or may not be a view (crop) counts as allocating: an overestimate.
    """
    if graph.op(name) == Op.INPUT:
        return False
    return output_kind(graph.op(name), graph.attrs(name)) in (Output.FRESH, Output.MAYBE_VIEW)


# ---- when each value lives -------------------------------------------------------------------


@dataclass(frozen=True)
class Liveness:
    """Positions in the emission order: where each value is computed and where it is last read.

    `last_use[v]` is the position of the last statement reading v; `end` (len(order)) for an
    output, which lives until `forward` returns; v's own position when nothing reads it.
    """

    order: tuple[str, ...]
    position: Mapping[str, int]
    last_use: Mapping[str, int]

    @property
    def end(self) -> int:
        return len(self.order)


def liveness(graph: Graph) -> Liveness:
    """The liveness of every value of `graph` over `graph.topo_order()`."""
    order = tuple(graph.topo_order())
    position = {n: i for i, n in enumerate(order)}
    outputs = set(graph.info.outputs.values())
    last = {n: len(order) if n in outputs else max((position[u] for u, _ in graph.users(n)), default=position[n])
            for n in order}
    return Liveness(order, position, last)


class Buffers:
    """Union-find over values: each class is one array in memory, live while any member is.

    A class's root is its earliest value, the statement that creates the array (the CuPy plan
    gives the root the storage; the others use it).
    """

    def __init__(self, live: Liveness):
        self.live = live
        self._parent = {v: v for v in live.order}
        self._members = {v: [v] for v in live.order}

    def root(self, value: str) -> str:
        while self._parent[value] != value:
            value = self._parent[value]
        return value

    def union(self, first: str, second: str) -> None:
        """Merge the arrays of two values; the earlier root stays the root."""
        a, b = sorted((self.root(first), self.root(second)), key=self.live.position.__getitem__)
        if a != b:
            self._parent[b] = a
            self._members[a] += self._members.pop(b)

    def of(self, value: str) -> list[str]:
        """The values sharing `value`'s array, `value` included."""
        return self._members[self.root(value)]

    def death(self, value: str) -> int:
        """The last use of any value sharing `value`'s array: the array is needed until then."""
        return max(self.live.last_use[m] for m in self.of(value))

    def classes(self) -> tuple[tuple[str, ...], ...]:
        """Every array's values, in emission order, the arrays in the order they are created."""
        position = self.live.position.__getitem__
        roots = sorted(self._members, key=position)
        return tuple(tuple(sorted(self._members[r], key=position)) for r in roots)


def buffers(graph: Graph, live: Liveness, views: Collection[Output]) -> Buffers:
    """The arrays of `graph`'s values before any in-place decision: results of the output kinds
    in `views` share their first input's array."""
    shared = Buffers(live)
    for name in live.order:
        for source in aliased_inputs(graph, name, views):
            shared.union(source, name)
    return shared


# ---- which nodes write into their input ------------------------------------------------------


def _same_shape_operands(graph: Graph, name: str) -> bool:
    """Every input has the output's shape: no input is broadcast, so `out=` the first one fits."""
    return all(tuple(graph.shape(i)) == tuple(graph.shape(name)) for i in graph.inputs_of(name))


def _can_run_in_place(graph: Graph, name: str, shared: Buffers) -> bool:
    """Whether `name` may write its output into its first input's array. Each precondition:"""
    # an elementwise kernel that accepts out= and reads every element before writing it
    if not record(graph.op(name)).in_place:
        return False
    inputs = graph.inputs_of(name)
    if not _same_shape_operands(graph, name):  # ADD/MUL broadcasting into the first operand: no
        return False
    if any(graph.node(n).dtype != "float32" for n in [name, *inputs]):  # the array must fit the result
        return False
    aliases = shared.of(inputs[0])
    outputs = set(graph.info.outputs.values())
    if any(graph.op(m) == Op.INPUT or m in outputs for m in aliases):  # never the user's array or a result
        return False
    # Parameters are never data inputs (kernels get them as params[...]), so they cannot be here.
    if any(read_only(graph, m) for m in aliases):  # a broadcast view cannot be written
        return False
    if shared.death(inputs[0]) > shared.live.position[name]:  # every alias of the array dies at this node
        return False
    # No other operand reads the array: add(x, x) or add(x, reshape(x)) stays out of place.
    return all(shared.root(i) != shared.root(inputs[0]) for i in inputs[1:])


def plan_in_place(graph: Graph, shared: Buffers) -> frozenset[str]:
    """The nodes that write their output into their first input's array; each joins that array
    in `shared`.

    Decided on NumPy's arrays (`shared` from `buffers(..., NUMPY_VIEWS)`), whose classes contain
    the CuPy backend's, so a write allowed here is safe there too.
    """
    in_place = set()
    for name in shared.live.order:  # in order: a decision sees the arrays earlier ones merged
        if _can_run_in_place(graph, name, shared):
            in_place.add(name)
            shared.union(graph.inputs_of(name)[0], name)
    return frozenset(in_place)
