"""A batch as one forward pass against the same batch split over threads (cnnc/runtime/threads.py).

One process per network; calls alternate between `net.threads = 1` (one forward pass, BLAS's own
threads) and `net.threads = T` (T parts at once, BLAS single-threaded in each), with a pause and
one untimed call after each switch so that OpenBLAS's worker threads, which spin for a while after
a multi-threaded call, do not slow the split calls that follow. Prints a markdown table of medians
and the speed-up (docs/kernels.md, "Threads").

    python benchmarks/bench_threads.py --models resnet18 resnet50 --batch 8 --rounds 6
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
from cnnc.runtime.threads import blas_threads  # noqa: E402


def compare(model: str, batch: int, threads: int, rounds: int, per_round: int,
            pause: float = 0.3) -> tuple[float, float]:
    """Median ms of one forward pass and of the split, over `rounds` alternations."""
    net = cnnc.compile(ROOT / "examples" / f"{model}.cnn")
    x = np.random.default_rng(0).standard_normal((batch, *net.input_shapes[net.input_names[0]][1:]),
                                                  dtype=np.float32)
    times: dict[int, list[float]] = {1: [], threads: []}
    for _ in range(rounds):
        for count in times:
            net.threads = count
            time.sleep(pause)
            times[count] += _timed(lambda: net(x), per_round, 1)
    return statistics.median(times[1]), statistics.median(times[threads])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50", "vgg16", "mobilenet_v2",
                                                        "googlenet_torchvision"])
    parser.add_argument("--batch", type=int, nargs="+", default=[8])
    parser.add_argument("--threads", type=int, default=blas_threads(), help="threads of the split (BLAS's count)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=3)
    args = parser.parse_args()
    print(f"threads={args.threads}; {args.rounds} rounds of {args.per_round} timed calls per mode", flush=True)
    print("| network | batch | one forward ms | split ms | speed-up |\n|---|---|---|---|---|", flush=True)
    for model in args.models:
        for batch in args.batch:
            whole, split = compare(model, batch, args.threads, args.rounds, args.per_round)
            print(f"| {model} | {batch} | {whole:.1f} | {split:.1f} | {whole / split:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
