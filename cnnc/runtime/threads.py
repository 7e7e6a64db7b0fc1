"""Using every core: a batch split into parts that run at once, BLAS single-threaded in each.

NumPy runs its elementwise passes (padding, im2col copies, Winograd's tile gathers, bias,
activations, pooling) on one core; only its BLAS calls use more. On the 2-core machine of
BENCHMARKS.md that left one core idle for about half of every forward pass. Running the parts of a
batch in as many Python threads as BLAS would have used, each calling a single-threaded BLAS
(NumPy releases the GIL in both), keeps every core busy in every pass: ResNet-18/50, VGG-16,
MobileNetV2 and GoogLeNet at batch 8 ran 1.3-1.7x faster (docs/kernels.md, "Threads").

The split is exact by construction: every op of the IR treats the examples of a batch
independently (the shape rules refuse reducing, slicing, concatenating or permuting the batch
axis), so the parts' outputs joined along the batch axis are the outputs of the whole batch.

BLAS's thread count is process-wide state. threadpoolctl sets it (pure Python, no dependencies;
it reads and sets OpenBLAS's, MKL's or BLIS's own count); while any split run is in progress it
stays 1 and it is restored when the last one ends, so concurrent runs from several threads
neither oversubscribe the cores nor leave it changed. Without threadpoolctl runs stay serial.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np

_lock = threading.Lock()
# users: split runs in progress; saved: the BLAS libraries and the thread counts the last one restores
_state: dict[str, Any] = {"users": 0, "saved": ([], []), "controller": None}


def _controller() -> Any:
    """threadpoolctl's controller of the process's thread pools (made once), or None without it."""
    if _state["controller"] is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            return None
        _state["controller"] = ThreadpoolController()
    return _state["controller"]


def _blas_libraries(controller: Any) -> list[Any]:
    return controller.select(user_api="blas").lib_controllers


def _thread_counts(libraries: list[Any]) -> list[int]:
    return [library.num_threads for library in libraries]


def _current_blas_threads(controller: Any) -> int:
    return max(_thread_counts(_blas_libraries(controller)), default=1)


def _set_blas_threads(libraries: list[Any], counts: list[int]) -> None:
    """Set each BLAS library's thread count, from whichever thread runs this. threadpoolctl lets
    only one "controlling" thread change a shared (non-OpenMP) OpenBLAS pool and silently ignores
    the others; the last split run to end, which restores the count, may run in another thread
    than the first, which set it: take control for the call and give it back."""
    for library, count in zip(libraries, counts):
        release = getattr(type(library), "clear_controlling_thread", None)
        if release is not None:
            release(force=True)
        library.set_num_threads(count)
        if release is not None:
            release()


def blas_threads() -> int:
    """The threads NumPy's BLAS is set to use (its own default, or OPENBLAS_NUM_THREADS and the
    like; while split runs hold it at 1, the count they will restore); 1 when threadpoolctl is not
    installed or finds no BLAS: split runs need both."""
    with _lock:
        controller = _controller()
        if controller is None:
            return 1
        return max(_state["saved"][1], default=1) if _state["users"] else _current_blas_threads(controller)


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Hold BLAS at one thread for the block (shared by concurrent blocks: restored by the last)."""
    with _lock:
        if _state["users"] == 0:
            libraries = _blas_libraries(_controller())
            _state["saved"] = (libraries, _thread_counts(libraries))
            _set_blas_threads(libraries, [1] * len(libraries))
        _state["users"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["users"] -= 1
            if _state["users"] == 0:
                _set_blas_threads(*_state["saved"])


# A part must be worth its thread: starting the threads and switching BLAS's count cost about a
# millisecond, which LeNet-5 (0.4 M multiply-accumulates an image) at batch 8 paid 3x over (0.5 →
# 1.9 ms split); at batch 512 splitting it was even, ResNet-18 at batch 2 (1.8 G a part) 1.47x.
MIN_PART_MACS = 100_000_000


def split_batch(forward: Callable[..., dict[str, np.ndarray]], params: dict[str, np.ndarray],
                inputs: Sequence[np.ndarray], threads: int,
                macs_per_example: int | None = None) -> dict[str, np.ndarray]:
    """`forward(params, *inputs)` computed as up to `threads` parts of the batch at once, each in
    a thread of its own with BLAS single-threaded, the outputs joined along the batch axis; with
    `macs_per_example`, no more parts than have MIN_PART_MACS of work each. Serial (one call) for
    one example or one thread, or without threadpoolctl."""
    n = len(inputs[0])
    parts = min(threads, n)
    if macs_per_example is not None:
        parts = min(parts, n * macs_per_example // MIN_PART_MACS)
    if parts <= 1 or _controller() is None:
        return forward(params, *inputs)
    bounds = [n * k // parts for k in range(parts + 1)]

    def part(k: int) -> dict[str, np.ndarray]:
        return forward(params, *(x[bounds[k]:bounds[k + 1]] for x in inputs))

    # Fresh threads per run: as fast as a kept pool when measured (ResNet-50 batch 8, ResNet-18
    # batch 2), and nothing outlives the run.
    with single_threaded_blas(), ThreadPoolExecutor(parts, thread_name_prefix="cnnc-batch") as pool:
        results = list(pool.map(part, range(parts)))
    return {name: np.concatenate([result[name] for result in results]) for name in results[0]}
