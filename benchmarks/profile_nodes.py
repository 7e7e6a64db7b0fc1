"""Where the time goes: cnnc's NumPy kernels timed node by node, summed per kind of node.

Runs the optimized IR statement by statement with the same kernels and arguments the generated
module uses (`kernel_call`), timing each call, and prints the time per node kind (conv kinds
split by kernel size, stride and grouping, since they are different algorithms), then the
slowest nodes. The total is within a few percent of the generated module's own time; the point
is the shares, which choose the next optimization from a measurement rather than a guess.
The profiler is cnnc.runtime.profile (`cnnc bench --profile` prints the same table).

    python benchmarks/profile_nodes.py examples/resnet50.cnn --batch 8 --threads 2
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from cnnc.runtime.network import CompiledNetwork


# The profiler lives in the package (cnnc.runtime.profile, also `cnnc bench --profile`); these
# wrappers keep this script's names, and import cnnc only when called, so that main() sets the
# BLAS thread counts before numpy loads.

def _kind(graph, name: str) -> str:
    """The node's op, with what decides the algorithm for convolutions and pools."""
    from cnnc.runtime.profile import node_kind

    return node_kind(graph, name)


def profile(path: str, batch: int, level: int, repeat: int, seed: int) -> list[tuple[str, str, float]]:
    """(node, kind, median ms) for every node of the network compiled at -O`level`."""
    import cnnc

    return profile_net(cnnc.compile(Path(path), optimize=level), batch, repeat, seed)


def profile_net(net: CompiledNetwork, batch: int, repeat: int, seed: int) -> list[tuple[str, str, float]]:
    """(node, kind, median ms) for every node of a compiled network (`cnnc.compile`'s result),
    its parameters as they are, on a random input of `batch` examples."""
    from cnnc.runtime.profile import profile_net as profile_compiled

    return profile_compiled(net, batch, repeat, seed)


def report(rows: list[tuple[str, str, float]], title: str, repeat: int, top: int = 10) -> str:
    """The per-kind table (markdown) under a title line with the total, then the `top` slowest nodes."""
    from cnnc.runtime.profile import report as format_report

    return format_report(rows, title, repeat, top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("program", help="a .cnn file")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("-O", dest="level", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--top", type=int, default=10, help="slowest nodes to list")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy loads BLAS
    rows = profile(args.program, args.batch, args.level, args.repeat, seed=0)
    print(report(rows, f"{args.program}, batch {args.batch}, -O{args.level}, {args.threads} threads",
                 args.repeat, args.top))


if __name__ == "__main__":
    main()
