"""The ops a `.cnn` file can call: their arguments, defaults, and how they become IR nodes.

Every entry names its arguments in order (after the tensor inputs, which come first and are
usually supplied by `|>`), a converter and a default for each (REQUIRED when none), and a
builder that emits one or more IR nodes through the elaborator's `emit`.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..ir import ops as o
from ..ir.ops import Op
from . import arguments as a
from .values import Tensor

REQUIRED = object()


class Emitter(Protocol):
    def emit(self, op: Op, attrs: object, inputs: list[Tensor], suffix: str | None = None) -> Tensor:
        """Add an IR node (named after the layer, plus `.suffix` when given) and return its value."""


@dataclass(frozen=True)
class ArgSpec:
    name: str
    convert: a.Converter
    default: object = REQUIRED


@dataclass(frozen=True)
class LayerOp:
    name: str
    inputs: int | None  # tensor inputs taken first; None: one or more
    args: tuple[ArgSpec, ...]
    build: Callable[[Emitter, list[Tensor], dict], Tensor]
    summary: str


def same_pads(size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
              dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """SAME_UPPER (TF/ONNX): output = ceil(input / stride), odd padding goes bottom/right."""
    begin, end = [], []
    for n, k, s, d in zip(size, kernel, stride, dilation):
        total = max((math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0)
        begin.append(total // 2)
        end.append(total - total // 2)
    return (begin[0], begin[1], end[0], end[1])


def _resolve_pads(pad, x: Tensor, kernel, stride, dilation) -> tuple[int, int, int, int]:
    if pad == "valid":
        return (0, 0, 0, 0)
    if pad == "same":
        return same_pads((x.shape[2], x.shape[3]), kernel, stride, dilation)
    return pad


def _conv_attrs(x: Tensor, args: dict, filters: int, groups: int, bias: bool) -> o.ConvAttrs:
    return o.ConvAttrs(filters, args["kernel"], args["stride"],
                       _resolve_pads(args["pad"], x, args["kernel"], args["stride"], args["dilation"]),
                       args["dilation"], groups, bias)


def _build_conv(e: Emitter, xs: list[Tensor], args: dict) -> Tensor:
    (x,) = xs
    return e.emit(Op.CONV, _conv_attrs(x, args, args["filters"], args["groups"], args["bias"]), xs)


def _channels(x: Tensor) -> int:
    return x.shape[1] if len(x.shape) > 1 else 1


def _build_depthwise(e: Emitter, xs: list[Tensor], args: dict) -> Tensor:
    (x,) = xs
    c = _channels(x)
    return e.emit(Op.CONV, _conv_attrs(x, args, c * args["multiplier"], c, args["bias"]), xs)


def _build_separable(e: Emitter, xs: list[Tensor], args: dict) -> Tensor:
    (x,) = xs
    c = _channels(x)
    depthwise = e.emit(Op.CONV, _conv_attrs(x, args, c * args["multiplier"], c, False), xs, "depthwise")
    pointwise = o.ConvAttrs(args["filters"], (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, args["bias"])
    return e.emit(Op.CONV, pointwise, [depthwise], "pointwise")


def _build_conv_transpose(e: Emitter, xs: list[Tensor], args: dict) -> Tensor:
    pad = args["pad"]
    if pad == "same":
        raise a.ArgError("pad=same is not available; give the padding explicitly")
    attrs = o.ConvTransposeAttrs(args["filters"], args["kernel"], args["stride"],
                                 (0, 0, 0, 0) if pad == "valid" else pad, args["output_padding"],
                                 args["dilation"], args["groups"], args["bias"])
    return e.emit(Op.CONV_TRANSPOSE, attrs, xs)


def _build_max_pool(e: Emitter, xs: list[Tensor], args: dict) -> Tensor:
    stride = args["stride"] or args["kernel"]
    pads = _resolve_pads(args["pad"], xs[0], args["kernel"], stride, args["dilation"])
    return e.emit(Op.MAX_POOL, o.MaxPoolAttrs(args["kernel"], stride, pads, args["dilation"],
                                              args["ceil_mode"]), xs)


def _build_avg_pool(e: Emitter, xs: list[Tensor], args: dict) -> Tensor:
    stride = args["stride"] or args["kernel"]
    pads = _resolve_pads(args["pad"], xs[0], args["kernel"], stride, (1, 1))
    return e.emit(Op.AVG_POOL, o.AvgPoolAttrs(args["kernel"], stride, pads, args["ceil_mode"],
                                              args["count_include_pad"]), xs)


def _simple(op: Op, attrs_type: type = o.NoAttrs) -> Callable:
    """A builder for ops whose converted arguments are exactly their attrs fields."""
    def build(e: Emitter, xs: list[Tensor], args: dict) -> Tensor:
        return e.emit(op, attrs_type(**args), xs)
    return build


def _depthwise_pool(mode: str) -> Callable:
    def build(e: Emitter, xs: list[Tensor], args: dict) -> Tensor:
        return e.emit(Op.DEPTHWISE_POOL, o.DepthwisePoolAttrs(args["size"], mode), xs)
    return build


def _build_crop(e: Emitter, xs: list[Tensor], args: dict) -> Tensor:
    return e.emit(Op.CROP, o.CropAttrs(args["offset"], args["size"]), xs)


def _build_pad(e: Emitter, xs: list[Tensor], args: dict) -> Tensor:
    pads = args["pad"]
    if isinstance(pads, str):
        raise a.ArgError("argument 'pad' takes explicit sizes, not same/valid")
    return e.emit(Op.PAD, o.PadAttrs(pads, args["mode"], args["value"]), xs)


def _optional_pair(value: object) -> tuple[int, int] | None:
    return None if value is None else a.to_pair(value)


_WINDOW = (ArgSpec("stride", a.to_pair, (1, 1)), ArgSpec("pad", a.to_padding, (0, 0, 0, 0)),
           ArgSpec("dilation", a.to_pair, (1, 1)))
_POOL = (ArgSpec("kernel", a.to_pair), ArgSpec("stride", _optional_pair, None),
         ArgSpec("pad", a.to_padding, (0, 0, 0, 0)))

_TABLE = [
    LayerOp("conv", 1, (ArgSpec("filters", a.to_positive_int), ArgSpec("kernel", a.to_pair), *_WINDOW,
                        ArgSpec("groups", a.to_positive_int, 1), ArgSpec("bias", a.to_bool, True)),
            _build_conv, "2-D convolution"),
    LayerOp("depthwise_conv", 1, (ArgSpec("kernel", a.to_pair), *_WINDOW,
                                  ArgSpec("multiplier", a.to_positive_int, 1), ArgSpec("bias", a.to_bool, True)),
            _build_depthwise, "one filter per input channel (groups = channels)"),
    LayerOp("separable_conv", 1, (ArgSpec("filters", a.to_positive_int), ArgSpec("kernel", a.to_pair), *_WINDOW,
                                  ArgSpec("multiplier", a.to_positive_int, 1), ArgSpec("bias", a.to_bool, True)),
            _build_separable, "depthwise conv, then a 1x1 conv (Xception)"),
    LayerOp("conv_transpose", 1, (ArgSpec("filters", a.to_positive_int), ArgSpec("kernel", a.to_pair),
                                  ArgSpec("stride", a.to_pair, (1, 1)), ArgSpec("pad", a.to_padding, (0, 0, 0, 0)),
                                  ArgSpec("output_padding", a.to_nonnegative_pair, (0, 0)),
                                  ArgSpec("dilation", a.to_pair, (1, 1)), ArgSpec("groups", a.to_positive_int, 1),
                                  ArgSpec("bias", a.to_bool, True)),
            _build_conv_transpose, "transposed (fractionally strided) convolution"),
    LayerOp("dense", 1, (ArgSpec("units", a.to_positive_int), ArgSpec("bias", a.to_bool, True)),
            _simple(Op.DENSE, o.DenseAttrs), "fully connected layer"),
    LayerOp("flatten", 1, (), _simple(Op.FLATTEN), "[N, ...] → [N, features]"),
    LayerOp("reshape", 1, (ArgSpec("shape", a.to_int_tuple),), _simple(Op.RESHAPE, o.ReshapeAttrs),
            "reshape all but the batch dimension"),
    LayerOp("bn", 1, (ArgSpec("eps", a.to_float, 1e-5),), _simple(Op.BATCH_NORM, o.BatchNormAttrs),
            "batch normalization (inference)"),
    LayerOp("relu", 1, (), _simple(Op.RELU), "max(x, 0)"),
    LayerOp("leaky_relu", 1, (ArgSpec("slope", a.to_float, 0.01),), _simple(Op.LEAKY_RELU, o.LeakyReluAttrs),
            "x, or slope·x below 0"),
    LayerOp("relu6", 1, (), _simple(Op.RELU6), "min(max(x, 0), 6)"),
    LayerOp("sigmoid", 1, (), _simple(Op.SIGMOID), "1 / (1 + e^-x)"),
    LayerOp("tanh", 1, (), _simple(Op.TANH), "hyperbolic tangent"),
    LayerOp("softmax", 1, (ArgSpec("axis", a.to_int, 1),), _simple(Op.SOFTMAX, o.SoftmaxAttrs),
            "softmax along an axis"),
    LayerOp("dropout", 1, (ArgSpec("rate", a.to_probability, 0.5),), _simple(Op.DROPOUT, o.DropoutAttrs),
            "identity at inference"),
    LayerOp("lrn", 1, (ArgSpec("size", a.to_positive_int, 5), ArgSpec("alpha", a.to_float, 1e-4),
                       ArgSpec("beta", a.to_float, 0.75), ArgSpec("k", a.to_float, 2.0)),
            _simple(Op.LRN, o.LrnAttrs), "local response normalization across channels (AlexNet)"),
    LayerOp("maxpool", 1, (*_POOL, ArgSpec("dilation", a.to_pair, (1, 1)),
                           ArgSpec("ceil_mode", a.to_bool, False)),
            _build_max_pool, "max pooling"),
    LayerOp("avgpool", 1, (*_POOL, ArgSpec("ceil_mode", a.to_bool, False),
                           ArgSpec("count_include_pad", a.to_bool, True)),
            _build_avg_pool, "average pooling"),
    LayerOp("global_avg_pool", 1, (), _simple(Op.GLOBAL_AVG_POOL), "[N, C, H, W] → [N, C, 1, 1] mean"),
    LayerOp("global_max_pool", 1, (), _simple(Op.GLOBAL_MAX_POOL), "[N, C, H, W] → [N, C, 1, 1] max"),
    LayerOp("depthwise_maxpool", 1, (ArgSpec("size", a.to_positive_int),), _depthwise_pool("max"),
            "max over groups of `size` channels"),
    LayerOp("depthwise_avgpool", 1, (ArgSpec("size", a.to_positive_int),), _depthwise_pool("avg"),
            "mean over groups of `size` channels"),
    LayerOp("add", 2, (), _simple(Op.ADD), "elementwise sum with broadcasting (also `a + b`)"),
    LayerOp("mul", 2, (), _simple(Op.MUL), "elementwise product with broadcasting (also `a * b`)"),
    LayerOp("concat", None, (ArgSpec("axis", a.to_int, 1),), _simple(Op.CONCAT, o.ConcatAttrs),
            "join tensors along an axis (channels by default)"),
    LayerOp("upsample", 1, (ArgSpec("scale", a.to_pair, (2, 2)),
                            ArgSpec("mode", a.choice("nearest", "bilinear"), "nearest")),
            _simple(Op.UPSAMPLE, o.UpsampleAttrs), "upsample by an integer factor"),
    LayerOp("pad", 1, (ArgSpec("pad", a.to_padding), ArgSpec("mode", a.choice("constant", "reflect", "edge"),
                                                             "constant"),
                       ArgSpec("value", a.to_float, 0.0)),
            _build_pad, "spatial padding"),
    LayerOp("crop", 1, (ArgSpec("size", a.to_size), ArgSpec("offset", a.to_nonnegative_pair, (0, 0))),
            _build_crop, "spatial crop to a size (or to another tensor's size)"),
    LayerOp("slice", 1, (ArgSpec("axis", a.to_int), ArgSpec("start", a.to_int), ArgSpec("stop", a.to_int)),
            _simple(Op.SLICE, o.SliceAttrs), "the part start:stop of one axis"),
    LayerOp("iou", 2, (ArgSpec("format", a.choice(*o.BOX_FORMATS), "corners"),),
            _simple(Op.IOU, o.IouAttrs), "pairwise intersection over union of two sets of boxes"),
    LayerOp("nms", 2, (ArgSpec("iou_threshold", a.to_fraction, 0.5),
                       ArgSpec("score_threshold", a.to_nonnegative_float, 0.05),
                       ArgSpec("max_boxes", a.to_positive_int, 100),
                       ArgSpec("format", a.choice(*o.BOX_FORMATS), "corners")),
            _simple(Op.NMS, o.NmsAttrs), "class-wise non-maximum suppression to [N, max_boxes, 6] detections"),
    LayerOp("yolo_decode", 1, (ArgSpec("anchors", a.to_anchors), ArgSpec("classes", a.to_positive_int),
                               ArgSpec("stride", a.to_pair)),
            _simple(Op.YOLO_DECODE, o.YoloDecodeAttrs), "YOLO head → [N, H·W·anchors, 4 + classes] boxes and scores"),
]

LAYER_OPS: dict[str, LayerOp] = {op.name: op for op in _TABLE}
