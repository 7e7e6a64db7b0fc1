"""`cnnc summary`: a per-layer table like Keras's summary or torchinfo, with totals."""
from __future__ import annotations

from .ir.cost import node_cost, peak_with_plan, peak_without_plan
from .ir.graph import Graph
from .ir.shapes import fmt


def _human(count: float, unit: str = "") -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= scale:
            return f"{count / scale:.2f} {suffix}{unit}"
    return f"{count:.0f} {unit}".rstrip()


def summary_table(graph: Graph) -> str:
    """The table as text: layer, op, output shape, params, MACs; then the totals."""
    rows = [("layer", "op", "output shape", "params", "MACs")]
    total_params = total_macs = total_bytes = 0
    for name in graph.topo_order():
        cost = node_cost(graph, name)
        total_params += cost.params
        total_macs += cost.macs
        total_bytes += cost.activation_bytes
        rows.append((name, str(graph.op(name)), fmt(graph.shape(name)),
                     f"{cost.params:,}" if cost.params else "", f"{cost.macs:,}" if cost.macs else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    rule = "-" * (sum(widths) + 8)

    def line(row: tuple) -> str:
        return "  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].ljust(widths[2]),
                          row[3].rjust(widths[3]), row[4].rjust(widths[4])])

    stats = [n for n in graph.info.param_specs if n.endswith((".mean", ".var"))]
    stat_count = sum(graph.info.param_specs[n].shape[0] for n in stats)
    body = [line(rows[0]), rule, *(line(r) for r in rows[1:]), rule,
            f"Total params: {total_params:,} ({_human(total_params)}), of which BN running statistics "
            f"(mean, var): {stat_count:,}; trainable: {total_params - stat_count:,}",
            f"Total MACs (conv, dense; per example): {total_macs:,} ({_human(total_macs)})",
            f"Activation memory (all layer outputs, float32, per example): {_human(total_bytes, 'B')}",
            f"Parameter memory (float32): {_human(4 * total_params, 'B')}"]
    return "\n".join([*body, _peak_line(graph)])


def _peak_line(graph: Graph) -> str:
    """Peak activation memory of the code generated from `graph`, without and with the plan_memory
    pass's plan (computed here when the graph was not planned, e.g. at -O0, summary's default)."""
    from .passes.memory import current_plan, memory_plan

    plan = current_plan(graph)
    if plan is None:
        plan = memory_plan(graph)
    return (f"Peak activation memory (float32, batch 1): {_human(peak_without_plan(graph), 'B')} without planning, "
            f"{_human(peak_with_plan(graph, plan), 'B')} with plan_memory")
