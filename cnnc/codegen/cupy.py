"""Emit a self-contained Python module that runs the network on an NVIDIA GPU with CuPy.

The same optimized IR as the NumPy target, the same shape of output: a module whose `forward`
has one statement per IR node, commented with its `.cnn` line, and the kernels it calls copied
in from cnnc/kernels/cupy_kernels.py (functions, the `Runner` class, the CUDA sources they
launch: only those used). It imports cupy, numpy and the standard library, nothing from cnnc.

What is different is memory: every statement writes into a preallocated buffer (`out=`). The
buffer plan (`plan_buffers`, made here at compile time) gives each value that needs storage of
its own a *slot*; values whose lifetimes do not overlap share a slot, views (flatten, reshape,
dropout) use their input's storage, and the in-place statements of the plan_memory pass write
into their first input. `allocate(batch)` creates the slots and the im2col workspace once;
`runner()` keeps them, with the parameters on the device, and replays the whole forward pass
as a CUDA graph. Output is deterministic: the same graph always gives the same text.
"""
from __future__ import annotations

import ast
import functools
import inspect
import math
from dataclasses import dataclass
from types import ModuleType

from ..ir.graph import Graph
from ..ir.liveness import CUPY_VIEWS, Buffers, Liveness, aliased_inputs, buffers, liveness
from ..ir.ops import Op, kernel_call, record
from ..kernels import cupy_kernels, numpy_kernels
from ..passes.memory import current_plan
from .common import docstring, interface_tables, kernels_used, load_params_function, return_statement, statement_comment
from .kernel_source import reachable
from .namespace import Namespace

# Module-level names of the kernel module provided by the generated module's header.
_HEADER_NAMES = {"math", "os", "np", "cp"}
# Host fallbacks: names in cupy_kernels bound to a NumPy kernel, copied in renamed.
_HOST_FALLBACKS = {"_host_nms": "nms"}

_RESERVED = {"np", "cp", "math", "os", "Path", "params", "buffers", "out", "workspace", "forward", "allocate",
             "load_params", "upload_params", "runner", "INPUTS", "OUTPUTS", "PARAMETERS", "TF32", "SHAPES",
             "SLOTS", "COLUMNS", "CUDA_GRAPH_BLOCKERS"}


# ---- the buffer plan -------------------------------------------------------------------------


@dataclass(frozen=True)
class BufferPlan:
    """Where every value of the graph lives on the GPU.

    `root[v]` is the value that owns v's storage (v itself when v has storage of its own; a view
    or an in-place result maps to its input's root; graph inputs are their own roots and live in
    the caller's or the runner's input arrays). `slots` lists, per slot, the roots that take
    turns in it, in order; `birth`/`death` are positions in `order` (the emission order) of a
    root's statement and of the last statement reading any value stored there (len(order) for
    outputs). Two roots share a slot only when one dies before the other is born.
    """

    order: tuple[str, ...]
    shapes: dict  # root -> declared shape (dimension 0 may be the batch symbol)
    root: dict  # value -> root
    slots: tuple[tuple[str, ...], ...]
    birth: dict
    death: dict
    in_place: frozenset
    views: frozenset
    columns: dict  # node -> workspace elements per image (im2col / conv_transpose columns)

    @functools.cached_property
    def slot_of(self) -> dict[str, int]:
        return {r: i for i, roots in enumerate(self.slots) for r in roots}

    def slot_bytes(self, batch: int) -> list[int]:
        return [4 * max(_numel(self.shapes[r], batch) for r in roots) for roots in self.slots]

    def planned_bytes(self, batch: int) -> int:
        """Activation memory with the plan (slots; inputs and the workspace not counted)."""
        return sum(self.slot_bytes(batch))

    def unplanned_bytes(self, batch: int) -> int:
        """Activation memory if every root had storage of its own."""
        return sum(4 * _numel(self.shapes[r], batch) for roots in self.slots for r in roots)


def _numel(shape, batch: int) -> int:
    return math.prod(cupy_kernels.batch_shape(shape, batch))


