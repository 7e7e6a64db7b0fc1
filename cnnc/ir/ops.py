"""The closed set of IR ops, their attributes, and how each maps onto a kernel.

Adding an op means: a member here, an attrs dataclass, an OpInfo entry, a shape rule in
shapes.py, a kernel in both kernel modules (docs/kernels.md), and a builder in the language's
op table (cnnc/language/ops.py).
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from enum import Enum

Pair = tuple[int, int]
Pads = tuple[int, int, int, int]  # (top, left, bottom, right)


class Op(str, Enum):
    INPUT = "input"
    CONV = "conv"
    CONV_TRANSPOSE = "conv_transpose"
    DENSE = "dense"
    FLATTEN = "flatten"
    RESHAPE = "reshape"
    BATCH_NORM = "batch_norm"
    RELU = "relu"
    LEAKY_RELU = "leaky_relu"
    RELU6 = "relu6"
    SIGMOID = "sigmoid"
    TANH = "tanh"
    SOFTMAX = "softmax"
    DROPOUT = "dropout"
    LRN = "lrn"
    MAX_POOL = "max_pool"
    AVG_POOL = "avg_pool"
    GLOBAL_AVG_POOL = "global_avg_pool"
    GLOBAL_MAX_POOL = "global_max_pool"
    DEPTHWISE_POOL = "depthwise_pool"
    ADD = "add"
    MUL = "mul"
    CONCAT = "concat"
    UPSAMPLE = "upsample"
    PAD = "pad"
    CROP = "crop"
    SLICE = "slice"
    IOU = "iou"
    NMS = "nms"
    YOLO_DECODE = "yolo_decode"
    # Produced by optimization passes only (no surface syntax):
    CHANNEL_AFFINE = "channel_affine"
    REDUCE = "reduce"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class NoAttrs:
    pass


ACTIVATIONS = ("none", "relu", "relu6", "leaky_relu", "sigmoid")  # fusable epilogues


@dataclass(frozen=True)
class ConvAttrs:
    """A convolution; `activation`/`slope` and a second (residual) input come from fusion."""

    filters: int
    kernel: Pair
    stride: Pair
    pads: Pads
    dilation: Pair
    groups: int
    bias: bool
    activation: str = "none"
    slope: float = 0.0


@dataclass(frozen=True)
class ConvTransposeAttrs:
    filters: int
    kernel: Pair
    stride: Pair
    pads: Pads
    output_padding: Pair
    dilation: Pair
    groups: int
    bias: bool


@dataclass(frozen=True)
class DenseAttrs:
    units: int
    bias: bool
    activation: str = "none"
    slope: float = 0.0


@dataclass(frozen=True)
class ReshapeAttrs:
    shape: tuple[int, ...]  # without the batch dimension; may hold one -1


@dataclass(frozen=True)
class BatchNormAttrs:
    eps: float


@dataclass(frozen=True)
class LeakyReluAttrs:
    slope: float


@dataclass(frozen=True)
class SoftmaxAttrs:
    axis: int


@dataclass(frozen=True)
class DropoutAttrs:
    rate: float


@dataclass(frozen=True)
class LrnAttrs:
    size: int
    alpha: float
    beta: float
    k: float


@dataclass(frozen=True)
class MaxPoolAttrs:
    kernel: Pair
    stride: Pair
    pads: Pads
    dilation: Pair
    ceil_mode: bool


@dataclass(frozen=True)
class AvgPoolAttrs:
    kernel: Pair
    stride: Pair
    pads: Pads
    ceil_mode: bool
    count_include_pad: bool


@dataclass(frozen=True)
class DepthwisePoolAttrs:
    size: int
    mode: str  # "max" | "avg"


@dataclass(frozen=True)
class ConcatAttrs:
    axis: int


@dataclass(frozen=True)
class UpsampleAttrs:
    scale: Pair
    mode: str  # "nearest" | "bilinear"


@dataclass(frozen=True)
class PadAttrs:
    pads: Pads
    mode: str  # "constant" | "reflect" | "edge"
    value: float


@dataclass(frozen=True)
class CropAttrs:
    offset: Pair
    size: Pair


@dataclass(frozen=True)
class SliceAttrs:
    axis: int  # negative counts from the end; never the batch axis
    start: int  # Python's rules: negative counts from the end
    stop: int


BOX_FORMATS = ("corners", "center")  # (x1, y1, x2, y2) | (cx, cy, w, h)


@dataclass(frozen=True)
class IouAttrs:
    format: str  # one of BOX_FORMATS


@dataclass(frozen=True)
class NmsAttrs:
    iou_threshold: float
    score_threshold: float
    max_boxes: int
    format: str  # of the input boxes; the output is always corners


@dataclass(frozen=True)
class YoloDecodeAttrs:
    anchors: tuple[tuple[float, float], ...]  # (width, height) of each anchor, in input pixels
    classes: int
    stride: Pair  # (height, width) of a grid cell, in input pixels


@dataclass(frozen=True)
class ReduceAttrs:
    mode: str  # "mean" | "max"
    axes: tuple[int, ...]
    keepdims: bool


@dataclass(frozen=True)
class OpInfo:
    """How an op is computed: the kernel function and which attrs become its keyword arguments.

    A kernel is called as `kernel(*data_inputs, *params_in_role_order, **kwargs)`; an absent
    optional parameter (a conv without bias) is passed as None. Data inputs beyond the first
    `len(inputs) - len(keyword_inputs)` are passed by keyword (a fused conv's `residual=`).
    """

    attrs: type
    kernel: str | None  # None: no kernel (input; dropout is an identity)
    kwargs: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    min_inputs: int = 1
    max_inputs: int | None = 1  # None: any number
    keyword_inputs: tuple[str, ...] = ()
    kwarg_defaults: tuple[tuple[str, object], ...] = ()  # kwargs left out when at their default


_EPILOGUE = (("activation", "none"), ("slope", 0.0))

OP_INFO: dict[Op, OpInfo] = {
    Op.INPUT: OpInfo(NoAttrs, None, min_inputs=0, max_inputs=0),
    Op.CONV: OpInfo(ConvAttrs, "conv2d", ("stride", "pads", "dilation", "groups", "activation", "slope"),
                    ("weight", "bias"), max_inputs=2, keyword_inputs=("residual",), kwarg_defaults=_EPILOGUE),
    Op.CONV_TRANSPOSE: OpInfo(
        ConvTransposeAttrs, "conv_transpose2d",
        ("stride", "pads", "output_padding", "dilation", "groups"), ("weight", "bias")),
    Op.DENSE: OpInfo(DenseAttrs, "dense", ("activation", "slope"), ("weight", "bias"), kwarg_defaults=_EPILOGUE),
    Op.FLATTEN: OpInfo(NoAttrs, "flatten"),
    Op.RESHAPE: OpInfo(ReshapeAttrs, "reshape", ("shape",)),
    Op.BATCH_NORM: OpInfo(BatchNormAttrs, "batch_norm", ("eps",), ("gamma", "beta", "mean", "var")),
    Op.RELU: OpInfo(NoAttrs, "relu"),
    Op.LEAKY_RELU: OpInfo(LeakyReluAttrs, "leaky_relu", ("slope",)),
    Op.RELU6: OpInfo(NoAttrs, "relu6"),
    Op.SIGMOID: OpInfo(NoAttrs, "sigmoid"),
    Op.TANH: OpInfo(NoAttrs, "tanh"),
    Op.SOFTMAX: OpInfo(SoftmaxAttrs, "softmax", ("axis",)),
    Op.DROPOUT: OpInfo(DropoutAttrs, None),
    Op.LRN: OpInfo(LrnAttrs, "lrn", ("size", "alpha", "beta", "k")),
    Op.MAX_POOL: OpInfo(MaxPoolAttrs, "max_pool2d", ("kernel", "stride", "pads", "dilation", "ceil_mode")),
    Op.AVG_POOL: OpInfo(
        AvgPoolAttrs, "avg_pool2d", ("kernel", "stride", "pads", "ceil_mode", "count_include_pad")),
    Op.GLOBAL_AVG_POOL: OpInfo(NoAttrs, "global_avg_pool"),
    Op.GLOBAL_MAX_POOL: OpInfo(NoAttrs, "global_max_pool"),
    Op.DEPTHWISE_POOL: OpInfo(DepthwisePoolAttrs, "depthwise_pool", ("size", "mode")),
    Op.ADD: OpInfo(NoAttrs, "add", min_inputs=2, max_inputs=2),
    Op.MUL: OpInfo(NoAttrs, "mul", min_inputs=2, max_inputs=2),
    Op.CONCAT: OpInfo(ConcatAttrs, "concat", ("axis",), min_inputs=1, max_inputs=None),
    Op.UPSAMPLE: OpInfo(UpsampleAttrs, "upsample", ("scale", "mode")),
    Op.PAD: OpInfo(PadAttrs, "pad", ("pads", "mode", "value")),
    Op.CROP: OpInfo(CropAttrs, "crop", ("offset", "size")),
    Op.SLICE: OpInfo(SliceAttrs, "slice_axis", ("axis", "start", "stop")),
    Op.IOU: OpInfo(IouAttrs, "box_iou", ("format",), min_inputs=2, max_inputs=2),
    Op.NMS: OpInfo(NmsAttrs, "nms", ("iou_threshold", "score_threshold", "max_boxes", "format"),
                   min_inputs=2, max_inputs=2),
    Op.YOLO_DECODE: OpInfo(YoloDecodeAttrs, "yolo_decode", ("anchors", "classes", "stride")),
    Op.CHANNEL_AFFINE: OpInfo(NoAttrs, "channel_affine", (), ("scale", "shift")),
    Op.REDUCE: OpInfo(ReduceAttrs, "reduce", ("mode", "axes", "keepdims")),
}


def kernel_call(op: Op, attrs: object, inputs: list, params: dict, param_value) -> tuple[list, dict]:
    """Positional and keyword arguments of the op's kernel.

    `inputs` are the data inputs (values, or names in generated code), `params` the node's
    role → parameter-name map, `param_value(name)` what to pass for a parameter.
    """
    info = OP_INFO[op]
    plain = 1 if info.keyword_inputs else len(inputs)
    args = list(inputs[:plain])
    args += [param_value(params[r]) if r in params else None for r in info.params]
    kwargs = kernel_kwargs(op, attrs)
    kwargs.update(zip(info.keyword_inputs, inputs[plain:]))
    return args, kwargs


def kernel_kwargs(op: Op, attrs: object) -> dict[str, object]:
    """The keyword arguments the op's kernel takes, read from its attrs (defaults left out)."""
    info = OP_INFO[op]
    defaults = dict(info.kwarg_defaults)
    return {name: getattr(attrs, name) for name in info.kwargs
            if name not in defaults or getattr(attrs, name) != defaults[name]}


def attrs_dict(attrs: object) -> dict[str, object]:
    """The fields of an attrs dataclass in declaration order, leaving out optional fields at
    their default (an unfused conv prints no `activation=none`)."""
    return {f.name: getattr(attrs, f.name) for f in fields(attrs)
            if f.default is MISSING or getattr(attrs, f.name) != f.default}
