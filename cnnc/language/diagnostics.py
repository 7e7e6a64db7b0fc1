"""What elaboration reports besides the graph: several errors per run, and warnings about unused names.

Elaboration recovers at each top-level statement (an import, an input, an output, a block
definition, an assignment). A statement that fails has its error recorded, and the names it
would have bound are *poisoned*: a later statement that uses one stops quietly (`Poisoned`), so
only independent errors are reported, never the consequences of one. After an import that
could not be read or parsed, an undefined name stops its statement quietly too (it may be one
the file would have defined). Crossing a limit on the whole program's work (its layers, its
block calls) ends elaboration: every later statement would cross it again. At the end a
program with errors raises the one error itself, or a `CnncErrors` holding them all in the
order of their statements; the checks of the whole program (an output is declared, every
`input_shapes=` name is an input) run only when every statement elaborated.

A program without errors is then checked for names it never uses: a tensor assigned and never
read (before the end, or before the name is assigned again), an input never read, a block
defined in the main file and never called. Each is a `CnncWarning` given with `warnings.warn`,
attributed to the first caller outside cnnc, so `cnnc.parse` users see ordinary Python warnings
and the command line prints them as diagnostics. Names that begin with `_` are exempt.
"""
from __future__ import annotations

import os
import re
import sys
import warnings
from pathlib import Path

from ..errors import CnncError, CnncErrors, CnncWarning
from ..source import Span
from ..syntax import tree as t
from .values import Block, Tensor

_PACKAGE = str(Path(__file__).resolve().parents[1]) + os.sep  # the cnnc package: its frames are not the caller


class Poisoned(Exception):
    """A statement used a name whose own statement failed: it stops without an error of its own.

    Not a CnncError, so nothing on the way up mistakes it for one; the statement loop catches it.
    """


class _Poison:
    """The value a poisoned name is bound to (see the module docstring)."""

    def __repr__(self) -> str:
        return "<poisoned>"


POISON = _Poison()


class Diagnostics:
    """The errors of one elaboration (each construct's once) and what the failed statements leave."""

    def __init__(self) -> None:
        self.errors: list[CnncError] = []
        self.names_unknown = False  # an import failed: an undefined name may be one of its names
        self.stopped = False  # a limit on the program's work was crossed: no statement runs after it
        self._seen: set[tuple] = set()

    def failed(self, item: t.Node, error: CnncError | Poisoned, env: dict, stop: bool) -> None:
        """Statement `item` of the module whose names are `env` raised `error`: keep a CnncError
        and poison the names `item` binds; `stop`: no further statement is to run."""
        if isinstance(error, CnncError):
            self.record(error)
        self.stopped = self.stopped or stop
        if isinstance(item, t.Import):
            self.names_unknown = True
        elif isinstance(item, (t.Assign, t.BlockDef, t.InputDecl)):
            env[item.name] = POISON  # a second definition too: which one later uses meant is unknown
        elif isinstance(item, t.OutputDecl):
            env.setdefault(item.name, POISON)  # it binds its name only if unbound (see Elaborator._output)

    def record(self, error: CnncError) -> None:
        """Keep `error`, unless one at the same construct is kept already (a block body that
        fails for each of its calls is reported once)."""
        span = error.span
        key = (span.file.name, span.line, span.column, span.end_line, span.end_column) if span else (error.render(),)
        if key not in self._seen:
            self._seen.add(key)
            self.errors.append(error)

    def raise_errors(self) -> None:
        """Raise what was recorded: one error as itself, several as one CnncErrors."""
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise CnncErrors(self.errors)


class Usage:
    """The main program's names not read yet: tensors (assigned or input) and the blocks it defines."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[str, Span]] = {}  # name → (what it is, where it was bound)
        self._blocks: dict[int, tuple[str, Span]] = {}  # id(block) → (its name, its definition)
        self._found: list[tuple[Span, str]] = []  # (where, message): bindings dropped unread

    def bind(self, name: str, value: object, span: Span, what: str = "value") -> None:
        """`name` is bound to `value` at `span` (an assignment, or `what="input"`)."""
        earlier = self._values.pop(name, None)
        if earlier is not None:
            self._found.append((earlier[1], f"{earlier[0]} '{name}' is never used before it is assigned again"))
        if _holds_tensor(value) and not name.startswith("_"):
            self._values[name] = (what, _name_span(span, name))

    def define(self, block: Block) -> None:
        name = block.definition.name
        if not name.startswith("_"):
            self._blocks[id(block)] = (name, _name_span(block.definition.span, name))

    def read(self, name: str, value: object) -> None:
        """A use of `name` in the main program (its value is `value`)."""
        self._values.pop(name, None)
        self.called(value)

    def called(self, value: object) -> None:
        if isinstance(value, Block):
            self._blocks.pop(id(value), None)

    def warn(self) -> None:
        """Give a CnncWarning for every name never used, in source order."""
        found = [*self._found,
                 *((span, f"{what} '{name}' is never used") for name, (what, span) in self._values.items()),
                 *((span, f"block '{name}' is never used") for name, span in self._blocks.values())]
        for span, message in sorted(found, key=lambda item: (item[0].line, item[0].column)):
            warnings.warn(CnncWarning(message, span), stacklevel=_caller_level())


def _holds_tensor(value: object) -> bool:
    if isinstance(value, tuple):
        return any(_holds_tensor(item) for item in value)
    return isinstance(value, Tensor)


def _name_span(span: Span, name: str) -> Span:
    """The span of `name` on the first line of the statement at `span` (the statement's, when the
    name is not there): a warning's caret goes under the name."""
    found = re.compile(rf"(?<![\w]){re.escape(name)}(?![\w])").search(span.file.line(span.line), span.column - 1)
    if found is None:
        return span
    return Span(span.file, span.line, found.start() + 1, span.line, found.end() + 1)


def _caller_level() -> int:
    """The `stacklevel` for warnings.warn from Usage.warn that names the first frame outside cnnc."""
    frame = sys._getframe(2)  # the frame that called Usage.warn: stacklevel 2 in its warnings.warn
    level = 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level
