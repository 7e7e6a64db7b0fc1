"""A CPU stand-in for the parts of CuPy that cnnc's CuPy kernels use, for tests without a GPU.

- Arrays are NumPy arrays (a subclass with `.data.ptr`, `.get()`, `.set()`), CuPy's array
  functions are NumPy's.
- RawKernel and ElementwiseKernel run the *actual CUDA source* of cnnc/kernels/cupy_kernels.py:
  every kernel (and every ElementwiseKernel operation, in a wrapper like CuPy's) is compiled
  once with g++ as plain C++ with a one-thread grid (the kernels are grid-stride loops, so one
  thread does every index). Launch arguments are checked against the declarations: an array for
  a pointer, np.int32 for int, np.float32 for float.
- cuBLAS's cublasGemmStridedBatchedEx is emulated in NumPy on raw pointers, column-major,
  checking the leading dimensions and that every matrix lies inside one allocated array.

- Streams are no-ops; a CUDA graph is a recording: between begin_capture() and end_capture()
  every kernel, GEMM and array operation is recorded (and run once, to produce its result's
  shape), and launch() replays the recording. Host transfers while capturing raise, as in CUDA.

What this cannot show: CuPy's own argument handling, NVRTC (nvcc compiles the same sources in
tests/test_cupy_codegen.py), real parallel execution and the real CUDA graph machinery.
tests/test_gpu.py checks those on a GPU.
"""
from __future__ import annotations

import ctypes
import hashlib
import itertools
import re
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

from cnnc.kernels import cupy_kernels

C_TYPES = {"float32": "float", "float64": "double", "int32": "int", "int64": "long long"}
ELEMENTWISE_ARRAYS = {"x", "r"}  # non-raw ElementwiseKernel parameters given as arrays (the rest: scalars)

_SHIM = r"""
#include <math.h>
#include <string.h>
#include <algorithm>
using std::max;
using std::min;
struct cnnc_dim3 { unsigned x, y, z; };
static const cnnc_dim3 blockIdx = {0, 0, 0}, threadIdx = {0, 0, 0}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
#define __global__
#define __device__
#define __forceinline__ inline
static inline float __int_as_float(int v) { float f; memcpy(&f, &v, sizeof f); return f; }
template <typename T> struct cnnc_raw { T* p; T& operator[](long long j) const { return p[j]; } };
"""


def cuda_sources() -> dict[str, str]:
    """The RawKernel sources of cupy_kernels (without the common prelude)."""
    return {n: getattr(cupy_kernels, n) for n in dir(cupy_kernels) if n.startswith("_CU_") and n != "_CU_COMMON"}


def elementwise_specs() -> list[tuple]:
    """Every ElementwiseKernel spec: the fixed ones and every epilogue variant."""
    specs = [getattr(cupy_kernels, n) for n in dir(cupy_kernels) if n.startswith("_EW_")]
    return specs + [cupy_kernels._epilogue_spec(b, r, a)
                    for b, r, a in itertools.product((False, True), (False, True), cupy_kernels._ACTIVATIONS)]


def parse_params(text: str) -> list[tuple[bool, str, str]]:
    """'raw float32 x, int32 n' -> [(raw, numpy type name, name), ...]."""
    found = []
    for declaration in text.split(","):
        words = declaration.split()
        found.append((words[0] == "raw", words[-2], words[-1]))
    return found


def elementwise_wrapper(spec) -> str:
    """A CUDA kernel standing for CuPy's ElementwiseKernel code of `spec`: `i` the flat index,
    raw parameters indexable by flat index, array parameters their element (outputs by
    reference), then a trailing `long long n` (the output's size)."""
    ins, outs, operation, name = spec
    params, body = [], []
    declared = [(p, False) for p in parse_params(ins)] + [(p, True) for p in parse_params(outs)]
    for (raw, dtype, var), is_out in declared:
        ctype = C_TYPES[dtype]
        const = "" if is_out else "const "
        if raw:
            params.append(f"{const}{ctype}* {var}_data")
            body.append(f"cnnc_raw<{const}{ctype}> {var}{{{var}_data}};")
        elif is_out:
            params.append(f"{ctype}* {var}_data")
            body.append(f"{ctype}& {var} = {var}_data[i];")
        elif var in ELEMENTWISE_ARRAYS:
            params.append(f"const {ctype}* {var}_data")
            body.append(f"const {ctype} {var} = {var}_data[i];")
        else:
            params.append(f"{ctype} {var}")
    return (f'extern "C" __global__ void {name}({", ".join(params)}, long long n) {{\n'
            "    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;"
            " i += (long long)blockDim.x * gridDim.x) {\n"
            + "".join(f"        {line}\n" for line in body) + f"        {operation};\n    }}\n}}\n")


