"""The op registry: the closed set of IR ops and one record per op holding every fact about it.

A record (`OpRecord`) says what an op is and how every part of cnnc treats it: its attrs
dataclass, its shape rule and parameter rule, its cost rule (MACs), its traits (how its kernels'
results alias their inputs, whether it may run in place, whether a conv/dense epilogue computes
it, how it behaves under the FCN pass, when it is an identity, …), the name of its kernel in
each kernel module, and its spellings in the `.cnn` language. Passes, cost, summary, the
interpreter and both code generators ask the record; no other module keeps a set of op names.

Adding an op (docs/architecture.md, "Adding an op"): a member of `Op`, its attrs and record
here; its kernel in cnnc/kernels/reference.py, numpy_kernels.py and cupy_kernels.py; tests.
tests/test_op_registry.py fails, naming the op and the missing piece, until all are there.

A trait left at its default is the safe choice (no rewrite, no in-place write); `output` and
`surfaces` have no default, because a wrong guess there is a wrong result or a lost op.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from enum import Enum
from typing import Any

from .shapes import ParamSpec, Shape, ShapeRuleError, broadcast, fmt, need_rank, per_example, pool_out, window_out

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
    HARDSIGMOID = "hardsigmoid"
    HARDSWISH = "hardswish"
    SILU = "silu"
    GELU = "gelu"
    GELU_TANH = "gelu_tanh"  # spelled gelu(approximate=tanh): see GELU_FORMS
    SOFTMAX = "softmax"
    DROPOUT = "dropout"
    LRN = "lrn"
    LAYER_NORM = "layer_norm"
    GROUP_NORM = "group_norm"
    LAYER_SCALE = "layer_scale"
    CLIP = "clip"
    PRELU = "prelu"
    MAX_POOL = "max_pool"
    AVG_POOL = "avg_pool"
    GLOBAL_AVG_POOL = "global_avg_pool"
    GLOBAL_MAX_POOL = "global_max_pool"
    DEPTHWISE_POOL = "depthwise_pool"
    ADAPTIVE_POOL = "adaptive_pool"
    ADD = "add"
    MUL = "mul"
    SUB = "sub"
    DIV = "div"
    CONCAT = "concat"
    UPSAMPLE = "upsample"
    PAD = "pad"
    CROP = "crop"
    SLICE = "slice"
    CHANNEL_SHUFFLE = "channel_shuffle"
    PIXEL_SHUFFLE = "pixel_shuffle"
    PERMUTE = "permute"
    MATMUL = "matmul"
    IOU = "iou"
    NMS = "nms"
    YOLO_DECODE = "yolo_decode"
    INSTANCE_MASKS = "instance_masks"
    # Produced by optimization passes only (no surface syntax):
    CHANNEL_AFFINE = "channel_affine"
    REDUCE = "reduce"
    SCALAR_AFFINE = "scalar_affine"  # x·scale + shift with numbers: `x * 0.5`, `x + 3`, `-x`
    WINOGRAD_CONV = "winograd_conv"  # a 3x3 stride-1 conv computed by Winograd F(4x4, 3x3)

    def __str__(self) -> str:
        return self.value


# ---- the record's vocabulary -------------------------------------------------------------------


class Output(Enum):
    """How the NumPy kernel's result relates to its first input (liveness and in-place writes
    depend on it; tests/test_pass_memory.py checks every kernel against its record)."""

    FRESH = "fresh"  # always a new array
    VIEW = "view"  # input 0 itself or a writable view of it, on every backend (flatten, reshape)
    MAYBE_VIEW = "maybe view"  # a writable view of input 0 when the slice is contiguous, else new (crop)
    READ_ONLY_VIEW = "read-only view"  # a read-only (broadcast) view of input 0


class Rank(Enum):
    """How an op meets `dense_to_conv`, which turns [N, F] values into [N, F, 1, 1] ones."""

    FIXED = "fixed"  # its result depends on the rank: a lifted value may not flow in
    POINTWISE = "pointwise"  # elementwise, no parameters: commutes with flatten, any rank
    RANK_FREE = "rank free"  # the same values on [N, F, 1, 1] as on [N, F] (per-channel, broadcast)
    ALONG_AXIS = "along axis"  # rank free when its `axis` is 1, the channel axis in both ranks
    ABSORBS = "absorbs"  # gives the same result for an [N, F, 1, 1] input as for [N, F]


REQUIRED: Any = object()  # an Arg without a default


@dataclass(frozen=True)
class Arg:
    """One argument of a surface op: its name, a converter named in
    cnnc/language/arguments.py's CONVERTERS (or `choices`), and its default."""

    name: str
    kind: str
    default: object = REQUIRED
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Surface:
    """A spelling of the op in a `.cnn` file.

    Tensor inputs come first (`inputs` of them; None: one or more), then `args`. Without a
    `builder` the converted args (plus `fixed`) are the attrs fields; a builder named here is a
    function in cnnc/language/layers.py (padding `same`, stride defaults, several nodes).
    """

    name: str
    summary: str
    args: tuple[Arg, ...] = ()
    inputs: int | None = 1
    builder: str | None = None
    fixed: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class Grad:
    """How reverse-mode differentiation (cnnc/training/autodiff.py) treats an op: its gradient rule.

    The backward kernel, in cnnc/kernels/backward.py or backward_windows.py, is called as
    `kernel(dy, *saved, *params_in_role_order, **kwargs)` and returns a tuple with one gradient
    per data input, then one per parameter role (None for an absent optional parameter, or for
    input 0 when it was called with `need_input=False`). It never writes into `dy` or a saved
    value (a gradient may be shared: add passes dy to both of its inputs), and it keeps the
    dtype it is given (the tests check rules in float64 against PyTorch's autograd).

    `saved` is, in this order, every data input ("inputs" in `saves`), the forward output
    ("output"), and what the training-mode forward kernel returned beside its output (when the
    op has a `train_forward`). `kwargs` are the forward kernel's keyword arguments (out_size for
    a sized op), plus `in_shapes=` (each data input's shape without the batch dimension) when
    `in_shapes`, and `need_input=` when `need_input`: the training step skips the gradient of a
    network input (the first conv's dx would cost as much as its weight gradient).

    `updates` are the parameter roles the training forward updates in place instead of being
    trained (batch norm's running statistics): they get no gradient, and they are not counted
    as trainable.
    """

    kernel: str
    saves: tuple[str, ...] = ("inputs",)  # a subset of ("inputs", "output"), in that order
    train_forward: str | None = None  # the forward kernel in training mode: returns (y, context)
    in_shapes: bool = False
    need_input: bool = False
    updates: tuple[str, ...] = ()


ShapeRule = Callable[[Any, list[Shape]], Shape]
ParamRule = Callable[[Any, list[Shape]], dict[str, ParamSpec]]
CostRule = Callable[[Any, list[Shape], Shape], int]  # (attrs, input shapes, output shape) → MACs per example
ShapePredicate = Callable[[Any, list[Shape], Shape], bool]
OutputRule = Callable[[Any], Output]


