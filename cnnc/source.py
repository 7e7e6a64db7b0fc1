"""Source files and spans: where a piece of the program came from, and how to show it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SourceFile:
    """The text of one `.cnn` file and the name used for it in messages and generated code."""

    name: str
    text: str
    path: Path | None = None

    def lines(self) -> list[str]:
        """The lines as the parser counts them: ended by \n only, so a form feed or U+2028 (which
        `str.splitlines` would also split at) stays inside its line."""
        lines = self.text.split("\n")
        if lines[-1] == "":  # the newline that ends the last line starts no line
            lines.pop()
        return [line.removesuffix("\r") for line in lines]

    def line(self, number: int) -> str:
        """The text of 1-based line `number`, without its newline ('' when out of range)."""
        lines = self.lines()
        return lines[number - 1] if 1 <= number <= len(lines) else ""


@dataclass(frozen=True)
class Span:
    """A region of a source file; lines and columns are 1-based, the end is exclusive."""

    file: SourceFile
    line: int
    column: int
    end_line: int
    end_column: int

    @property
    def location(self) -> str:
        """`file:line:column`, the prefix of every message about this span."""
        return f"{self.file.name}:{self.line}:{self.column}"

    def excerpt(self) -> str:
        """The first line of the span with a caret line under the columns it covers."""
        # Control characters (a form feed, U+2028) would break the excerpt's two lines apart.
        text = "".join(c if c.isprintable() or c == "\t" else " " for c in self.file.line(self.line))
        stop = self.end_column if self.end_line == self.line else len(text) + 1
        width = max(1, stop - self.column)
        lead = "".join(c if c == "\t" else " " for c in text[: self.column - 1])
        return f"    {text}\n    {lead}{'^' * width}"

    def __repr__(self) -> str:  # spans appear inside IR dumps; keep them short
        return f"<{self.file.name}:{self.line}:{self.column}>"


def safe_comment(text: str) -> str:
    """`text` made safe to place after `#` in generated Python: one line, printable."""
    return "".join(c if c.isprintable() else "?" for c in text)


def source_location(spans: tuple[Span, ...]) -> str:
    """`file:line[, line][, file:line]` for a node's comment: each line once, grouped by file (a
    fused node has the spans of everything it absorbed), `generated` for a node without a source."""
    if not spans:
        return "generated"
    lines: dict[str, list[int]] = {}  # file → its lines, each once, in order
    for span in spans:
        seen = lines.setdefault(span.file.name, [])
        if span.line not in seen:
            seen.append(span.line)
    return safe_comment(", ".join(f"{name}:{', '.join(map(str, numbers))}" for name, numbers in lines.items()))
