"""The closed set of IR ops, their attributes, and how each maps onto a kernel.

Adding an op means: a member here, an attrs dataclass, an OpInfo entry, a shape rule in
shapes.py, a kernel in both kernel modules (docs/kernels.md), and a builder in the language's
op table (cnnc/language/ops.py).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
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

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class NoAttrs:
    pass


@dataclass(frozen=True)
class ConvAttrs:
    filters: int
    kernel: Pair
    stride: Pair
    pads: Pads
    dilation: Pair
    groups: int
    bias: bool


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
class OpInfo:
    """How an op is computed: the kernel function and which attrs become its keyword arguments.

    A kernel is called as `kernel(*data_inputs, *params_in_role_order, **kwargs)`; an absent
    optional parameter (a conv without bias) is passed as None.
    """

    attrs: type
    kernel: str | None  # None: no kernel (input; dropout is an identity)
    kwargs: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    min_inputs: int = 1
    max_inputs: int | None = 1  # None: any number


OP_INFO: dict[Op, OpInfo] = {
    Op.INPUT: OpInfo(NoAttrs, None, min_inputs=0, max_inputs=0),
    Op.CONV: OpInfo(ConvAttrs, "conv2d", ("stride", "pads", "dilation", "groups"), ("weight", "bias")),
    Op.CONV_TRANSPOSE: OpInfo(
        ConvTransposeAttrs, "conv_transpose2d",
        ("stride", "pads", "output_padding", "dilation", "groups"), ("weight", "bias")),
    Op.DENSE: OpInfo(DenseAttrs, "dense", (), ("weight", "bias")),
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
}


def kernel_kwargs(op: Op, attrs: object) -> dict[str, object]:
    """The keyword arguments the op's kernel takes, read from its attrs."""
    return {name: getattr(attrs, name) for name in OP_INFO[op].kwargs}


def attrs_dict(attrs: object) -> dict[str, object]:
    """All fields of an attrs dataclass, in declaration order (for printing)."""
    return {f.name: getattr(attrs, f.name) for f in fields(attrs)}