@dataclass(frozen=True)
class OpRecord:
    """Everything cnnc knows about one op.

    A kernel is called as `kernel(*data_inputs, *params_in_role_order, **kwargs)`; an absent
    optional parameter (a conv without bias) is passed as None. Data inputs beyond the first
    `len(inputs) - len(keyword_inputs)` are passed by keyword (a fused conv's `residual=`).
    """

    attrs: type
    shape: ShapeRule
    output: Output | OutputRule  # see Output; a rule when it depends on the attrs
    surfaces: tuple[Surface, ...]  # () for ops that only passes create
    # The kernel function's name in every kernel module: the op's own name, except slice_axis (a
    # `slice` would shadow the builtin in generated code); None for input and dropout.
    kernel: str | None
    kwargs: tuple[str, ...] = ()  # attrs passed to the kernel by keyword
    params: ParamRule | None = None  # role → ParamSpec
    roles: tuple[str, ...] = ()  # parameter roles in the kernel's argument order
    min_inputs: int = 1
    max_inputs: int | None = 1  # None: any number
    keyword_inputs: tuple[str, ...] = ()
    kwarg_defaults: tuple[tuple[str, object], ...] = ()  # kwargs left out when at their default
    # The kernel takes out_size=(H', W'), read off the node's shape: the window formula lives in
    # the shape rule alone, and kernels never re-derive it.
    sized: bool = False
    macs: CostRule | None = None  # multiply-accumulates per example; None: not counted
    in_place: bool = False  # elementwise; its kernels take out= and may be given input 0
    epilogue: bool = False  # a conv/dense epilogue computes it: activation=<op name> (and its slope)
    fused_epilogue: bool = False  # its attrs carry activation/slope that fusion may set
    rank: Rank = Rank.FIXED
    identity: ShapePredicate | None = None  # when the node returns its first input unchanged
    scale_rule: str | None = None  # derivation rule scaling its weight's output channels (BN folding)
    on_host: bool = False  # the CuPy backend computes it on the host (no CUDA-graph capture)
    scores: bool = False  # an [N, classes] result holds class scores: `cnnc run` shows the top k
    grad: Grad | None = None  # its gradient rule; None: training refuses a network that differentiates it


# ---- attrs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoAttrs:
    pass


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
    # How the input and output arrays are laid out in memory (LAYOUTS); the shape stays the
    # logical [N, C, H, W]. Only the channels_last pass sets "nhwc" (docs/passes.md).
    layout_in: str = "nchw"
    layout_out: str = "nchw"


LAYOUTS = ("nchw", "nhwc")


@dataclass(frozen=True)
class WinogradConvAttrs:
    """A 3x3, stride-1, undilated, ungrouped conv whose weight the `winograd` pass has transformed
    (passes/winograd.py); `activation`/`slope` and a residual input as for conv."""

    filters: int
    pads: Pads
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
    # "element": each value dropped alone (dropout); "row": each example's whole tensor, the
    # residual branch of one example (stochastic depth, Huang et al. 2016). Both are the identity
    # at inference; training draws the mask (cnnc/kernels/backward.py's dropout_train).
    mode: str = "element"


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
class NormAttrs:
    """layer_norm (over the channels at each position) and group_norm (`groups` > 0)."""

    eps: float
    groups: int = 0


@dataclass(frozen=True)
class ScalarAffineAttrs:
    scale: float
    shift: float


@dataclass(frozen=True)
class ClipAttrs:
    min: float
    max: float


@dataclass(frozen=True)
class AdaptivePoolAttrs:
    size: Pair
    mode: str  # "max" | "avg"


@dataclass(frozen=True)
class ChannelShuffleAttrs:
    groups: int


@dataclass(frozen=True)
class PixelShuffleAttrs:
    factor: int


@dataclass(frozen=True)
class PermuteAttrs:
    order: tuple[int, ...]  # the input axis each output axis takes; order[0] is 0 (the batch)


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
    extras: int = 0  # raw channels per anchor after the class logits (mask coefficients), passed through


@dataclass(frozen=True)
class InstanceMasksAttrs:
    stride: Pair  # (height, width) of a prototype pixel, in input pixels


@dataclass(frozen=True)
class ReduceAttrs:
    mode: str  # "mean" | "max" | "sum"
    axes: tuple[int, ...]
    keepdims: bool


# ---- shared rules ------------------------------------------------------------------------------


def _same(a: object, shapes: list[Shape]) -> Shape:
    return shapes[0]


def _same_4d(what: str) -> ShapeRule:
    def rule(a: object, shapes: list[Shape]) -> Shape:
        need_rank(shapes[0], (4,), what)
        return shapes[0]
    return rule


def _unchanged_shape(a: object, shapes: list[Shape], out: Shape) -> bool:
    return bool(shapes) and tuple(shapes[0]) == tuple(out)


def _always(a: object, shapes: list[Shape], out: Shape) -> bool:
    return True


def _channels_params(*roles_inits: tuple[str, str]) -> ParamRule:
    def rule(a: object, shapes: list[Shape]) -> dict[str, ParamSpec]:
        c = shapes[0][1]
        return {role: ParamSpec((c,), init) for role, init in roles_inits}
    return rule


def _weight_and_bias(weight: tuple[int, ...], fan_in: int, bias: bool, channels: int) -> dict[str, ParamSpec]:
    specs = {"weight": ParamSpec(weight, "he", fan_in)}
    if bias:
        specs["bias"] = ParamSpec((channels,), "zeros")
    return specs


def _check_pool_pads(kernel: tuple[int, int], pads: tuple[int, ...], what: str) -> None:
    for k, p in zip(kernel + kernel, pads):
        if p > k // 2:
            raise ShapeRuleError(f"{what}: padding {p} is more than half the kernel ({k}); "
                                 "a window would see only padding")


_WINDOW = (Arg("stride", "pair", (1, 1)), Arg("pad", "padding", (0, 0, 0, 0)), Arg("dilation", "pair", (1, 1)))
_POOL = (Arg("kernel", "pair"), Arg("stride", "optional_pair", None), Arg("pad", "padding", (0, 0, 0, 0)))
_EPILOGUE = (("activation", "none"), ("slope", 0.0))


# ---- convolution and dense ---------------------------------------------------------------------


def _conv_out(a: ConvAttrs, x: Shape) -> Shape:
    need_rank(x, (4,), "conv")
    n, c, h, w = x
    if c % a.groups or a.filters % a.groups:
        raise ShapeRuleError(f"conv: groups={a.groups} must divide both the input channels ({c}) "
                             f"and the filters ({a.filters})")
    pt, pl, pb, pr = a.pads
    return (n, a.filters,
            window_out(h, a.kernel[0], a.stride[0], pt + pb, a.dilation[0], False, "conv", "height"),
            window_out(w, a.kernel[1], a.stride[1], pl + pr, a.dilation[1], False, "conv", "width"))


def _conv(a: ConvAttrs, shapes: list[Shape]) -> Shape:
    x, *residual = shapes
    out = _conv_out(a, x)
    if residual and tuple(residual[0]) != out:
        raise ShapeRuleError(f"conv: the fused residual {fmt(residual[0])} must have the output's shape {fmt(out)}")
    return out


