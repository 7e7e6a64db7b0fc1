"""Values that elaboration computes with: numbers, tuples, tensors, symbols and blocks."""
from __future__ import annotations

from dataclasses import dataclass

from ..ir.shapes import fmt
from ..syntax import tree as t


@dataclass(frozen=True)
class Tensor:
    """A value flowing through the network: the IR node that computes it, and its shape."""

    node: str
    shape: tuple


@dataclass(frozen=True)
class Symbol:
    """A bare name that is not bound to a value: legal only where an op expects a word (`pad=same`)."""

    name: str


@dataclass(frozen=True)
class Block:
    """A user-defined block and the module-level names it can see."""

    definition: t.BlockDef
    globals: dict


def describe(value: object) -> str:
    """How a value is named in error messages."""
    if isinstance(value, Tensor):
        return f"a tensor {fmt(value.shape)}"
    if isinstance(value, Symbol):
        return f"the undefined name '{value.name}'"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value:g}"
    if isinstance(value, str):
        return f'the string "{value}"'
    if isinstance(value, tuple):
        return f"the tuple {value}"
    if isinstance(value, Block):
        return f"the block '{value.definition.name}'"
    return repr(value)