def _per_item(shape) -> int:
    return math.prod(int(d) for d in shape[1:])


def _workspace_columns(graph: Graph, name: str) -> int:
    """Per-image elements of the columns a GEMM convolution node needs (0: none), as its CuPy
    kernel computes them (cupy_kernels.workspace_columns)."""
    kernel, params = record(graph.op(name)).kernel, graph.node(name).params
    if kernel is None or "weight" not in params:
        return 0
    w_shape = graph.info.param_specs[params["weight"]].shape
    return cupy_kernels.workspace_columns(kernel, graph.shape(graph.inputs_of(name)[0]), w_shape,
                                          graph.shape(name), graph.attrs(name))


def _storage(graph: Graph, live: Liveness) -> tuple[Buffers, frozenset[str]]:
    """Which values share storage, and the in-place nodes: views share their input's storage,
    and so do the nodes plan_memory runs in place (only at -O2, where it ran). It decided on
    NumPy's arrays, each the union of some of ours, so a write it allows is safe here too."""
    memory = current_plan(graph)
    in_place = memory.in_place if memory is not None else frozenset()
    shared = buffers(graph, live, CUPY_VIEWS)
    for name in live.order:
        if name in in_place:
            shared.union(graph.inputs_of(name)[0], name)
    return shared, in_place


def _assign_slots(graph: Graph, owners: list[str], birth: dict[str, int], death: dict[str, int]) -> list[list[str]]:
    """Greedy slot reuse: each owner, in order of birth, takes the smallest free slot it fits,
    else grows the largest free one, else opens a new slot."""
    slots: list[list[str]] = []
    capacity: list[int] = []  # per-item elements of each slot
    busy_until: list[int] = []  # death of each slot's current occupant
    for r in owners:
        need = _per_item(graph.shape(r))
        free = [i for i in range(len(slots)) if busy_until[i] < birth[r]]
        fitting = [i for i in free if capacity[i] >= need]
        if fitting:
            chosen = min(fitting, key=lambda i: (capacity[i], i))
        elif free:
            chosen = max(free, key=lambda i: (capacity[i], -i))
        else:
            slots.append([])
            capacity.append(0)
            busy_until.append(-1)
            chosen = len(slots) - 1
        slots[chosen].append(r)
        capacity[chosen] = max(capacity[chosen], need)
        busy_until[chosen] = death[r]
    return slots


def plan_buffers(graph: Graph) -> BufferPlan:
    """The buffer plan of `graph` (see BufferPlan): greedy slot reuse in emission order."""
    live = liveness(graph)
    shared, in_place = _storage(graph, live)
    order = live.order
    root = {n: shared.root(n) for n in order}
    owners = [n for n in order if root[n] == n and graph.op(n) != Op.INPUT]
    birth = {r: live.position[r] for r in owners}
    death = {r: shared.death(r) for r in owners}
    slots = _assign_slots(graph, owners, birth, death)
    return BufferPlan(order=order, shapes={r: tuple(graph.shape(r)) for r in owners}, root=root,
                      slots=tuple(tuple(s) for s in slots), birth=birth, death=death, in_place=in_place,
                      views=frozenset(n for n in order if aliased_inputs(graph, n, CUPY_VIEWS)),
                      columns={n: c for n in order if (c := _workspace_columns(graph, n))})


# ---- copying kernels ---------------------------------------------------------------------------


