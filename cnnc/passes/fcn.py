"""Fully convolutional networks (Long, Shelhamer and Darrell, CVPR 2015): dense layers as convs.

`dense_to_conv` (level 0: it runs only when asked for, `fcn=True` / `--fcn` or by name):

- `flatten` of a [N, C, H, W] tensor followed by `dense(O)` becomes `conv(O, kernel H×W)`,
  stride 1, no padding, reading the 4-D tensor; its weight is the dense weight reshaped to
  [O, C, H, W] (a derived parameter: flatten is C-order, so feature c·H·W + h·W + w is exactly
  tap (c, h, w)); the bias is the dense bias itself. The flatten goes once nothing reads it.
- `dense` on [N, C, 1, 1] (after global_avg_pool, or after a dense converted above, whose
  output is now [N, O, 1, 1] instead of [N, O]) becomes a 1×1 conv (weight [O, C, 1, 1]).
- Pointwise ops between a flatten and its dense (relu, dropout, …) move before the flatten
  (they commute with it), so `flatten |> dropout |> dense` converts too.
- Values that were [N, F] become [N, F, 1, 1] where everything involved can follow: pointwise
  ops, bn/channel_affine and add/mul work on either rank; softmax and concat along axis 1 (the
  channel axis in both ranks; an axis of -1 is rewritten to 1); a flatten of [N, C, 1, 1]
  disappears; flatten and reshape of a lifted value give what they gave before. The set is a
  greatest fixed point, so two dense heads that are added or concatenated convert together.
  A dense whose [N, F] output must stay 2-D (it meets a 2-D network input, a softmax over the
  batch, …) is left a dense, and reshape_inputs names it if the input size changes.

`reshape_inputs(graph, input_shapes)` then gives the converted graph a larger input: every
shape is re-inferred, and the network computes a score map [N, classes, h, w], one score
vector per window of the declared input size, the windows `stride` pixels apart where stride is
the product of the trunk's strides (exactly the classifier on that crop when the trunk has no
padding; with padding, a window sees real pixels where the crop saw zeros).

After the conversion only these depend on the declared size: the explicit pads that `pad=same`
was resolved to at elaboration (SAME_UPPER; at a size with another remainder modulo the stride,
re-elaborating would choose other pads), crop sizes (refused), and a dense layer that could
not be converted (refused, naming the layer). `dense_to_conv` marks the graph
`graph.info.fully_convolutional = True` so that later passes do not bake the declared size in
(lower_pooling keeps an avg pool whose window is the whole input).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

import networkx as nx

from ..errors import CnncNameError, CnncShapeError
from ..ir import ops as o
from ..ir.graph import Graph, Shape
from ..ir.input_shape import override_input_shape, shown
from ..ir.ops import Op, Rank, infer_shape, param_specs, record
from ..ir.shapes import ShapeRuleError, fmt
from ..ir.verify import verify
from .derived import derive
from .manager import PASSES, register
from .rewrite import bypass, sole_user


def _rank(graph: Graph, name: str) -> Rank:
    """How the node meets a lifted [N, F, 1, 1] value (the record's `rank`, cnnc.ir.ops.Rank)."""
    return record(graph.op(name)).rank


# ---- dense_to_conv ---------------------------------------------------------------------------

def _pointwise_chain(graph: Graph, flatten: str) -> list[str]:
    """The pointwise ops between `flatten` and a dense, each the sole user of the one before
    ([] unless the chain is non-empty and ends in a dense)."""
    chain, node = [], sole_user(graph, flatten)
    while node is not None and _rank(graph, node) == Rank.POINTWISE:
        chain.append(node)
        node = sole_user(graph, node)
    return chain if node is not None and graph.op(node) == Op.DENSE else []


def _sink_flatten(graph: Graph, flatten: str) -> bool:
    """Move the pointwise ops between a flatten of a 4-D tensor and a dense before the flatten."""
    chain = _pointwise_chain(graph, flatten)
    for node in chain:  # swap flatten and node: node reads the 4-D tensor, flatten reads node
        source = graph.inputs_of(flatten)[0]
        graph.replace_uses(node, flatten)
        graph.remove_edge(flatten, node, key=0)
        graph.remove_edge(source, flatten, key=0)
        graph.add_edge(source, node, key=0)
        graph.add_edge(node, flatten, key=0)
        graph.replace(node, shape=graph.shape(source))
    return bool(chain)


def _flattens_4d(graph: Graph, name: str) -> bool:
    return graph.op(name) == Op.FLATTEN and len(graph.shape(graph.inputs_of(name)[0])) == 4


def _may_lift(graph: Graph, name: str) -> bool:
    """Whether the 2-D node `name` could compute [N, F, 1, 1] instead of [N, F] (given inputs
    that do the same)."""
    op = graph.op(name)
    if op == Op.FLATTEN:  # of [N, C, 1, 1]: lifted, it is the identity
        return graph.shape(graph.inputs_of(name)[0])[2:] == (1, 1)
    if _rank(graph, name) == Rank.ALONG_AXIS:
        return graph.attrs(name).axis % 2 == 1
    return op == Op.DENSE or _rank(graph, name) in (Rank.POINTWISE, Rank.RANK_FREE)


def _stays_liftable(graph: Graph, name: str, lifted: set[str]) -> bool:
    inputs = graph.inputs_of(name)
    op = graph.op(name)
    if op == Op.DENSE:  # a conv needs a 4-D input: a lifted one, or the tensor a flatten reads
        fed = inputs[0] in lifted or _flattens_4d(graph, inputs[0])
    else:
        fed = op == Op.FLATTEN or all(i in lifted for i in inputs)
    # every reader must take [N, F, 1, 1] too (outputs may: that is the score map)
    read = all(user in lifted or _rank(graph, user) == Rank.ABSORBS for user, _ in graph.users(name))
    return fed and read


def _liftable(graph: Graph) -> set[str]:
    """The 2-D nodes to compute [N, F, 1, 1] instead of [N, F].

    First the largest set in which every input a node needs lifted is, and every reader takes
    the 4-D value (a greatest fixed point); then only its connected parts that hold a dense
    (the others would change ranks, outputs' included, for nothing). Each part is closed under
    both rules on its own, since any edge between lifted nodes joins their parts.
    """
    lifted = {n for n in graph if len(graph.shape(n)) == 2 and _may_lift(graph, n)}
    while True:
        stuck = {n for n in lifted if not _stays_liftable(graph, n, lifted)}
        if not stuck:
            break
        lifted -= stuck
    parts = nx.weakly_connected_components(graph.subgraph(lifted))
    return {n for part in parts if any(graph.op(m) == Op.DENSE for m in part) for n in part}


def _to_conv(graph: Graph, dense: str) -> None:
    """Rewrite `dense`, whose input is 4-D or a flatten of a 4-D tensor, as a conv over it."""
    attrs: o.DenseAttrs = graph.attrs(dense)
    source = graph.inputs_of(dense)[0]
    if _flattens_4d(graph, source):  # read the 4-D tensor; the flatten goes when unused
        flatten, source = source, graph.inputs_of(source)[0]
        graph.remove_edge(flatten, dense, key=0)
        graph.add_edge(source, dense, key=0)
        if not graph.out_degree(flatten) and not graph.is_output(flatten):
            graph.remove_node(flatten)
    _, c, h, w = graph.shape(source)
    params = graph.params_of(dense)
    # Precondition (the dense shape rule): the weight is [units, C·H·W], flattened in C order,
    # so reshaping it to [units, C, H, W] puts every weight on the tap it multiplied.
    assert tuple(graph.info.param_specs[params["weight"]].shape) == (attrs.units, c * h * w)
    weight = derive(graph, f"{params['weight']}~conv", "reshape", (params["weight"],), (attrs.units, c, h, w))
    conv = o.ConvAttrs(filters=attrs.units, kernel=(h, w), stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1),
                       groups=1, bias=attrs.bias, activation=attrs.activation, slope=attrs.slope)
    graph.replace(dense, op=Op.CONV, attrs=conv, params={**params, "weight": weight})


