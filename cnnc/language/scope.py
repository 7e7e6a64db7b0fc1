"""Hierarchical layer names: `layer2.1.conv1`, assigned like PyTorch modules would be.

Inside a scope an unnamed layer of kind `conv` gets `conv1`, `conv2`, … (the first number not
yet taken); `as NAME` names it explicitly; repetition and `[...]` sequences number their
children 0, 1, 2, … like torch.nn.Sequential.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import count

from ..errors import CnncNameError
from ..source import Span


@dataclass
class _Scope:
    prefix: str
    used: dict[str, Span | None] = field(default_factory=dict)
    # base → the lowest number that may still be free: names are never released, so every
    # number below it is taken and the search resumes there (linear, not quadratic, naming).
    next_number: dict[str, int] = field(default_factory=dict)


class Namer:
    """Hands out unique, stable layer names within nested scopes."""

    def __init__(self) -> None:
        self._stack = [_Scope("")]

    def _qualify(self, local: str) -> str:
        prefix = self._stack[-1].prefix
        return f"{prefix}.{local}" if prefix else local

    def claim(self, base: str, explicit: str | None, span: Span) -> str:
        """Reserve a local name in the current scope and return the full dotted name."""
        scope = self._stack[-1]
        if explicit is not None:
            if explicit in scope.used:
                earlier = scope.used[explicit]
                where = f" (first used at {earlier.location})" if earlier else ""
                raise CnncNameError(f"layer name '{self._qualify(explicit)}' is already used{where}", span)
            local = explicit
        else:
            # Not names.unique's `base`, `base_2`: every unnamed layer is numbered, as PyTorch
            # numbers modules, and these names are the user's parameter names (`conv1.weight`).
            number = next(n for n in count(scope.next_number.get(base, 1)) if f"{base}{n}" not in scope.used)
            scope.next_number[base] = number + 1
            local = f"{base}{number}"
        scope.used[local] = span
        return self._qualify(local)

    @contextmanager
    def scope(self, full_name: str) -> Iterator[None]:
        """Names claimed inside are children of `full_name`."""
        self._stack.append(_Scope(full_name))
        try:
            yield
        finally:
            self._stack.pop()
