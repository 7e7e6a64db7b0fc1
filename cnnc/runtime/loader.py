"""Turn generated source into a callable, registered with linecache for readable tracebacks."""
from __future__ import annotations

import hashlib
import linecache
from collections.abc import Callable

from ..source import safe_comment


def load_forward(source: str, label: str) -> Callable:
    """Execute the generated module text and return its `forward` function.

    The text is cnnc's own output (identifiers from a safe namespace, literals via repr); no
    text from a `.cnn` file is executed.
    """
    digest = hashlib.sha1(source.encode()).hexdigest()[:12]
    filename = f"<cnnc:{safe_comment(label)}:{digest}>"  # compile() refuses NUL in a file name
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict = {"__name__": f"cnnc_generated_{digest}", "__file__": filename}
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - generated code, see docstring
    return namespace["forward"]