@functools.cache
def _definitions(module: ModuleType) -> dict[str, tuple[int, str, frozenset[str]]]:
    """Top-level name -> (position, source text, names it references) for the functions, classes
    and assigned constants of a kernel module."""
    text = inspect.getsource(module)
    tree = ast.parse(text)
    found = {}
    for index, node in enumerate(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names = [node.target.id]  # `_CACHE: dict = {}`: annotated for mypy
        else:
            continue
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        segment = "\n".join(text.splitlines()[start - 1:node.end_lineno])
        used = frozenset(n.id for n in ast.walk(node) if isinstance(n, ast.Name))
        for name in names:
            found[name] = (index, segment, used)
    return found


class _Rename(ast.NodeTransformer):
    def __init__(self, names: dict[str, str]):
        self.names = names

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self.names.get(node.id, node.id)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        node.name = self.names.get(node.name, node.name)
        self.generic_visit(node)
        return node


def _host_sources(names: set[str]) -> list[str]:
    """NumPy kernels used as host fallbacks, with their helpers, renamed `_host_<name>`."""
    definitions = _definitions(numpy_kernels)
    needed = reachable([_HOST_FALLBACKS[n] for n in names], {n: d[2] for n, d in definitions.items()})
    renames = {n: f"_host_{n.lstrip('_')}" for n in needed}
    sources = []
    for name in sorted(needed, key=lambda n: definitions[n][0]):
        tree = ast.parse(definitions[name][1])
        sources.append(ast.unparse(_Rename(renames).visit(tree)))
    return sources


def kernel_sources(names: list[str], provided: frozenset[str] = frozenset()) -> list[str]:
    """Sources of `names` from cupy_kernels and everything they reach (functions, classes,
    constants; host fallbacks renamed), in the module's order; `provided` names are left out
    (the module header defines them)."""
    definitions = _definitions(cupy_kernels)
    references = {n: d[2] for n, d in definitions.items()}
    references.update({n: frozenset() for n in _HOST_FALLBACKS})  # host fallbacks: NumPy's, copied below
    found = reachable(names, references, stop=provided)
    host = found & set(_HOST_FALLBACKS)
    needed = found - host
    segments = dict.fromkeys(definitions[n][1] for n in sorted(needed, key=lambda n: definitions[n][0]))
    return _host_sources(host) + list(segments)


def reserved_names() -> set[str]:
    """Names generated code must not use for values."""
    return _RESERVED | set(_definitions(cupy_kernels)) | {f"_host_{n.lstrip('_')}" for n in
                                                          _definitions(numpy_kernels)}


# ---- the module --------------------------------------------------------------------------------


def _call(graph: Graph, name: str, ns: Namespace, plan: BufferPlan) -> tuple[str, str]:
    """The statement's right-hand side and its storage note."""
    node = graph.node(name)
    op, info = node.op, record(node.op)
    inputs = [ns.name(i) for i in graph.inputs_of(name)]
    if info.kernel is None:  # dropout
        return inputs[0], "view"
    positional, keywords = kernel_call(op, node.attrs, inputs, graph.params_of(name), lambda p: f"params[{p!r}]",
                                       node.shape)
    args = ["None" if a is None else a for a in positional]
    args += [f"{k}={v if k in info.keyword_inputs else repr(v)}" for k, v in keywords.items()]
    if name in plan.views:
        note = "view"
    elif name in plan.in_place:
        args.append(f"out={inputs[0]}")
        note = "in place"
    else:
        args.append(f"out=out[{name!r}]")
        note = f"slot {plan.slot_of[name]}"
    if name in plan.columns:
        args.append("workspace=workspace")
    if record(op).on_host:
        note += ", on the host"
    return f"{info.kernel}({', '.join(args)})", note


def generate(graph: Graph, *, tf32: bool = False) -> str:
    """The generated CuPy module's source text. Its kernels are NCHW only: the NumPy code's
    channels-last values (passes/layout.py) are laid out NCHW again first."""
    from ..passes.layout import nchw_everywhere

    graph = nchw_everywhere(graph)
    plan = plan_buffers(graph)
    ns = Namespace(reserved_names())
    inputs = graph.info.inputs
    blockers = [f"{n}: {graph.op(n)} runs on the host" for n in plan.order if record(graph.op(n)).on_host]
    first = ns.name(inputs[0]) if inputs else None
    lines = [
        *docstring(graph, " for CuPy", [
            "Run it:  run = runner(load_params()); outputs = run(x)   # x: a NumPy or CuPy float32 array",
            "runner() keeps the parameters and preallocated buffers on the GPU and replays a CUDA graph;",
            "forward(params, x) runs once, eagerly. Parameters are float32 arrays by name; load_params()",
            "reads the .npz file saved beside this module and uploads it."]),
        "import math",
        "import os",
        "from pathlib import Path",
        "",
        "import cupy as cp",
        "import numpy as np",
        "",
        *interface_tables(graph),
        f"WORKSPACE_LIMIT = {cupy_kernels.WORKSPACE_LIMIT!r}  # bytes of im2col columns; larger batches run in chunks",
        f"TF32 = {bool(tf32)!r}  # runner()'s default: TF32 tensor cores in GEMMs (~1e-3 relative error a product)",
        "# Activation storage: each slot holds the values listed, in turn (never two alive at once);",
        "# views (flatten, reshape, dropout) and in-place statements use their input's storage.",
        "SHAPES = {",
        *(f"    {r!r}: {plan.shapes[r]!r}," for roots in plan.slots for r in roots),
        "}",
        "SLOTS = (",
        *(f"    {roots!r}," for roots in plan.slots),
        ")",
        f"COLUMNS = {tuple(plan.columns.values())!r}  # im2col/col2im elements per image of the GEMM convolutions",
        f"CUDA_GRAPH_BLOCKERS = {tuple(blockers)!r}  # host steps: no CUDA graph capture",
        "",
        "",
        "def allocate(batch, workspace_limit=WORKSPACE_LIMIT):",
        '    """Activation buffers for `batch` examples: ({value: array}, workspace). The workspace holds',
        "    the im2col columns of as many images as fit in workspace_limit bytes (at least one).\"\"\"",
        "    slots = [cp.empty(max(math.prod(batch_shape(SHAPES[v], batch)) for v in values), dtype=cp.float32)",
        "             for values in SLOTS]",
        "    out = {v: slot[:math.prod(batch_shape(SHAPES[v], batch))].reshape(batch_shape(SHAPES[v], batch))",
        "           for slot, values in zip(slots, SLOTS) for v in values}",
        "    return out, cp.empty(workspace_elements(COLUMNS, batch, workspace_limit), dtype=cp.float32)",
        "",
        "",
        f"def forward(params, {''.join(f'{ns.name(n)}, ' for n in inputs)}buffers=None):",
        '    """Run the network once on float32 NCHW CuPy arrays; returns a dict of outputs, which are',
        '    views of `buffers` (from allocate(); default: new ones)."""',
        f"    out, workspace = allocate({first}.shape[0]) if buffers is None else buffers"
        if first else "    out, workspace = allocate(1) if buffers is None else buffers",
    ]
    for name in plan.order:
        if graph.op(name) == Op.INPUT:
            continue
        call, note = _call(graph, name, ns, plan)
        lines.append(f"    {ns.name(name)} = {call}  # {statement_comment(graph.node(name))}, {note}")
    lines.append(return_statement(graph, ns.name))
    lines += [
        "",
        "",
        "def upload_params(values):",
        '    """The parameters as float32 CuPy arrays (copied to the GPU once)."""',
        "    return {name: cp.asarray(np.ascontiguousarray(values[name], dtype=np.float32)) for name in PARAMETERS}",
        "",
        "",
        *load_params_function("Parameters from an .npz file (default: this module's path with .npz), on the GPU.",
                              "upload_params(params)"),
        "",
        "",
        "def runner(params, *, cuda_graph=True, tf32=TF32, outputs='numpy', workspace_limit=WORKSPACE_LIMIT):",
        '    """A callable `run(*inputs) -> {output: array}` with buffers and a CUDA graph per input shape."""',
        "    return Runner(forward, allocate, list(INPUTS), params, blockers=CUDA_GRAPH_BLOCKERS,",
        "                  cuda_graph=cuda_graph, tf32=tf32, outputs=outputs, workspace_limit=workspace_limit)",
        "",
        "",
        "# ---- kernels, copied from cnnc.kernels.cupy_kernels (host fallbacks from numpy_kernels) ----",
    ]
    for source in kernel_sources(kernels_used(graph, plan.order) + ["Runner", "batch_shape", "workspace_elements"],
                                 provided=frozenset({"WORKSPACE_LIMIT"})):
        lines += ["", "", source]
    return "\n".join(lines) + "\n"
