"""Shared test helpers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def randomize(net, seed: int = 0, gamma: tuple[float, float] = (0.5, 1.5), weights: bool = True) -> None:
    """Give every parameter random values (BN variances positive) so no layer is trivial.

    `gamma` is the range of BN scales; `weights=False` keeps the seeded He weights and draws only
    BN statistics and biases (cheap for big networks).
    """
    rng = np.random.default_rng(seed)
    for name, value in list(net.params.items()):
        if name.endswith(".var"):
            net.params[name] = rng.uniform(0.5, 1.5, value.shape)
        elif name.endswith(".gamma"):
            net.params[name] = rng.uniform(*gamma, value.shape)
        elif name.endswith((".beta", ".mean", ".bias")):
            net.params[name] = rng.normal(0, 0.1, value.shape)
        elif weights:
            fan_in = int(np.prod(value.shape[1:])) or 1
            net.params[name] = rng.normal(0, np.sqrt(2.0 / fan_in), value.shape)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
