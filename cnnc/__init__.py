"""cnnc: a compiler for a small language that describes convolutional neural networks.

    import cnnc
    net = cnnc.compile("examples/resnet18.cnn")   # a path or the program text
    logits = net(image)                            # numpy in, numpy out
"""
from __future__ import annotations

__version__ = "0.1.0"

from collections.abc import Mapping  # noqa: E402

import numpy as np  # noqa: E402

from .errors import CnncError  # noqa: E402
from .frontend import SourceLike, parse  # noqa: E402
from .interpreter import eval_graph  # noqa: E402
from .runtime.network import CompiledNetwork  # noqa: E402
from .runtime.params import init_params  # noqa: E402


def compile(source: SourceLike, *, input_shapes: dict[str, tuple] | None = None,  # noqa: A001
            seed: int = 0, params: Mapping[str, np.ndarray] | None = None,
            target: str = "numpy", name: str | None = None) -> CompiledNetwork:
    """Compile a `.cnn` file (a path) or program text into a callable network.

    Parameters start from a seeded He initialization (`seed`) unless `params` gives them all.
    """
    from .codegen.python import generate

    if target != "numpy":
        raise CnncError(f"unknown target '{target}' (available: numpy)", where="target")
    graph = parse(source, input_shapes=input_shapes, name=name)
    return CompiledNetwork(graph, generate(graph), seed=seed, params=params)


__all__ = ["CnncError", "CompiledNetwork", "compile", "eval_graph", "init_params", "parse", "__version__"]
