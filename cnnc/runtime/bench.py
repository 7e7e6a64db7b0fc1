"""`cnnc bench`: latency and throughput of a compiled network at chosen batch sizes.

Each batch size gets its own random input (seeded), `warmup` untimed calls (the first call
allocates, fills caches, starts BLAS threads and, on a GPU, captures the CUDA graph), then
`repeat` timed calls of `net.run`, each timed alone with `time.perf_counter`. The table gives
the median, the interquartile range (the middle half of the runs) and the extremes, the median
per example and the throughput that the median implies.
"""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass

from .inputs import random_input
from .network import CompiledNetwork
from .threads import MIN_PART_MACS

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# Read by OpenBLAS when it loads: the kernel set to run, and the cache size it blocks and splits
# its GEMMs for (this machine's environment set Haswell and 512 KB on a Zen 5 with AVX-512 and
# 1 MB of L2 per core: 2x slower GEMMs, and some shapes slower on two threads than on one).
OPENBLAS_TUNING = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


@dataclass(frozen=True)
class Timing:
    batch: int
    times_ms: tuple[float, ...]  # every timed run, in order
    warmup_ms: tuple[float, ...]  # the untimed warm-up runs, for the record (the first is the slowest)

    @property
    def median(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def iqr(self) -> float:
        """The spread of the middle half of the runs (0 with fewer than two runs)."""
        if len(self.times_ms) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.times_ms, n=4, method="inclusive")
        return q3 - q1

    @property
    def per_example(self) -> float:
        return self.median / self.batch

    @property
    def throughput(self) -> float:
        """Examples per second at the median time."""
        return 1000.0 * self.batch / self.median if self.median > 0 else float("inf")


def time_batch(net: CompiledNetwork, batch: int, warmup: int, repeat: int, seed: int = 0) -> Timing:
    """Time `repeat` calls at `batch` examples after `warmup` untimed ones."""
    inputs = {name: random_input(shape, batch, seed) for name, shape in net.input_shapes.items()}
    warm = []
    for _ in range(warmup):
        start = time.perf_counter()
        net.run(**inputs)
        warm.append((time.perf_counter() - start) * 1000)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        net.run(**inputs)
        times.append((time.perf_counter() - start) * 1000)
    return Timing(batch, tuple(times), tuple(warm))


def loops_note() -> str:
    """", with numba's compiled loops" when the NumPy kernels use them (docs/kernels.md), else ""."""
    from ..kernels import compiled

    loops = compiled.loops()
    return f", with numba {loops.numba.__version__}'s compiled loops" if loops is not None else ""


def blas_note() -> str:
    """", OpenBLAS's SkylakeX kernels" (the kernel set NumPy's BLAS chose, read by threadpoolctl),
    naming the OPENBLAS_TUNING variables the environment sets: a machine can pin AVX2 kernels on a
    CPU with AVX-512, or a smaller cache than it has, and either slows the GEMMs (BENCHMARKS.md,
    "A new machine, and OpenBLAS's settings"); "" when threadpoolctl cannot tell."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ""
    for pool in threadpool_info():
        if pool.get("user_api") == "blas" and pool.get("architecture"):
            name = {"openblas": "OpenBLAS", "mkl": "MKL", "blis": "BLIS"}.get(pool.get("internal_api", ""), "BLAS")
            pinned = "".join(f", {var}={os.environ[var]}" for var in OPENBLAS_TUNING if var in os.environ)
            return f", {name}'s {pool['architecture']} kernels{pinned}"
    return ""


def threads_note(threads: int) -> str:
    """The run's threads, and the BLAS thread settings in the environment."""
    settings = [f"{name}={os.environ[name]}" for name in THREAD_VARIABLES if name in os.environ]
    split = (f"{threads} threads, a batch split over them in parts of at least "
             f"{MIN_PART_MACS // 1_000_000} M multiply-adds" if threads > 1 else "1 thread")
    return ", ".join([split, *settings]) if settings else f"{split}; {os.cpu_count()} CPUs"


_COLUMNS = ("batch", "median ms", "IQR ms", "min ms", "max ms", "ms/example", "examples/s")
_WIDTHS = (6, 10, 8, 9, 9, 11, 11)


def table_header() -> str:
    return "  ".join(name.rjust(width) for name, width in zip(_COLUMNS, _WIDTHS))


def table_row(timing: Timing) -> str:
    """One batch size's row, under `table_header()` (fixed widths, so rows print as they finish)."""
    t = timing
    cells = (str(t.batch), f"{t.median:.2f}", f"{t.iqr:.2f}", f"{min(t.times_ms):.2f}", f"{max(t.times_ms):.2f}",
             f"{t.per_example:.2f}", f"{t.throughput:.1f}")
    return "  ".join(cell.rjust(width) for cell, width in zip(cells, _WIDTHS))


def format_table(timings: list[Timing]) -> str:
    """The whole table: the header, then one row per batch size."""
    return "\n".join([table_header(), *(table_row(t) for t in timings)])
