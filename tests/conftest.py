"""Shared test helpers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cnnc.codegen.common import STATEMENT_LAYER
from cnnc.runtime.params import random_params

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# Python lines that make a subprocess a machine with numpy alone: importing cnnc from anywhere
# (an installed copy included) fails, as it would where cnnc is not installed.
WITHOUT_CNNC = ("class Block:\n"
                "    def find_spec(self, name, path=None, target=None):\n"
                "        if name.split('.')[0] == 'cnnc':\n"
                "            raise ImportError('cnnc is not available here')\n"
                "sys.meta_path.insert(0, Block())\n")


def example_networks() -> list[str]:
    """The example files that are networks, sorted; libraries of blocks (resnet_blocks.cnn,
    deep_blocks.cnn: no input, no output) are imported by them, not compiled alone."""
    from cnnc.frontend import check_library

    return sorted(p.name for p in EXAMPLES.glob("*.cnn") if check_library(p) is None)


def randomize(net, seed: int = 0, gamma: tuple[float, float] = (0.5, 1.5), weights: bool = True) -> None:
    """Give `net`'s parameters cnnc's random test values (`random_params`) so no layer is trivial.

    `gamma` is the range of BN scales (positive here, so a scale may be pushed through a ReLU);
    `weights=False` keeps the seeded He weights and draws only the rest (cheap for big networks).
    """
    net.params.update(random_params(net.params.specs, np.random.default_rng(seed), gamma=gamma, weights=weights))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(params=["numpy", "compiled"])
def kernel_path(request, monkeypatch) -> str:
    """Run the test on the NumPy kernels' NumPy path, then on their compiled loops (the `fast`
    extra, cnnc/kernels/compiled.py; skipped without numba)."""
    from cnnc.kernels import compiled

    if compiled.loops() is None:
        if request.param == "compiled":
            pytest.skip("numba is not installed (the fast extra), or CNNC_COMPILED=0")
    elif request.param == "numpy":
        monkeypatch.setitem(compiled._state, "loops", None)
    return request.param


@pytest.fixture
def numpy_path(monkeypatch) -> None:
    """The NumPy kernels without their compiled loops (for tests of the NumPy path's dispatch)."""
    from cnnc.kernels import compiled

    compiled.loops()
    monkeypatch.setitem(compiled._state, "loops", None)


# Awkward inputs for the elementwise activations: the breakpoints ±3 and their float32
# neighbours, signed zeros, tiny and huge magnitudes, and a fine sweep of [−10, 10] (the tails,
# where 1 + erf(x/√2) and 1 + tanh(u) cancel in float32).
_BREAKPOINTS = np.array([-3.0, 3.0], np.float32)
AWKWARD = np.concatenate([
    np.linspace(-10.0, 10.0, 4001, dtype=np.float32), _BREAKPOINTS,
    np.nextafter(_BREAKPOINTS, np.float32(0.0)), np.nextafter(_BREAKPOINTS, np.float32(np.inf) * _BREAKPOINTS),
    np.array([-0.0, 0.0, 1e-30, -1e-30, 20.0, -20.0, 100.0, -100.0, 1e4, -1e4, 1e30, -1e30], np.float32),
]).astype(np.float32)


def forward_statements(source: str) -> dict[str, str]:
    """Layer name → its whole statement in a generated module's `forward`: a long call wraps
    after its open parenthesis (codegen/common.py `statement`), so continuation lines are joined;
    the layer is read from the statement's `# file:line[, line] layer: op -> [shape]` comment."""
    body = source.split("\ndef forward(")[1].split("\ndef ")[0]
    statements: list[str] = []
    for line in body.splitlines():
        if line.startswith("        ") and statements:
            statements[-1] += " " + line.strip()
        elif line.startswith("    ") and " = " in line:
            statements.append(line.strip())
    found = {}
    for statement in statements:
        match = STATEMENT_LAYER.search(statement)
        if match:
            found[match.group(1)] = statement
    return found
