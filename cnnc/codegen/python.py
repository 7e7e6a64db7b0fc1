"""Emit a self-contained Python module that runs the network with NumPy.

The module imports numpy and nothing from cnnc: the kernels it calls are copied into it. Its
`forward` has one statement per IR node, each commented with the `.cnn` line it came from.
Output is deterministic: the same graph always gives the same text.
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ir.ops import Op, record
from ..kernels import numpy_kernels
from ..passes.memory import current_plan
from .common import (
    docstring,
    interface_tables,
    kernel_arguments,
    kernels_used,
    load_params_function,
    return_statement,
    statement,
    statement_comment,
)
from .kernel_source import function_names, kernel_sources
from .namespace import Namespace

_RESERVED = {"np", "math", "params", "forward", "load_params", "run", "INPUTS", "OUTPUTS",
             "PARAMETERS", "Path"}


def _call(graph: Graph, name: str, ns: Namespace, in_place: bool = False) -> tuple[str | None, list[str]]:
    """The kernel and arguments computing `name` (None and the input for dropout, which has no
    kernel); `in_place`: write into the first input (`out=`)."""
    info = record(graph.op(name))
    if info.kernel is None:  # dropout
        return None, [ns.name(graph.inputs_of(name)[0])]
    args = kernel_arguments(graph, name, ns.name)
    if in_place:
        args.append(f"out={ns.name(graph.inputs_of(name)[0])}")
    return info.kernel, args


def generate(graph: Graph) -> str:
    """The generated module's source text; with the plan_memory pass's plan (when it still
    describes `graph`), values are deleted after their last use and its in-place nodes get `out=`
    (every in_place op's kernel takes it: tests/test_op_registry.py)."""
    ns = Namespace(_RESERVED | function_names(numpy_kernels))
    order = graph.topo_order()
    inputs = graph.info.inputs
    lines = [
        *docstring(graph, "", ["Parameters are float32 arrays by name; load_params() reads the .npz file saved "
                               "beside this module."]),
        "from pathlib import Path",
        "",
        "import numpy as np",
        "",
        *interface_tables(graph),
        "",
        "",
        f"def forward(params, {', '.join(ns.name(n) for n in inputs)}):",
        '    """Run the network on float32 NCHW arrays; returns a dict of outputs."""',
    ]
    plan = current_plan(graph)
    in_place = plan.in_place if plan is not None else frozenset()
    for name in order:
        if graph.op(name) == Op.INPUT:
            continue
        kernel, args = _call(graph, name, ns, name in in_place)
        lines += statement(ns.name(name), kernel, args, statement_comment(graph.node(name)))
        dead = plan.frees_after(name) if plan is not None else ()
        if dead:  # bookkeeping, not a node: lets NumPy free or reuse the arrays now
            lines.append(f"    del {', '.join(ns.name(n) for n in dead)}  # last use")
    lines.append(return_statement(graph, ns.name))
    lines += [
        "",
        "",
        *load_params_function("Parameters from an .npz file (default: this module's path with .npz).", "params"),
        "",
        "",
        "# ---- kernels, copied from cnnc.kernels.numpy_kernels ----",
    ]
    for source in kernel_sources(numpy_kernels, kernels_used(graph, order, epilogues=True)):
        lines += ["", "", source]
    return "\n".join(lines) + "\n"
