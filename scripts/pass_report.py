"""Print the evidence table for docs/passes.md: what -O2 does to every example network.

For each example: node count and op histogram before and after -O2, the maximum difference of
the -O2 outputs from the -O0 graph (relative to the output scale, random weights and input), and
the peak activation memory (batch 1) without and with memory planning.

    python scripts/pass_report.py [--size 64] [--examples resnet50 vgg16 ...]
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cnnc  # noqa: E402
from cnnc.interpreter import eval_graph  # noqa: E402
from cnnc.ir.cost import peak_with_plan, peak_without_plan  # noqa: E402
from cnnc.passes.derived import materialize  # noqa: E402
from cnnc.runtime.params import random_params  # noqa: E402

# Networks that end in global pooling are measured at a reduced size to keep the run short.
REDUCIBLE = {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "se_resnet50", "xception",
             "mobilenet_v2", "segmentation", "googlenet_torchvision"}


def histogram(graph) -> str:
    counts = Counter(str(graph.op(n)) for n in graph.nodes if str(graph.op(n)) != "input")
    return ", ".join(f"{op} {count}" for op, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _logits(graph):
    """The graph with each output that is a softmax replaced by the softmax's input."""
    copy = graph.clone()
    for out, node in list(copy.info.outputs.items()):
        if str(copy.op(node)) == "softmax":
            copy.info.outputs[out] = copy.inputs_of(node)[0]
    return copy


def report(path: Path, size: int) -> str:
    name = path.stem
    shapes = {"image": (1, 3, size, size)} if name in REDUCIBLE else None
    before = cnnc.parse(path, input_shapes=shapes)
    after = cnnc.build_graph(path, input_shapes=shapes, optimize=2)
    rng = np.random.default_rng(0)
    values = random_params(before.info.param_specs, rng)
    inputs = {n: rng.standard_normal(tuple(1 if isinstance(d, str) else d for d in before.shape(n)))
              .astype(np.float32) for n in before.info.inputs}
    # A softmax of random-weight logits is nearly one-hot, which would hide differences: compare
    # the logits feeding an output softmax instead (the producer keeps its name through passes).
    want = eval_graph(_logits(before), values, inputs)
    got = eval_graph(_logits(after), materialize(after, values), inputs)
    worst = max(float(np.abs(got[o] - want[o]).max()) / max(float(np.abs(want[o]).max()), 1e-12) for o in want)
    size_note = f"{size}×{size}" if shapes else "declared"
    return (f"| {name} | {size_note} | {len(before)} → {len(after)} | {histogram(before)} | {histogram(after)} | "
            f"{worst:.1e} | {peak_without_plan(before) / 2**20:.1f} / {peak_without_plan(after) / 2**20:.1f} → "
            f"{peak_with_plan(after, after.info.memory_plan) / 2**20:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=64, help="input size for networks that allow any size")
    parser.add_argument("--examples", nargs="*", help="example names (default: all)")
    args = parser.parse_args()
    paths = sorted(p for p in (ROOT / "examples").glob("*.cnn") if p.stem != "resnet_blocks"
                   and (not args.examples or p.stem in args.examples))
    print("| example | input | nodes -O0 → -O2 | ops at -O0 | ops at -O2 | max rel. diff -O2 vs -O0 | "
          "peak activation MiB, batch 1: -O0 / -O2 unplanned → -O2 planned |")
    print("|---|---|---|---|---|---|---|")
    for path in paths:
        print(report(path, args.size), flush=True)


if __name__ == "__main__":
    main()
