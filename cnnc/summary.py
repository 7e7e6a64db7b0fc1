"""`cnnc summary`: a per-layer table like torchinfo's or Keras's, nested by the layer names.

One row model, two renderers. `summary_rows` turns a graph into `Row`s: its layers (IR nodes)
and its blocks, the prefixes of the hierarchical layer names (`layer1.0.conv1` lives in block
`layer1`, inside it in `layer1.0`), in tree order (a block where its first layer is, its
children in the order they first compute). A block row carries the totals of what it holds:
parameters (each counted once), MACs, activation memory; its output shape and receptive field
are those of its last layer, its inputs those it reads from outside. `depth=d` keeps the first
d levels, folding the blocks at the last one.

`summary_text` lays the rows out to a width here (`_layout`: counts shortened, long names and
lists wrapped at their dots and commas, the footer wrapped) and draws them with `rich` when it
is installed (an optional dependency, imported only when drawing), with the plain renderer
otherwise: the same lines either way, rich ruling the header with a box-drawing line.
`print_summary` writes to a terminal through rich, bold header and block rows, colour as rich
decides (NO_COLOR); nothing else ever carries escape codes. `summary_json` is the same rows as
plain data. Receptive fields come from cnnc/ir/receptive.py, costs from cnnc/ir/cost.py.

The summary describes the graph it is given: the source program's layers (-O0, `cnnc summary`'s
default) or the optimized ones, where a fused node says what it absorbed (`conv+bn+relu`, read
from the source spans it kept: fusion and BN folding keep the spans of what they absorb; without
the source graph, from its parameters' derivations and its attrs).
"""
from __future__ import annotations

import io
import math
import shutil
import sys
import textwrap
from dataclasses import dataclass
from fractions import Fraction
from typing import IO, Any

from .ir.cost import node_cost, peak_with_plan, peak_without_plan
from .ir.fused import SHORT_NAMES, absorbed_ops
from .ir.graph import Graph
from .ir.ops import updated_roles
from .ir.receptive import Field, Window, receptive_fields, window
from .ir.shapes import fmt
from .source import Span

__all__ = ["COLUMNS", "DEFAULT_COLUMNS", "DEFAULT_DEPTH", "JSON_FORMAT", "Row", "print_summary", "summary_json",
           "summary_rows", "summary_table", "summary_text"]

COLUMNS = ("layer", "op", "output_shape", "params", "macs", "kernel", "stride", "connected_to",
           "receptive_field", "cumulative_stride", "activation_memory")
"""Every column the text form can show. `layer` (the name, indented by nesting) always comes
first, whether it is named or not."""

DEFAULT_COLUMNS = ("layer", "op", "output_shape", "params", "macs", "connected_to")
"""Keras's columns (name, type, output shape, parameters, connected to) and the MACs; the
others by request."""

DEFAULT_DEPTH: int | None = None
"""Every layer is listed by default (depth None), indented under its blocks. The summary is the
one listing of every layer: `repr(net)` is already the folded form (one row per top-level layer
or block, as depth 1) and points here for the rest, and a folded default would hide the very
layers (a DenseNet's convs sit at depth 4, EfficientNet's at 6) that one reads a summary for.
`depth=` folds deeper blocks into one row with their totals when the overview is what is wanted."""

JSON_FORMAT = "cnnc.summary/1"

_HEADERS = {"layer": "Layer", "op": "Op", "output_shape": "Output shape", "params": "Params", "macs": "MACs",
            "kernel": "Kernel", "stride": "Stride", "connected_to": "Connected to",
            "receptive_field": "Receptive field", "cumulative_stride": "Cum. stride",
            "activation_memory": "Act. memory"}
_RIGHT = frozenset({"params", "macs", "activation_memory"})
_WRAPPING = frozenset({"layer", "op", "connected_to"})  # may break across lines before the others must
_STATISTICS = (".mean", ".var")  # batch norm's running statistics: parameters that are not trained