def translation_unit() -> str:
    """Every kernel in one CUDA file (after a prelude that nvcc ignores and g++ needs)."""
    wrappers = map(elementwise_wrapper, elementwise_specs())
    return "\n".join([cupy_kernels._CU_COMMON, *cuda_sources().values(), *wrappers])


def kernel_params(source: str, name: str) -> list[str]:
    """C types of the parameters of `extern "C" __global__ void name(...)` in `source`."""
    match = re.search(rf'extern "C" __global__ void {name}\((.*?)\)\s*\{{', source, re.S)
    if not match:
        raise AssertionError(f"no kernel {name} in the source")
    return [" ".join(p.replace("__restrict__", "").split()[:-1]) for p in match.group(1).split(",")]


_LIBRARY: list = []


def library() -> ctypes.CDLL:
    """The kernels compiled for the CPU with g++ (once per process, cached on disk by content)."""
    if not _LIBRARY:
        text = _SHIM + "#define __restrict__ __restrict\n" + translation_unit()
        digest = hashlib.sha1(text.encode()).hexdigest()[:16]
        folder = Path(tempfile.gettempdir()) / "cnnc-cupy-emulator"
        folder.mkdir(exist_ok=True)
        path = folder / f"kernels-{digest}.so"
        if not path.exists():
            source = folder / f"kernels-{digest}.cpp"
            source.write_text(text)
            partial = path.with_suffix(f".{id(text)}.tmp")
            subprocess.run(["g++", "-O1", "-shared", "-fPIC", "-Wall", "-Werror", "-Wno-unused-variable",
                            "-o", str(partial), str(source)], check=True, capture_output=True, text=True)
            partial.replace(path)
        _LIBRARY.append(ctypes.CDLL(str(path)))
    return _LIBRARY[0]


# ---- arrays ------------------------------------------------------------------------------------

_ALLOCATIONS: list = []  # (start, end) byte ranges of every array created through the emulator
_CAPTURE: list = []  # [recording] while a stream captures


def _run(work):
    """Run `work()` now, and record it too when a stream is capturing."""
    result = work()
    if _CAPTURE:
        _CAPTURE[0].append(work)
    return result


def _no_transfer_while_capturing(what: str):
    if _CAPTURE:
        raise RuntimeError(f"cudaErrorStreamCaptureUnsupported: {what} while the stream is capturing")


class Array(np.ndarray):
    """A NumPy array with CuPy's `.data.ptr`, `.get()` and `.set()`."""

    @property
    def data(self):  # noqa: D401 - CuPy's MemoryPointer stand-in
        return types.SimpleNamespace(ptr=self.__array_interface__["data"][0])

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.data.ptr, False), "version": 3}

    def get(self, stream=None, **kwargs):
        _no_transfer_while_capturing("a device-to-host copy")
        return np.array(self).view(np.ndarray)

    def set(self, value, stream=None):
        _no_transfer_while_capturing("a host-to-device copy")
        self[...] = value

    def copy(self, order="C"):
        result = np.ndarray.copy(self, order=order)
        if _CAPTURE:
            _CAPTURE[0].append(lambda: np.copyto(result, self))
        return _track(result)

    def max(self, axis=None, out=None, keepdims=False, **kwargs):
        return self._reduction(np.ndarray.max, axis, out, keepdims)

    def sum(self, axis=None, dtype=None, out=None, keepdims=False, **kwargs):
        return self._reduction(np.ndarray.sum, axis, out, keepdims)

    def _reduction(self, method, axis, out, keepdims):
        base = self.view(np.ndarray)
        if out is None:
            out = _track(np.asarray(method(base, axis=axis, keepdims=keepdims)))
        else:
            method(base, axis=axis, out=out.view(np.ndarray), keepdims=keepdims)
        if _CAPTURE:
            _CAPTURE[0].append(lambda: method(base, axis=axis, out=out.view(np.ndarray), keepdims=keepdims))
        return out


def _track(array: np.ndarray) -> Array:
    base = array if array.base is None else array.base
    if isinstance(base, np.ndarray):
        start = base.__array_interface__["data"][0]
        _ALLOCATIONS.append((start, start + base.nbytes, base))
        del _ALLOCATIONS[:-4096]
    return array.view(Array)


def _wrap(result):
    return result.view(Array) if isinstance(result, np.ndarray) and not isinstance(result, Array) else result


def _inside_an_allocation(start: int, end: int) -> bool:
    return any(lo <= start and end <= hi for lo, hi, _ in _ALLOCATIONS)


# ---- kernels -------------------------------------------------------------------------------------


