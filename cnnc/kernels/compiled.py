"""Loops compiled by numba, which the NumPy kernels use where cnnc's `fast` extra is installed.

NumPy makes one pass over a whole tensor per operation, and some kernels are mostly such
passes: Winograd's transforms gather 6x6 tiles, multiply them by Bᵀ⊗Bᵀ, and write the output
tiles back with the bias, the residual and the activation. cnnc/kernels/numba_loops.py does each
transform as one loop that visits every value once. Measured on the 2-core Xeon (docs/kernels.md,
"Compiled loops"), that made each Winograd layer 1.1-1.4x faster, at batch 1 and in the
single-threaded parts of a split batch.

- `loops()` imports numba_loops at its first call. numba's own import costs about 0.25 s, so
  `import cnnc` and `cnnc.compile` do not pay it; the first run that can use a loop does (and,
  once after installing, numba's compilation of the loops, a few seconds).
- Without numba, or with the environment variable CNNC_COMPILED=0, `loops()` is None and every
  kernel takes its NumPy path. tests/test_compiled.py checks both paths against float64 direct
  convolution.
- The loops run on the calling thread. Spreading them over numba's own threads (`prange`) was
  slower at the network level: those threads and BLAS's spin-wait for each other's cores
  (ResNet-18 at batch 1: 94 ms against NumPy's 53).

This module imports nothing beyond the standard library. Generated modules import it, when cnnc
is installed, as their NumPy kernels do.
"""
from __future__ import annotations

import importlib
import os
import threading
from types import ModuleType
from typing import Any

_state: dict[str, Any] = {"loops": None, "tried": False}
_lock = threading.Lock()


def loops() -> ModuleType | None:
    """cnnc.kernels.numba_loops, or None: numba is not installed, or CNNC_COMPILED=0."""
    if not _state["tried"]:
        with _lock:
            if not _state["tried"]:
                if os.environ.get("CNNC_COMPILED", "1") != "0":
                    try:
                        _state["loops"] = importlib.import_module("cnnc.kernels.numba_loops")
                    except ImportError:  # numba is not installed
                        pass
                _state["tried"] = True
    return _state["loops"]
