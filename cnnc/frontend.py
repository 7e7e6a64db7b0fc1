"""Source → IR: read a file (or take text), parse, elaborate, verify."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import CnncError, CnncImportError
from .ir.graph import Graph
from .ir.verify import verify
from .language.elaborate import Elaborator
from .source import SourceFile
from .syntax import tree as t
from .syntax.parser import parse_source
from .syntax.reader import ReadFailure, read_program, resolve_path

SourceLike = str | os.PathLike


def load_source(source: SourceLike, name: str | None = None) -> SourceFile:
    """A path (str ending in .cnn or a PathLike) is read from disk; any other str is program text."""
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source
                                           and source.strip().endswith(".cnn")):
        path = Path(source)
        try:
            text = read_program(path)
            resolved = resolve_path(path)
        except ReadFailure as failure:
            message = f"no such file: {path}" if failure.missing else f"cannot read {path}: {failure}"
            raise CnncImportError(message, where=str(path)) from None
        return SourceFile(name or path.name, text, resolved)
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


def check_library(source: SourceLike, name: str | None = None) -> dict[str, object] | None:
    """For a library (a file with no `input` or `output`, such as examples/resnet_blocks.cnn):
    its names after checking it as an import would (block definitions, constants, its own
    imports). None for any other program, which `parse` compiles."""
    src = load_source(source, name)
    program = parse_source(src)
    if any(isinstance(item, (t.InputDecl, t.OutputDecl)) for item in program.items) or not program.items:
        return None
    return Elaborator().run_library(program, src)