def _reinfer_lifted(graph: Graph, name: str) -> None:
    """The shape of a node whose inputs were lifted (softmax/concat now along axis 1)."""
    attrs = graph.attrs(name)
    if _rank(graph, name) == Rank.ALONG_AXIS:
        attrs = replace(attrs, axis=1)
    graph.replace(name, attrs=attrs, shape=infer_shape(graph.op(name), attrs,
                                                       [graph.shape(i) for i in graph.inputs_of(name)]))


@register("dense_to_conv", level=0, after=("eliminate_identity",))
def dense_to_conv(graph: Graph) -> bool:
    """Fully convolutional: flatten+dense → a conv over the whole map, later denses → 1x1 convs."""
    graph.info.fully_convolutional = True  # later passes: the graph will run at other input sizes
    changed = False
    for name in graph.topo_order():
        if _flattens_4d(graph, name):
            changed |= _sink_flatten(graph, name)
    lifted = _liftable(graph)
    for name in graph.topo_order():  # inputs before readers: each sees its inputs' new shapes
        if name not in graph:
            continue  # a flatten that _to_conv removed
        if graph.op(name) == Op.DENSE and (name in lifted or len(graph.shape(name)) == 4):
            _to_conv(graph, name)
            _reinfer_lifted(graph, name)
            changed = True
        elif name in lifted and graph.op(name) == Op.FLATTEN:
            bypass(graph, name)  # [N, C, 1, 1] → [N, C, 1, 1]
        elif name in lifted or any(i in lifted for i in graph.inputs_of(name)):
            _reinfer_lifted(graph, name)  # lifted ops, and the flattens/reshapes reading them
    return changed