@dataclass(frozen=True)
class Row:
    """One row: a layer (an IR node) or a block (a prefix of layer names)."""

    name: str  # the full layer name, or the block's prefix (`layer1.0`)
    kind: str  # "layer" or "block"
    level: int  # nesting: 0 for top-level rows, 1 inside one block, ...
    parent: str | None  # the enclosing block's name
    children: tuple[str, ...]  # a block's direct children (layers and blocks), in order; () for a layer
    op: str  # a layer's op, fused ones joined (`conv+bn+relu`); a block's size (`3 blocks, 36 layers`)
    ops: tuple[str, ...]  # a layer's op and the ops it absorbed; a block's distinct ops, in order
    output_shape: tuple  # a block's: its last layer's
    params: int  # parameter values read (a block: each parameter once)
    trainable_params: int  # of those, not batch norm running statistics
    macs: int  # multiply-accumulates per example
    window: Window | None  # kernel, stride, dilation of a windowed op; None otherwise (and for blocks)
    inputs: tuple[str, ...]  # the layers it reads (a block: those outside it), full names, in slot order
    field: Field | None  # receptive field and cumulative stride of its output (a block: its last layer's)
    activation_bytes: int  # its output, float32, one example (a block: all its layers' outputs)
    layers: int  # layers it holds (1 for a layer)


# ---- the row model -----------------------------------------------------------------------------


@dataclass
class _Block:
    name: str
    level: int
    parent: str | None
    children: list[tuple[str, str]]  # (kind, name)
    members: list[str]  # its layers, in topological order


def summary_rows(graph: Graph, depth: int | None = DEFAULT_DEPTH) -> list[Row]:
    """The rows to show, in tree order: with `depth` d, rows of the first d levels (depth 1: the
    top-level layers and blocks), each block at the last level folded into one row with its
    totals; None: every row."""
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise ValueError(f"depth must be a positive integer or None, got {depth!r}")
    top, blocks = _tree(graph)
    model = _Model(graph)
    rows: list[Row] = []

    def walk(items: list[tuple[str, str]]) -> None:
        for kind, name in items:
            if kind == "layer":
                rows.append(model.layer_row(name))
                continue
            block = blocks[name]
            rows.append(model.block_row(block))
            if depth is None or block.level + 1 < depth:
                walk(block.children)

    walk(top)
    return rows


def _tree(graph: Graph) -> tuple[list[tuple[str, str]], dict[str, _Block]]:
    """The top-level items and every block, from the dotted layer names in topological order."""
    top: list[tuple[str, str]] = []
    blocks: dict[str, _Block] = {}
    for name in graph.topo_order():
        parts = name.split(".")
        siblings, parent = top, None
        for level in range(1, len(parts)):
            path = ".".join(parts[:level])
            if path not in blocks:
                blocks[path] = _Block(path, level - 1, parent, [], [])
                siblings.append(("block", path))
            blocks[path].members.append(name)
            siblings, parent = blocks[path].children, path
        siblings.append(("layer", name))
    return top, blocks


