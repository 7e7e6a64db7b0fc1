"""Copy kernel functions, with the helpers they call, out of a kernel module's source."""
from __future__ import annotations

import ast
import functools
import inspect
from types import ModuleType


@functools.cache
def _functions(module: ModuleType) -> dict[str, tuple[str, frozenset[str]]]:
    """Top-level function name → (source text, names it references)."""
    text = inspect.getsource(module)
    tree = ast.parse(text)
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            used = frozenset(n.id for n in ast.walk(node) if isinstance(n, ast.Name))
            found[node.name] = (ast.get_source_segment(text, node), used)
    return found


def kernel_sources(module: ModuleType, names: list[str]) -> list[str]:
    """Sources of `names` and every top-level function they reach, in the module's order."""
    functions = _functions(module)
    needed, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in needed or name not in functions:
            continue
        needed.add(name)
        todo.extend(functions[name][1])
    return [source for name, (source, _) in functions.items() if name in needed]


def function_names(module: ModuleType) -> set[str]:
    """Every top-level function name in the kernel module (reserved in generated code)."""
    return set(_functions(module))