class RawKernel:
    def __init__(self, code: str, name: str, **options):
        self.code, self.name = code, name
        self.types = kernel_params(code, name)
        assert code.startswith(cupy_kernels._CU_COMMON) and code[len(cupy_kernels._CU_COMMON):] in \
            cuda_sources().values(), f"{name}: unknown source"

    def __call__(self, grid, block, args, **options):
        assert len(args) == len(self.types), f"{self.name}: {len(args)} arguments for {len(self.types)}"
        assert all(isinstance(d, int) and d >= 1 for d in (*grid, *block)), (grid, block)
        converted = [_argument(self.name, a, t) for a, t in zip(args, self.types)]
        function = getattr(library(), self.name)
        _run(lambda: function(*converted))


def _argument(kernel: str, value, ctype: str):
    if ctype.endswith("*"):
        assert isinstance(value, np.ndarray) and value.dtype == np.float32 and value.flags.c_contiguous, \
            f"{kernel}: a C-contiguous float32 array is needed for {ctype}, got {type(value).__name__}"
        return ctypes.c_void_p(value.__array_interface__["data"][0])
    bare = ctype.replace("const", "").strip()
    expected = {"int": np.int32, "float": np.float32, "long long": np.int64, "double": np.float64}[bare]
    assert type(value) is expected, f"{kernel}: {bare} needs {expected.__name__}, got {type(value).__name__}"
    return {"int": ctypes.c_int, "float": ctypes.c_float, "long long": ctypes.c_longlong,
            "double": ctypes.c_double}[bare](value.item())


class ElementwiseKernel:
    def __init__(self, in_params, out_params, operation, name, **options):
        self.spec = (in_params, out_params, operation, name)
        assert self.spec in elementwise_specs(), f"{name}: unknown spec"
        self.ins, self.outs = parse_params(in_params), parse_params(out_params)

    def __call__(self, *args):
        assert len(args) == len(self.ins) + len(self.outs), f"{self.spec[3]}: {len(args)} arguments"
        output = args[-1]
        assert isinstance(output, np.ndarray) and output.flags.c_contiguous and output.dtype == np.float32
        converted = []
        for (raw, dtype, var), value in zip(self.ins + self.outs, args):
            if raw or var in ELEMENTWISE_ARRAYS or value is output:
                assert isinstance(value, np.ndarray) and value.dtype == np.float32 and value.flags.c_contiguous
                if not raw:  # elementwise operands: no broadcasting in cnnc's calls
                    assert value.shape == output.shape, (self.spec[3], var, value.shape, output.shape)
                converted.append(ctypes.c_void_p(value.__array_interface__["data"][0]))
            else:
                converted.append(_argument(self.spec[3], value, C_TYPES[dtype]))
        function, size = getattr(library(), self.spec[3]), ctypes.c_longlong(output.size)
        _run(lambda: function(*converted, size))
        return output


# ---- cuBLAS ------------------------------------------------------------------------------------


def _matrix(pointer: int, rows: int, cols: int, ld: int) -> np.ndarray:
    """The column-major rows×cols matrix with leading dimension `ld` at a float pointer."""
    assert ld >= max(1, rows), f"leading dimension {ld} < rows {rows}"
    count = (cols - 1) * ld + rows
    assert _inside_an_allocation(pointer, pointer + 4 * count), "a GEMM operand runs outside its array"
    flat = np.frombuffer((ctypes.c_float * count).from_address(pointer), dtype=np.float32)
    return np.lib.stride_tricks.as_strided(flat, shape=(rows, cols), strides=(4, 4 * ld))


def gemm_strided_batched_ex(handle, transa, transb, m, n, k, alpha, a, atype, lda, stride_a, b, btype, ldb,
                            stride_b, beta, c, ctype, ldc, stride_c, batch, compute, algo):
    """cublasGemmStridedBatchedEx: C_i = alpha op(A_i) op(B_i) + beta C_i, column-major."""
    assert atype == btype == ctype == 0 and compute in (68, 77) and algo == -1
    alpha = ctypes.c_float.from_address(alpha).value  # host pointer mode: read at the call
    beta = ctypes.c_float.from_address(beta).value
    _run(lambda: _gemm_now(transa, transb, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc,
                           stride_c, batch))


def _gemm_now(transa, transb, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc, stride_c, batch):
    for i in range(batch):
        op_a = _matrix(a + 4 * i * stride_a, *((k, m) if transa else (m, k)), lda)
        op_b = _matrix(b + 4 * i * stride_b, *((n, k) if transb else (k, n)), ldb)
        result = alpha * (np.ascontiguousarray(op_a.T if transa else op_a)
                          @ np.ascontiguousarray(op_b.T if transb else op_b))
        target = _matrix(c + 4 * i * stride_c, m, n, ldc)
        target[...] = result if beta == 0 else result + beta * target


