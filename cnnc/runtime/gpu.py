"""Running a CompiledNetwork on an NVIDIA GPU with CuPy: `net.to("gpu")`, `cnnc run --gpu`.

The network's CuPy module (cnnc/codegen/cupy.py) is generated and executed here; its `Runner`
(copied from cnnc/kernels/cupy_kernels.py, the same code a standalone `cnnc compile --target
cupy` module uses) keeps the parameters on the device, preallocates buffers and replays CUDA
graphs. Parameters are uploaded once and again only after `net.params` changes (copied into
the same device arrays, so captured graphs stay valid).

Without CuPy, or with CuPy but no usable GPU, every entry point raises a one-line CnncError.
"""
from __future__ import annotations

import threading
from typing import Any

from ..errors import CnncError, CnncInputError
from .loader import load_module

GPU_NAMES = ("gpu", "cuda", "cupy")
CPU_NAMES = ("cpu", "numpy")
OPTIONS = ("tf32", "cuda_graph", "outputs", "workspace_limit")


def cupy_status() -> tuple[Any, str | None]:
    """(cupy module, None) when CuPy imports and sees a CUDA device, else (None, why not)."""
    try:
        import cupy
    except ImportError as error:
        return None, (f"CuPy is not installed ({error}); install the wheel matching your CUDA driver, "
                      f"e.g. pip install cupy-cuda12x (or pip install 'cnnc[gpu]')")
    except Exception as error:  # noqa: BLE001 - a broken CuPy install (missing CUDA libraries, ...)
        return None, f"CuPy could not be imported ({type(error).__name__}: {_one_line(error)})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # noqa: BLE001 - CUDARuntimeError: no driver, no device
        return None, f"CuPy finds no usable CUDA GPU ({_one_line(error)})"
    if count < 1:
        return None, "CuPy finds no CUDA GPU on this machine"
    return cupy, None


def _one_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text[:300] + ("…" if len(text) > 300 else "")


def gpu_available() -> bool:
    return cupy_status()[0] is not None


def require_gpu(where: str = "gpu") -> Any:
    """The cupy module, or a one-line CnncError saying why the GPU backend cannot run here."""
    cupy, reason = cupy_status()
    if cupy is None:
        raise CnncError(f"the GPU backend needs CuPy and an NVIDIA GPU: {reason}", where=where)
    return cupy


def device_name() -> str:
    cupy = require_gpu()
    device = cupy.cuda.Device()
    try:
        name = cupy.cuda.runtime.getDeviceProperties(device.id)["name"]
        name = name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # noqa: BLE001 - only used in messages
        name = "CUDA device"
    return f"{name} (device {device.id}, compute capability {device.compute_capability})"


class GpuExecutor:
    """A network's CuPy module, its device parameters and its Runner."""

    def __init__(self, net, *, tf32: bool = False, cuda_graph: bool = True, outputs: str = "numpy",
                 workspace_limit: int | None = None):
        self.cupy = require_gpu()
        from ..codegen.cupy import generate

        if outputs not in ("numpy", "cupy"):
            raise CnncError(f"outputs must be 'numpy' or 'cupy', got {outputs!r}", where="gpu")
        self.net = net
        self.source = generate(net.graph, tf32=tf32)
        self.module = load_module(self.source, net.graph.info.source_name, target="cupy")
        self.options = {"tf32": bool(tf32), "cuda_graph": bool(cuda_graph), "outputs": outputs,
                        "workspace_limit": workspace_limit or self.module["WORKSPACE_LIMIT"]}
        self._version = -1
        self.runner: Any = None  # the generated module's Runner, made on the first call
        self._lock = threading.Lock()  # one stream and one set of buffers: one call at a time

    def _sync_params(self) -> None:
        """Upload the parameters the first time, and again (in place) after they change."""
        values = self.net.runtime_params()
        version = self.net.params.version
        if self.runner is None:
            params = self.module["upload_params"](values)
            self.runner = self.module["runner"](params, **self.options)
        elif version != self._version:
            self.runner.update_params(values)
        self._version = version

    def run(self, arrays: list) -> dict:
        with self._lock:
            self._sync_params()
            return self.runner(*arrays)

    def device_array(self, name: str, value):
        """A device input (CuPy, or anything with __cuda_array_interface__) as a float32 C-contiguous
        CuPy array."""
        try:
            return self.cupy.ascontiguousarray(self.cupy.asarray(value), dtype=self.cupy.float32)
        except (TypeError, ValueError) as error:
            raise CnncInputError(f"input '{name}' must be a numeric array ({error})", where=f"input '{name}'") \
                from None

    @property
    def status(self) -> dict:
        """Per input shapes: "cuda graph" or "eager (why)"."""
        return dict(self.runner.status) if self.runner is not None else {}


def move(net, device: str, options: dict):
    """`net.to(device, **options)`: "gpu" (CuPy) or "cpu" (NumPy); returns net."""
    key = str(device).lower()
    if key in CPU_NAMES:
        if options:
            raise CnncError(f"options {', '.join(sorted(options))} only apply on the GPU", where="to")
        net._gpu = None
        net.source = net._numpy_source
        return net
    if key not in GPU_NAMES:
        raise CnncError(f"unknown device '{device}' (use 'gpu' or 'cpu')", where="to")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise CnncError(f"unknown option '{unknown[0]}' for the GPU (options: {', '.join(OPTIONS)})", where="to")
    executor = GpuExecutor(net, **options)
    net._gpu = executor
    net.source = executor.source
    return net
