"""Turn generated source into a module namespace, registered with linecache for readable tracebacks."""
from __future__ import annotations

import hashlib
import linecache
from collections.abc import Callable

from ..source import safe_comment


def load_module(source: str, label: str, target: str = "") -> dict:
    """Execute the generated module text and return its namespace.

    The text is cnnc's own output (identifiers from a safe namespace, literals via repr); no
    text from a `.cnn` file is executed. `label` (the source file) and `target` ("cupy"; empty
    for NumPy) name the pseudo-file a traceback shows: `<cnnc-cupy:net.cnn:1a2b3c4d5e6f>`.
    """
    digest = hashlib.sha1(source.encode()).hexdigest()[:12]
    filename = f"{_prefix(target)}{safe_comment(label)}:{digest}>"  # compile() refuses NUL in a file name
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = f"cnnc_generated_{target}_{digest}" if target else f"cnnc_generated_{digest}"
    namespace: dict = {"__name__": module, "__file__": filename}
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - generated code, see docstring
    return namespace


def _prefix(target: str) -> str:
    return f"<cnnc-{target}:" if target else "<cnnc:"


def is_generated(filename: str, target: str = "") -> bool:
    """Whether a code object's file name is one `load_module` gave generated code for `target`."""
    return filename.startswith(_prefix(target))


def load_forward(source: str, label: str) -> Callable:
    """The `forward` function of generated NumPy module text (see `load_module`)."""
    return load_module(source, label)["forward"]