class _Model:
    """What the rows are made of, computed once per graph."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.fields = receptive_fields(graph)
        self.costs = {n: node_cost(graph, n) for n in graph}
        source = graph.info.source_graph
        # span → the op of the source layer written there: a fused node names what it absorbed
        self.span_ops: dict[Span, str] | None = None
        if source is not None and source is not graph:
            self.span_ops = {}
            for name in source.topo_order():
                for span in source.spans(name):
                    self.span_ops.setdefault(span, str(source.op(name)))

    def _params(self, names: list[str]) -> tuple[int, int]:
        """(all, trainable) parameter values the layers read, each parameter once."""
        specs = self.graph.info.param_specs
        seen: dict[str, bool] = {}
        for name in names:
            node = self.graph.node(name)
            updated = updated_roles(node.op)  # batch norm's running statistics: not trained
            for role, param in node.params.items():
                seen.setdefault(param, role not in updated)
        sizes = {p: math.prod(specs[p].shape) for p in seen}
        return sum(sizes.values()), sum(size for p, size in sizes.items() if seen[p])

    def absorbed(self, name: str) -> tuple[str, ...]:
        """The node's op, then the ops it absorbed (batch norm, residual add, activation)."""
        graph, node = self.graph, self.graph.node(name)
        parts = [str(node.op)]
        if self.span_ops is not None:  # the source layers whose spans it kept
            parts += [self.span_ops[s] for s in node.spans[1:] if s in self.span_ops]
        else:  # no source graph to ask: what its parameters and attrs say
            parts += absorbed_ops(graph, name)
        return tuple(dict.fromkeys(parts))

    def layer_row(self, name: str) -> Row:
        graph, cost = self.graph, self.costs[name]
        parts = name.split(".")
        ops = self.absorbed(name)
        params, trainable = self._params([name])
        return Row(name=name, kind="layer", level=len(parts) - 1,
                   parent=".".join(parts[:-1]) or None, children=(),
                   op="+".join(SHORT_NAMES.get(o, o) if i else o for i, o in enumerate(ops)), ops=ops,
                   output_shape=tuple(graph.shape(name)), params=params, trainable_params=trainable,
                   macs=cost.macs, window=window(graph, name), inputs=tuple(graph.inputs_of(name)),
                   field=self.fields[name], activation_bytes=cost.activation_bytes, layers=1)

    def block_row(self, block: _Block) -> Row:
        graph, members = self.graph, block.members
        inside = set(members)
        inputs = dict.fromkeys(i for m in members for i in graph.inputs_of(m) if i not in inside)
        params, trainable = self._params(members)
        count = len(members)
        if all(kind == "block" for kind, _ in block.children):
            what = f"{_count(len(block.children), 'block')}, {_count(count, 'layer')}"
        else:
            what = _count(count, "layer")
        last = members[-1]
        return Row(name=block.name, kind="block", level=block.level, parent=block.parent,
                   children=tuple(name for _, name in block.children), op=what,
                   ops=tuple(dict.fromkeys(str(graph.op(m)) for m in members)),
                   output_shape=tuple(graph.shape(last)), params=params, trainable_params=trainable,
                   macs=sum(self.costs[m].macs for m in members), window=None, inputs=tuple(inputs),
                   field=self.fields[last], activation_bytes=sum(self.costs[m].activation_bytes for m in members),
                   layers=count)


# ---- totals ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Totals:
    layers: int
    params: int  # read by the graph's layers, each parameter once
    user_params: int  # the user's parameters (net.params): the same as params before optimization
    trainable_params: int  # the user's, without batch norm running statistics
    macs: int
    activation_bytes: int
    peak_unplanned: int
    peak_planned: int


def _totals(graph: Graph) -> _Totals:
    from .passes.memory import current_plan, memory_plan

    names = list(graph)
    specs = graph.info.param_specs
    used = {p for n in names for p in graph.node(n).params.values()}
    user = graph.info.user_param_specs()
    user_total = sum(math.prod(s.shape) for s in user.values())
    statistics = sum(math.prod(s.shape) for n, s in user.items() if n.endswith(_STATISTICS))
    costs = [node_cost(graph, n) for n in names]
    plan = current_plan(graph)
    if plan is None:  # not planned (e.g. at -O0, summary's default): planned here and now
        plan = memory_plan(graph)
    return _Totals(layers=len(names), params=sum(math.prod(specs[p].shape) for p in used), user_params=user_total,
                   trainable_params=user_total - statistics, macs=sum(c.macs for c in costs),
                   activation_bytes=sum(c.activation_bytes for c in costs),
                   peak_unplanned=peak_without_plan(graph), peak_planned=peak_with_plan(graph, plan))


def _footer(graph: Graph, totals: _Totals) -> list[str]:
    t = totals
    params = f"Total params: {t.params:,} ({_human(t.params)})"
    if t.params != t.user_params:
        params += f" in the optimized layers, computed from the user's {t.user_params:,}"
    lines = [params, f"Trainable params: {t.trainable_params:,} ({_human(t.trainable_params)})"]
    if t.user_params != t.trainable_params:
        lines.append(f"Non-trainable params: {t.user_params - t.trainable_params:,} (batch norm running mean, var)")
    return [*lines,
            f"Total MACs (conv, dense; per example): {t.macs:,} ({_human(t.macs)})",
            f"Parameter memory (float32): {_human(4 * t.params, 'B')}",
            f"Activation memory (all layer outputs, float32, per example): {_human(t.activation_bytes, 'B')}",
            f"Peak activation memory (batch 1): {_human(t.peak_unplanned, 'B')} without planning, "
            f"{_human(t.peak_planned, 'B')} with plan_memory"]


