"""Parse `.cnn` text into the syntax tree; grammar errors become CnncSyntaxError with a caret."""
from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from lark import Lark, Token, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.visitors import Transformer_NonRecursive

from ..errors import CnncError, CnncSyntaxError, CnncTypeError
from ..limits import MAX_INT
from ..source import SourceFile, Span
from . import tree as t

# Friendly names for grammar terminals in "expected ..." messages.
_TERMINAL_WORDS = {
    "NAME": "a name", "INT": "an integer", "FLOAT": "a number", "KERNEL": "a kernel size like 3x3",
    "STRING": 'a "string"', "COMP_OP": "a comparison", "ADD_OP": "'+' or '-'",
    "MUL_OP": "'*', '/', '//' or '%'", "$END": "end of file",
}


def grammar_text() -> str:
    """The grammar: from the source checkout's top-level grammars/, else from the installed wheel."""
    checkout = Path(__file__).resolve().parents[2] / "grammars" / "cnn.lark"
    if checkout.is_file():
        return checkout.read_text(encoding="utf-8")
    return resources.files("cnnc.grammars").joinpath("cnn.lark").read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def _lark() -> Lark:
    options = dict(parser="lalr", propagate_positions=True, maybe_placeholders=True, start=["start", "prepare_text"])
    cache = _cache_file()
    if cache is not None:
        try:
            return Lark(grammar_text(), cache=str(cache), **options)
        except Exception:  # noqa: BLE001 - a cache that cannot be read or written is only slower
            pass
    return Lark(grammar_text(), **options)


def _cache_file() -> Path | None:
    """Where Lark keeps the LALR tables it built (building them is ~0.1 s of every first compile;
    reading them back, ~0.01 s): the user's own cache folder, created private (mode 0700), since
    Lark's cache is a pickle and must not come from a folder others can write to. Lark checks
    the grammar's hash stored in the file and rebuilds a stale one. None where there is no such
    folder to be had (CNNC_NO_CACHE=1 turns the cache off)."""
    import os
    import stat
    import sys

    import lark

    if os.environ.get("CNNC_NO_CACHE") or not hasattr(os, "getuid"):
        return None
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cnnc"
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = root.stat()
        if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o022:
            return None  # not ours, or writable by others: do not trust what it holds
    except OSError:
        return None
    return root / f"grammar-lark{lark.__version__}-py{sys.version_info[0]}{sys.version_info[1]}.lalr"


def parse_source(source: SourceFile) -> t.Program:
    """Parse a whole file. Raises CnncSyntaxError naming file, line and column."""
    return _parse(source, "start")


def parse_preparation(source: SourceFile) -> tuple[t.Call, ...]:
    """Parse the steps of a preparation alone (`resize(256) |> center_crop`, the CLI's --prepare)."""
    return _parse(source, "prepare_text")


def _parse(source: SourceFile, start: str):
    try:
        parsed = _lark().parse(source.text, start=start)
    except UnexpectedInput as error:
        raise _syntax_error(source, error) from None
    try:
        return _ToTree(source).transform(parsed)
    except VisitError as error:  # a CnncError raised inside the transformer
        if isinstance(error.orig_exc, CnncError):
            raise error.orig_exc from None
        raise


def _describe_terminal(name: str) -> str:
    if name in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[name]
    try:
        pattern = _lark().get_terminal(name).pattern
    except KeyError:
        return name
    return f"'{pattern.value}'"


def _syntax_error(source: SourceFile, error: UnexpectedInput) -> CnncSyntaxError:
    line, column = max(error.line, 1), max(error.column, 1)
    if isinstance(error, UnexpectedCharacters):
        message = f"unexpected character {source.text[error.pos_in_stream or 0]!r}"
        width = 1
    elif isinstance(error, UnexpectedEOF) or (isinstance(error, UnexpectedToken) and error.token.type == "$END"):
        message = "unexpected end of file"
        lines = source.lines() or [""]
        line, column, width = len(lines), len(lines[-1]) + 1, 1
    else:
        token = getattr(error, "token", "")
        message = f"unexpected {str(token)!r}"
        width = max(1, len(str(token)))
    expected = sorted({_describe_terminal(name) for name in getattr(error, "expected", ()) or ()})
    if expected and len(expected) <= 8:
        message += "; expected " + ", ".join(expected)
    return CnncSyntaxError(message, Span(source, line, column, line, column + width))


