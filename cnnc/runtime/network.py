"""CompiledNetwork: the object `cnnc.compile` returns — call it like a function."""
from __future__ import annotations

import linecache
import math
import threading
import traceback
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import numpy as np

from ..codegen.common import STATEMENT_LAYER
from ..errors import CnncInputError
from ..ir.cost import network_macs
from ..ir.graph import Graph
from ..ir.shapes import fmt
from ..passes.derived import materialize
from .loader import is_generated, load_forward
from .params import ParamStore
from .threads import blas_threads, split_batch


class CompiledNetwork:
    """A compiled network with its parameters.

    `net(x)` or `net(image=x)` returns the output array, or a dict when the network has
    several outputs. `net.params` maps names (`layer1.0.conv1.weight`) to float32 arrays and
    checks every assignment; `net.graph` is the IR; `net.source` the generated code.
    `net.threads` (default: as many as NumPy's BLAS uses): a batch runs on the CPU as that many
    parts at once, BLAS single-threaded in each (runtime/threads.py); one image, or 1, runs as one
    `forward` with BLAS's own threads.
    """

    def __init__(self, graph: Graph, source: str, seed: int = 0,
                 params: Mapping[str, np.ndarray] | None = None):
        self.graph = graph
        self.source = source
        self.input_names: list[str] = list(graph.info.inputs)
        self.output_names: list[str] = list(graph.info.outputs)
        self._forward = load_forward(source, graph.info.source_name)
        specs = graph.info.user_param_specs()
        # The seeded initialization is drawn when a value is first read (a run, or net.params[...]),
        # and never when the user's parameters are given here or replace them all before.
        self.params = (ParamStore.seeded(specs, seed) if params is None
                       else ParamStore.from_values(specs, params, "params"))
        self._runtime: tuple[int, dict[str, np.ndarray]] = (-1, {})
        self._lock = threading.Lock()
        self._numpy_source = source
        self._gpu = None  # a runtime.gpu.GpuExecutor after .to("gpu")
        self._threads = blas_threads()
        self._macs: int | None = None  # per example, counted at the first split: what a part is worth

    @property
    def threads(self) -> int:
        """Parts a batch runs as at once on the CPU (runtime/threads.py); 1: one forward pass."""
        return self._threads

    @threads.setter
    def threads(self, count: int) -> None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise CnncInputError(f"threads must be a positive integer, got {count!r}", where="threads")
        self._threads = count

    @property
    def device(self) -> str:
        """Where calls run: "cpu" (the generated NumPy code) or "gpu" (the CuPy code)."""
        return "cpu" if self._gpu is None else "gpu"

    def to(self, device: str, **options: object) -> CompiledNetwork:
        """Run on "gpu" (CuPy; options: tf32=False, cuda_graph=True, outputs="numpy" or "cupy",
        workspace_limit bytes) or back on "cpu". Returns the network; `source` follows."""
        from .gpu import move

        return move(self, device, options)

    def runtime_params(self) -> dict[str, np.ndarray]:
        """The parameters the generated code reads: the user's, plus those passes derived from
        them (folded batch norms, reshaped weights), recomputed after any change."""
        version, values = self._runtime
        if version != self.params.version:
            with self._lock:
                version = self.params.version
                values = materialize(self.graph, self.params.data)
                self._runtime = (version, values)
        return values

    @property
    def source_graph(self) -> Graph:
        """The IR before optimization passes (what the reference interpreter checks against)."""
        source = self.graph.info.source_graph
        return self.graph if source is None else source

    @property
    def input_shapes(self) -> dict[str, tuple]:
        return {n: self.graph.shape(n) for n in self.input_names}

    @property
    def output_shapes(self) -> dict[str, tuple]:
        return {o: self.graph.shape(n) for o, n in self.graph.info.outputs.items()}

    def _bind_inputs(self, args: tuple, kwargs: dict) -> list[np.ndarray]:
        if len(args) > len(self.input_names):
            raise CnncInputError(f"the network takes {len(self.input_names)} input(s) "
                                 f"({', '.join(self.input_names)}), got {len(args)}", where="inputs")
        given = dict(zip(self.input_names, args))
        for key, value in kwargs.items():
            if key not in self.input_names:
                raise CnncInputError(f"unknown input '{key}'; the inputs are: {', '.join(self.input_names)}",
                                     where="inputs")
            if key in given:
                raise CnncInputError(f"input '{key}' is given twice", where="inputs")
            given[key] = value
        arrays = []
        sizes: dict[str, tuple[str, int]] = {}  # a symbolic dimension (the batch "N") → (first input, its size)
        for name in self.input_names:
            if name not in given:
                raise CnncInputError(f"missing input '{name}' {fmt(self.graph.shape(name))}", where="inputs")
            array = self._check_input(name, given[name])
            for symbol, size in zip(self.graph.shape(name), array.shape):
                if isinstance(symbol, str):
                    first, seen = sizes.setdefault(symbol, (name, size))
                    if seen != size:  # else NumPy would broadcast one over the other, or a split misalign them
                        raise CnncInputError(f"inputs '{first}' and '{name}' share the dimension {symbol} but have "
                                             f"{seen} and {size}", where=f"input '{name}'")
            arrays.append(array)
        return arrays

    def _check_input(self, name: str, value: object) -> np.ndarray:
        try:
            if self._gpu is not None and hasattr(value, "__cuda_array_interface__"):  # stays on the GPU
                array = self._gpu.device_array(name, value)
            else:
                array = np.ascontiguousarray(value, dtype=np.float32)
        except (TypeError, ValueError) as error:
            raise CnncInputError(f"input '{name}' must be a numeric array ({error})",
                                 where=f"input '{name}'") from None
        declared = self.graph.shape(name)
        fits = len(array.shape) == len(declared) and all(
            isinstance(d, str) or d == s for d, s in zip(declared, array.shape))
        if not fits:
            raise CnncInputError(f"input '{name}' expects {fmt(declared)}, got {fmt(array.shape)}",
                                 where=f"input '{name}'")
        return array

    def run(self, *args: object, **kwargs: object) -> dict[str, np.ndarray]:
        """All outputs as a dict, whatever their number."""
        if self._gpu is not None:
            return self._gpu.run(self._bind_inputs(args, kwargs))
        inputs = self._bind_inputs(args, kwargs)
        try:
            if self._macs is None and self._threads > 1 and len(inputs[0]) > 1:
                self._macs = network_macs(self.source_graph)
            return split_batch(self._forward, self.runtime_params(), inputs, self._threads, self._macs)
        except MemoryError as error:  # one message naming the layer, not NumPy's traceback
            layer = _generated_layer(error.__traceback__)
            raise CnncInputError("not enough memory to run this layer at this input size",
                                 where=f"layer '{layer}'" if layer else "run") from None

    def __call__(self, *args: object, **kwargs: object):
        outputs = self.run(*args, **kwargs)
        return next(iter(outputs.values())) if len(outputs) == 1 else outputs

    def save_params(self, path: str | Path) -> None:
        self.params.save(path)

    def load_params(self, path: str | Path) -> None:
        self.params.load(path)

    def summary(self, depth: int | None = None, columns: tuple[str, ...] | None = None, width: int | None = None,
                optimized: bool = False) -> str:
        """The per-layer table of `cnnc summary`: every layer of the source program (`optimized`:
        of the graph that runs, fused layers shown as `conv+bn+relu`), nested in its blocks,
        with shapes, parameters, MACs and inputs, then the totals; `depth`, `columns` and `width`
        as `cnnc.summary.summary_text` takes them. `repr(net)` is the short form."""
        from ..summary import DEFAULT_COLUMNS, summary_text

        return summary_text(self.graph if optimized else self.source_graph, depth=depth,
                            columns=DEFAULT_COLUMNS if columns is None else columns, width=width)

    def __repr__(self) -> str:
        return network_repr(self)


