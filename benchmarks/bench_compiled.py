"""The NumPy kernels with and without their compiled loops (cnnc/kernels/compiled.py, the `fast` extra).

One process per network. Calls alternate between the compiled loops and the NumPy path; the
switch is the loops' one piece of state, so the generated module and its parameters are the
same in both modes. After each switch comes a pause and one untimed call. Prints a markdown
table of minima and medians and the speed-up of each (docs/kernels.md, "Compiled loops"). Needs
numba (`pip install '.[fast]'`).

    python benchmarks/bench_compiled.py --models resnet18 mobilenet_v2 --batch 1 8 --rounds 6
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_cpu import _timed  # noqa: E402  (the sibling script)

import cnnc  # noqa: E402  (this checkout's, found by the path above)
from cnnc.kernels import compiled  # noqa: E402


def compare(model: str, batch: int, rounds: int, per_round: int, pause: float = 0.2) -> dict[str, list[float]]:
    """Times in ms of `net(x)` with the NumPy path ("numpy") and with the compiled loops ("compiled")."""
    loops = compiled.loops()
    if loops is None:
        raise SystemExit("the compiled loops are off: numba is not installed (pip install '.[fast]'), "
                         "or CNNC_COMPILED=0")
    net = cnnc.compile(ROOT / "examples" / f"{model}.cnn")
    x = np.random.default_rng(0).standard_normal((batch, *net.input_shapes[net.input_names[0]][1:]),
                                                  dtype=np.float32)
    times: dict[str, list[float]] = {"numpy": [], "compiled": []}
    try:
        for _ in range(rounds):
            for mode in times:
                compiled._state["loops"] = loops if mode == "compiled" else None
                time.sleep(pause)
                net(x)
                times[mode] += _timed(lambda: net(x), per_round, 1)
    finally:
        compiled._state["loops"] = loops
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50", "vgg16", "mobilenet_v2",
                                                        "googlenet_torchvision"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.rounds} rounds of {args.per_round} timed calls per mode; ms, min / median", flush=True)
    print("| network | batch | NumPy path | compiled loops | speed-up (min) | speed-up (median) |\n"
          "|---|---|---|---|---|---|", flush=True)
    for model in args.models:
        for batch in args.batch:
            t = compare(model, batch, args.rounds, args.per_round)
            low = {mode: min(values) for mode, values in t.items()}
            mid = {mode: statistics.median(values) for mode, values in t.items()}
            print(f"| {model} | {batch} | {low['numpy']:.1f} / {mid['numpy']:.1f} | "
                  f"{low['compiled']:.1f} / {mid['compiled']:.1f} | {low['numpy'] / low['compiled']:.2f}x | "
                  f"{mid['numpy'] / mid['compiled']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
