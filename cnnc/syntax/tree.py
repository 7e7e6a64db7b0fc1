"""The syntax tree: frozen dataclasses, each carrying the span it was parsed from."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..source import Span


@dataclass(frozen=True)
class Node:
    span: Span = field(repr=False, compare=False)


# ---- expressions ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Literal(Node):
    value: object  # int, float, bool, str, or a (h, w) kernel pair


@dataclass(frozen=True)
class Var(Node):
    name: str


@dataclass(frozen=True)
class Arg(Node):
    name: str | None  # None for a positional argument
    value: Expr


@dataclass(frozen=True)
class Call(Node):
    func: str
    func_span: Span = field(repr=False, compare=False)
    args: tuple[Arg, ...]


@dataclass(frozen=True)
class Named(Node):
    """`call(...) as name` or `(expression) as name`: the layer the expression makes is `name`."""

    expr: Expr
    name: str


@dataclass(frozen=True)
class TupleExpr(Node):
    items: tuple[Expr, ...]
    is_list: bool = False


@dataclass(frozen=True)
class Unary(Node):
    op: str  # "-", "not"
    operand: Expr


@dataclass(frozen=True)
class Binary(Node):
    op: str  # + - * / // % ** == != < <= > >= and or
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Index(Node):
    target: Expr
    index: Expr


@dataclass(frozen=True)
class Conditional(Node):
    then: Expr
    test: Expr
    orelse: Expr


@dataclass(frozen=True)
class Stage(Node):
    """One `|>` stage: a call (a bare name is a call with no arguments) or a sequence."""

    call: Call | None
    sequence: tuple[Stage, ...] | None
    repeat: Expr | None
    name: str | None  # explicit layer name from `as`


@dataclass(frozen=True)
class Pipe(Node):
    source: Expr
    stage: Stage


Expr = Literal | Var | Call | TupleExpr | Unary | Binary | Index | Conditional | Pipe


# ---- statements -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Import(Node):
    path: str


@dataclass(frozen=True)
class InputDecl(Node):
    name: str
    dims: tuple[int | str, ...]
    prepare: tuple[Call, ...] | None = None  # `prepare resize(256) |> center_crop`: each step a call


@dataclass(frozen=True)
class OutputDecl(Node):
    name: str
    value: Expr | None
    labels: str | None = None  # a shipped label set's name, or a quoted file path (`labels imagenet`)
    labels_is_path: bool = False


@dataclass(frozen=True)
class Assign(Node):
    name: str
    value: Expr


@dataclass(frozen=True)
class Return(Node):
    value: Expr


@dataclass(frozen=True)
class Param(Node):
    name: str
    type: str | None
    default: Expr | None


@dataclass(frozen=True)
class BlockDef(Node):
    name: str
    params: tuple[Param, ...]
    body: tuple[Assign | Return, ...]
    inline: bool = False  # `inline block`: a call without `as` opens no naming scope


@dataclass(frozen=True)
class Program(Node):
    items: tuple[Import | InputDecl | OutputDecl | BlockDef | Assign, ...]