def _title(graph: Graph, totals: _Totals) -> str:
    passes = graph.info.passes_run
    how = f"after {_count(len(passes), 'optimization pass')}" if passes else "(not optimized)"
    return f"{graph.info.source_name}: {_count(totals.layers, 'layer')} {how}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 'es' if noun.endswith('s') else 's'}"


# ---- cells -------------------------------------------------------------------------------------


def _human(count: float, unit: str = "") -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= scale:
            return f"{count / scale:.2f} {suffix}{unit}"
    return f"{count:.0f} {unit}".rstrip()


def _pair(values: tuple, square: bool) -> str:
    """`3x3`; with `square`, one number when both are equal (a stride of 2)."""
    text = [str(v) for v in values]
    return text[0] if square and text[0] == text[1] else "x".join(text)


def _visible(name: str, depth: int | None) -> str:
    """The row that shows `name` at this depth: itself, or the block it is folded into."""
    parts = name.split(".")
    return name if depth is None or len(parts) <= depth else ".".join(parts[:depth])


def _short(count: int) -> str:
    """A count in three digits: 9.41k, 118M, 1.03G."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= scale:
            value = count / scale
            return f"{value:.3g}{suffix}" if value < 999.5 else f"{value:.0f}{suffix}"
    return str(count)


def _cell(row: Row, column: str, depth: int | None, short: bool = False) -> str:
    """The text of one cell; `short`: counts in three digits (`_short`)."""
    if column == "layer":
        return "  " * row.level + row.name
    if column == "op":
        return row.op
    if column == "output_shape":
        return fmt(row.output_shape)
    if column in ("params", "macs"):
        value = getattr(row, column)
        return "" if not value else _short(value) if short else f"{value:,}"
    if column == "kernel":
        if row.window is None:
            return ""
        dilation = "" if row.window.dilation == (1, 1) else f" d{_pair(row.window.dilation, True)}"
        return _pair(row.window.kernel, False) + dilation
    if column == "stride":
        return "" if row.window is None else _pair(row.window.stride, True)
    if column == "connected_to":
        return ", ".join(dict.fromkeys(_visible(i, depth) for i in row.inputs))
    if column == "receptive_field":
        return "" if row.field is None else "all" if row.field.whole else _pair(row.field.size, False)
    if column == "cumulative_stride":
        jump = None if row.field is None else row.field.jump
        return "" if jump is None else _pair(jump, True)
    if column == "activation_memory":
        return _human(row.activation_bytes, "B")
    raise ValueError(f"unknown column {column!r}")


def _columns(columns: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    if isinstance(columns, str):
        raise TypeError("columns must be a sequence of column names, not one string")
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise ValueError(f"unknown summary column{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))}; "
                         f"the columns are: {', '.join(COLUMNS)}")
    return ("layer", *dict.fromkeys(c for c in columns if c != "layer"))


def _default_width() -> int:
    """The terminal's width (COLUMNS first), or 120 when the output is not a terminal."""
    return max(20, shutil.get_terminal_size(fallback=(120, 24)).columns)


# ---- rendering ---------------------------------------------------------------------------------


def summary_text(graph: Graph, depth: int | None = DEFAULT_DEPTH, columns: tuple[str, ...] = DEFAULT_COLUMNS,
                 width: int | None = None) -> str:
    """The summary as text, no line longer than `width` (None: the terminal's width, 120 when
    there is no terminal; a table needs 5 characters a column): a title line, the table of
    `summary_rows(graph, depth)` with `columns` (names from `COLUMNS`), then the totals. Drawn by
    rich when it is installed, by the plain renderer otherwise (the same layout; rich rules the
    header with a box-drawing line); never with colour or other escape codes (`print_summary`
    styles a terminal's)."""
    lines = _lines(graph, depth, columns, width)
    text = _render_rich(lines, None) if _rich_available() else None
    return text if text is not None else _render_plain(lines)


def summary_table(graph: Graph, width: int | None = None) -> str:
    """Every layer with the default columns, then the totals (`summary_text` with its defaults)."""
    return summary_text(graph, width=width)


