"""Export a network as an ONNX model (opset 17; 20 with gelu) of its un-optimized IR.

    net = cnnc.compile("examples/resnet18.cnn")
    cnnc.export_onnx(net, net.params, "resnet18.onnx")    # or export_onnx(net, path="...")

The exported graph is `net.source_graph`, the IR before optimization passes: one ONNX node per
layer (a few layers take two), named after the layer, with the parameters as initializers under
their cnnc names (`layer1.0.conv1.weight`). A symbolic batch dimension stays symbolic. Every
mapping is exact (docs/onnx.md lists them); an op without an exact ONNX equivalent is a CnncError.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import CnncError
from ..ir import ops as o
from ..ir.graph import Graph
from ..ir.ops import Op
from ..names import unique
from . import onnx_functions

OPSET = 17  # unless a node needs a later one: gelu (ONNX's Gelu) needs 20
# The IR version of the ONNX release that introduced each opset (1.12: 17, 1.15: 20), so that
# older runtimes read what they can.
IR_VERSIONS = {17: 8, 20: 9}


def _source_graph(net_or_graph: object) -> tuple[Graph, Mapping | None]:
    from ..runtime.network import CompiledNetwork

    if isinstance(net_or_graph, CompiledNetwork):
        return net_or_graph.source_graph, net_or_graph.params
    if isinstance(net_or_graph, Graph):
        source = net_or_graph.info.source_graph
        return (net_or_graph if source is None else source), None
    raise CnncError(f"expected a compiled network or an IR graph, got {type(net_or_graph).__name__}",
                    where="export_onnx")


class Exporter:
    def __init__(self, graph: Graph, params: Mapping[str, np.ndarray]):
        from .onnx_import import require_onnx

        onnx = require_onnx()
        from onnx import helper

        self.onnx, self.helper = onnx, helper
        self.graph = graph
        self.params = params
        self.nodes: list = []
        self.initializers: list = []
        self.taken: set[str] = set(graph.info.param_specs)
        self.value_names: dict[str, str] = {}
        self.opset = OPSET  # raised by the handlers of ops that need a later one
        self.functions: dict[str, onnx_functions.LocalOp] = {}  # the model-local functions its nodes call
        # Inputs and outputs keep their names (they are what users feed and read); an output
        # names its node's value directly unless that node is an input or another output's.
        for node in graph.info.inputs:
            self.value_names[node] = self._claim(node, "input")
        for out_name, node in graph.info.outputs.items():
            claimed = self._claim(out_name, "output")
            if node not in self.value_names:
                self.value_names[node] = claimed

    # ---- names --------------------------------------------------------------------------------
    def _claim(self, name: str, what: str) -> str:
        if name in self.taken:
            raise CnncError(f"the {what} name '{name}' is also the name of another input, output or parameter; "
                            "ONNX needs distinct names", where="export_onnx")
        self.taken.add(name)
        return name

    def fresh(self, base: str) -> str:
        """`base`, or `base_2`, … (names.unique): a name not yet in the model. Names the exporter
        makes up (`conv1:shape`) carry a `:`, which no layer name has, so they never take a
        layer's name."""
        name = unique(base, self.taken)
        self.taken.add(name)
        return name

    def value(self, node: str) -> str:
        """The ONNX value name of an IR node's output: the layer name when it is free."""
        if node not in self.value_names:
            self.value_names[node] = self.fresh(node)
        return self.value_names[node]

    def constant(self, base: str, array: np.ndarray) -> str:
        name = self.fresh(base)
        self.initializers.append((name, np.asarray(array)))
        return name

    def param(self, node: str, role: str, reshape: tuple | None = None) -> str | None:
        name = self.graph.node(node).params.get(role)
        if name is None:
            return None
        array = np.asarray(self.params[name], dtype=np.float32)
        if reshape is not None:
            array = array.reshape(reshape)
        self.initializers.append((name, array))
        return name

    def add(self, op_type: str, inputs: Sequence[str | None], name: str, output: str, **attrs: Any) -> None:
        self.nodes.append(self.helper.make_node(op_type, ["" if i is None else i for i in inputs], [output],
                                                name=name, **attrs))

    # ---- the graph ----------------------------------------------------------------------------
    def run(self) -> Any:
        helper, graph = self.helper, self.graph
        inputs, outputs = [], []
        for node in graph.info.inputs:
            inputs.append(helper.make_tensor_value_info(self.value(node), self.onnx.TensorProto.FLOAT,
                                                        list(graph.shape(node))))
        for node in graph.topo_order():
            op = graph.op(node)
            if op == Op.INPUT:
                continue
            handler = _HANDLERS.get(op)
            if handler is None:
                raise CnncError(f"op '{op}' has no ONNX export (exported ops: "
                                f"{', '.join(sorted(str(k) for k in _HANDLERS))})", where=f"layer '{node}'")
            handler(self, node, graph.attrs(node), [self.value(i) for i in graph.inputs_of(node)])
        for out_name, node in graph.info.outputs.items():
            value = self.value(node)
            if value != out_name:
                self.add("Identity", [value], self.fresh(f"output:{out_name}"), out_name)
            outputs.append(helper.make_tensor_value_info(out_name, self.onnx.TensorProto.FLOAT,
                                                         list(graph.shape(node))))
        name = graph.info.source_name
        onnx_graph = helper.make_graph(self.nodes, name, inputs, outputs)
        for init_name, array in self.initializers:  # filled in place: large weights are copied once
            tensor = onnx_graph.initializer.add()
            tensor.name = init_name
            tensor.data_type = self.helper.np_dtype_to_tensor_dtype(array.dtype)
            tensor.dims.extend(array.shape)
            tensor.raw_data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        opsets = [helper.make_opsetid("", self.opset)]
        if self.functions:
            opsets.append(helper.make_opsetid(onnx_functions.DOMAIN, 1))
        functions = [local.body(helper, self.onnx, self.opset) for local in self.functions.values()]
        model = helper.make_model(onnx_graph, opset_imports=opsets, producer_name="cnnc",
                                  doc_string=f"exported by cnnc from {name}", functions=functions)
        model.ir_version = IR_VERSIONS[self.opset]
        self.onnx.checker.check_model(model)
        return model

    # ---- ops ----------------------------------------------------------------------------------
    def _no_fusion(self, node: str, attrs, inputs: list[str]) -> None:
        if getattr(attrs, "activation", "none") != "none" or len(inputs) > 1:
            raise CnncError("is a fused layer from an optimization pass; export the un-optimized graph "
                            "(net.source_graph)", where=f"layer '{node}'")

    def conv(self, node: str, a: o.ConvAttrs, inputs: list[str]) -> None:
        self._no_fusion(node, a, inputs)
        self.add("Conv", [inputs[0], self.param(node, "weight"), self.param(node, "bias")], node, self.value(node),
                 kernel_shape=list(a.kernel), strides=list(a.stride), pads=list(a.pads), dilations=list(a.dilation),
                 group=a.groups)

    def conv_transpose(self, node: str, a: o.ConvTransposeAttrs, inputs: list[str]) -> None:
        self.add("ConvTranspose", [inputs[0], self.param(node, "weight"), self.param(node, "bias")], node,
                 self.value(node), kernel_shape=list(a.kernel), strides=list(a.stride), pads=list(a.pads),
                 output_padding=list(a.output_padding), dilations=list(a.dilation), group=a.groups)

    def dense(self, node: str, a: o.DenseAttrs, inputs: list[str]) -> None:
        self._no_fusion(node, a, inputs)
        shape = self.graph.shape(self.graph.inputs_of(node)[0])
        if len(shape) == 4:  # [N, F, 1, 1] → [N, units, 1, 1]: exactly a 1×1 convolution
            weight = self.param(node, "weight", reshape=(a.units, shape[1], 1, 1))
            self.add("Conv", [inputs[0], weight, self.param(node, "bias")], node, self.value(node),
                     kernel_shape=[1, 1])
        else:
            self.add("Gemm", [inputs[0], self.param(node, "weight"), self.param(node, "bias")], node,
                     self.value(node), transB=1)

    def batch_norm(self, node: str, a: o.BatchNormAttrs, inputs: list[str]) -> None:
        roles = [self.param(node, r) for r in ("gamma", "beta", "mean", "var")]
        self.add("BatchNormalization", [inputs[0], *roles], node, self.value(node), epsilon=float(a.eps))

    def relu6(self, node: str, a: object, inputs: list[str]) -> None:
        low = self.constant(f"{node}:min", np.array(0.0, np.float32))
        high = self.constant(f"{node}:max", np.array(6.0, np.float32))
        self.add("Clip", [inputs[0], low, high], node, self.value(node))

    def hardsigmoid(self, node: str, a: object, inputs: list[str]) -> None:
        self.add("HardSigmoid", inputs, node, self.value(node), alpha=1 / 6, beta=0.5)

    def silu(self, node: str, a: object, inputs: list[str]) -> None:
        """x · sigmoid(x): ONNX has no SiLU (the importer reads the pair back as silu)."""
        gate = self.fresh(f"{node}:sigmoid")
        self.add("Sigmoid", inputs, gate, gate)
        self.add("Mul", [inputs[0], gate], node, self.value(node))

    def gelu(self, node: str, a: object, inputs: list[str]) -> None:
        form = next(word for word, op in o.GELU_FORMS.items() if op == self.graph.op(node))
        self.opset = max(self.opset, 20)  # Gelu is an opset 20 op
        self.add("Gelu", inputs, node, self.value(node), approximate=form)

    def leaky_relu(self, node: str, a: o.LeakyReluAttrs, inputs: list[str]) -> None:
        self.add("LeakyRelu", inputs, node, self.value(node), alpha=float(a.slope))

    def softmax(self, node: str, a: o.SoftmaxAttrs, inputs: list[str]) -> None:
        self.add("Softmax", inputs, node, self.value(node), axis=int(a.axis))

    def dropout(self, node: str, a: o.DropoutAttrs, inputs: list[str]) -> None:
        if a.mode != "element":  # stochastic depth has no ONNX op; at inference it is the identity
            self.add("Identity", inputs[:1], node, self.value(node))
            return
        ratio = self.constant(f"{node}:ratio", np.array(a.rate, np.float32))
        self.add("Dropout", [inputs[0], ratio], node, self.value(node))

    def lrn(self, node: str, a: o.LrnAttrs, inputs: list[str]) -> None:
        if a.size % 2 == 0:
            raise CnncError(f"lrn size={a.size}: ONNX puts the extra channel of an even window after the centre, "
                            "cnnc before it; only odd sizes export exactly", where=f"layer '{node}'")
        self.add("LRN", inputs, node, self.value(node), size=a.size, alpha=float(a.alpha * a.size),
                 beta=float(a.beta), bias=float(a.k))

    def max_pool(self, node: str, a: o.MaxPoolAttrs, inputs: list[str]) -> None:
        self.add("MaxPool", inputs, node, self.value(node), kernel_shape=list(a.kernel), strides=list(a.stride),
                 pads=list(a.pads), dilations=list(a.dilation), ceil_mode=int(a.ceil_mode))

    def avg_pool(self, node: str, a: o.AvgPoolAttrs, inputs: list[str]) -> None:
        self.add("AveragePool", inputs, node, self.value(node), kernel_shape=list(a.kernel), strides=list(a.stride),
                 pads=list(a.pads), ceil_mode=int(a.ceil_mode), count_include_pad=int(a.count_include_pad))

    def depthwise_pool(self, node: str, a: o.DepthwisePoolAttrs, inputs: list[str]) -> None:
        _, c, h, w = self.graph.shape(self.graph.inputs_of(node)[0])
        shape = self.constant(f"{node}:shape", np.array([0, c // a.size, a.size, h, w], np.int64))
        grouped = self.fresh(f"{node}:groups")
        self.add("Reshape", [inputs[0], shape], self.fresh(f"{node}:reshape"), grouped)
        self.add("ReduceMax" if a.mode == "max" else "ReduceMean", [grouped], node, self.value(node), axes=[2],
                 keepdims=0)

    def reshape(self, node: str, a: o.ReshapeAttrs, inputs: list[str]) -> None:
        shape = self.constant(f"{node}:shape", np.array([0, *a.shape], np.int64))  # 0: keep the batch
        self.add("Reshape", [inputs[0], shape], node, self.value(node))

    def flatten(self, node: str, a: object, inputs: list[str]) -> None:
        self.add("Flatten", inputs, node, self.value(node), axis=1)

    def concat(self, node: str, a: o.ConcatAttrs, inputs: list[str]) -> None:
        self.add("Concat", inputs, node, self.value(node), axis=int(a.axis))

    def upsample(self, node: str, a: o.UpsampleAttrs, inputs: list[str]) -> None:
        scales = self.constant(f"{node}:scales", np.array([1, 1, *a.scale], np.float32))
        if a.mode == "nearest":  # out[i] = in[⌊i / s⌋]
            options = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
        else:  # PyTorch's bilinear, align_corners=False
            options = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
        self.add("Resize", [inputs[0], "", scales], node, self.value(node), **options)

    def pad(self, node: str, a: o.PadAttrs, inputs: list[str]) -> None:
        top, left, bottom, right = a.pads
        pads = self.constant(f"{node}:pads", np.array([0, 0, top, left, 0, 0, bottom, right], np.int64))
        extra = [self.constant(f"{node}:value", np.array(a.value, np.float32))] if a.mode == "constant" else []
        self.add("Pad", [inputs[0], pads, *extra], node, self.value(node), mode=a.mode)

    def slice(self, node: str, a: o.SliceAttrs, inputs: list[str]) -> None:
        starts = self.constant(f"{node}:starts", np.array([a.start], np.int64))
        ends = self.constant(f"{node}:ends", np.array([a.stop], np.int64))
        axes = self.constant(f"{node}:axes", np.array([a.axis], np.int64))
        self.add("Slice", [inputs[0], starts, ends, axes], node, self.value(node))

    def crop(self, node: str, a: o.CropAttrs, inputs: list[str]) -> None:
        (oy, ox), (h, w) = a.offset, a.size
        starts = self.constant(f"{node}:starts", np.array([oy, ox], np.int64))
        ends = self.constant(f"{node}:ends", np.array([oy + h, ox + w], np.int64))
        axes = self.constant(f"{node}:axes", np.array([2, 3], np.int64))
        self.add("Slice", [inputs[0], starts, ends, axes], node, self.value(node))

    def _per_channel(self, node: str, role: str) -> str | None:
        """A per-channel parameter shaped to broadcast against the node's input ([C, 1, 1] for 4-D)."""
        rank = len(self.graph.shape(self.graph.inputs_of(node)[0]))
        c = self.graph.shape(node)[1]
        return self.param(node, role, reshape=(c,) + (1,) * (rank - 2))

    def layer_norm(self, node: str, a: o.NormAttrs, inputs: list[str]) -> None:
        """ONNX's LayerNormalization normalizes the trailing axes: channels-last around it."""
        rank = len(self.graph.shape(self.graph.inputs_of(node)[0]))
        gamma, beta = self.param(node, "gamma"), self.param(node, "beta")
        if rank == 2:
            self.add("LayerNormalization", [inputs[0], gamma, beta], node, self.value(node), axis=-1,
                     epsilon=float(a.eps))
            return
        last = [0, *range(2, rank), 1]
        first = [0, rank - 1, *range(1, rank - 1)]
        moved, normed = self.fresh(f"{node}:channels_last"), self.fresh(f"{node}:normalized")
        self.add("Transpose", inputs, moved, moved, perm=last)
        self.add("LayerNormalization", [moved, gamma, beta], self.fresh(f"{node}:layer_norm"), normed, axis=-1,
                 epsilon=float(a.eps))
        self.add("Transpose", [normed], node, self.value(node), perm=first)

    def group_norm(self, node: str, a: o.NormAttrs, inputs: list[str]) -> None:
        """[N, G, rest] InstanceNormalization (unit scale), back to the input's shape, then γ, β per
        channel: exact, and valid in every opset (GroupNormalization's scale changed meaning in 21)."""
        shape = self.graph.shape(self.graph.inputs_of(node)[0])
        grouped, normed, restored, scaled = (self.fresh(f"{node}:{w}") for w in ("groups", "normalized",
                                                                                 "restored", "scaled"))
        self.add("Reshape", [inputs[0], self.constant(f"{node}:group_shape", np.array([0, a.groups, -1], np.int64))],
                 self.fresh(f"{node}:reshape"), grouped)
        self.add("InstanceNormalization", [grouped, self.constant(f"{node}:ones", np.ones(a.groups, np.float32)),
                                           self.constant(f"{node}:zeros", np.zeros(a.groups, np.float32))],
                 self.fresh(f"{node}:instance_norm"), normed, epsilon=float(a.eps))
        self.add("Reshape", [normed, self.constant(f"{node}:shape", np.array([0, *shape[1:]], np.int64))],
                 self.fresh(f"{node}:reshape_back"), restored)
        self.add("Mul", [restored, self._per_channel(node, "gamma")], self.fresh(f"{node}:gamma"), scaled)
        self.add("Add", [scaled, self._per_channel(node, "beta")], node, self.value(node))

    def layer_scale(self, node: str, a: object, inputs: list[str]) -> None:
        self.add("Mul", [inputs[0], self._per_channel(node, "scale")], node, self.value(node))

    def clip(self, node: str, a: o.ClipAttrs, inputs: list[str]) -> None:
        low = self.constant(f"{node}:min", np.array(a.min, np.float32))
        high = self.constant(f"{node}:max", np.array(a.max, np.float32))
        self.add("Clip", [inputs[0], low, high], node, self.value(node))

    def scalar_affine(self, node: str, a: o.ScalarAffineAttrs, inputs: list[str]) -> None:
        scale = self.constant(f"{node}:scale", np.array(a.scale, np.float32))
        if not a.shift:
            self.add("Mul", [inputs[0], scale], node, self.value(node))
            return
        scaled = self.fresh(f"{node}:scaled")
        self.add("Mul", [inputs[0], scale], scaled, scaled)
        self.add("Add", [scaled, self.constant(f"{node}:shift", np.array(a.shift, np.float32))], node,
                 self.value(node))

    def adaptive_pool(self, node: str, a: o.AdaptivePoolAttrs, inputs: list[str]) -> None:
        """ONNX has no adaptive pooling: bins of equal size are a plain pool, (1, 1) a global one."""
        _, _, h, w = self.graph.shape(self.graph.inputs_of(node)[0])
        ho, wo = a.size
        if (ho, wo) == (1, 1):
            self.add("GlobalMaxPool" if a.mode == "max" else "GlobalAveragePool", inputs, node, self.value(node))
        elif h % ho == 0 and w % wo == 0:
            kernel = [h // ho, w // wo]
            self.add("MaxPool" if a.mode == "max" else "AveragePool", inputs, node, self.value(node),
                     kernel_shape=kernel, strides=kernel)
        else:
            raise CnncError(f"adaptive pooling of {h}x{w} to {ho}x{wo} has bins of different sizes, which no ONNX "
                            "op computes; only sizes that divide the input export", where=f"layer '{node}'")

    def channel_shuffle(self, node: str, a: o.ChannelShuffleAttrs, inputs: list[str]) -> None:
        _, c, h, w = self.graph.shape(self.graph.inputs_of(node)[0])
        split, swapped = self.fresh(f"{node}:split"), self.fresh(f"{node}:swapped")
        self.add("Reshape", [inputs[0], self.constant(f"{node}:split_shape",
                                                      np.array([0, a.groups, c // a.groups, h, w], np.int64))],
                 self.fresh(f"{node}:reshape"), split)
        self.add("Transpose", [split], self.fresh(f"{node}:transpose"), swapped, perm=[0, 2, 1, 3, 4])
        self.add("Reshape", [swapped, self.constant(f"{node}:shape", np.array([0, c, h, w], np.int64))], node,
                 self.value(node))

    def pixel_shuffle(self, node: str, a: o.PixelShuffleAttrs, inputs: list[str]) -> None:
        self.add("DepthToSpace", inputs, node, self.value(node), blocksize=a.factor, mode="CRD")

    def prelu(self, node: str, a: object, inputs: list[str]) -> None:
        self.add("PRelu", [inputs[0], self._per_channel(node, "slope")], node, self.value(node))

    def permute(self, node: str, a: o.PermuteAttrs, inputs: list[str]) -> None:
        self.add("Transpose", inputs, node, self.value(node), perm=list(a.order))

    def local_function(self, node: str, attrs: object, inputs: list[str]) -> None:
        """A detection op as one `ai.cnnc` node of a model-local function (cnnc/interop/onnx_functions.py)."""
        local = onnx_functions.local_op(self.graph.op(node), attrs, len(inputs))
        assert local is not None
        shapes = [self.graph.shape(i) for i in self.graph.inputs_of(node)]
        constants = [self.constant(f"{node}:{local.name.lower()}{i}", value)
                     for i, value in enumerate(local.constants(attrs, shapes))]
        self.functions[local.name] = local  # its function is written with the model's final opset
        self.nodes.append(self.helper.make_node(local.name, [*inputs, *constants], [self.value(node)], name=node,
                                                domain=onnx_functions.DOMAIN, **local.attributes(attrs)))

    def reduce(self, node: str, a: o.ReduceAttrs, inputs: list[str]) -> None:
        op_type = {"mean": "ReduceMean", "max": "ReduceMax", "sum": "ReduceSum"}[a.mode]
        if a.mode == "sum":  # ReduceSum takes its axes as an input from opset 13
            axes = self.constant(f"{node}:axes", np.array(a.axes, np.int64))
            self.add(op_type, [inputs[0], axes], node, self.value(node), keepdims=int(a.keepdims))
        else:
            self.add(op_type, inputs, node, self.value(node), axes=list(a.axes), keepdims=int(a.keepdims))


# An op's exporter: (exporter, IR node name, the node's attrs, its input value names).
Handler = Callable[[Exporter, str, Any, list[str]], None]


def _simple(op_type: str) -> Handler:
    """An op that maps onto one ONNX op with the same inputs and no attributes."""
    def export(self: Exporter, node: str, attrs: object, inputs: list[str]) -> None:
        self.add(op_type, inputs, node, self.value(node))
    return export


_HANDLERS: dict[Op, Handler] = {
    Op.CONV: Exporter.conv,
    Op.CONV_TRANSPOSE: Exporter.conv_transpose,
    Op.DENSE: Exporter.dense,
    Op.FLATTEN: Exporter.flatten,
    Op.RESHAPE: Exporter.reshape,
    Op.BATCH_NORM: Exporter.batch_norm,
    Op.RELU: _simple("Relu"),
    Op.SIGMOID: _simple("Sigmoid"),
    Op.TANH: _simple("Tanh"),
    Op.RELU6: Exporter.relu6,
    Op.HARDSIGMOID: Exporter.hardsigmoid,
    Op.HARDSWISH: _simple("HardSwish"),
    Op.SILU: Exporter.silu,
    Op.GELU: Exporter.gelu,
    Op.GELU_TANH: Exporter.gelu,
    Op.LEAKY_RELU: Exporter.leaky_relu,
    Op.SOFTMAX: Exporter.softmax,
    Op.DROPOUT: Exporter.dropout,
    Op.LRN: Exporter.lrn,
    Op.MAX_POOL: Exporter.max_pool,
    Op.AVG_POOL: Exporter.avg_pool,
    Op.GLOBAL_AVG_POOL: _simple("GlobalAveragePool"),
    Op.GLOBAL_MAX_POOL: _simple("GlobalMaxPool"),
    Op.DEPTHWISE_POOL: Exporter.depthwise_pool,
    Op.ADD: _simple("Add"),
    Op.MUL: _simple("Mul"),
    Op.SUB: _simple("Sub"),
    Op.DIV: _simple("Div"),
    Op.SCALAR_AFFINE: Exporter.scalar_affine,
    Op.LAYER_NORM: Exporter.layer_norm,
    Op.GROUP_NORM: Exporter.group_norm,
    Op.LAYER_SCALE: Exporter.layer_scale,
    Op.CLIP: Exporter.clip,
    Op.ADAPTIVE_POOL: Exporter.adaptive_pool,
    Op.CHANNEL_SHUFFLE: Exporter.channel_shuffle,
    Op.PIXEL_SHUFFLE: Exporter.pixel_shuffle,
    Op.CONCAT: Exporter.concat,
    Op.UPSAMPLE: Exporter.upsample,
    Op.PAD: Exporter.pad,
    Op.CROP: Exporter.crop,
    Op.SLICE: Exporter.slice,
    Op.PRELU: Exporter.prelu,
    Op.PERMUTE: Exporter.permute,
    Op.MATMUL: _simple("MatMul"),
    Op.REDUCE: Exporter.reduce,
    Op.NMS: Exporter.local_function,
    Op.YOLO_DECODE: Exporter.local_function,
    Op.INSTANCE_MASKS: Exporter.local_function,
}


def to_model(net_or_graph: object, params: Mapping[str, np.ndarray] | None = None, *, seed: int = 0) -> Any:
    """The `onnx.ModelProto` that `export_onnx` writes."""
    from ..runtime.params import ParamStore, init_params

    graph, own = _source_graph(net_or_graph)
    specs = graph.info.param_specs
    values = params if params is not None else own
    if values is None:
        values = init_params(specs, seed)
    elif not isinstance(values, ParamStore) or values.specs != specs:
        store = ParamStore({}, {})
        store.specs = dict(specs)
        store.update_from(values, "params")  # every name and shape checked, all or nothing
        values = store.data
    return Exporter(graph, values).run()


def export_onnx(net_or_graph: object, params: Mapping[str, np.ndarray] | None = None,
                path: str | os.PathLike[str] | None = None, *, seed: int = 0) -> Any:
    """Write `net_or_graph` (a CompiledNetwork, or an IR Graph) as an ONNX model at `path`.

    The model is the un-optimized IR (`net.source_graph`) with opset 17 (20 with gelu). `params`
    defaults to the network's own (`net.params`), or for a bare graph to the seeded
    initialization (`seed`).
    Returns the `onnx.ModelProto`; with `path` None nothing is written.
    """
    from ..runtime.files import atomic_write

    model = to_model(net_or_graph, params, seed=seed)
    if path is not None:
        data = model.SerializeToString()
        with atomic_write(path, "wb") as handle:
            handle.write(data)
    return model