def _conv_params(a: ConvAttrs, shapes: list[Shape]) -> dict[str, ParamSpec]:
    c = shapes[0][1]
    kh, kw = a.kernel
    return _weight_and_bias((a.filters, c // a.groups, kh, kw), c // a.groups * kh * kw, a.bias, a.filters)


def _conv_macs(a: ConvAttrs, shapes: list[Shape], out: Shape) -> int:
    return per_example(out) * (shapes[0][1] // a.groups) * a.kernel[0] * a.kernel[1]


def _winograd_conv(a: WinogradConvAttrs, shapes: list[Shape]) -> Shape:
    return _conv(_as_conv(a), shapes)


def _as_conv(a: WinogradConvAttrs) -> ConvAttrs:
    """The direct conv a winograd_conv computes (its shape and cost rules are conv's)."""
    return ConvAttrs(a.filters, (3, 3), (1, 1), a.pads, (1, 1), 1, a.bias, a.activation, a.slope)


def _winograd_conv_params(a: WinogradConvAttrs, shapes: list[Shape]) -> dict[str, ParamSpec]:
    # weight: U = G·g·Gᵀ for each (output, input) channel pair, stored [36, O, C] (the 6x6
    # transform positions first: one GEMM per position); always derived from a conv's weight
    c = shapes[0][1]
    specs = {"weight": ParamSpec((36, a.filters, c), "derived")}
    if a.bias:
        specs["bias"] = ParamSpec((a.filters,), "zeros")
    return specs


def _winograd_conv_macs(a: WinogradConvAttrs, shapes: list[Shape], out: Shape) -> int:
    # the direct convolution's count: the network's work, whatever algorithm computes it
    return _conv_macs(_as_conv(a), shapes, out)


def _conv_transpose(a: ConvTransposeAttrs, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    need_rank(x, (4,), "conv_transpose")
    n, c, h, w = x
    if c % a.groups or a.filters % a.groups:
        raise ShapeRuleError(f"conv_transpose: groups={a.groups} must divide both the input channels "
                             f"({c}) and the filters ({a.filters})")
    for op_, s, d in zip(a.output_padding, a.stride, a.dilation):
        if op_ >= max(s, d):
            raise ShapeRuleError(f"conv_transpose: output_padding {op_} must be smaller than the "
                                 f"stride ({s}) or the dilation ({d})")
    pt, pl, pb, pr = a.pads
    out_h = (h - 1) * a.stride[0] - pt - pb + a.dilation[0] * (a.kernel[0] - 1) + a.output_padding[0] + 1
    out_w = (w - 1) * a.stride[1] - pl - pr + a.dilation[1] * (a.kernel[1] - 1) + a.output_padding[1] + 1
    if out_h < 1 or out_w < 1:
        raise ShapeRuleError(f"conv_transpose: padding {a.pads} leaves an empty output")
    return (n, a.filters, out_h, out_w)


def _conv_transpose_params(a: ConvTransposeAttrs, shapes: list[Shape]) -> dict[str, ParamSpec]:
    c = shapes[0][1]
    kh, kw = a.kernel
    return _weight_and_bias((c, a.filters // a.groups, kh, kw), c // a.groups * kh * kw, a.bias, a.filters)


def _conv_transpose_macs(a: ConvTransposeAttrs, shapes: list[Shape], out: Shape) -> int:
    return per_example(shapes[0]) * (a.filters // a.groups) * a.kernel[0] * a.kernel[1]


def _dense(a: DenseAttrs, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    if len(x) == 2:
        return (x[0], a.units)
    if len(x) == 4 and x[2] == 1 and x[3] == 1:
        return (x[0], a.units, 1, 1)
    raise ShapeRuleError(f"dense expects [N, features] or [N, C, 1, 1], got {fmt(x)}; "
                         "insert `flatten` (or global_avg_pool) first")


def _dense_params(a: DenseAttrs, shapes: list[Shape]) -> dict[str, ParamSpec]:
    features = shapes[0][1]
    return _weight_and_bias((a.units, features), features, a.bias, a.units)


def _dense_macs(a: DenseAttrs, shapes: list[Shape], out: Shape) -> int:
    return a.units * shapes[0][1]


_CONV_ARGS = (Arg("filters", "positive_int"), Arg("kernel", "pair"), *_WINDOW, Arg("groups", "positive_int", 1),
              Arg("bias", "bool", True))
_DEPTHWISE_ARGS = (Arg("kernel", "pair"), *_WINDOW, Arg("multiplier", "positive_int", 1), Arg("bias", "bool", True))

_CONVOLUTIONS = {
    Op.CONV: OpRecord(
        ConvAttrs, _conv, Output.FRESH,
        (Surface("conv", "2-D convolution", _CONV_ARGS, builder="conv"),
         Surface("depthwise_conv", "one filter per input channel (groups = channels)", _DEPTHWISE_ARGS,
                 builder="depthwise_conv"),
         Surface("separable_conv", "depthwise conv, then a 1x1 conv (Xception)",
                 (Arg("filters", "positive_int"), *_DEPTHWISE_ARGS), builder="separable_conv")),
        "conv", ("stride", "pads", "dilation", "groups", "activation", "slope", "layout_in", "layout_out"),
        _conv_params, ("weight", "bias"), sized=True, max_inputs=2, keyword_inputs=("residual",),
        kwarg_defaults=(*_EPILOGUE, ("layout_in", "nchw"), ("layout_out", "nchw")),
        macs=_conv_macs, fused_epilogue=True, scale_rule="scale_out_channels"),
    Op.WINOGRAD_CONV: OpRecord(
        WinogradConvAttrs, _winograd_conv, Output.FRESH, (), "winograd_conv", ("pads", "activation", "slope"),
        _winograd_conv_params, ("weight", "bias"), sized=True, max_inputs=2, keyword_inputs=("residual",),
        kwarg_defaults=_EPILOGUE, macs=_winograd_conv_macs, fused_epilogue=True),
    Op.CONV_TRANSPOSE: OpRecord(
        ConvTransposeAttrs, _conv_transpose, Output.FRESH,
        (Surface("conv_transpose", "transposed (fractionally strided) convolution",
                 (Arg("filters", "positive_int"), Arg("kernel", "pair"), Arg("stride", "pair", (1, 1)),
                  Arg("pad", "padding", (0, 0, 0, 0)), Arg("output_padding", "nonnegative_pair", (0, 0)),
                  Arg("dilation", "pair", (1, 1)), Arg("groups", "positive_int", 1), Arg("bias", "bool", True)),
                 builder="conv_transpose"),),
        "conv_transpose", ("stride", "pads", "output_padding", "dilation", "groups"), _conv_transpose_params,
        ("weight", "bias"), macs=_conv_transpose_macs, scale_rule="scale_transpose_out_channels"),
    Op.DENSE: OpRecord(
        DenseAttrs, _dense, Output.FRESH,
        (Surface("dense", "fully connected layer", (Arg("units", "positive_int"), Arg("bias", "bool", True))),),
        "dense", ("activation", "slope"), _dense_params, ("weight", "bias"), kwarg_defaults=_EPILOGUE,
        macs=_dense_macs, fused_epilogue=True, scale_rule="scale_out_channels", scores=True),
}


# ---- reshaping ---------------------------------------------------------------------------------


def _flatten(a: object, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    if len(x) < 2:
        raise ShapeRuleError(f"flatten expects at least a 2-D input, got {fmt(x)}")
    return (x[0], math.prod(x[1:]))


def _reshape(a: ReshapeAttrs, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    total = math.prod(x[1:])
    target = list(a.shape)
    if target.count(-1) > 1 or any(d == 0 or d < -1 for d in target):
        raise ShapeRuleError(f"reshape: shape {tuple(target)} may hold positive sizes and at most one -1")
    known = math.prod(d for d in target if d != -1)
    if -1 in target:
        if total % known:
            raise ShapeRuleError(f"reshape: cannot fit {total} values per example into {tuple(target)}")
        target[target.index(-1)] = total // known
    if math.prod(target) != total:
        raise ShapeRuleError(f"reshape: {fmt(x)} has {total} values per example, "
                             f"shape {tuple(a.shape)} holds {math.prod(target)}")
    return (x[0], *target)


def _concat(a: ConcatAttrs, shapes: list[Shape]) -> Shape:
    first = shapes[0]
    if not -len(first) <= a.axis < len(first):  # `%` alone would turn axis 7 into width
        raise ShapeRuleError(f"concat: axis {a.axis} is out of range for {fmt(first)}")
    axis = a.axis % len(first)
    if axis == 0:
        raise ShapeRuleError("concat along the batch axis is not supported")
    for other in shapes[1:]:
        if len(other) != len(first) or any(
                d1 != d2 for i, (d1, d2) in enumerate(zip(first, other)) if i != axis):
            raise ShapeRuleError(f"concat along axis {axis}: {fmt(first)} and {fmt(other)} differ "
                                 f"outside that axis")
    return (*first[:axis], sum(s[axis] for s in shapes), *first[axis + 1:])


def _concat_identity(a: object, shapes: list[Shape], out: Shape) -> bool:
    return len(shapes) == 1


def _upsample(a: UpsampleAttrs, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    need_rank(x, (4,), "upsample")
    return (x[0], x[1], x[2] * a.scale[0], x[3] * a.scale[1])


def _upsample_output(a: UpsampleAttrs) -> Output:
    # NumPy's nearest kernel at scale (1, 1) returns its broadcast reshape, a read-only view.
    return Output.READ_ONLY_VIEW if a.mode == "nearest" and tuple(a.scale) == (1, 1) else Output.FRESH


def _pad(a: PadAttrs, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    need_rank(x, (4,), "pad")
    pt, pl, pb, pr = a.pads
    if a.mode == "reflect" and (max(pt, pb) >= x[2] or max(pl, pr) >= x[3]):
        raise ShapeRuleError(f"pad: reflect padding {a.pads} must be smaller than the input {fmt(x)}")
    return (x[0], x[1], x[2] + pt + pb, x[3] + pl + pr)


def _crop(a: CropAttrs, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    need_rank(x, (4,), "crop")
    (oy, ox), (h, w) = a.offset, a.size
    if oy + h > x[2] or ox + w > x[3]:
        raise ShapeRuleError(f"crop: offset ({oy}, {ox}) + size ({h}, {w}) exceeds the input {fmt(x)}")
    return (x[0], x[1], h, w)


def _slice(a: SliceAttrs, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    if not -len(x) <= a.axis < len(x):
        raise ShapeRuleError(f"slice: axis {a.axis} is out of range for {fmt(x)}")
    axis = a.axis % len(x)
    if axis == 0:
        raise ShapeRuleError("slice: the batch axis cannot be sliced")
    size = x[axis]
    start, stop = (i + size if i < 0 else i for i in (a.start, a.stop))
    if not 0 <= start < stop <= size:
        raise ShapeRuleError(f"slice: {a.start}:{a.stop} selects nothing of axis {axis} of {fmt(x)} "
                             f"(size {size}; need start < stop, negative indices count from the end)")
    return (*x[:axis], stop - start, *x[axis + 1:])


def _channel_shuffle(a: ChannelShuffleAttrs, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    need_rank(x, (4,), "channel_shuffle")
    if x[1] % a.groups:
        raise ShapeRuleError(f"channel_shuffle: groups={a.groups} must divide the channels ({x[1]})")
    return x


def _pixel_shuffle(a: PixelShuffleAttrs, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    need_rank(x, (4,), "pixel_shuffle")
    n, c, h, w = x
    if c % (a.factor * a.factor):
        raise ShapeRuleError(f"pixel_shuffle: the channels ({c}) must be a multiple of factor² "
                             f"({a.factor * a.factor})")
    return (n, c // (a.factor * a.factor), h * a.factor, w * a.factor)


def _permute(a: PermuteAttrs, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    if sorted(a.order) != list(range(len(x))):
        raise ShapeRuleError(f"permute: order {tuple(a.order)} must list each axis of {fmt(x)} once")
    if a.order[0] != 0:
        raise ShapeRuleError("permute: the batch axis must stay first (order starts with 0)")
    return tuple(x[i] for i in a.order)


def _matmul(a: object, shapes: list[Shape]) -> Shape:
    x, y = shapes
    if len(x) < 3 or len(x) != len(y):
        raise ShapeRuleError(f"matmul multiplies [N, ..., M, K] by [N, ..., K, P] of the same rank (3 or more), "
                             f"got {fmt(x)} and {fmt(y)}")
    if x[-1] != y[-2]:
        raise ShapeRuleError(f"matmul: {fmt(x)} @ {fmt(y)}: the inner sizes {x[-1]} and {y[-2]} differ")
    lead = broadcast(x[:-2], y[:-2], "@")
    return (*lead, x[-2], y[-1])


_RESHAPING = {
    Op.FLATTEN: OpRecord(NoAttrs, _flatten, Output.VIEW, (Surface("flatten", "[N, ...] → [N, features]"),),
                         "flatten", rank=Rank.ABSORBS),
    Op.RESHAPE: OpRecord(
        ReshapeAttrs, _reshape, Output.VIEW,
        (Surface("reshape", "reshape all but the batch dimension", (Arg("shape", "int_tuple"),)),),
        "reshape", ("shape",), rank=Rank.ABSORBS, identity=_unchanged_shape),
    Op.CONCAT: OpRecord(
        ConcatAttrs, _concat, Output.FRESH,
        (Surface("concat", "join tensors along an axis (channels by default)", (Arg("axis", "int", 1),),
                 inputs=None),),
        "concat", ("axis",), max_inputs=None, rank=Rank.ALONG_AXIS, identity=_concat_identity),
    Op.UPSAMPLE: OpRecord(
        UpsampleAttrs, _upsample, _upsample_output,
        (Surface("upsample", "upsample by an integer factor",
                 (Arg("scale", "pair", (2, 2)), Arg("mode", "choice", "nearest", ("nearest", "bilinear")))),),
        "upsample", ("scale", "mode"), identity=_unchanged_shape),
    Op.PAD: OpRecord(
        PadAttrs, _pad, Output.FRESH,
        (Surface("pad", "spatial padding",
                 (Arg("pad", "padding"), Arg("mode", "choice", "constant", ("constant", "reflect", "edge")),
                  Arg("value", "float", 0.0)), builder="pad"),),
        "pad", ("pads", "mode", "value"), identity=_unchanged_shape),
    Op.CROP: OpRecord(
        CropAttrs, _crop, Output.MAYBE_VIEW,
        (Surface("crop", "spatial crop to a size (or to another tensor's size)",
                 (Arg("size", "size"), Arg("offset", "nonnegative_pair", (0, 0)))),),
        "crop", ("offset", "size"), identity=_unchanged_shape),
    Op.SLICE: OpRecord(
        SliceAttrs, _slice, Output.FRESH,
        (Surface("slice", "the part start:stop of one axis",
                 (Arg("axis", "int"), Arg("start", "int"), Arg("stop", "int"))),),
        "slice_axis", ("axis", "start", "stop")),
    Op.CHANNEL_SHUFFLE: OpRecord(
        ChannelShuffleAttrs, _channel_shuffle, Output.FRESH,
        (Surface("channel_shuffle", "interleave `groups` channel groups (ShuffleNet)",
                 (Arg("groups", "positive_int"),)),),
        "channel_shuffle", ("groups",)),
    Op.PIXEL_SHUFFLE: OpRecord(
        PixelShuffleAttrs, _pixel_shuffle, Output.FRESH,
        (Surface("pixel_shuffle", "[N, C·r², H, W] → [N, C, H·r, W·r] (sub-pixel upsampling, depth_to_space)",
                 (Arg("factor", "positive_int"),)),),
        "pixel_shuffle", ("factor",)),
    Op.PERMUTE: OpRecord(
        PermuteAttrs, _permute, Output.FRESH,
        (Surface("permute", "reorder the axes (the batch stays first): permute((0, 2, 3, 1)) is channels-last",
                 (Arg("order", "int_tuple"),)),),
        "permute", ("order",)),
    Op.MATMUL: OpRecord(
        NoAttrs, _matmul, Output.FRESH,
        (Surface("matmul", "matrix product over the last two axes, broadcasting the others",
                 inputs=2),),
        "matmul", min_inputs=2, max_inputs=2),
}


# ---- normalization and activations -------------------------------------------------------------


def _batch_norm(a: BatchNormAttrs, shapes: list[Shape]) -> Shape:
    need_rank(shapes[0], (2, 4), "bn")
    return shapes[0]


def _layer_norm(a: NormAttrs, shapes: list[Shape]) -> Shape:
    need_rank(shapes[0], (2, 3, 4), "layer_norm")
    return shapes[0]


def _group_norm(a: NormAttrs, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    need_rank(x, (3, 4), "group_norm")
    if a.groups < 1 or x[1] % a.groups:
        raise ShapeRuleError(f"group_norm: groups={a.groups} must divide the channels ({x[1]})")
    return x


def _clip(a: ClipAttrs, shapes: list[Shape]) -> Shape:
    if not a.min <= a.max:
        raise ShapeRuleError(f"clip: min ({a.min}) must not exceed max ({a.max})")
    return shapes[0]


def _softmax(a: SoftmaxAttrs, shapes: list[Shape]) -> Shape:
    if not -len(shapes[0]) <= a.axis < len(shapes[0]):
        raise ShapeRuleError(f"softmax: axis {a.axis} is out of range for {fmt(shapes[0])}")
    return shapes[0]


def _activation(name: str, summary: str, kernel_kwargs: tuple[str, ...] = (), attrs: type = NoAttrs,
                args: tuple[Arg, ...] = (), epilogue: bool = False) -> OpRecord:
    """An elementwise activation: same shape, in place, pointwise under dense_to_conv."""
    return OpRecord(attrs, _same, Output.FRESH, (Surface(name, summary, args),), name, kernel_kwargs,
                    in_place=True, epilogue=epilogue, rank=Rank.POINTWISE)


# gelu(approximate=...) → the op computing that form (PyTorch's and ONNX's `approximate` words).
GELU_FORMS: dict[str, Op] = {"none": Op.GELU, "tanh": Op.GELU_TANH}

_ELEMENTWISE = {
    Op.BATCH_NORM: OpRecord(
        BatchNormAttrs, _batch_norm, Output.FRESH,
        (Surface("bn", "batch normalization (inference)", (Arg("eps", "float", 1e-5),)),),
        "batch_norm", ("eps",), _channels_params(("gamma", "ones"), ("beta", "zeros"), ("mean", "zeros"),
                                                 ("var", "ones")),
        ("gamma", "beta", "mean", "var"), in_place=True, rank=Rank.RANK_FREE),
    Op.CHANNEL_AFFINE: OpRecord(
        NoAttrs, _same, Output.FRESH, (), "channel_affine", (), _channels_params(("scale", "ones"), ("shift", "zeros")),
        ("scale", "shift"), in_place=True, rank=Rank.RANK_FREE),
    Op.RELU: _activation("relu", "max(x, 0)", epilogue=True),
    Op.LEAKY_RELU: _activation("leaky_relu", "x, or slope·x below 0", ("slope",), LeakyReluAttrs,
                               (Arg("slope", "float", 0.01),), epilogue=True),
    Op.RELU6: _activation("relu6", "min(max(x, 0), 6)", epilogue=True),
    Op.SIGMOID: _activation("sigmoid", "1 / (1 + e^-x)", epilogue=True),
    Op.TANH: _activation("tanh", "hyperbolic tangent"),
    Op.HARDSIGMOID: _activation("hardsigmoid", "relu6(x + 3) / 6 (MobileNetV3)", epilogue=True),
    Op.HARDSWISH: _activation("hardswish", "x · relu6(x + 3) / 6 (MobileNetV3)", epilogue=True),
    Op.SILU: _activation("silu", "x · sigmoid(x), a.k.a. swish (EfficientNet)", epilogue=True),
    # GELU's two forms are two ops, because an epilogue names its activation by the op's name
    # (fuse_activation: activation=<op name>): each form then is one epilogue, one kernel and one
    # ONNX mapping with nothing to translate. GELU owns the one spelling; GELU_FORMS picks the op.
    Op.GELU: OpRecord(
        NoAttrs, _same, Output.FRESH,
        (Surface("gelu", "x · Φ(x), exact (erf) or PyTorch's tanh approximation (ConvNeXt, ViT)",
                 (Arg("approximate", "choice", "none", tuple(GELU_FORMS)),), builder="gelu"),),
        "gelu", in_place=True, epilogue=True, rank=Rank.POINTWISE),
    Op.GELU_TANH: OpRecord(NoAttrs, _same, Output.FRESH, (), "gelu_tanh", in_place=True, epilogue=True,
                           rank=Rank.POINTWISE),
    Op.SOFTMAX: OpRecord(
        SoftmaxAttrs, _softmax, Output.FRESH,
        (Surface("softmax", "softmax along an axis", (Arg("axis", "int", 1),)),),
        "softmax", ("axis",), rank=Rank.ALONG_AXIS, scores=True),
    Op.DROPOUT: OpRecord(
        DropoutAttrs, _same, Output.VIEW,
        (Surface("dropout", "identity at inference", (Arg("rate", "probability", 0.5),)),
         Surface("stochastic_depth", "drops a whole example's branch in training (ConvNeXt, EfficientNet); "
                 "identity at inference", (Arg("rate", "probability", 0.1),), fixed=(("mode", "row"),))),
        None, rank=Rank.POINTWISE, identity=_always),
    Op.LRN: OpRecord(
        LrnAttrs, _same_4d("lrn"), Output.FRESH,
        (Surface("lrn", "local response normalization across channels (AlexNet)",
                 (Arg("size", "positive_int", 5), Arg("alpha", "float", 1e-4), Arg("beta", "float", 0.75),
                  Arg("k", "float", 2.0))),),
        "lrn", ("size", "alpha", "beta", "k")),
    Op.LAYER_NORM: OpRecord(
        NormAttrs, _layer_norm, Output.FRESH,
        (Surface("layer_norm", "normalize over the channels at each position, then γ·x + β per channel "
                 "(ConvNeXt's LayerNorm2d; the features of a dense layer)", (Arg("eps", "float", 1e-5),)),),
        "layer_norm", ("eps",), _channels_params(("gamma", "ones"), ("beta", "zeros")), ("gamma", "beta"),
        rank=Rank.RANK_FREE),
    Op.GROUP_NORM: OpRecord(
        NormAttrs, _group_norm, Output.FRESH,
        (Surface("group_norm", "normalize over each group of channels and the image, then γ·x + β",
                 (Arg("groups", "positive_int"), Arg("eps", "float", 1e-5))),
         Surface("instance_norm", "group_norm with one channel per group (each channel over its image)",
                 (Arg("eps", "float", 1e-5),), builder="instance_norm")),
        "group_norm", ("groups", "eps"), _channels_params(("gamma", "ones"), ("beta", "zeros")), ("gamma", "beta")),
    Op.LAYER_SCALE: OpRecord(
        NoAttrs, _same, Output.FRESH,
        (Surface("layer_scale", "a learned scale per channel (ConvNeXt, CaiT)"),),
        "layer_scale", (), _channels_params(("scale", "ones")), ("scale",), in_place=True, rank=Rank.RANK_FREE),
    Op.PRELU: OpRecord(
        NoAttrs, _same, Output.FRESH,
        (Surface("prelu", "x, or slope[c]·x below 0, with a learned slope per channel (init 0.25)"),),
        "prelu", (), _channels_params(("slope", "prelu")), ("slope",), in_place=True, rank=Rank.RANK_FREE),
    Op.CLIP: OpRecord(
        ClipAttrs, _clip, Output.FRESH,
        (Surface("clip", "min(max(x, min), max)", (Arg("min", "float"), Arg("max", "float"))),),
        "clip", ("min", "max"), in_place=True, rank=Rank.POINTWISE),
    Op.ADD: OpRecord(
        NoAttrs, lambda a, s: broadcast(s[0], s[1], "+"), Output.FRESH,
        (Surface("add", "elementwise sum with broadcasting (also `a + b`)", inputs=2),),
        "add", min_inputs=2, max_inputs=2, in_place=True, rank=Rank.RANK_FREE),
    Op.MUL: OpRecord(
        NoAttrs, lambda a, s: broadcast(s[0], s[1], "*"), Output.FRESH,
        (Surface("mul", "elementwise product with broadcasting (also `a * b`)", inputs=2),),
        "mul", min_inputs=2, max_inputs=2, in_place=True, rank=Rank.RANK_FREE),
    Op.SUB: OpRecord(
        NoAttrs, lambda a, s: broadcast(s[0], s[1], "-"), Output.FRESH,
        (Surface("sub", "elementwise difference with broadcasting (also `a - b`)", inputs=2),),
        "sub", min_inputs=2, max_inputs=2, in_place=True, rank=Rank.RANK_FREE),
    Op.DIV: OpRecord(
        NoAttrs, lambda a, s: broadcast(s[0], s[1], "/"), Output.FRESH,
        (Surface("div", "elementwise quotient with broadcasting (also `a / b`)", inputs=2),),
        "div", min_inputs=2, max_inputs=2, in_place=True, rank=Rank.RANK_FREE),
    Op.SCALAR_AFFINE: OpRecord(
        ScalarAffineAttrs, _same, Output.FRESH, (), "scalar_affine", ("scale", "shift"), in_place=True,
        rank=Rank.POINTWISE, identity=lambda a, s, out: a.scale == 1 and a.shift == 0),
}


# ---- pooling -----------------------------------------------------------------------------------


def _pool(a: MaxPoolAttrs | AvgPoolAttrs, shapes: list[Shape], dilation: Pair, what: str) -> Shape:
    (x,) = shapes
    need_rank(x, (4,), what)
    _check_pool_pads(a.kernel, a.pads, what)
    n, c, h, w = x
    pt, pl, pb, pr = a.pads
    return (n, c,
            pool_out(h, a.kernel[0], a.stride[0], pt, pb, dilation[0], a.ceil_mode, what, "height"),
            pool_out(w, a.kernel[1], a.stride[1], pl, pr, dilation[1], a.ceil_mode, what, "width"))


def _max_pool(a: MaxPoolAttrs, shapes: list[Shape]) -> Shape:
    return _pool(a, shapes, a.dilation, "maxpool")


def _avg_pool(a: AvgPoolAttrs, shapes: list[Shape]) -> Shape:
    return _pool(a, shapes, (1, 1), "avgpool")


def _unit_window(a: MaxPoolAttrs | AvgPoolAttrs, shapes: list[Shape], out: Shape) -> bool:
    return _unchanged_shape(a, shapes, out) and a.kernel == (1, 1) and a.stride == (1, 1)


def _global_pool(a: object, shapes: list[Shape]) -> Shape:
    need_rank(shapes[0], (4,), "global pooling")
    return (shapes[0][0], shapes[0][1], 1, 1)


def _depthwise_pool(a: DepthwisePoolAttrs, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    need_rank(x, (4,), "depthwise pooling")
    if x[1] % a.size:
        raise ShapeRuleError(f"depthwise pooling: size {a.size} must divide the channels ({x[1]})")
    return (x[0], x[1] // a.size, x[2], x[3])


def _adaptive_pool(a: AdaptivePoolAttrs, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    need_rank(x, (4,), "adaptive pooling")
    return (x[0], x[1], *a.size)


def _reduce(a: ReduceAttrs, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    if not a.axes or any(not -len(x) <= axis < len(x) for axis in a.axes):
        raise ShapeRuleError(f"reduce: axes {tuple(a.axes)} must name axes of {fmt(x)}")
    axes = {axis % len(x) for axis in a.axes}
    if 0 in axes:
        raise ShapeRuleError("reduce: the batch axis cannot be reduced")
    if a.keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(x))
    return tuple(d for i, d in enumerate(x) if i not in axes)


_POOLING = {
    Op.MAX_POOL: OpRecord(
        MaxPoolAttrs, _max_pool, Output.FRESH,
        (Surface("maxpool", "max pooling", (*_POOL, Arg("dilation", "pair", (1, 1)), Arg("ceil_mode", "bool", False)),
                 builder="max_pool"),),
        "max_pool", ("kernel", "stride", "pads", "dilation"), sized=True, identity=_unit_window),
    Op.AVG_POOL: OpRecord(
        AvgPoolAttrs, _avg_pool, Output.FRESH,
        (Surface("avgpool", "average pooling",
                 (*_POOL, Arg("ceil_mode", "bool", False), Arg("count_include_pad", "bool", True)),
                 builder="avg_pool"),),
        "avg_pool", ("kernel", "stride", "pads", "count_include_pad"), sized=True, identity=_unit_window),
    Op.GLOBAL_AVG_POOL: OpRecord(
        NoAttrs, _global_pool, Output.FRESH, (Surface("global_avg_pool", "[N, C, H, W] → [N, C, 1, 1] mean"),),
        "global_avg_pool"),
    Op.GLOBAL_MAX_POOL: OpRecord(
        NoAttrs, _global_pool, Output.FRESH, (Surface("global_max_pool", "[N, C, H, W] → [N, C, 1, 1] max"),),
        "global_max_pool"),
    Op.DEPTHWISE_POOL: OpRecord(
        DepthwisePoolAttrs, _depthwise_pool, Output.FRESH,
        (Surface("depthwise_maxpool", "max over groups of `size` channels", (Arg("size", "positive_int"),),
                 fixed=(("mode", "max"),)),
         Surface("depthwise_avgpool", "mean over groups of `size` channels", (Arg("size", "positive_int"),),
                 fixed=(("mode", "avg"),))),
        "depthwise_pool", ("size", "mode")),
    Op.ADAPTIVE_POOL: OpRecord(
        AdaptivePoolAttrs, _adaptive_pool, Output.FRESH,
        (Surface("adaptive_avgpool", "mean over PyTorch's adaptive bins to an output `size`", (Arg("size", "pair"),),
                 fixed=(("mode", "avg"),)),
         Surface("adaptive_maxpool", "max over PyTorch's adaptive bins to an output `size`", (Arg("size", "pair"),),
                 fixed=(("mode", "max"),))),
        "adaptive_pool", ("size", "mode")),
    Op.REDUCE: OpRecord(
        ReduceAttrs, _reduce, Output.FRESH,
        tuple(Surface(f"reduce_{mode}", f"{mode} over the given axes (keepdims=true keeps them, with size 1)",
                      (Arg("axes", "int_tuple"), Arg("keepdims", "bool", True)), fixed=(("mode", mode),))
              for mode in ("mean", "max", "sum")),
        "reduce", ("mode", "axes", "keepdims")),
}


# ---- detection ---------------------------------------------------------------------------------


def _boxes(shape: Shape, what: str, role: str) -> None:
    if len(shape) != 3 or shape[2] != 4:
        raise ShapeRuleError(f"{what}: {role} must be [N, count, 4], got {fmt(shape)}")


def _same_batch(a: Shape, b: Shape, what: str) -> None:
    if a[0] != b[0]:
        raise ShapeRuleError(f"{what}: batch sizes differ: {fmt(a)} and {fmt(b)}")


def _iou(a: IouAttrs, shapes: list[Shape]) -> Shape:
    first, second = shapes
    _boxes(first, "iou", "the first boxes")
    _boxes(second, "iou", "the second boxes")
    _same_batch(first, second, "iou")
    return (first[0], first[1], second[1])


def _nms(a: NmsAttrs, shapes: list[Shape]) -> Shape:
    if len(shapes) not in (2, 3):
        raise ShapeRuleError(f"nms takes boxes, scores and optionally per-box extra columns, got {len(shapes)} "
                             "inputs")
    boxes, scores = shapes[:2]
    _boxes(boxes, "nms", "boxes")
    if len(scores) != 3:
        raise ShapeRuleError(f"nms: scores must be [N, count, classes], got {fmt(scores)}")
    _same_batch(boxes, scores, "nms")
    if boxes[1] != scores[1]:
        raise ShapeRuleError(f"nms: boxes {fmt(boxes)} and scores {fmt(scores)} differ in the number "
                             f"of boxes: {boxes[1]} vs {scores[1]}")
    extras = 0
    if len(shapes) == 3:
        carried = shapes[2]
        if len(carried) != 3 or carried[:2] != boxes[:2]:
            raise ShapeRuleError(f"nms: the extra columns must be [N, count, E] like boxes {fmt(boxes)}, "
                                 f"got {fmt(carried)}")
        extras = carried[2]
    return (boxes[0], a.max_boxes, 6 + extras)


def _yolo_decode(a: YoloDecodeAttrs, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    need_rank(x, (4,), "yolo_decode")
    n, c, h, w = x
    anchors = len(a.anchors)
    fields = 5 + a.classes + a.extras
    if c != anchors * fields:
        extras = f" + {a.extras} extras" if a.extras else ""
        raise ShapeRuleError(f"yolo_decode: {anchors} anchors × (5 + {a.classes} classes{extras}) = "
                             f"{anchors * fields} channels expected, the input has {c}")
    return (n, h * w * anchors, 4 + a.classes + a.extras)


def _instance_masks(a: InstanceMasksAttrs, shapes: list[Shape]) -> Shape:
    protos, detections = shapes
    if len(protos) != 4:
        raise ShapeRuleError(f"instance_masks: prototypes must be [N, P, H, W], got {fmt(protos)}")
    if len(detections) != 3:
        raise ShapeRuleError(f"instance_masks: detections must be [N, D, 6 + prototypes], got {fmt(detections)}")
    _same_batch(protos, detections, "instance_masks")
    if detections[2] != 6 + protos[1]:
        raise ShapeRuleError(f"instance_masks: {protos[1]} prototypes {fmt(protos)} need detections rows of "
                             f"6 + {protos[1]} = {6 + protos[1]} columns (nms(boxes, scores, coefficients)), "
                             f"got {fmt(detections)}")
    return (protos[0], detections[1], protos[2], protos[3])


def _instance_masks_macs(a: InstanceMasksAttrs, shapes: list[Shape], out: Shape) -> int:
    return out[1] * shapes[0][1] * out[2] * out[3]


_BOX_FORMAT = Arg("format", "choice", "corners", BOX_FORMATS)

_DETECTION = {
    Op.IOU: OpRecord(
        IouAttrs, _iou, Output.FRESH,
        (Surface("iou", "pairwise intersection over union of two sets of boxes", (_BOX_FORMAT,), inputs=2),),
        "iou", ("format",), min_inputs=2, max_inputs=2),
    Op.NMS: OpRecord(
        NmsAttrs, _nms, Output.FRESH,
        (Surface("nms", "class-wise non-maximum suppression to [N, max_boxes, 6 + E] detections (E: "
                 "extra columns carried per box)",
                 (Arg("iou_threshold", "fraction", 0.5), Arg("score_threshold", "nonnegative_float", 0.05),
                  Arg("max_boxes", "positive_int", 100), _BOX_FORMAT), inputs=None),),
        "nms", ("iou_threshold", "score_threshold", "max_boxes", "format"), min_inputs=2, max_inputs=3,
        on_host=True),
    Op.YOLO_DECODE: OpRecord(
        YoloDecodeAttrs, _yolo_decode, Output.FRESH,
        (Surface("yolo_decode", "YOLO head → [N, H·W·anchors, 4 + classes + extras] boxes, scores, extras",
                 (Arg("anchors", "anchors"), Arg("classes", "positive_int"), Arg("stride", "pair"),
                  Arg("extras", "count", 0))),),
        "yolo_decode", ("anchors", "classes", "stride", "extras"), kwarg_defaults=(("extras", 0),)),
    Op.INSTANCE_MASKS: OpRecord(
        InstanceMasksAttrs, _instance_masks, Output.FRESH,
        (Surface("instance_masks", "one mask per detection: σ(coefficients · prototypes) inside its box",
                 (Arg("stride", "pair"),), inputs=2),),
        "instance_masks", ("stride",), min_inputs=2, max_inputs=2, macs=_instance_masks_macs),
}


# ---- the registry ------------------------------------------------------------------------------

RECORDS: dict[Op, OpRecord] = {
    Op.INPUT: OpRecord(NoAttrs, _same, Output.FRESH, (), None, min_inputs=0, max_inputs=0),
    **_CONVOLUTIONS, **_RESHAPING, **_ELEMENTWISE, **_POOLING, **_DETECTION,
}


def _grad(kernel: str, *saves: str, in_shapes: bool = False, need_input: bool = False,
          train_forward: str | None = None, updates: tuple[str, ...] = ()) -> Grad:
    return Grad(kernel, tuple(saves), train_forward, in_shapes, need_input, updates)


def updated_roles(op: Op) -> tuple[str, ...]:
    """The op's parameter roles that training updates in place rather than trains (Grad.updates)."""
    grad = record(op).grad
    return grad.updates if grad is not None else ()


# Gradient rules (Grad): what each op's backward kernel reads. They join the records below, so a
# record holds its op's whole story; ops missing here (nms, iou, yolo_decode, and what passes make
# for inference: winograd_conv, depthwise_pool) cannot be trained through. Training runs on the
# un-optimized graph, so of the pass-made ops only channel_affine has a rule (it is cheap).
_GRADS: dict[Op, Grad] = {
    Op.CONV: _grad("conv_backward", "inputs", need_input=True),
    Op.CONV_TRANSPOSE: _grad("conv_transpose_backward", "inputs", need_input=True),
    Op.DENSE: _grad("dense_backward", "inputs", need_input=True),
    Op.FLATTEN: _grad("flatten_backward", in_shapes=True),
    Op.RESHAPE: _grad("reshape_backward", in_shapes=True),
    Op.BATCH_NORM: _grad("batch_norm_backward", train_forward="batch_norm_train", updates=("mean", "var")),
    Op.RELU: _grad("relu_backward", "output"),
    Op.LEAKY_RELU: _grad("leaky_relu_backward", "inputs"),
    Op.RELU6: _grad("relu6_backward", "inputs"),
    Op.SIGMOID: _grad("sigmoid_backward", "output"),
    Op.TANH: _grad("tanh_backward", "output"),
    Op.HARDSIGMOID: _grad("hardsigmoid_backward", "inputs"),
    Op.HARDSWISH: _grad("hardswish_backward", "inputs"),
    Op.SILU: _grad("silu_backward", "inputs"),
    Op.GELU: _grad("gelu_backward", "inputs"),
    Op.GELU_TANH: _grad("gelu_tanh_backward", "inputs"),
    Op.SOFTMAX: _grad("softmax_backward", "output"),
    Op.DROPOUT: _grad("dropout_backward", train_forward="dropout_train"),
    Op.LRN: _grad("lrn_backward", "inputs", "output"),
    Op.LAYER_NORM: _grad("layer_norm_backward", "inputs"),
    Op.GROUP_NORM: _grad("group_norm_backward", "inputs"),
    Op.LAYER_SCALE: _grad("layer_scale_backward", "inputs"),
    Op.CLIP: _grad("clip_backward", "inputs"),
    Op.PRELU: _grad("prelu_backward", "inputs"),
    Op.MAX_POOL: _grad("max_pool_backward", "inputs", "output"),
    Op.AVG_POOL: _grad("avg_pool_backward", in_shapes=True),
    Op.GLOBAL_AVG_POOL: _grad("global_avg_pool_backward", in_shapes=True),
    Op.GLOBAL_MAX_POOL: _grad("global_max_pool_backward", "inputs", "output"),
    Op.ADAPTIVE_POOL: _grad("adaptive_pool_backward", "inputs", "output"),
    Op.ADD: _grad("add_backward", in_shapes=True),
    Op.SUB: _grad("sub_backward", in_shapes=True),
    Op.MUL: _grad("mul_backward", "inputs"),
    Op.DIV: _grad("div_backward", "inputs"),
    Op.SCALAR_AFFINE: _grad("scalar_affine_backward"),
    Op.CONCAT: _grad("concat_backward", in_shapes=True),
    Op.UPSAMPLE: _grad("upsample_backward", in_shapes=True),
    Op.PAD: _grad("pad_backward", in_shapes=True),
    Op.CROP: _grad("crop_backward", in_shapes=True),
    Op.SLICE: _grad("slice_axis_backward", in_shapes=True),
    Op.CHANNEL_SHUFFLE: _grad("channel_shuffle_backward"),
    Op.PIXEL_SHUFFLE: _grad("pixel_shuffle_backward"),
    Op.PERMUTE: _grad("permute_backward"),
    Op.MATMUL: _grad("matmul_backward", "inputs"),
    Op.REDUCE: _grad("reduce_backward", "inputs", "output"),
    Op.CHANNEL_AFFINE: _grad("channel_affine_backward", "inputs"),
}
RECORDS = {op: dataclasses.replace(RECORDS[op], grad=_GRADS.get(op)) for op in Op if op in RECORDS}  # enum order


def record(op: Op) -> OpRecord:
    """The op's record; a KeyError naming the ops that have one if it has none."""
    try:
        return RECORDS[op]
    except KeyError:
        known = ", ".join(str(k) for k in RECORDS)
        raise KeyError(f"no record for op {op}; ops with one: {known}") from None


def output_kind(op: Op, attrs: object) -> Output:
    """How the node's NumPy result relates to its first input (the record's `output`)."""
    rule = record(op).output
    return rule if isinstance(rule, Output) else rule(attrs)


def infer_shape(op: Op, attrs: object, shapes: list[Shape]) -> Shape:
    """The output shape of `op` on inputs of `shapes` (ShapeRuleError if they do not fit)."""
    return tuple(record(op).shape(attrs, shapes))


def param_specs(op: Op, attrs: object, shapes: list[Shape]) -> dict[str, ParamSpec]:
    """The op's parameters (role → spec); empty for ops without parameters."""
    rule = record(op).params
    return rule(attrs, shapes) if rule else {}


def kernel_kwargs(op: Op, attrs: object) -> dict[str, object]:
    """The keyword arguments the op's kernel takes, read from its attrs (defaults left out)."""
    info = record(op)
    defaults = dict(info.kwarg_defaults)
    return {name: getattr(attrs, name) for name in info.kwargs
            if name not in defaults or getattr(attrs, name) != defaults[name]}


def kernel_call(op: Op, attrs: object, inputs: list, params: dict, param_value: Callable,
                shape: Shape) -> tuple[list, dict]:
    """Positional and keyword arguments of the op's kernel.

    `inputs` are the data inputs (values, or names in generated code), `params` the node's
    role → parameter-name map, `param_value(name)` what to pass for a parameter, `shape` the
    node's output shape (a sized kernel gets its spatial size from it).
    """
    info = record(op)
    plain = 1 if info.keyword_inputs else len(inputs)
    args = list(inputs[:plain])
    args += [param_value(params[r]) if r in params else None for r in info.roles]
    kwargs = kernel_kwargs(op, attrs)
    if info.sized:
        kwargs["out_size"] = (int(shape[2]), int(shape[3]))
    kwargs.update(zip(info.keyword_inputs, inputs[plain:]))
    return args, kwargs


def attrs_dict(attrs: object) -> dict[str, object]:
    """The fields of an attrs dataclass in declaration order, leaving out optional fields at
    their default (an unfused conv prints no `activation=none`)."""
    return {f.name: getattr(attrs, f.name) for f in fields(attrs)  # type: ignore[arg-type]
            if f.default is MISSING or getattr(attrs, f.name) != f.default}
