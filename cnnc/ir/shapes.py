"""Shape rules, one per op: (attrs, input shapes) → output shape, plus parameter shapes.

Rules raise ShapeRuleError with a message that names the sizes involved; the caller attaches
the source span. The batch dimension may be symbolic (a str such as "N").
"""
from __future__ import annotations

import math
from collections.abc import Callable

from . import ops as o
from .graph import ParamSpec, Shape
from .ops import Op


class ShapeRuleError(Exception):
    """An op cannot be applied to inputs of these shapes."""


def fmt(shape: Shape) -> str:
    """A shape as the language writes it: [N, 64, 56, 56]."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _need_rank(shape: Shape, ranks: tuple[int, ...], what: str) -> None:
    if len(shape) not in ranks:
        expected = " or ".join(f"{r}-D" for r in ranks)
        raise ShapeRuleError(f"{what} expects a {expected} input, got {fmt(shape)}")


def _window_out(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil: bool,
                what: str, axis: str) -> int:
    span = dilation * (kernel - 1) + 1
    if size + pad < span:
        raise ShapeRuleError(f"{what}: kernel {kernel} (spanning {span}) is larger than the padded "
                             f"input {axis} {size + pad}")
    rounding = math.ceil if ceil else math.floor
    out = rounding((size + pad - span) / stride) + 1
    return out


def _pool_out(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int,
              ceil: bool, what: str, axis: str) -> int:
    out = _window_out(size, kernel, stride, pad_begin + pad_end, dilation, ceil, what, axis)
    if ceil and (out - 1) * stride >= size + pad_begin:
        out -= 1  # PyTorch: the last window must start inside the input or the leading padding
    return out


def _conv(a: o.ConvAttrs, shapes: list[Shape]) -> Shape:
    x, *residual = shapes
    out = _conv_out(a, x)
    if residual and tuple(residual[0]) != out:
        raise ShapeRuleError(f"conv: the fused residual {fmt(residual[0])} must have the output's shape {fmt(out)}")
    return out


def _conv_out(a: o.ConvAttrs, x: Shape) -> Shape:
    _need_rank(x, (4,), "conv")
    n, c, h, w = x
    if c % a.groups or a.filters % a.groups:
        raise ShapeRuleError(f"conv: groups={a.groups} must divide both the input channels ({c}) "
                             f"and the filters ({a.filters})")
    pt, pl, pb, pr = a.pads
    return (n, a.filters,
            _window_out(h, a.kernel[0], a.stride[0], pt + pb, a.dilation[0], False, "conv", "height"),
            _window_out(w, a.kernel[1], a.stride[1], pl + pr, a.dilation[1], False, "conv", "width"))


def _conv_params(a: o.ConvAttrs, shapes: list[Shape]) -> dict[str, ParamSpec]:
    c = shapes[0][1]
    kh, kw = a.kernel
    fan_in = c // a.groups * kh * kw
    specs = {"weight": ParamSpec((a.filters, c // a.groups, kh, kw), "he", fan_in, a.filters * kh * kw)}
    if a.bias:
        specs["bias"] = ParamSpec((a.filters,), "zeros")
    return specs


def _conv_transpose(a: o.ConvTransposeAttrs, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    _need_rank(x, (4,), "conv_transpose")
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


def _conv_transpose_params(a: o.ConvTransposeAttrs, shapes: list[Shape]) -> dict[str, ParamSpec]:
    c = shapes[0][1]
    kh, kw = a.kernel
    specs = {"weight": ParamSpec((c, a.filters // a.groups, kh, kw), "he",
                                 c // a.groups * kh * kw, a.filters * kh * kw)}
    if a.bias:
        specs["bias"] = ParamSpec((a.filters,), "zeros")
    return specs


def _dense(a: o.DenseAttrs, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    if len(x) == 2:
        return (x[0], a.units)
    if len(x) == 4 and x[2] == 1 and x[3] == 1:
        return (x[0], a.units, 1, 1)
    raise ShapeRuleError(f"dense expects [N, features] or [N, C, 1, 1], got {fmt(x)}; "
                         "insert `flatten` (or global_avg_pool) first")


def _dense_params(a: o.DenseAttrs, shapes: list[Shape]) -> dict[str, ParamSpec]:
    features = shapes[0][1]
    specs = {"weight": ParamSpec((a.units, features), "he", features, a.units)}
    if a.bias:
        specs["bias"] = ParamSpec((a.units,), "zeros")
    return specs


def _flatten(a: object, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    if len(x) < 2:
        raise ShapeRuleError(f"flatten expects at least a 2-D input, got {fmt(x)}")
    return (x[0], math.prod(x[1:]))


def _reshape(a: o.ReshapeAttrs, shapes: list[Shape]) -> Shape:
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


def _channels_params(*roles_inits: tuple[str, str]) -> Callable:
    def rule(a: object, shapes: list[Shape]) -> dict[str, ParamSpec]:
        c = shapes[0][1]
        return {role: ParamSpec((c,), init) for role, init in roles_inits}
    return rule


def _batch_norm(a: o.BatchNormAttrs, shapes: list[Shape]) -> Shape:
    _need_rank(shapes[0], (2, 4), "bn")
    return shapes[0]


def _same(a: object, shapes: list[Shape]) -> Shape:
    return shapes[0]


def _softmax(a: o.SoftmaxAttrs, shapes: list[Shape]) -> Shape:
    if not -len(shapes[0]) <= a.axis < len(shapes[0]):
        raise ShapeRuleError(f"softmax: axis {a.axis} is out of range for {fmt(shapes[0])}")
    return shapes[0]


def _lrn(a: o.LrnAttrs, shapes: list[Shape]) -> Shape:
    _need_rank(shapes[0], (4,), "lrn")
    return shapes[0]


def _check_pool_pads(kernel: tuple[int, int], pads: tuple[int, ...], what: str) -> None:
    for k, p in zip(kernel + kernel, pads):
        if p > k // 2:
            raise ShapeRuleError(f"{what}: padding {p} is more than half the kernel ({k}); "
                                 "a window would see only padding")


def _max_pool(a: o.MaxPoolAttrs, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    _need_rank(x, (4,), "maxpool")
    _check_pool_pads(a.kernel, a.pads, "maxpool")
    n, c, h, w = x
    pt, pl, pb, pr = a.pads
    return (n, c,
            _pool_out(h, a.kernel[0], a.stride[0], pt, pb, a.dilation[0], a.ceil_mode, "maxpool", "height"),
            _pool_out(w, a.kernel[1], a.stride[1], pl, pr, a.dilation[1], a.ceil_mode, "maxpool", "width"))


def _avg_pool(a: o.AvgPoolAttrs, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    _need_rank(x, (4,), "avgpool")
    _check_pool_pads(a.kernel, a.pads, "avgpool")
    n, c, h, w = x
    pt, pl, pb, pr = a.pads
    return (n, c,
            _pool_out(h, a.kernel[0], a.stride[0], pt, pb, 1, a.ceil_mode, "avgpool", "height"),
            _pool_out(w, a.kernel[1], a.stride[1], pl, pr, 1, a.ceil_mode, "avgpool", "width"))


def _global_pool(a: object, shapes: list[Shape]) -> Shape:
    _need_rank(shapes[0], (4,), "global pooling")
    return (shapes[0][0], shapes[0][1], 1, 1)


def _depthwise_pool(a: o.DepthwisePoolAttrs, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    _need_rank(x, (4,), "depthwise pooling")
    if x[1] % a.size:
        raise ShapeRuleError(f"depthwise pooling: size {a.size} must divide the channels ({x[1]})")
    return (x[0], x[1] // a.size, x[2], x[3])


def broadcast(a: Shape, b: Shape, what: str) -> Shape:
    """NumPy broadcasting of two shapes, with messages that say which dimension disagrees."""
    if len(a) != len(b):
        raise ShapeRuleError(f"{what}: cannot combine {fmt(a)} and {fmt(b)} (different ranks)")
    names = ("batch", "channels", "height", "width") if len(a) == 4 else ()
    out = []
    for axis, (x, y) in enumerate(zip(a, b)):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            label = f" ({names[axis]})" if names else ""
            raise ShapeRuleError(f"{what}: shapes {fmt(a)} and {fmt(b)} differ in dimension "
                                 f"{axis}{label}: {x} vs {y}")
    return tuple(out)


def _binary(what: str) -> Callable:
    return lambda a, shapes: broadcast(shapes[0], shapes[1], what)


def _concat(a: o.ConcatAttrs, shapes: list[Shape]) -> Shape:
    first = shapes[0]
    axis = a.axis % len(first)
    if axis == 0:
        raise ShapeRuleError("concat along the batch axis is not supported")
    for other in shapes[1:]:
        if len(other) != len(first) or any(
                d1 != d2 for i, (d1, d2) in enumerate(zip(first, other)) if i != axis):
            raise ShapeRuleError(f"concat along axis {axis}: {fmt(first)} and {fmt(other)} differ "
                                 f"outside that axis")
    return (*first[:axis], sum(s[axis] for s in shapes), *first[axis + 1:])


def _upsample(a: o.UpsampleAttrs, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    _need_rank(x, (4,), "upsample")
    return (x[0], x[1], x[2] * a.scale[0], x[3] * a.scale[1])


def _pad(a: o.PadAttrs, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    _need_rank(x, (4,), "pad")
    pt, pl, pb, pr = a.pads
    if a.mode == "reflect" and (max(pt, pb) >= x[2] or max(pl, pr) >= x[3]):
        raise ShapeRuleError(f"pad: reflect padding {a.pads} must be smaller than the input {fmt(x)}")
    return (x[0], x[1], x[2] + pt + pb, x[3] + pl + pr)


def _crop(a: o.CropAttrs, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    _need_rank(x, (4,), "crop")
    (oy, ox), (h, w) = a.offset, a.size
    if oy + h > x[2] or ox + w > x[3]:
        raise ShapeRuleError(f"crop: offset ({oy}, {ox}) + size ({h}, {w}) exceeds the input {fmt(x)}")
    return (x[0], x[1], h, w)


def _slice(a: o.SliceAttrs, shapes: list[Shape]) -> Shape:
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


def _boxes(shape: Shape, what: str, role: str) -> None:
    if len(shape) != 3 or shape[2] != 4:
        raise ShapeRuleError(f"{what}: {role} must be [N, count, 4], got {fmt(shape)}")


def _same_batch(a: Shape, b: Shape, what: str) -> None:
    if a[0] != b[0]:
        raise ShapeRuleError(f"{what}: batch sizes differ: {fmt(a)} and {fmt(b)}")


def _iou(a: o.IouAttrs, shapes: list[Shape]) -> Shape:
    first, second = shapes
    _boxes(first, "iou", "the first boxes")
    _boxes(second, "iou", "the second boxes")
    _same_batch(first, second, "iou")
    return (first[0], first[1], second[1])


def _nms(a: o.NmsAttrs, shapes: list[Shape]) -> Shape:
    boxes, scores = shapes
    _boxes(boxes, "nms", "boxes")
    if len(scores) != 3:
        raise ShapeRuleError(f"nms: scores must be [N, count, classes], got {fmt(scores)}")
    _same_batch(boxes, scores, "nms")
    if boxes[1] != scores[1]:
        raise ShapeRuleError(f"nms: boxes {fmt(boxes)} and scores {fmt(scores)} differ in the number "
                             f"of boxes: {boxes[1]} vs {scores[1]}")
    return (boxes[0], a.max_boxes, 6)


def _yolo_decode(a: o.YoloDecodeAttrs, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    _need_rank(x, (4,), "yolo_decode")
    n, c, h, w = x
    anchors = len(a.anchors)
    if c != anchors * (5 + a.classes):
        raise ShapeRuleError(f"yolo_decode: {anchors} anchors × (5 + {a.classes} classes) = "
                             f"{anchors * (5 + a.classes)} channels expected, the input has {c}")
    return (n, h * w * anchors, 4 + a.classes)


def _reduce(a: o.ReduceAttrs, shapes: list[Shape]) -> Shape:
    (x,) = shapes
    axes = {axis % len(x) for axis in a.axes}
    if 0 in axes:
        raise ShapeRuleError("reduce: the batch axis cannot be reduced")
    if a.keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(x))
    return tuple(d for i, d in enumerate(x) if i not in axes)


SHAPE_RULES: dict[Op, Callable[[object, list[Shape]], Shape]] = {
    Op.CONV: _conv,
    Op.CONV_TRANSPOSE: _conv_transpose,
    Op.DENSE: _dense,
    Op.FLATTEN: _flatten,
    Op.RESHAPE: _reshape,
    Op.BATCH_NORM: _batch_norm,
    Op.RELU: _same, Op.LEAKY_RELU: _same, Op.RELU6: _same, Op.SIGMOID: _same, Op.TANH: _same,
    Op.DROPOUT: _same,
    Op.SOFTMAX: _softmax,
    Op.LRN: _lrn,
    Op.MAX_POOL: _max_pool,
    Op.AVG_POOL: _avg_pool,
    Op.GLOBAL_AVG_POOL: _global_pool,
    Op.GLOBAL_MAX_POOL: _global_pool,
    Op.DEPTHWISE_POOL: _depthwise_pool,
    Op.ADD: _binary("+"),
    Op.MUL: _binary("*"),
    Op.CONCAT: _concat,
    Op.UPSAMPLE: _upsample,
    Op.PAD: _pad,
    Op.CROP: _crop,
    Op.SLICE: _slice,
    Op.IOU: _iou,
    Op.NMS: _nms,
    Op.YOLO_DECODE: _yolo_decode,
    Op.CHANNEL_AFFINE: _same,
    Op.REDUCE: _reduce,
}

PARAM_RULES: dict[Op, Callable[[object, list[Shape]], dict[str, ParamSpec]]] = {
    Op.CONV: _conv_params,
    Op.CONV_TRANSPOSE: _conv_transpose_params,
    Op.DENSE: _dense_params,
    Op.BATCH_NORM: _channels_params(("gamma", "ones"), ("beta", "zeros"), ("mean", "zeros"), ("var", "ones")),
    Op.CHANNEL_AFFINE: _channels_params(("scale", "ones"), ("shift", "zeros")),
}


def infer_shape(op: Op, attrs: object, shapes: list[Shape]) -> Shape:
    """The output shape of `op` on inputs of `shapes` (ShapeRuleError if they do not fit)."""
    try:
        rule = SHAPE_RULES[op]
    except KeyError:
        known = ", ".join(sorted(str(k) for k in SHAPE_RULES))
        raise KeyError(f"no shape rule for op {op}; ops with one: {known}") from None
    return tuple(rule(attrs, shapes))


def param_specs(op: Op, attrs: object, shapes: list[Shape]) -> dict[str, ParamSpec]:
    """The op's parameters (role → spec); empty for ops without parameters."""
    rule = PARAM_RULES.get(op)
    return rule(attrs, shapes) if rule else {}
