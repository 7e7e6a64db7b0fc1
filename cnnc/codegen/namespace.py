"""Safe, unique Python identifiers for names that come from a `.cnn` file.

No text from a source file reaches generated code except through `Namespace.name` (which
keeps only [A-Za-z0-9_] and avoids keywords, builtins and reserved names) or `repr`.
"""
from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Set

from ..names import unique


class Namespace:
    """Maps arbitrary strings to distinct legal identifiers, deterministically."""

    def __init__(self, reserved: Set[str] = frozenset()):
        self._taken = set(reserved) | set(dir(builtins)) | set(keyword.kwlist) | set(keyword.softkwlist)
        self._names: dict[str, str] = {}

    def name(self, key: str) -> str:
        if key not in self._names:
            base = re.sub(r"\W", "_", key, flags=re.ASCII).strip("_") or "v"
            if not base[0].isalpha():
                base = f"v_{base}"
            candidate = unique(base, self._taken)
            self._taken.add(candidate)
            self._names[key] = candidate
        return self._names[key]
