"""Unique names, with one numbering convention for every name cnnc makes up.

`unique(base, taken)` is `base` while it is free, else `base_2`, `base_3`, …: the first one that
`taken` lacks, so `base_2` is the second thing wanting to be called `base`. Callers keep their
own notion of what is taken and of how a base is made legal (a Python identifier, a `.cnn`
identifier, an ONNX value name); this module only numbers.
"""
from __future__ import annotations

from collections.abc import Container, Iterable
from itertools import chain, count


def first_free(candidates: Iterable[str], taken: Container[str]) -> str:
    """The first of `candidates` (an endless iterable) that `taken` lacks."""
    return next(candidate for candidate in candidates if candidate not in taken)


def unique(base: str, taken: Container[str]) -> str:
    """`base` if `taken` lacks it, else the first free one of `base_2`, `base_3`, …"""
    return first_free(chain([base], (f"{base}_{number}" for number in count(2))), taken)
