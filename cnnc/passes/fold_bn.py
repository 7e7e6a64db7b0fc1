"""Folding per-channel affine maps: batch norms into their producers, affine chains into one.

At inference a batch norm is y = x·s + t per channel (s = γ/√(σ²+ε), t = β − μ·s). When x
comes from a conv, transposed conv or dense layer that nothing else reads, s scales that
layer's output channels and t adds to its bias, so the BN disappears:

    W'[o] = W[o]·s[o]        b'[o] = b[o]·s[o] + t[o]   (b = 0 for a layer without bias)

The folded weight and bias are *derived* parameters (derived.py): the user's `conv1.weight`
and `bn1.gamma` keep their names and values, and the runtime recomputes `conv1.weight~bn`
whenever one of them changes. A BN that cannot fold becomes a `channel_affine` node with the
same name, so later passes see one kind of per-channel affine.
"""
from __future__ import annotations

from dataclasses import replace

from ..ir.graph import Graph
from ..ir.ops import NoAttrs, Op, record
from .derived import derive
from .manager import register
from .rewrite import absorb, set_attrs, sole_user


def _can_fold_into(graph: Graph, producer: str, node: str) -> bool:
    """Whether the per-channel affine `node` may be folded into the layer computing its input."""
    if record(graph.op(producer)).scale_rule is None:
        return False  # inputs, pools, adds, concats, …: nothing carries a per-channel weight
    if sole_user(graph, producer) != node:
        return False  # another reader (or an output) still needs the un-scaled value
    if getattr(graph.attrs(producer), "activation", "none") != "none":
        return False  # the affine comes after a fused activation, which does not commute with it
    if len(graph.inputs_of(producer)) != 1:
        return False  # a fused residual is added after the weights: scaling them misses it
    return True


def _fold_into(graph: Graph, producer: str, node: str, scale: str, shift: str) -> None:
    """Make `producer` compute producer(x)·scale + shift per output channel and absorb `node`."""
    attrs, params, specs = graph.attrs(producer), graph.params_of(producer), graph.info.param_specs
    weight = params["weight"]
    shape = tuple(specs[weight].shape)
    # The record names how its weight layout scales output channels: conv OIHW (depthwise
    # included) and dense [out, in] along axis 0; conv_transpose [in, out/groups, kh, kw] over
    # row blocks and columns, which needs the groups.
    rule = record(graph.op(producer)).scale_rule
    assert rule is not None  # _can_fold_into checked it
    extra = {"groups": attrs.groups} if rule == "scale_transpose_out_channels" else {}
    new_weight = derive(graph, f"{producer}.weight~bn", rule, (weight, scale), shape, **extra)
    bias = (params["bias"],) if "bias" in params else ()
    channels = (graph.shape(producer)[1],)
    new_bias = derive(graph, f"{producer}.bias~bn", "affine_bias", (*bias, scale, shift), channels)
    set_attrs(graph, producer, replace(attrs, bias=True))
    graph.replace(producer, params={**params, "weight": new_weight, "bias": new_bias})
    absorb(graph, producer, node)


def _bn_affine(graph: Graph, bn: str) -> tuple[str, str]:
    """Derived per-channel (scale, shift) equal to the batch norm `bn` at inference."""
    p, eps = graph.params_of(bn), graph.attrs(bn).eps
    channels = (graph.shape(bn)[1],)
    scale = derive(graph, f"{bn}.scale~bn", "bn_scale", (p["gamma"], p["var"]), channels, eps=eps)
    shift = derive(graph, f"{bn}.shift~bn", "bn_shift", (p["gamma"], p["beta"], p["mean"], p["var"]),
                   channels, eps=eps)
    return scale, shift


def _to_channel_affine(graph: Graph, node: str, scale: str, shift: str) -> None:
    """Turn `node` (same name, inputs, spans and shape) into channel_affine(scale, shift)."""
    graph.replace(node, op=Op.CHANNEL_AFFINE, attrs=NoAttrs(), params={"scale": scale, "shift": shift})


@register("fold_batch_norm", level=2, after=("dense_to_conv",))
def fold_batch_norm(graph: Graph) -> bool:
    """Fold batch norms into the conv/conv_transpose/dense before them, else into channel_affine."""
    changed = False
    for bn in graph.topo_order():
        if graph.op(bn) != Op.BATCH_NORM:
            continue
        (producer,) = graph.inputs_of(bn)  # BN has exactly one input (its record)
        scale, shift = _bn_affine(graph, bn)
        if _can_fold_into(graph, producer, bn):
            _fold_into(graph, producer, bn, scale, shift)
        else:
            _to_channel_affine(graph, bn, scale, shift)
        changed = True
    return changed


def _merge_affines(graph: Graph, first: str, second: str) -> None:
    """(x·s1 + b1)·s2 + b2 = x·(s1·s2) + (b1·s2 + b2): `first` computes both; `second` goes."""
    p1, p2 = graph.params_of(first), graph.params_of(second)
    channels = (graph.shape(first)[1],)
    scale = derive(graph, f"{first}.scale~affine", "mul", (p1["scale"], p2["scale"]), channels)
    shift = derive(graph, f"{first}.shift~affine", "affine_bias", (p1["shift"], p2["scale"], p2["shift"]),
                   channels)
    graph.replace(first, params={"scale": scale, "shift": shift})
    absorb(graph, first, second)


@register("fold_constants", level=2, after=("fold_batch_norm",))
def fold_constants(graph: Graph) -> bool:
    """Compose parameter-only transformations: merge channel_affine chains, fold them into layers.

    What "constant folding" means in cnnc: the IR has no constant tensors — every value flows
    from a network input — so the only constants are parameters, and what folds are
    compositions of parameter transformations. A channel_affine reading a single-use
    channel_affine becomes one affine (scale s1·s2, shift b1·s2 + b2), and a channel_affine
    after a single-use conv/conv_transpose/dense scales that layer's weight and bias, exactly
    as fold_batch_norm does. The results are derived parameters: the runtime evaluates them once
    per parameter change, never per call, and the user's parameters keep their names and values.
    """
    changed = False
    for node in graph.topo_order():
        if node not in graph or graph.op(node) != Op.CHANNEL_AFFINE:
            continue  # (nodes absorbed earlier in this loop are gone)
        (producer,) = graph.inputs_of(node)  # channel_affine has exactly one input (its record)
        if graph.op(producer) == Op.CHANNEL_AFFINE and sole_user(graph, producer) == node:
            # sole user: the intermediate value is read by nothing else, so it need not exist
            _merge_affines(graph, producer, node)
        elif _can_fold_into(graph, producer, node):
            p = graph.params_of(node)
            _fold_into(graph, producer, node, p["scale"], p["shift"])
        else:
            continue
        changed = True
    return changed
