"""Overriding an input's declared shape (`input_shapes=`, `--input-shape`).

One rule for the two places that apply it: elaboration (`cnnc.parse`) and `reshape_inputs`
after dense_to_conv. Each raises its own error, positioned where it knows the input from.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..limits import MAX_INT
from .shapes import Shape


def _is_size(dim: object) -> bool:
    """A dimension size: an integer (not a bool, not a float) from 1 to the integer limit."""
    return isinstance(dim, (int, np.integer)) and not isinstance(dim, (bool, np.bool_)) and bool(1 <= dim <= MAX_INT)


def shown(given: object) -> str:
    """An input shape as messages show it: `(1, 3, 8, 8)` for a list or tuple, else its repr."""
    return str(tuple(given)) if isinstance(given, (tuple, list)) else repr(given)


def override_input_shape(declared: Shape, given: Sequence) -> Shape | None:
    """The shape an input declared as `declared` takes when `given` overrides it, or None when
    `given` does not fit: it must have the same rank and positive integer sizes (not a float or a
    bool), and only its batch (first) dimension may be a name. A concrete batch given for a
    symbolic one keeps the symbol: a concrete batch is still any batch."""
    if not isinstance(given, (tuple, list)) or len(given) != len(declared) \
            or not all(_is_size(d) for d in given[1:]):
        return None
    batch = given[0]
    if not (isinstance(batch, str) and batch.isidentifier()) and not _is_size(batch):
        return None  # batch 0, -3, True, 8.5, 2**70 or None is no batch size
    if isinstance(declared[0], str) and not isinstance(batch, str):
        batch = declared[0]
    return (batch if isinstance(batch, str) else int(batch), *(int(d) for d in given[1:]))
