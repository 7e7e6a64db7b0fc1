"""Overriding an input's declared shape (`input_shapes=`, `--input-shape`).

One rule for the two places that apply it: elaboration (`cnnc.parse`) and `reshape_inputs`
after dense_to_conv. Each raises its own error, positioned where it knows the input from.
"""
from __future__ import annotations

from collections.abc import Sequence

from .shapes import Shape


def override_input_shape(declared: Shape, given: Sequence) -> Shape | None:
    """The shape an input declared as `declared` takes when `given` overrides it, or None when
    `given` does not fit: it must have the same rank and positive sizes, and only its batch (first)
    dimension may be a name. A concrete batch given for a symbolic one keeps the symbol: a
    concrete batch is still any batch."""
    if len(given) != len(declared) or any(isinstance(d, str) or int(d) < 1 for d in given[1:]):
        return None
    batch = given[0]
    if isinstance(declared[0], str) and not isinstance(batch, str):
        batch = declared[0]
    return (batch if isinstance(batch, str) else int(batch), *(int(d) for d in given[1:]))
