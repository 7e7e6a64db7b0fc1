"""Class names for classifier and detector outputs: the label sets cnnc ships, and label files.

A network declares the names of an output's classes (`output logits = … labels imagenet`,
docs/language.md), `cnnc run --labels FILE` overrides them, and `cnnc run` shows them beside the
class numbers. Shipped sets, one name per line in class order:

- `imagenet`: the 1000 ILSVRC-2012 classes in the usual synset order (torchvision's, timm's);
  each is the first WordNet lemma of its synset (`tench`, `goldfish`, …).
- `voc`: the 20 PASCAL VOC classes, alphabetical, without the background.
- `coco`: the 80 COCO detection classes in the contiguous order detectors use (`person` = 0).

A label file is UTF-8 text with one name per line (blank lines at the end are ignored).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import CnncError

SETS = ("imagenet", "voc", "coco")


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


def _parse(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in text.rstrip("\n").split("\n"))
