"""Source → IR: read a file (or take text), parse, elaborate, verify."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import CnncError, CnncImportError
from .ir.graph import Graph
from .ir.verify import verify
from .language.elaborate import Elaborator
from .source import SourceFile
from .syntax.parser import parse_source

SourceLike = str | os.PathLike


def load_source(source: SourceLike, name: str | None = None) -> SourceFile:
    """A path (str ending in .cnn or a PathLike) is read from disk; any other str is program text."""
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source
                                           and source.strip().endswith(".cnn")):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CnncImportError(f"no such file: {path}", where=str(path)) from None
        except (OSError, UnicodeDecodeError) as error:
            raise CnncImportError(f"cannot read {path}: {error}", where=str(path)) from None
        return SourceFile(name or path.name, text, path.resolve())
    return SourceFile(name or "<string>", str(source), None)


def parse(source: SourceLike, input_shapes: dict[str, tuple] | None = None,
          name: str | None = None) -> Graph:
    """Parse and elaborate a `.cnn` program into a verified, fully shaped IR graph.

    `input_shapes` overrides declared input shapes (e.g. a larger image for a fully
    convolutional network, or a small one for a quick test).
    """
    src = load_source(source, name)
    try:
        graph = Elaborator(input_shapes).run(parse_source(src), src)
    except RecursionError:
        raise CnncError("the program nests expressions too deeply to compile", where=src.name) from None
    verify(graph)
    return graph
