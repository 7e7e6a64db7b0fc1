"""Shared test helpers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cnnc.runtime.params import random_params

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def randomize(net, seed: int = 0, gamma: tuple[float, float] = (0.5, 1.5), weights: bool = True) -> None:
    """Give `net`'s parameters cnnc's random test values (`random_params`) so no layer is trivial.

    `gamma` is the range of BN scales (positive here, so a scale may be pushed through a ReLU);
    `weights=False` keeps the seeded He weights and draws only the rest (cheap for big networks).
    """
    net.params.update(random_params(net.params.specs, np.random.default_rng(seed), gamma=gamma, weights=weights))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
