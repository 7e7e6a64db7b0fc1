"""Where the time goes: the NumPy kernels timed node by node, summed per kind of node
(`cnnc bench --profile`; benchmarks/profile_nodes.py is a thin wrapper over this module).

Runs the optimized IR statement by statement with the same kernels and arguments the generated
module uses (`kernel_call`), timing each call, and reports the time per node kind (conv kinds
split by kernel size, stride and grouping, since they are different algorithms), then the
slowest nodes. The total is within a few percent of the generated module's own time; the point
is the shares, which choose the next optimization from a measurement rather than a guess.
"""
from __future__ import annotations

import statistics
import time
from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np

from ..ir.graph import Graph

if TYPE_CHECKING:
    from .network import CompiledNetwork

Rows = list[tuple[str, str, float]]


def node_kind(graph: Graph, name: str) -> str:
    """The node's op, with what decides the algorithm for convolutions and pools."""
    op, attrs = graph.op(name), graph.attrs(name)
    if op.value == "conv":
        channels = graph.shape(graph.inputs_of(name)[0])[1]
        grouping = "depthwise" if attrs.groups == channels > 1 else ("grouped" if attrs.groups > 1 else "dense")
        kh, kw = attrs.kernel
        return f"conv {kh}x{kw} s{attrs.stride[0]} {grouping}"
    if op.value in ("max_pool", "avg_pool"):
        return f"{op.value} {attrs.kernel[0]}x{attrs.kernel[1]}"
    return str(op.value)


def profile_net(net: CompiledNetwork, batch: int, repeat: int, seed: int) -> Rows:
    """(node, kind, median ms) for every node of a compiled network (`cnnc.compile`'s result),
    its parameters as they are, on a random input of `batch` examples."""
    from ..ir.ops import Op, kernel_call, record
    from ..kernels import numpy_kernels
    from ..passes.derived import materialize

    graph = net.graph
    params = materialize(graph, net.params.data)
    rng = np.random.default_rng(seed)
    values = {n: rng.standard_normal((batch, *graph.shape(n)[1:]), dtype=np.float32) for n in graph.info.inputs}
    order = [n for n in graph.topo_order() if graph.op(n) != Op.INPUT]
    # Each value is dropped after its last reader, as the generated forward does, so memory is
    # allocated and freed in the forward pass's pattern. Holding every value made large outputs
    # fresh pages on every call: ResNet-50's stem at batch 4 profiled at 24.8 ms, against 9 ms
    # for the same call in the module (a page fault costs about 3 µs on this project's VMs).
    last_reader = {i: name for name in order for i in graph.inputs_of(name)}
    kept = set(graph.info.inputs) | set(graph.info.outputs.values())
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(repeat + 1):  # the first pass warms caches and BLAS threads; not counted
        for name in order:
            rec = record(graph.op(name))
            args = [values[i] for i in graph.inputs_of(name)]
            start = time.perf_counter()
            if rec.kernel is None:
                values[name] = args[0]
            else:
                positional, keywords = kernel_call(graph.op(name), graph.attrs(name), args, graph.params_of(name),
                                                   params.__getitem__, graph.shape(name))
                values[name] = getattr(numpy_kernels, rec.kernel)(*positional, **keywords)
            times[name].append((time.perf_counter() - start) * 1000)
            del args
            positional, keywords = [], {}  # they held the inputs too
            for i in set(graph.inputs_of(name)):
                if last_reader[i] == name and i not in kept:
                    del values[i]
    return [(n, node_kind(graph, n), statistics.median(times[n][1:])) for n in order]


def report(rows: Rows, title: str, repeat: int, top: int = 10) -> str:
    """The per-kind table (markdown) under a title line with the total, then the `top` slowest nodes."""
    total = sum(ms for _, _, ms in rows)
    by_kind: dict[str, list[float]] = defaultdict(list)
    for _, kind, ms in rows:
        by_kind[kind].append(ms)
    lines = [f"{title}: {total:.1f} ms in {len(rows)} nodes (median of {repeat} per node)",
             "| kind | nodes | ms | share |", "|---|---|---|---|"]
    for kind, values in sorted(by_kind.items(), key=lambda item: -sum(item[1])):
        share = sum(values) / total if total else 0.0
        lines.append(f"| {kind} | {len(values)} | {sum(values):.1f} | {share:.1%} |")
    if top > 0:
        lines.append(f"\nslowest {top} nodes:")
        lines += [f"  {ms:8.2f} ms  {name}  ({kind})" for name, kind, ms in sorted(rows, key=lambda row: -row[2])[:top]]
    return "\n".join(lines)
