"""What a fused node absorbed, read off the node itself: a folded batch norm (a parameter derived
from batch-norm rules), a residual add (a keyword input), an activation epilogue. The summary
and `cnnc viz` label fused layers with it (`conv+bn+add+relu`, `conv 3x3 + bn + add + relu`)."""
from __future__ import annotations

from .graph import Graph
from .ops import Op, record

# Short names in fused labels.
SHORT_NAMES = {"batch_norm": "bn"}


def from_batch_norm(graph: Graph, param: str) -> bool:
    """Whether a derived parameter comes from a folded batch norm (its derivations' rules)."""
    derivation = graph.info.derived.get(param)
    if derivation is None:
        return False
    return derivation.rule.startswith("bn_") or any(from_batch_norm(graph, p) for p in derivation.inputs)


def absorbed_ops(graph: Graph, name: str) -> tuple[str, ...]:
    """The ops the node absorbed, in the order they apply: batch_norm, add (a residual), then the
    activation of its epilogue (act(y + residual))."""
    node = graph.node(name)
    parts = []
    folded = node.op not in (Op.BATCH_NORM, Op.CHANNEL_AFFINE)  # not a batch norm itself
    if folded and any(from_batch_norm(graph, p) for p in node.params.values()):
        parts.append("batch_norm")
    if "residual" in record(node.op).keyword_inputs and len(graph.inputs_of(name)) > 1:
        parts.append("add")
    activation = getattr(node.attrs, "activation", "none")
    if activation not in ("none", None):
        parts.append(activation)
    return tuple(parts)
