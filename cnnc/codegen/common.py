"""Pieces every generated module shares: the docstring header, the interface tables, comments."""
from __future__ import annotations

import re
from collections.abc import Callable

from .. import __version__
from ..ir.graph import Graph, Node
from ..ir.ops import kernel_call, record
from ..ir.shapes import fmt
from ..source import safe_comment, source_location


def statement_comment(node: Node) -> str:
    """What follows a node's statement: `file:line name: op -> [shape]` (safe inside a comment),
    plus `, stored channels-last` for a value the channels_last pass lays out [N, H, W, C]."""
    stored = ", stored channels-last" if getattr(node.attrs, "layout_out", "nchw") == "nhwc" else ""
    return f"{source_location(node.spans)} {safe_comment(node.name)}: {node.op} -> {fmt(node.shape)}{stored}"


# Finds a statement_comment in a line of generated code; group 1 is the layer's name.
STATEMENT_LAYER = re.compile(r"#.* (\S+): \w+ -> \[")


def statement(target: str, kernel: str | None, args: list[str], comment: str, width: int = 120) -> list[str]:
    """`target = kernel(args)  # comment` inside `forward`, on one line when it fits in `width`,
    else with the comment after the open parenthesis and the arguments wrapped beneath, so the
    comment stays on the statement's first line (runtime/network.py finds it there).
    `kernel` None: a plain assignment of the one argument (dropout)."""
    call = args[0] if kernel is None else f"{kernel}({', '.join(args)})"
    one = f"    {target} = {call}  # {comment}"
    if len(one) <= width or kernel is None:
        return [one]
    lines, current = [f"    {target} = {kernel}(  # {comment}"], "       "
    for i, arg in enumerate(args):
        piece = f" {arg}{',' if i < len(args) - 1 else ')'}"
        if len(current) + len(piece) > width and current.strip():
            lines.append(current)
            current = "       "
        current += piece
    lines.append(current)
    return lines


def kernel_arguments(graph: Graph, name: str, name_of: Callable[[str], str]) -> list[str]:
    """The arguments of the node's kernel call as generated code writes them: its inputs
    (`name_of` each), `params[...]` lookups (None for an absent optional one), then the
    keyword arguments, keyword inputs by variable and the rest by `repr`."""
    node = graph.node(name)
    info = record(node.op)
    inputs = [name_of(i) for i in graph.inputs_of(name)]
    positional, keywords = kernel_call(node.op, node.attrs, inputs, graph.params_of(name),
                                       lambda p: f"params[{p!r}]", node.shape)
    args = ["None" if a is None else a for a in positional]
    return args + [f"{k}={v if k in info.keyword_inputs else repr(v)}" for k, v in keywords.items()]


def return_statement(graph: Graph, name_of: Callable[[str], str]) -> str:
    """`forward`'s last line: the outputs by name, each the variable `name_of(node)`."""
    return "    return {" + ", ".join(f"{o!r}: {name_of(n)}" for o, n in graph.info.outputs.items()) + "}"


def kernels_used(graph: Graph, order: list[str] | tuple[str, ...], epilogues: bool = False) -> list[str]:
    """The kernel names the nodes in `order` call, sorted (ops without a kernel call none); with
    `epilogues`, also the activation kernels their fused epilogues run by name (the NumPy
    `_epilogue` looks them up: an activation's kernel is named after its op)."""
    used = {kernel for n in order if (kernel := record(graph.op(n)).kernel) is not None}
    if epilogues:
        used |= {graph.attrs(n).activation for n in order
                 if record(graph.op(n)).fused_epilogue and graph.attrs(n).activation != "none"}
    return sorted(used)


def docstring(graph: Graph, target: str, usage: list[str]) -> list[str]:
    """The module docstring: what it was compiled from, its interface, how to run it."""
    # inside the docstring, a quote or backslash in a file name must not end or break it
    source_name = safe_comment(graph.info.source_name).replace("\\", "\\\\").replace('"', '\\"')
    outputs = graph.info.outputs
    return [
        f'"""Network compiled by cnnc {__version__}{target} from {source_name} (generated code: do not edit).',
        "",
        "Inputs:  " + ", ".join(f"{n} {fmt(graph.shape(n))}" for n in graph.info.inputs),
        "Outputs: " + ", ".join(f"{o} {fmt(graph.shape(n))}" for o, n in outputs.items()),
        *usage,
        '"""',
    ]


def interface_tables(graph: Graph) -> list[str]:
    """INPUTS, OUTPUTS and PARAMETERS: names and shapes, as Python literals."""
    inputs, outputs = graph.info.inputs, graph.info.outputs
    return [
        f"INPUTS = {{{', '.join(f'{n!r}: {graph.shape(n)!r}' for n in inputs)}}}",
        f"OUTPUTS = {{{', '.join(f'{o!r}: {graph.shape(n)!r}' for o, n in outputs.items())}}}",
        "PARAMETERS = {",
        *(f"    {p!r}: {tuple(spec.shape)!r}," for p, spec in graph.info.param_specs.items()),
        "}",
    ]


def load_params_function(doc: str, result: str) -> list[str]:
    """`load_params(path=None)`: read the .npz beside the module, check names and shapes against
    PARAMETERS, and return `result` (an expression of `params`)."""
    return [
        "def load_params(path=None):",
        f'    """{doc}"""',
        "    path = Path(__file__).with_suffix('.npz') if path is None else Path(path)",
        "    with np.load(path, allow_pickle=False) as archive:",
        "        params = {name: archive[name].astype(np.float32) for name in archive.files}",
        "    missing = sorted(set(PARAMETERS) - set(params))",
        "    if missing:",
        "        raise KeyError(f'{path}: missing parameter {missing[0]!r}')",
        "    for name, shape in PARAMETERS.items():",
        "        if params[name].shape != shape:",
        "            raise ValueError(f'{path}: parameter {name!r} has shape {params[name].shape}, expected {shape}')",
        f"    return {result}",
    ]
