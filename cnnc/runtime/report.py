"""How `cnnc run` shows outputs: top-k classes for classifiers, statistics for everything else."""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph
from ..ir.ops import Op, record
from ..ir.shapes import fmt


def is_classifier(graph: Graph, node: str) -> bool:
    """An [N, classes > 4] value from an op whose record says it holds scores (dense, softmax)."""
    shape = graph.shape(node)
    return len(shape) == 2 and shape[1] > 4 and record(graph.op(node)).scores


def _probabilities(graph: Graph, node: str, value: np.ndarray) -> np.ndarray:
    if graph.op(node) == Op.SOFTMAX:
        return value
    shifted = np.exp(value - value.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def describe_outputs(graph: Graph, outputs: dict[str, np.ndarray], top: int) -> str:
    lines = []
    for out, value in outputs.items():
        node = graph.info.outputs[out]
        lines.append(f"{out}: shape {fmt(value.shape)}  min {value.min():.4g}  max {value.max():.4g}  "
                     f"mean {value.mean():.4g}  std {value.std():.4g}")
        if is_classifier(graph, node):
            probs = _probabilities(graph, node, value)
            for example, row in enumerate(probs[:4]):
                best = np.argsort(-row, kind="stable")[:top]
                ranked = ", ".join(f"class {c} ({row[c]:.1%})" for c in best)
                lines.append(f"  example {example}: top-{len(best)}: {ranked}")
    return "\n".join(lines)
