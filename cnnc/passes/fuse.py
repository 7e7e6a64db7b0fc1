"""Epilogue fusion: a conv or dense layer absorbs the activation and residual add that follow it.

Two patterns, both computed by the kernels' epilogue `act(y + bias + residual)`:

(a) `act(conv(x))`, `act(dense(x))` → one conv/dense with `activation`/`slope` set;
(b) `add(conv(x), r)` (optionally followed by `act`) → a conv with `r` as its second input
    (slot 1, passed as `residual=`).

The bias needs no rewriting: it already lives inside conv and dense nodes (BN folding gives a
bias-free conv one). A fused node keeps the source spans of everything it absorbed.
"""
from __future__ import annotations

from dataclasses import replace

import networkx as nx

from ..ir.graph import Graph
from ..ir.ops import Op, record
from .manager import register
from .rewrite import absorb, add_input, set_attrs, sole_user


def _has_no_epilogue(graph: Graph, name: str) -> bool:
    """A conv/dense that applies nothing after its sums yet (act(act(y)) is not act(y) for sigmoid,
    and a second residual slot does not exist)."""
    return record(graph.op(name)).fused_epilogue and graph.attrs(name).activation == "none"


def fuse_activation(graph: Graph, producer: str) -> bool:
    """Fold the activation that is `producer`'s only user into `producer`'s epilogue."""
    # Precondition: the producer has an empty activation slot (a residual may already be fused:
    # the epilogue order is act(y + residual), which is exactly act(add(...)) being absorbed).
    if not _has_no_epilogue(graph, producer):
        return False
    # Precondition: nobody else reads the pre-activation value (sole_user: one use, no output).
    user = sole_user(graph, producer)
    if user is None or not record(graph.op(user)).epilogue:
        return False
    # The epilogue names an activation by its op's name; a slope is the one attr it carries.
    slope = getattr(graph.attrs(user), "slope", 0.0)
    set_attrs(graph, producer, replace(graph.attrs(producer), activation=graph.op(user).value,
                                       slope=float(slope)))
    absorb(graph, producer, user)
    return True


def _residual_candidate(graph: Graph, add: str, conv: str, other: str, position: dict[str, int]) -> bool:
    """Whether `add(conv, other)` may become `conv(..., residual=other)`."""
    # Precondition: a kernel that takes a residual (conv; dense takes none) with an empty
    # epilogue and no residual input yet.
    takes_residual = "residual" in record(graph.op(conv)).keyword_inputs
    if not takes_residual or not _has_no_epilogue(graph, conv) or len(graph.inputs_of(conv)) != 1:
        return False
    # Precondition: the add is the conv's only reader, so its pre-add value is never needed.
    if sole_user(graph, conv) != add:
        return False
    # Precondition: no broadcasting: the residual is added element for element (an SE-style
    # [N, C, 1, 1] operand must stay a separate add).
    if not (tuple(graph.shape(other)) == tuple(graph.shape(conv)) == tuple(graph.shape(add))):
        return False
    # Precondition: the edge other → conv must not close a cycle, i.e. `other` must not be
    # computed from the conv (e.g. other = relu(conv) elsewhere; the sole-user rule already
    # refuses that, this guards it on its own). A value before the conv in topological order
    # cannot be computed from it, so the path search runs only for a later `other`: searching
    # every residual made this pass quadratic (1,000 basic blocks: 5.3 s in nx.has_path).
    return position[other] < position[conv] or not nx.has_path(graph, conv, other)


def fuse_residual(graph: Graph, add: str, position: dict[str, int]) -> bool:
    """Fold `add` (and an activation after it) into one of its conv inputs."""
    a, b = graph.inputs_of(add)
    # Precondition: two distinct inputs; add(x, x) is 2·x, not a residual.
    if a == b:
        return False
    pairs = [(conv, other) for conv, other in ((a, b), (b, a))
             if _residual_candidate(graph, add, conv, other, position)]
    if not pairs:
        return False
    # With both inputs eligible (neither depends on the other, by the cycle check), take the conv
    # that comes later, so the other's output is already computed when it runs.
    conv, other = max(pairs, key=lambda pair: position[pair[0]])
    add_input(graph, conv, other)  # slot 1 = residual
    absorb(graph, conv, add)
    fuse_activation(graph, conv)
    if position[other] > position[conv]:  # the new edge runs against the order: renumber, so the
        position.update({n: i for i, n in enumerate(graph.topo_order())})  # cycle check stays sound
    return True


@register("fuse_conv_bias_activation", level=2, after=("lower_pooling",))
def fuse_conv_bias_activation(graph: Graph) -> bool:
    """Fuse activations and residual adds into the conv/dense layers that produce their input."""
    order = graph.topo_order()
    position = {name: index for index, name in enumerate(order)}
    changed = False
    for name in order:
        if name not in graph:  # absorbed by an earlier fusion
            continue
        if graph.op(name) == Op.ADD:
            changed |= fuse_residual(graph, name, position)
        elif record(graph.op(name)).fused_epilogue:
            changed |= fuse_activation(graph, name)
    return changed