def print_summary(graph: Graph, depth: int | None = DEFAULT_DEPTH, columns: tuple[str, ...] = DEFAULT_COLUMNS,
                  width: int | None = None, file: IO[str] | None = None) -> None:
    """Write the summary to `file` (standard output) as `summary_text` lays it out. On a terminal,
    with rich installed, the header and the block rows are bold, colour as rich decides (NO_COLOR
    or TERM=dumb: none); a file or a pipe gets `summary_text`'s text, no escape codes."""
    out = sys.stdout if file is None else file
    isatty = getattr(out, "isatty", None)
    lines = _lines(graph, depth, columns, width)
    if callable(isatty) and isatty() and _rich_available():
        _render_rich(lines, out)
        return
    out.write((_render_rich(lines, None) or _render_plain(lines)) + "\n")


def _wrap(line: str, width: int) -> list[str]:
    return textwrap.wrap(line, width, subsequent_indent="  ", break_on_hyphens=False) or [""]


def _rich_available() -> bool:
    try:
        import rich.console  # noqa: F401
    except ImportError:
        return False
    return True


_Line = tuple[str, str]  # (text, kind): "title", "header", "rule", "layer", "block", "footer"


def _lines(graph: Graph, depth: int | None, columns: tuple[str, ...], width: int | None) -> list[_Line]:
    """Everything both renderers draw, line by line and what each line is; a rule's text is
    its width in characters."""
    chosen = _columns(columns)
    width = _default_width() if width is None else width
    rows = summary_rows(graph, depth)
    totals = _totals(graph)
    layout = _layout(rows, chosen, depth, width)
    right = [c in _RIGHT for c in layout.columns]

    def join(cells: list[list[str]]) -> list[str]:
        out = []
        for k in range(max(len(c) for c in cells)):
            parts = [c[k] if k < len(c) else "" for c in cells]
            out.append((" " * layout.gap).join(p.rjust(w) if r else p.ljust(w)
                                         for p, w, r in zip(parts, layout.widths, right)).rstrip())
        return out

    rule = ("-" * (sum(layout.widths) + layout.gap * (len(layout.widths) - 1)), "rule")
    return [*((t, "title") for t in _wrap(_title(graph, totals), width)),
            *((t, "header") for t in join(layout.headers)), rule,
            *((t, row.kind) for row, cells in zip(rows, layout.cells) for t in join(cells)), rule,
            *((t, "footer") for line in _footer(graph, totals) for t in _wrap(line, width))]


def _render_plain(lines: list[_Line]) -> str:
    return "\n".join(text for text, _ in lines)


def _render_rich(lines: list[_Line], terminal: IO[str] | None) -> str | None:
    """The lines through rich: returned as text (`terminal` None: no styles, no escape codes), or
    printed to `terminal` with the header and block rows bold (colour as rich decides: NO_COLOR,
    TERM=dumb), returning None. The table is laid out here, not by rich's Table: that one
    narrows the name columns to a few characters before it wraps a number, and takes a second
    for ResNet-152's 600 rows."""
    try:
        from rich.console import Console
        from rich.text import Text
    except ImportError:
        return None
    text = Text()
    for i, (line, kind) in enumerate(lines):
        if i:
            text.append("\n")
        text.append("\u2500" * len(line) if kind == "rule" else line,
                    style="bold" if kind in ("header", "block") else "")
    width = max(len(line) for line, _ in lines)
    # a height too, or rich ignores the width on a TERM=dumb terminal
    if terminal is not None:
        Console(file=terminal, width=width, height=25, highlight=False, emoji=False, markup=False,
                soft_wrap=True).print(text)
        return None
    buffer = io.StringIO()
    Console(file=buffer, width=width, height=25, highlight=False, emoji=False, markup=False, soft_wrap=True,
            color_system=None, force_terminal=False, force_jupyter=False, force_interactive=False,
            legacy_windows=False, no_color=True).print(text)
    return buffer.getvalue().rstrip("\n")


@dataclass(frozen=True)
class _Layout:
    """The table both renderers draw: column widths, and every cell already wrapped to its
    column's width (a list of lines)."""

    columns: tuple[str, ...]
    widths: list[int]
    gap: int  # spaces between columns: 2, or 1 when the width is that short
    headers: list[list[str]]
    cells: list[list[list[str]]]