REPR_ROWS = 30  # top-level layers that repr(net) lists in full; beyond that the first and last ones


def _param_count(graph: Graph, names: list[str]) -> int:
    used = {p for n in names for p in graph.params_of(n).values()}
    return sum(math.prod(graph.info.param_specs[p].shape) for p in used)


def network_repr(net: CompiledNetwork) -> str:
    """A compact tree of the source program, like PyTorch's print(module) but one line per
    top-level layer or block: its op (or what the block holds), output shape and parameters.
    Blocks and sequences (`layer1`, `layer1.0`, ...) are folded into their top-level name, and
    beyond `REPR_ROWS` rows the middle is left out, so ResNet-152 is a dozen lines;
    `net.summary()` lists every layer."""
    source = net.source_graph
    order = [n for n in source.topo_order() if n not in source.info.inputs]
    groups: dict[str, list[str]] = {}
    for name in order:
        groups.setdefault(name.split(".", 1)[0], []).append(name)
    total = sum(math.prod(spec.shape) for spec in net.params.specs.values())
    passes = net.graph.info.passes_run or []
    header = (f"CompiledNetwork '{net.graph.info.source_name}': {len(order)} layers, {total:,} parameters; "
              f"optimized by {len(passes)} pass{'es' if len(passes) != 1 else ''} to {len(net.graph)} nodes; "
              f"on the {net.device}")
    rows: list[tuple[str, str, str, str]] = []
    for top, members in groups.items():
        if len(members) == 1 and members[0] == top:
            what = str(source.op(top))
        else:
            children = {m[len(top) + 1:].split(".", 1)[0] for m in members if m != top}
            nested = any(m.count(".") > 1 for m in members)
            ops = list(dict.fromkeys(str(source.op(m)) for m in members))
            what = (f"{len(children)} blocks, {len(members)} layers" if nested
                    else f"{len(members)} layers: {', '.join(ops[:4])}{', ...' if len(ops) > 4 else ''}")
        count = _param_count(source, members)
        rows.append((top, what, fmt(source.shape(members[-1])), f"{count:,}" if count else ""))
    if len(rows) > REPR_ROWS:
        head, tail = REPR_ROWS * 2 // 3, REPR_ROWS // 3
        hidden = len(rows) - head - tail
        rows = [*rows[:head], (f"... {hidden} more (net.summary() lists every layer)", "", "", ""), *rows[-tail:]]
    widths = [max(len(row[i]) for row in rows if not row[0].startswith("... ")) for i in range(4)] if rows else [0] * 4
    lines = [header]
    lines += [f"  input  {n}: {fmt(shape)}" for n, shape in net.input_shapes.items()]
    for name, what, shape, params in rows:
        if name.startswith("... "):
            lines.append(f"  {name}")
        else:
            lines.append(f"  {name.ljust(widths[0])}  {what.ljust(widths[1])}  {shape.ljust(widths[2])}  "
                         f"{params.rjust(widths[3])}".rstrip())
    lines += [f"  output {o}: {fmt(net.graph.shape(n))} (from {n})" if o != n else f"  output {o}: "
              f"{fmt(net.graph.shape(n))}" for o, n in net.graph.info.outputs.items()]
    return "\n".join(lines)


def _generated_layer(trace: TracebackType | None) -> str | None:
    """The layer whose statement in the generated `forward` was running when `trace` was raised:
    each statement's first line ends with the comment `# file:line layer: op -> shape`
    (codegen/common.py's `statement`); a wrapped statement's later lines carry none, so the
    search walks back to it."""
    layer = None
    for frame, line in traceback.walk_tb(trace):
        if is_generated(frame.f_code.co_filename) and frame.f_code.co_name == "forward":
            for number in range(line, max(line - 20, 0), -1):
                found = STATEMENT_LAYER.search(linecache.getline(frame.f_code.co_filename, number))
                if found:
                    layer = found.group(1)
                    break
    return layer
