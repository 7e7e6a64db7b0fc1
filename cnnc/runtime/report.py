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


def is_detections(graph: Graph, node: str) -> bool:
    """Rows (x1, y1, x2, y2, score, class, …) per example: an `nms` result (its extra columns, such
    as mask coefficients, after the sixth), or any [N, K, 6] value."""
    shape = graph.shape(node)
    return graph.op(node) == Op.NMS or (len(shape) == 3 and shape[2] == 6)


def class_probabilities(graph: Graph, node: str, value: np.ndarray) -> np.ndarray:
    """A classifier output's [N, classes] values as probabilities: a softmax's as they are, logits
    through a stable softmax (row by row)."""
    if graph.op(node) == Op.SOFTMAX:
        return value
    shifted = np.exp(value - value.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


EXAMPLES_SHOWN = 4  # examples of a batch whose top classes `describe_outputs` lists


def describe_outputs(graph: Graph, outputs: dict[str, np.ndarray], top: int, examples: int = EXAMPLES_SHOWN) -> str:
    """Each output's shape and statistics; for a classifier, the `top` classes of the first
    `examples` examples, and a line saying how many more there are."""
    lines = []
    for out, value in outputs.items():
        node = graph.info.outputs[out]
        lines.append(f"{out}: shape {fmt(value.shape)}  min {value.min():.4g}  max {value.max():.4g}  "
                     f"mean {value.mean():.4g}  std {value.std():.4g}")
        if is_classifier(graph, node):
            probs = class_probabilities(graph, node, value)
            names = graph.info.labels.get(out)
            for example, row in enumerate(probs[:examples]):
                best = np.argsort(-row, kind="stable")[:top]
                ranked = ", ".join(_class(c, names[c] if names else None, f"{row[c]:.1%}") for c in best)
                lines.append(f"  example {example}: top-{len(best)}: {ranked}")
            hidden = len(probs) - examples
            if hidden > 0:
                lines.append(f"  ... {hidden} more example{'s' if hidden != 1 else ''} not shown "
                             f"(--output preds.jsonl writes them all)")
    return "\n".join(lines)


BOXES_SHOWN = 5  # detections per example that `describe_row` lists


def describe_row(row: dict) -> str:
    """One results row (cnnc.runtime.results) as the line `cnnc run --input imgs/` prints."""
    path = row["path"] if row["path"] is not None else "random input"
    where = f"{path}[{row['index']}]" if str(path).lower().endswith(".npy") or row["path"] is None else path
    head = f"{where}: {row['output']}"
    if row["kind"] == "classes":
        names = row.get("names") or [None] * len(row["labels"])
        ranked = ", ".join(_class(c, n, _percent(s)) for c, n, s in zip(row["labels"], names, row["scores"]))
        return f"{head}: top-{len(row['labels'])}: {ranked}"
    if row["kind"] == "detections":
        count = len(row["boxes"])
        names = row.get("names") or [None] * len(row["labels"])
        first = list(zip(row["boxes"], row["scores"], row["labels"], names))[:BOXES_SHOWN]
        shown = [f"{name or f'class {label}'} {_fixed(score, 2)} at ({', '.join(_fixed(v, 0) for v in box)})"
                 for box, score, label, name in first]
        more = f", ... {count - BOXES_SHOWN} more" if count > BOXES_SHOWN else ""
        return f"{head}: {count} box{'es' if count != 1 else ''}{': ' if shown else ''}{', '.join(shown)}{more}"
    if row["kind"] == "error":
        return f"{path}: skipped: {row['error']}"
    return (f"{head}: shape {fmt(tuple(row['shape']))}  min {_general(row['min'])}  max {_general(row['max'])}  "
            f"mean {_general(row['mean'])}  std {_general(row['std'])}")


def _class(number: int, name: str | None, score: str) -> str:
    """`digital clock (530, 96.0%)` with a label set, `class 530 (96.0%)` without."""
    return f"{name} ({number}, {score})" if name else f"class {number} ({score})"


def _percent(value: float | None) -> str:
    return "nan" if value is None else f"{value:.1%}"


def _fixed(value: float | None, digits: int) -> str:
    return "nan" if value is None else f"{value:.{digits}f}"


def _general(value: float | None) -> str:
    return "nan" if value is None else f"{value:.4g}"