def _layout(rows: list[Row], columns: tuple[str, ...], depth: int | None, width: int) -> _Layout:
    """Widths and wrapped cells within `width`, by the first of these that fits: every cell whole;
    counts in short form (2.36M, `_short`), every cell whole; short counts and the wrapping
    columns (layer, op, connected to) narrowed, each to no less than 12; then every column
    narrowed, the widest first, down to 4, two spaces apart, then one (where even that does not
    fit, lines are longer than `width`). A header may wrap at its spaces rather than widen its
    column."""
    headers = [_HEADERS[c] for c in columns]
    widths: list[int] | None = None
    for short, floor, gap in ((False, None, 2), (True, None, 2), (True, 12, 2), (True, 4, 2), (True, 4, 1)):
        cells = [[_cell(row, c, depth, short) for c in columns] for row in rows]
        natural = [max([*map(len, h.split()), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
        budget = width - gap * (len(columns) - 1)
        widths = _fit(columns, natural, [len(h) for h in headers], budget, floor)
        if widths is not None and (sum(widths) <= budget or gap == 1):
            break
    assert widths is not None
    return _Layout(columns, widths, gap, [_wrap_cell(h, w, hang=0) for h, w in zip(headers, widths)],
                   [[_wrap_cell(v, w) for v, w in zip(r, widths)] for r in cells])


def _fit(columns: tuple[str, ...], natural: list[int], headers: list[int], budget: int,
         floor: int | None) -> list[int] | None:
    """Widths summing to at most `budget`, or None. `floor` None: the natural widths (every cell,
    every header word); else the wrapping columns at least `floor` wide; `floor` 4: every column
    narrowed, the widest first, as far as 4 (the wrapping columns first, the output shape last).
    What room is left goes to the layer names (a row's name is what one reads it by), then to
    headers on one line (`headers`: their lengths), then to the other wrapping columns in
    proportion to what they lack."""
    if floor is not None and floor <= 4:
        widths = list(natural)
        for group in (_WRAPPING, frozenset(COLUMNS) - _WRAPPING - {"output_shape"}, frozenset({"output_shape"})):
            members = [i for i, c in enumerate(columns) if c in group]
            while sum(widths) > budget and members and max(widths[i] for i in members) > floor:
                widths[max(members, key=lambda i: widths[i])] -= 1
        return widths
    widths = list(natural) if floor is None else [min(n, floor) if c in _WRAPPING else n
                                                  for c, n in zip(columns, natural)]
    if sum(widths) > budget:
        return None
    if "layer" in columns:
        first = columns.index("layer")
        widths[first] = max(widths[first], min(natural[first], widths[first] + budget - sum(widths)))
    for i, header in enumerate(headers):
        if widths[i] < header <= widths[i] + budget - sum(widths):
            widths[i] = header
    lacking = [max(0, n - w) for n, w in zip(natural, widths)]
    spare = budget - sum(widths)
    widths = [w + min(k, spare * k // max(1, sum(lacking))) for w, k in zip(widths, lacking)]
    for i in sorted(range(len(widths)), key=lambda i: widths[i] - natural[i]):  # what flooring left over
        if sum(widths) < budget and widths[i] < natural[i]:
            widths[i] += 1
    return widths


def _wrap_cell(text: str, width: int, hang: int = 2) -> list[str]:
    """`text` in lines of at most `width`. A list breaks after a ", " (any space) near enough to
    the end of the line and goes on at the text's indentation; a name breaks after a ".", "+" or
    "_" (or before a ".") or else anywhere, and goes on `hang` further in (at most half the
    width), so that it reads as one name."""
    if len(text) <= width:
        return [text]
    indent = len(text) - len(text.lstrip(" "))
    level, deeper = " " * min(indent, width // 2), " " * min(indent + hang, width // 2)
    out, rest = [], text
    while len(rest) > width:
        start = len(rest) - len(rest.lstrip(" "))  # never break inside the indentation
        spaces = [p + 1 for p in range(start, width) if rest[p] == " "]
        commas = [p for p in spaces if rest[p - 2] == ","]  # a list's items before other words
        spaces = commas if commas and max(commas) >= width // 3 else spaces
        names = [p + 1 for p in range(start, width) if rest[p] in ".+_"] + \
                [p for p in range(start + 1, width + 1) if rest[p] == "."]
        cut, prefix = width, deeper
        if spaces and max(spaces) >= max(start + 2, width // 3):
            cut, prefix = max(spaces), level
        elif names and max(names) >= max(start + 2, width // 3):
            cut = max(names)
        out.append(rest[:cut].rstrip())
        rest = prefix + rest[cut:].lstrip(" ")
    out.append(rest)
    return out


# ---- JSON --------------------------------------------------------------------------------------


def summary_json(graph: Graph, depth: int | None = None) -> dict[str, Any]:
    """The summary as plain data (str, int, float, bool, None, lists, dicts; `json.dumps` takes
    it as it is). Format "cnnc.summary/1"; a new key may appear, none changes meaning:

    - `format`, `source` (the program's name), `passes` (the optimization passes the graph went
      through, in order; [] at -O0), `inputs` and `outputs` (name → shape; an output also names
      its `layer`).
    - `layers`: the rows of `summary_rows(graph, depth)` in tree order (every row by default), each
      {`name`, `kind` ("layer" | "block"), `level` (0: top level), `parent` (the enclosing
      block's name, or null), `children` (a block's direct children, also where `depth` leaves
      their rows out; [] for a layer), `op` (a
      layer's op, fused ones joined like "conv+bn+relu"; a block's size), `ops` (a layer's op and
      what it absorbed, full op names; a block's distinct ops), `output_shape` (the batch
      dimension as its symbol, e.g. "N"), `params`, `trainable_params`, `macs` (per example),
      `kernel`, `stride`, `dilation` ([h, w] for windowed ops, else null), `inputs` (full names of
      the layers read; a block: those outside it), `receptive_field` ([h, w] in input pixels, or
      null without a spatial field), `whole_input` (true where one output position sees the whole
      input: then `receptive_field` is the input's size and `cumulative_stride` null),
      `cumulative_stride` ([h, w], numbers: a float where upsampling made it a fraction),
      `activation_bytes` (the output, float32, one example; a block: all its layers'),
      `layer_count` (layers it holds; 1 for a layer)}.
    - `totals`: {`layers`, `params` (read by the layers, each once), `user_params` (the user's,
      net.params: equal to `params` before optimization), `trainable_params` and
      `non_trainable_params` (of the user's: batch norm running statistics are not trained),
      `macs`, `param_bytes` (of `params`, float32),
      `activation_bytes` (all layer outputs), `peak_activation_bytes` ({`without_planning`,
      `with_plan_memory`}, batch 1)}.
    """
    totals = _totals(graph)
    info = graph.info
    return {
        "format": JSON_FORMAT,
        "source": info.source_name,
        "passes": list(info.passes_run),
        "inputs": {name: {"shape": _shape(graph.shape(name))} for name in info.inputs},
        "outputs": {out: {"layer": node, "shape": _shape(graph.shape(node))} for out, node in info.outputs.items()},
        "layers": [_row_json(row) for row in summary_rows(graph, depth)],
        "totals": {"layers": totals.layers, "params": totals.params, "user_params": totals.user_params,
                   "trainable_params": totals.trainable_params,
                   "non_trainable_params": totals.user_params - totals.trainable_params, "macs": totals.macs,
                   "param_bytes": 4 * totals.params, "activation_bytes": totals.activation_bytes,
                   "peak_activation_bytes": {"without_planning": totals.peak_unplanned,
                                             "with_plan_memory": totals.peak_planned}},
    }


def _shape(shape: tuple) -> list:
    return [d if isinstance(d, str) else int(d) for d in shape]


def _number(value: Fraction) -> int | float:
    return int(value) if value.denominator == 1 else float(value)


def _row_json(row: Row) -> dict[str, Any]:
    win, field = row.window, row.field
    return {"name": row.name, "kind": row.kind, "level": row.level, "parent": row.parent,
            "children": list(row.children), "op": row.op, "ops": list(row.ops),
            "output_shape": _shape(row.output_shape), "params": row.params,
            "trainable_params": row.trainable_params, "macs": row.macs,
            "kernel": None if win is None else list(win.kernel),
            "stride": None if win is None else list(win.stride),
            "dilation": None if win is None else list(win.dilation),
            "inputs": list(row.inputs),
            "receptive_field": None if field is None else list(field.size),
            "whole_input": bool(field is not None and field.whole),
            "cumulative_stride": None if field is None or field.jump is None else [_number(j) for j in field.jump],
            "activation_bytes": row.activation_bytes, "layer_count": row.layers}
