"""cnnc: a compiler for a small language that describes convolutional neural networks.

    import cnnc
    net = cnnc.compile("examples/resnet18.cnn")   # a path or the program text
    logits = net(image)                            # numpy in, numpy out
"""
from __future__ import annotations

__version__ = "0.1.0"

from collections.abc import Mapping  # noqa: E402

import numpy as np  # noqa: E402

from .errors import CnncError, CnncErrors, CnncWarning  # noqa: E402
from .frontend import SourceLike, parse  # noqa: E402
from .interpreter import eval_graph  # noqa: E402
from .ir.graph import Graph  # noqa: E402
from .runtime.network import CompiledNetwork  # noqa: E402
from .runtime.params import init_params  # noqa: E402


def compile(source: SourceLike | Graph, *, input_shapes: dict[str, tuple] | None = None,  # noqa: A001
            seed: int = 0, params: Mapping[str, np.ndarray] | None = None,
            target: str = "numpy", name: str | None = None, optimize: int = 2,
            passes: list[str] | None = None, disable_passes: tuple[str, ...] = (), fcn: bool = False,
            verify: bool = False) -> CompiledNetwork:
    """Compile a `.cnn` file (a path), program text, or a graph `cnnc.parse` made into a callable
    network (a graph is not parsed again; give it its input shapes when parsing).

    Parameters start from a seeded He initialization (`seed`), drawn when a value is first read
    (never when `params` gives them all, or they are all replaced before); they keep the source
    program's names whatever the passes do. `optimize` is the -O level (0, 1, 2); `passes` runs
    exactly the named passes instead; `disable_passes` skips some;
    `fcn=True` turns dense layers into convolutions (it enables the level-0 pass `dense_to_conv`;
    then `input_shapes` may enlarge the input);
    `verify=True` checks every pass's output against the un-optimized graph. `target="cupy"`
    runs the network on an NVIDIA GPU (the same as `.to("gpu")` on the result; it needs CuPy).
    """
    from .codegen.python import generate

    if target not in ("numpy", "cupy"):
        raise CnncError(f"unknown target '{target}' (available: numpy, cupy)", where="target")
    if target == "cupy":  # fail before compiling when there is no GPU backend
        from .runtime.gpu import require_gpu

        require_gpu(where="target 'cupy'")
    graph = build_graph(source, input_shapes=input_shapes, name=name, optimize=optimize, passes=passes,
                        disable_passes=disable_passes, fcn=fcn, verify=verify)
    net = CompiledNetwork(graph, generate(graph), seed=seed, params=params)
    return net.to("gpu") if target == "cupy" else net


def build_graph(source: SourceLike | Graph, *, input_shapes: dict[str, tuple] | None = None, name: str | None = None,
                optimize: int = 2, passes: list[str] | None = None, disable_passes: tuple[str, ...] = (),
                fcn: bool = False, verify: bool = False, observer=None) -> Graph:
    """Parse (unless given a parsed graph) and optimize: the IR that `compile` generates code from."""
    from .passes import optimize as run_passes

    if isinstance(source, Graph):
        if input_shapes and not fcn:
            raise CnncError("a parsed graph has its input shapes already: give input_shapes to cnnc.parse",
                            where="input_shapes")
        graph = source
    else:
        # An FCN is elaborated at its declared size (where its dense layers fit), converted, and
        # only then given the larger input.
        graph = parse(source, input_shapes=None if fcn else input_shapes, name=name)
    # `fcn=True` is the public spelling of enabling the level-0 pass dense_to_conv.
    optimized = run_passes(graph, level=optimize, passes=passes, disable=tuple(disable_passes),
                           enable=("dense_to_conv",) if fcn else (), check_numerics=verify, observer=observer)
    if fcn and input_shapes:
        from .passes.fcn import reshape_inputs

        optimized = reshape_inputs(optimized, input_shapes)
    optimized.info.source_graph = graph
    return optimized


# Imported on first use, so `import cnnc` stays light: cnnc.load_torch_state_dict(net, sd).
_LAZY = {"load_torch_state_dict": "cnnc.interop.torch_weights",
         "import_onnx": "cnnc.interop.onnx_import", "export_onnx": "cnnc.interop.onnx_export",
         # Dask stays optional: cnnc.runtime.distributed imports it only when these run.
         "predict_files": "cnnc.runtime.distributed", "predict_bag": "cnnc.runtime.distributed",
         "train": "cnnc.training.trainer", "TrainConfig": "cnnc.training.trainer"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cnnc' has no attribute {name!r}")


__all__ = ["CnncError", "CnncErrors", "CnncWarning", "CompiledNetwork", "Graph", "TrainConfig", "build_graph",
           "compile", "eval_graph", "export_onnx", "import_onnx", "init_params", "load_torch_state_dict", "parse",
           "predict_bag", "predict_files", "train", "__version__"]
