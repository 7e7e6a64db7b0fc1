"""Small graph-rewriting helpers shared by the passes."""
from __future__ import annotations

from ..ir.graph import Graph
from ..ir.ops import infer_shape


def sole_user(graph: Graph, name: str) -> str | None:
    """The only node reading `name` (through one slot), if it has exactly one and is no output."""
    users = graph.users(name)
    if len(users) != 1 or graph.is_output(name):
        return None
    return users[0][0]


def bypass(graph: Graph, name: str) -> None:
    """Remove a node whose output equals its first input: its users read that input instead."""
    source = graph.inputs_of(name)[0]
    graph.replace_uses(name, source)
    graph.remove_node(name)


def absorb(graph: Graph, keeper: str, absorbed: str) -> None:
    """`keeper` takes over `absorbed`'s users and outputs and its source spans; `absorbed` goes.

    Used when `keeper` now computes what `absorbed` did: a node folded into its producer, or a
    repeated computation and its first copy.
    """
    kept = graph.spans(keeper)
    graph.replace(keeper, spans=kept + tuple(s for s in graph.spans(absorbed) if s not in kept))
    graph.replace_uses(absorbed, keeper)
    graph.remove_node(absorbed)


def set_attrs(graph: Graph, name: str, attrs: object) -> None:
    """Replace a node's attrs and re-infer its shape (which must not change)."""
    shape = infer_shape(graph.op(name), attrs, [graph.shape(i) for i in graph.inputs_of(name)])
    if tuple(shape) != tuple(graph.shape(name)):
        raise ValueError(f"rewriting {name} would change its shape {graph.shape(name)} → {shape}")
    graph.replace(name, attrs=attrs)


def add_input(graph: Graph, name: str, source: str) -> None:
    """Append `source` as the next input slot of `name`."""
    graph.add_edge(source, name, key=len(graph.inputs_of(name)))