# ---- reshape_inputs --------------------------------------------------------------------------

def _layer_error(graph: Graph, name: str, message: str) -> CnncShapeError:
    spans = graph.spans(name)
    return CnncShapeError(f"layer '{name}' ({graph.op(name)}) {message}", spans[0] if spans else None,
                          where=name)


def _set_input_shapes(graph: Graph, input_shapes: Mapping[str, tuple]) -> None:
    """Give the graph's inputs their new shapes (a symbolic batch stays symbolic)."""
    for name, shape in input_shapes.items():
        if name not in graph.info.inputs:
            raise CnncNameError(f"input shape given for unknown input '{name}'; the inputs are: "
                                f"{', '.join(graph.info.inputs)}", where="input_shapes")
        declared = graph.shape(name)
        overridden = override_input_shape(declared, shape)
        if overridden is None:
            raise CnncShapeError(f"input shape {shown(shape)} does not fit the declared {fmt(declared)} "
                                 "(same rank, positive sizes)", where=f"input '{name}'")
        graph.replace(name, shape=overridden)


def _resized_attrs(graph: Graph, name: str, old_in: Shape, old_out: Shape, new_in: Shape) -> object:
    """A reshape that only regroups channels ([N, C, H, W] → [N, *t, H, W], prod(t) = C, as
    lower_pooling makes for depthwise pools) does the same at any H, W; other attrs stay."""
    attrs = graph.attrs(name)
    if graph.op(name) != Op.RESHAPE or len(old_in) != 4 or len(new_in) != 4:
        return attrs
    if tuple(old_out[-2:]) == tuple(old_in[2:]) and math.prod(old_out[1:-2]) == old_in[1] == new_in[1]:
        return o.ReshapeAttrs((*old_out[1:-2], *new_in[2:]))
    return attrs


def _reinfer(graph: Graph, name: str, old: Mapping[str, Shape]) -> None:
    """Re-infer one node's shape from its (re-inferred) inputs; its parameters must still fit."""
    inputs = graph.inputs_of(name)
    shapes = [graph.shape(i) for i in inputs]
    if all(s == old[i] for s, i in zip(shapes, inputs)):
        return
    op = graph.op(name)
    if op == Op.CROP:
        raise _layer_error(graph, name, f"has a size fixed at elaboration ({graph.attrs(name).size}); "
                           f"it cannot follow its input from {fmt(old[inputs[0]])} to {fmt(shapes[0])}")
    attrs = _resized_attrs(graph, name, old[inputs[0]], old[name], shapes[0])
    try:
        shape = infer_shape(op, attrs, shapes)
    except ShapeRuleError as error:
        raise _layer_error(graph, name, f"cannot take the new input size: {error}") from None
    for role, spec in param_specs(op, attrs, shapes).items():
        param = graph.node(name).params[role]
        had = graph.info.param_specs[param].shape
        if tuple(spec.shape) != tuple(had):
            hint = ("; a dense layer fixes its input size (dense_to_conv converts one only after a "
                    "flatten of a 4-D tensor or on [N, C, 1, 1])") if op == Op.DENSE else ""
            raise _layer_error(graph, name, f"would need its {role} to be {fmt(spec.shape)} for the input "
                               f"{fmt(shapes[0])}, but {param} is {fmt(had)}{hint}")
    graph.replace(name, attrs=attrs, shape=shape)


def reshape_inputs(graph: Graph, input_shapes: Mapping[str, tuple]) -> Graph:
    """A copy of `graph` whose inputs have `input_shapes`, every shape re-inferred.

    Parameters keep their shapes (checked); a layer that cannot take the new size raises
    CnncShapeError naming it. Meant for graphs that went through dense_to_conv.
    """
    result = graph.clone()
    _set_input_shapes(result, input_shapes)
    old = {name: graph.shape(name) for name in graph}
    for name in result.topo_order():
        if result.op(name) != Op.INPUT:
            _reinfer(result, name, old)
    verify(result)
    planned, result.info.memory_plan = result.info.memory_plan is not None, None
    if planned and "plan_memory" in PASSES:
        PASSES["plan_memory"].run(result)  # the plan records the shapes it was made for
    return result
