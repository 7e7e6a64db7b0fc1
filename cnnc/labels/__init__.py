"""Class names for classifier and detector outputs: the label sets cnnc ships, and label files.

A network declares the names of an output's classes (`output logits = … labels imagenet`,
docs/language.md), `cnnc run --labels FILE` overrides them, and `cnnc run` shows them beside the
class numbers. Shipped sets, one name per line in class order:

- `imagenet`: the 1000 ILSVRC-2012 classes in the usual synset order (torchvision's, timm's);
  each is the first WordNet lemma of its synset (`tench`, `goldfish`, …).
- `voc`: the 20 PASCAL VOC classes, alphabetical, without the background.
- `coco`: the 80 COCO detection classes in the contiguous order detectors use (`person` = 0).
- `mnist`: the ten digits by name, `zero` … `nine` (LeNet-5 trained on MNIST).

A label file is UTF-8 text with one name per line (blank lines at the end are ignored).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import CnncError
from ..ir.graph import Graph
from ..ir.ops import Op
from ..ir.shapes import fmt

SETS = ("imagenet", "voc", "coco", "mnist")


def shipped(name: str) -> tuple[str, ...]:
    """A label set cnnc ships (`SETS`)."""
    if name not in SETS:
        raise CnncError(f"unknown label set '{name}' (cnnc ships: {', '.join(SETS)}; or name a file in quotes)")
    return _parse(resources.files(__name__).joinpath(f"{name}.txt").read_text(encoding="utf-8"))


def read_label_file(path: str | Path) -> tuple[str, ...]:
    """The names in a label file, one per line; a clear error for a missing, huge or binary file
    (read as program files are: a regular file, size-limited, UTF-8)."""
    from ..syntax.reader import ReadFailure, read_program

    try:
        text = read_program(Path(path))
    except ReadFailure as failure:
        raise CnncError(f"cannot read the label file: {failure}", where=str(path)) from None
    names = _parse(text)
    if not any(names):
        raise CnncError("the label file holds no names (one class name per line)", where=str(path))
    return names


def class_count(graph: Graph, node: str) -> tuple[int | None, str]:
    """How many classes the value `node` holds, and a phrase saying where that was read: an
    `nms` output's from its scores' last axis, any other's along axis 1 (None for a 1-D value).
    The one rule a label set's length is checked against (the `labels` clause, `--labels`)."""
    if graph.op(node) == Op.NMS:  # detections [N, K, 6]: the classes of its scores
        scores = graph.shape(graph.inputs_of(node)[1])
        return scores[-1], f"its scores {fmt(scores)} hold {scores[-1]} classes"
    shape = graph.shape(node)
    classes = shape[1] if len(shape) >= 2 else None
    return classes, f"its shape {fmt(shape)} has {classes} classes along axis 1"


def _parse(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in text.rstrip("\n").split("\n"))
