"""The memory a run needs, estimated before anything is allocated (`cnnc run --max-memory`).

The estimate is float32 parameters + inputs + the activations' peak (following the memory plan
when the graph has a current one, else every value kept to the end) + the largest kernel
workspace (im2col columns, padded copies, Winograd's bands: numpy_kernels._workspace_elements;
kernels run one at a time, so only the largest counts; a batch split into parts that run at once,
runtime/threads.py, holds one workspace per part), at the run's batch size. The estimate is
an upper-bound guide; running out anyway is still one message (CompiledNetwork.run turns
MemoryError into a CnncInputError naming the layer).
"""
from __future__ import annotations

import math
import os

from ..errors import CnncInputError
from ..ir.cost import activation_bytes, peak_with_plan, peak_without_plan
from ..ir.graph import Graph
from ..ir.ops import Op, record
from ..passes.memory import current_plan

GIB = 2**30


def machine_memory() -> int | None:
    """The machine's physical memory in bytes, where the platform tells (None elsewhere)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def run_bytes(graph: Graph, batch: int, parts: int = 1) -> int:
    """Estimated bytes of one forward pass at `batch` (a concrete batch in the shapes wins), run
    as up to `parts` parts of the batch at once (CompiledNetwork.threads)."""
    plan = current_plan(graph)
    peak = peak_with_plan(graph, plan) if plan is not None else peak_without_plan(graph)
    inputs = sum(activation_bytes(graph, n) for n in graph.info.inputs)
    params = sum(4 * math.prod(spec.shape) for spec in graph.info.param_specs.values())
    n = _batch(graph, batch)
    # The parts' activations add up to the whole batch's; their workspaces add up too, and the
    # per-image or per-band ones (depthwise, Winograd) do not grow with a part's size.
    parts = max(1, min(parts, n))
    workspace = max(max_workspace(graph, n), parts * max_workspace(graph, -(-n // parts)))
    return params + (peak + inputs) * n + 4 * workspace


def max_workspace(graph: Graph, batch: int) -> int:
    """Float32 elements of the largest kernel workspace of one forward pass at `batch`."""
    from ..kernels.numpy_kernels import _workspace_elements as workspace_elements

    largest = 0
    for name in graph.nodes:
        node = graph.node(name)
        kernel = record(node.op).kernel
        if kernel is None or node.op == Op.INPUT:
            continue
        inputs = graph.inputs_of(name)
        x_shape = _concrete(graph.shape(inputs[0]), batch) if inputs else (batch,)
        weight = node.params.get("weight")
        w_shape = graph.info.param_specs[weight].shape if weight else None
        kwargs = {"groups": getattr(node.attrs, "groups", 1), "pads": getattr(node.attrs, "pads", (0, 0, 0, 0))}
        largest = max(largest, workspace_elements(kernel, x_shape, _concrete(node.shape, batch), w_shape, kwargs))
    return largest


def _concrete(shape: tuple, batch: int) -> tuple[int, ...]:
    return tuple(batch if isinstance(d, str) else int(d) for d in shape)


def check_run_memory(graph: Graph, batch: int, limit: int, option: str = "--max-memory", parts: int = 1) -> None:
    """Refuse, naming the largest layer, when a run (as up to `parts` parts at once) would need
    more than `limit` bytes."""
    need = run_bytes(graph, batch, parts)
    if need <= limit:
        return
    largest = max(graph.nodes, key=lambda n: activation_bytes(graph, n))
    share = activation_bytes(graph, largest) * _batch(graph, batch)
    raise CnncInputError(f"the run needs about {need / GIB:.3g} GiB (layer '{largest}' alone "
                         f"{share / GIB:.3g} GiB), more than the limit of {limit / GIB:.3g} GiB; "
                         f"a smaller input or batch fits, or raise the limit with {option}", where=option)


def _batch(graph: Graph, batch: int) -> int:
    """The batch of the run: `batch` for a named batch dimension, else the declared one."""
    first = graph.shape(graph.info.inputs[0])[0] if graph.info.inputs else 1
    return batch if isinstance(first, str) else int(first)
