"""A stable text form of the IR, for `cnnc compile --emit ir` and golden tests."""
from __future__ import annotations

from ..source import safe_comment, source_location
from .graph import Graph
from .ops import Op, attrs_dict, record
from .shapes import fmt


def _value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value
    return repr(value)


def print_graph(graph: Graph) -> str:
    """One line per node in topological order: `%name = op(inputs) {attrs} : shape  # file:line`."""
    lines = [f"# IR of {safe_comment(graph.info.source_name)}"]
    for name in graph.topo_order():
        node = graph.node(name)
        where = source_location(node.spans)
        if node.op == Op.INPUT:
            lines.append(f"input %{name} : {fmt(node.shape)}  # {where}")
            continue
        inputs = [f"%{i}" for i in graph.inputs_of(name)]
        keywords = record(node.op).keyword_inputs  # the inputs after the plain ones, by keyword
        plain = 1 if keywords else len(inputs)  # as ops.kernel_call passes them
        labels = [f"{k}={v}" for k, v in zip(keywords, inputs[plain:])] if len(inputs) > plain else []
        args = ", ".join([*inputs[:plain], *labels])
        attrs = ", ".join(f"{k}={_value(v)}" for k, v in attrs_dict(node.attrs).items())
        specs = graph.info.param_specs
        params = ", ".join(f"{role}={fmt(specs[p].shape)}" for role, p in node.params.items())
        text = f"%{name} = {node.op}({args})"
        if attrs:
            text += f" {{{attrs}}}"
        if params:
            text += f" params({params})"
        lines.append(f"{text} : {fmt(node.shape)}  # {where}")
    for out, value in graph.info.outputs.items():
        lines.append(f"output {out} = %{value}")
    return "\n".join(lines) + "\n"
