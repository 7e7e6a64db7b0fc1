"""Copy kernel functions, with the helpers they call, out of a kernel module's source.

Besides functions, a kernel module may hold top-level ``try`` blocks that bind one name (an
optional import: numpy_kernels' ``_compiled``); such a block is copied like a function, when a
copied function uses its name."""
from __future__ import annotations

import ast
import functools
import inspect
import re
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from types import ModuleType


@functools.cache
def _functions(module: ModuleType) -> dict[str, tuple[str, frozenset[str]]]:
    """Top-level function name (or a ``try`` block's one bound name) → (source text, names it
    references)."""
    text = inspect.getsource(module)
    tree = ast.parse(text)
    lines = _LINE.findall(text)
    found = {}
    for node in tree.body:
        name = node.name if isinstance(node, ast.FunctionDef) else _bound_name(node)
        if name is not None:
            used = frozenset(n.id for n in ast.walk(node) if isinstance(n, ast.Name))
            found[name] = (_segment(lines, node), used)
    return found


def _bound_name(node: ast.stmt) -> str | None:
    """The one name a top-level ``try`` block binds (by import or assignment), else None."""
    if not isinstance(node, ast.Try):
        return None
    names = {alias.asname or alias.name for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))
             for alias in n.names}
    names |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return names.pop() if len(names) == 1 else None


# A line with its ending, split as `ast.get_source_segment` splits (not at form feeds).
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def _segment(lines: list[str], node: ast.stmt) -> str:
    """`ast.get_source_segment(text, node)` given the text's lines, split once: the stdlib splits
    the whole text again, character by character, for every node (most of a cold compile's
    code generation time)."""
    end_lineno, end_col = node.end_lineno, node.end_col_offset
    if end_lineno is None or end_col is None:
        return ""
    first, last = node.lineno - 1, end_lineno - 1
    if first == last:
        return lines[first].encode()[node.col_offset:end_col].decode()
    head = lines[first].encode()[node.col_offset:].decode()
    tail = lines[last].encode()[:end_col].decode()
    return head + "".join(lines[first + 1:last]) + tail


def reachable(roots: Iterable[str], references: Mapping[str, Iterable[str]],
              stop: AbstractSet[str] = frozenset()) -> set[str]:
    """The names in `references` reachable from `roots` by following `references[name]`.

    Names not in `references` (numpy, builtins, locals) and names in `stop` are neither
    returned nor followed.
    """
    found: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in found or name in stop or name not in references:
            continue
        found.add(name)
        todo.extend(references[name])
    return found


def kernel_sources(module: ModuleType | tuple[ModuleType, ...], names: list[str]) -> list[str]:
    """Sources of `names` and every top-level function they reach, in the modules' order.

    Several modules (the training step copies forward and backward kernels) form one table: a
    function of one may call another's, and no name may be defined by two of them."""
    functions = _table(module if isinstance(module, tuple) else (module,))
    needed = reachable(names, {name: used for name, (_, used) in functions.items()})
    return [source for name, (source, _) in functions.items() if name in needed]


def _table(modules: tuple[ModuleType, ...]) -> dict[str, tuple[str, frozenset[str]]]:
    table: dict[str, tuple[str, frozenset[str]]] = {}
    for module in modules:
        for name, entry in _functions(module).items():
            if name in table:  # the copy would silently keep one of two different functions
                raise ValueError(f"kernel function {name!r} is defined in more than one of "
                                 f"{', '.join(m.__name__ for m in modules)}")
            table[name] = entry
    return table


def function_names(module: ModuleType | tuple[ModuleType, ...]) -> set[str]:
    """Every top-level function name in the kernel modules (reserved in generated code)."""
    return set(_table(module if isinstance(module, tuple) else (module,)))