# ---- the module ----------------------------------------------------------------------------------


def _asarray(x, dtype=None):
    if isinstance(x, Array) and (dtype is None or x.dtype == dtype):
        return x
    _no_transfer_while_capturing("a host-to-device copy")
    return _track(np.array(x, dtype=dtype))


def _ascontiguousarray(x, dtype=None):
    if isinstance(x, Array):
        if x.flags.c_contiguous and (dtype is None or x.dtype == dtype):
            return x
        result = _track(np.ascontiguousarray(x, dtype=dtype))  # a device-side copy
        if _CAPTURE:
            _CAPTURE[0].append(lambda: np.copyto(result, x))
        return result
    _no_transfer_while_capturing("a host-to-device copy")
    return _track(np.array(x, dtype=dtype, order="C"))


def _deferred(function):
    """A NumPy function as an array operation: run now (for the result) and recorded with out=."""
    def call(*args, out=None, **kwargs):
        if out is not None:
            result = function(*args, out=out, **kwargs)
        else:
            result = _track(np.asarray(function(*args, **kwargs)))
        if _CAPTURE:
            _CAPTURE[0].append(lambda: function(*args, out=result, **kwargs))
        return _wrap(result)
    return call


class Graph:
    def __init__(self, recording):
        self.recording = recording

    def launch(self, stream=None):
        for work in self.recording:
            work()


class Stream:
    """No-op stream; capture records the work (see the module docstring)."""

    def __init__(self, non_blocking=False, null=False):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self):
        if _CAPTURE:
            raise RuntimeError("cudaErrorStreamCaptureUnsupported: synchronize while capturing")

    def record(self, event=None):
        return object()

    def wait_event(self, event):
        pass

    def begin_capture(self, mode=None):
        assert not _CAPTURE, "already capturing"
        _CAPTURE.append([])

    def end_capture(self):
        assert _CAPTURE, "not capturing"
        return Graph(_CAPTURE.pop())


def fake_cupy() -> types.ModuleType:
    """A `cupy` module for cnnc's CuPy kernels, on the CPU."""
    cp = types.ModuleType("cupy")
    cp.float32 = np.float32
    cp.ndarray = Array
    cp.empty = lambda shape, dtype=np.float32: _track(np.empty(shape, dtype=dtype))
    cp.asarray = _asarray
    cp.ascontiguousarray = _ascontiguousarray
    cp.asnumpy = lambda x: x.get() if isinstance(x, Array) else np.array(x)
    for name in ("add", "multiply", "subtract", "divide", "exp", "amax", "mean", "sqrt", "clip", "sum", "where",
                 "matmul"):
        setattr(cp, name, _deferred(getattr(np, name)))
    cp.copyto = lambda dst, src: _run(lambda: np.copyto(dst, src))
    cp.RawKernel = RawKernel
    cp.ElementwiseKernel = ElementwiseKernel
    allocator = [lambda size: size]
    cp.cuda = types.SimpleNamespace(
        device=types.SimpleNamespace(get_cublas_handle=lambda: 0),
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
        Stream=Stream, get_current_stream=lambda: Stream(),
        get_allocator=lambda: allocator[0], set_allocator=lambda f: allocator.__setitem__(0, f))
    return cp


def fake_cublas_modules() -> dict[str, types.ModuleType]:
    cublas = types.ModuleType("cupy_backends.cuda.libs.cublas")
    cublas.CUBLAS_COMPUTE_32F = 68
    cublas.CUBLAS_COMPUTE_32F_FAST_TF32 = 77
    cublas.gemmStridedBatchedEx = gemm_strided_batched_ex
    modules = {name: types.ModuleType(name) for name in ("cupy_backends", "cupy_backends.cuda",
                                                          "cupy_backends.cuda.libs")}
    modules["cupy_backends.cuda.libs"].cublas = cublas
    modules["cupy_backends.cuda.libs.cublas"] = cublas
    return modules


def install(monkeypatch) -> types.ModuleType:
    """Put the emulated `cupy` (and cuBLAS) in sys.modules for a test; returns the cupy module."""
    cp = fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", cp)
    for name, module in fake_cublas_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    return cp


def kernels_namespace(names: list[str], cp) -> dict:
    """The kernels `names` as code generation copies them, executed against the emulated cupy."""
    from cnnc.codegen.cupy import kernel_sources

    namespace = {"__name__": "emulated_kernels", "cp": cp, "np": np, "math": __import__("math"),
                 "os": __import__("os"), "WORKSPACE_LIMIT": cupy_kernels.WORKSPACE_LIMIT}
    exec(compile("\n\n".join(kernel_sources(names)), "emulated_kernels", "exec"), namespace)  # noqa: S102
    return namespace