@v_args(meta=True)
class _ToTree(Transformer_NonRecursive):
    """Lark parse tree → frozen dataclasses with spans (without recursion: long chains are fine)."""

    def __init__(self, source: SourceFile):
        super().__init__()
        self.source = source

    def _span(self, meta) -> Span:
        if getattr(meta, "empty", True):
            return Span(self.source, 1, 1, 1, 2)
        return Span(self.source, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tok(self, token: Token) -> Span:
        # Lark types these as optional; tokens from the lexer always carry them.
        return Span(self.source, token.line or 1, token.column or 1, token.end_line or 1, token.end_column or 1)

    def _int(self, token: Token, digits: str | None = None) -> int:
        """The integer `digits` (default: the token) spell, refused past the integer limit."""
        text = str(token) if digits is None else digits
        # Compare lengths first: int() of a huge literal is slow, and refused past 4,300 digits.
        if len(text.lstrip("0")) > len(str(MAX_INT)) or int(text) > MAX_INT:
            raise CnncTypeError(f"the integer {text[:20]}{'…' if len(text) > 20 else ''} is too large "
                                f"(integers must lie within ±{MAX_INT})", self._tok(token))
        return int(text)

    # statements
    def start(self, meta, items):
        return t.Program(self._span(meta), tuple(items))

    def import_stmt(self, meta, children):
        return t.Import(self._span(meta), str(children[0])[1:-1])

    def input_decl(self, meta, children):
        *dims, prepare = children[1:]
        return t.InputDecl(self._span(meta), str(children[0]), tuple(dims), prepare)

    def prepare(self, meta, children):
        return tuple(children)

    def prepare_text(self, meta, children):
        return tuple(children)

    def prep_step(self, meta, children):
        name, args = children
        return t.Call(self._span(meta), str(name), self._tok(name), tuple(args or ()))

    def dim_int(self, meta, children):
        return self._int(children[0])

    def dim_name(self, meta, children):
        return str(children[0])

    def output_decl(self, meta, children):
        name, value, *labels = children
        label = labels[0] if labels else None
        if label is None:
            return t.OutputDecl(self._span(meta), str(name), value)
        is_path = label.type == "STRING"
        text = str(label)[1:-1] if is_path else str(label)
        return t.OutputDecl(self._span(meta), str(name), value, text, is_path)

    def block_def(self, meta, children):
        inline, name, *rest = children
        params = tuple(c for c in rest if isinstance(c, t.Param))
        body = tuple(c for c in rest if isinstance(c, (t.Assign, t.Return)))
        return t.BlockDef(self._span(meta), str(name), params, body, inline is not None)

    def param(self, meta, children):
        name, type_name, default = children
        return t.Param(self._span(meta), str(name), None if type_name is None else str(type_name), default)

    def assign(self, meta, children):
        return t.Assign(self._span(meta), str(children[0]), children[1])

    def return_stmt(self, meta, children):
        return t.Return(self._span(meta), children[0])

    # expressions
    def cond(self, meta, children):
        return t.Conditional(self._span(meta), *children)

    def pipe(self, meta, children):
        return t.Pipe(self._span(meta), children[0], children[1])

    def stage(self, meta, children):
        core, repeat, name = children
        if isinstance(core, tuple):
            return t.Stage(self._span(meta), None, core, repeat, name)
        return t.Stage(self._span(meta), core, None, repeat, name)

    def stage_name(self, meta, children):
        return t.Call(self._span(meta), str(children[0]), self._tok(children[0]), ())

    def stage_call(self, meta, children):
        return self.call(meta, children)

    def stage_seq(self, meta, children):
        return tuple(c for c in children if c is not None)

    def layer_name(self, meta, children):
        name = ".".join(str(c) for c in children)
        if name.endswith(".") or ".." in name:  # `as a.2.`: a float token swallowed a trailing dot
            raise CnncSyntaxError(f"layer name '{name}' has an empty part between dots", self._span(meta))
        return name

    def or_op(self, meta, children):
        return t.Binary(self._span(meta), "or", children[0], children[1])

    def and_op(self, meta, children):
        return t.Binary(self._span(meta), "and", children[0], children[1])

    def not_op(self, meta, children):
        return t.Unary(self._span(meta), "not", children[0])

    def compare(self, meta, children):
        return t.Binary(self._span(meta), str(children[1]), children[0], children[2])

    def binop(self, meta, children):
        return t.Binary(self._span(meta), str(children[1]), children[0], children[2])

    def pow_op(self, meta, children):
        return t.Binary(self._span(meta), "**", children[0], children[2])

    def neg(self, meta, children):
        return t.Unary(self._span(meta), "-", children[0])

    def index(self, meta, children):
        return t.Index(self._span(meta), children[0], children[1])

    def int_lit(self, meta, children):
        return t.Literal(self._span(meta), self._int(children[0]))

    def float_lit(self, meta, children):
        return t.Literal(self._span(meta), float(children[0]))

    def kernel_lit(self, meta, children):
        height, width = str(children[0]).split("x")
        return t.Literal(self._span(meta), (self._int(children[0], height), self._int(children[0], width)))

    def str_lit(self, meta, children):
        return t.Literal(self._span(meta), str(children[0])[1:-1])

    def true_lit(self, meta, children):
        return t.Literal(self._span(meta), True)

    def false_lit(self, meta, children):
        return t.Literal(self._span(meta), False)

    def var(self, meta, children):
        return t.Var(self._span(meta), str(children[0]))

    def call(self, meta, children):
        name, args = children
        return t.Call(self._span(meta), str(name), self._tok(name), tuple(args or ()))

    def named_call(self, meta, children):
        name, args, layer = children
        call = t.Call(self._span(meta), str(name), self._tok(name), tuple(args or ()))
        return t.Named(self._span(meta), call, layer)

    def named_expr(self, meta, children):
        expr, layer = children
        return t.Named(self._span(meta), expr, layer)

    def args(self, meta, children):
        return tuple(c if isinstance(c, t.Arg) else t.Arg(c.span, None, c) for c in children if c is not None)

    def kwarg(self, meta, children):
        return t.Arg(self._span(meta), str(children[0]), children[1])

    def tuple_lit(self, meta, children):
        return t.TupleExpr(self._span(meta), tuple(c for c in children if c is not None))

    def list_lit(self, meta, children):
        return t.TupleExpr(self._span(meta), tuple(c for c in children if c is not None), is_list=True)
