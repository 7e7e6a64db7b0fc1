"""cnnc's detection ops in ONNX: nodes of cnnc's own domain, each defined by a model-local function.

`yolo_decode`, `nms` and `instance_masks` have no single ONNX equivalent. The exporter writes each
as one node of the domain `ai.cnnc` (`YoloDecode`, `Nms`, `InstanceMasks`) whose attributes hold
the op's arguments, and whose inputs are its data inputs followed by constants (the sizes, grids and
thresholds its function reads, so one function serves every node). The model carries the
function, a graph of standard ONNX ops, which a runtime such as ONNX Runtime inlines: the model
runs anywhere. The importer reads such a node back whole, from its attributes, after checking its
constants are the ones those attributes give (so the op it imports is the one the model computes).

The functions, exactly:
- YoloDecode: Reshape to [N, A, F, H, W], Transpose to [N, H, W, A, F], centres (σ(t) + grid)·stride,
  half sizes e^t·anchor/2, scores σ(objectness)·σ(logits), the extras as they are; Concat, Reshape.
- Nms: ONNX NonMaxSuppression per class (max_boxes per class; it keeps a box when score >
  score_threshold and suppresses on IoU > iou_threshold, as cnnc's nms), the kept scores scattered
  into an [N, K·C] table whose index k·C + c is cnnc's tie order, TopK(max_boxes) across classes
  (equal values: the lower index first), then the rows gathered and the unused ones padded.
  ONNX Runtime differs from cnnc on inverted boxes (x2 < x1: it swaps the corners, cnnc counts
  the box empty) and computes IoU in float32 (cnnc in float64), so an IoU within rounding of the
  threshold can decide differently.
- InstanceMasks: MatMul of the coefficients by the flattened prototypes, Sigmoid, and Where over
  the pixel centres' comparisons with each box.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ir import ops as o
from ..ir.ops import Op
from ..ir.shapes import Shape

DOMAIN = "ai.cnnc"
INT_END = 2**62  # "to the end" for Slice


@dataclass(frozen=True)
class LocalOp:
    """How one cnnc op travels as an `ai.cnnc` node (see the module docstring)."""

    name: str  # the node's op_type and its function's name
    attributes: Callable[[Any], dict[str, Any]]  # attrs → the node's attributes
    from_attributes: Callable[[dict[str, Any]], Any]  # the node's attributes → attrs
    constants: Callable[[Any, list[Shape]], list[np.ndarray]]  # attrs, data input shapes → constant inputs
    keywords: Callable[[Any], tuple[list[str], list[tuple[str, str]]]]  # attrs → .cnn positional, keywords
    body: Callable[[Any, Any, int], Any]  # (onnx.helper, onnx, opset) → FunctionProto


class _Body:
    """A function body under construction: nodes with fresh value names."""

    def __init__(self, helper: Any, onnx: Any):
        self.helper, self.onnx, self.count = helper, onnx, 0
        self.nodes: list[Any] = []

    def __call__(self, op_type: str, *inputs: str, **attrs: Any) -> str:
        self.count += 1
        out = f"v{self.count}"
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def ints(self, *values: int) -> str:
        return self("Constant", value=self.helper.make_tensor("c", self.onnx.TensorProto.INT64, [len(values)],
                                                               list(values)))

    def float(self, value: float) -> str:
        return self("Constant", value=self.helper.make_tensor("c", self.onnx.TensorProto.FLOAT, [], [value]))

    def last(self, x: str, start: int | str, end: int | str) -> str:
        """x[..., start:end] (bounds as ints or as int64 [1] values)."""
        first = self.ints(start) if isinstance(start, int) else start
        stop = self.ints(end) if isinstance(end, int) else end
        return self("Slice", x, first, stop, self.ints(-1))

    def function(self, name: str, inputs: list[str], output: str, opset: int, attributes: list[str]) -> Any:
        self.nodes.append(self.helper.make_node("Identity", [output], ["y"]))
        return self.helper.make_function(DOMAIN, name, inputs, ["y"], self.nodes, [self.helper.make_opsetid("", opset)],
                                         attributes=attributes)


# ---- yolo_decode -----------------------------------------------------------------------------


def _yolo_constants(a: o.YoloDecodeAttrs, shapes: list[Shape]) -> list[np.ndarray]:
    _, _, h, w = shapes[0]
    count, fields = len(a.anchors), 5 + a.classes + a.extras
    grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), axis=-1).reshape(1, h, w, 1, 2)  # (j, i)
    rows = np.array([0, h * w * count, 4 + a.classes + a.extras], np.int64)
    half_anchors = (np.asarray(a.anchors, np.float32) / 2).reshape(1, 1, 1, count, 2)
    return [np.array([0, count, fields, h, w], np.int64), rows, grid.astype(np.float32), half_anchors,
            np.array([a.stride[1], a.stride[0]], np.float32), np.array([5 + a.classes], np.int64)]


def _yolo_body(helper: Any, onnx: Any, opset: int) -> Any:
    b = _Body(helper, onnx)
    t = b("Transpose", b("Reshape", "x", "shape5"), perm=[0, 3, 4, 1, 2])  # [N, H, W, A, F]
    centre = b("Mul", b("Add", b("Sigmoid", b.last(t, 0, 2)), "grid"), "stride")
    half = b("Mul", b("Exp", b.last(t, 2, 4)), "half_anchors")
    scores = b("Mul", b("Sigmoid", b.last(t, 4, 5)), b("Sigmoid", b.last(t, 5, "class_end")))
    rows = b("Concat", b("Sub", centre, half), b("Add", centre, half), scores, b.last(t, "class_end", INT_END), axis=-1)
    return b.function("YoloDecode", ["x", "shape5", "shape3", "grid", "half_anchors", "stride", "class_end"],
                      b("Reshape", rows, "shape3"), opset, ["anchors", "classes", "stride", "extras"])


def _anchor_text(anchors: tuple[tuple[float, float], ...]) -> str:
    pairs = [f"({w!r}, {h!r})" for w, h in anchors]
    return pairs[0] if len(pairs) == 1 else "(" + ", ".join(pairs) + ")"  # a single pair is one anchor


YOLO_DECODE = LocalOp(
    "YoloDecode",
    lambda a: {"anchors": [float(v) for pair in a.anchors for v in pair], "classes": a.classes,
               "stride": list(a.stride), "extras": a.extras},
    lambda d: o.YoloDecodeAttrs(tuple((float(d["anchors"][i]), float(d["anchors"][i + 1]))
                                      for i in range(0, len(d["anchors"]), 2)),
                                int(d["classes"]), (int(d["stride"][0]), int(d["stride"][1])), int(d.get("extras", 0))),
    _yolo_constants,
    lambda a: ([_anchor_text(a.anchors), str(a.classes), f"({a.stride[0]}, {a.stride[1]})"],
               [("extras", str(a.extras))] if a.extras else []),
    _yolo_body)


# ---- nms -----------------------------------------------------------------------------------


def _nms_constants(a: o.NmsAttrs, shapes: list[Shape]) -> list[np.ndarray]:
    _, count, classes = shapes[1]
    extras = shapes[2][2] if len(shapes) == 3 else 0
    padding = np.zeros(6 + extras, np.float32)
    padding[4] = -1.0
    return [np.array([a.max_boxes], np.int64), np.array([a.iou_threshold], np.float32),
            np.array([a.score_threshold], np.float32), np.array(classes, np.int64),
            np.array(count * classes - 1, np.int64), padding]


def _nms_body(extras: bool, center: bool) -> Callable[[Any, Any, int], Any]:
    def body(helper: Any, onnx: Any, opset: int) -> Any:
        b = _Body(helper, onnx)
        boxes = "boxes"
        if center:  # (cx, cy, w, h) → corners, which NonMaxSuppression reads and the rows hold
            half = b("Div", b.last(boxes, 2, 4), b.float(2.0))
            boxes = b("Concat", b("Sub", b.last(boxes, 0, 2), half), b("Add", b.last(boxes, 0, 2), half), axis=-1)
        scores = b("Transpose", "scores", perm=[0, 2, 1])  # [N, C, K]
        selected = b("NonMaxSuppression", boxes, scores, "max_boxes", "iou_threshold", "score_threshold")
        unkept = b("Sub", b("Mul", scores, b.float(0.0)), b.float(1.0))  # −1 everywhere
        kept = b("ScatterND", unkept, selected, b("GatherND", scores, selected))  # [N, C, K]
        table = b("Reshape", b("Transpose", kept, perm=[0, 2, 1]), b.ints(0, -1))  # [N, K·C]: k·C + c
        # at least max_boxes columns for TopK: −1 columns after the table (never chosen over a kept one)
        filler = b("Expand", b.float(-1.0), b("Concat", b("Slice", b("Shape", table), b.ints(0), b.ints(1)),
                                               "max_boxes", axis=0))
        values, index = f"v{b.count + 1}", f"v{b.count + 2}"
        b.count += 2
        b.nodes.append(helper.make_node("TopK", [b("Concat", table, filler, axis=1), "max_boxes"], [values, index],
                                        axis=1, largest=1, sorted=1))
        index = b("Min", index, "last_index")
        box = b("Unsqueeze", b("Div", index, "classes"), b.ints(-1))  # [N, max_boxes, 1]
        cls = b("Cast", b("Unsqueeze", b("Mod", index, "classes"), b.ints(-1)), to=onnx.TensorProto.FLOAT)
        parts = [b("GatherND", boxes, box, batch_dims=1), b("Unsqueeze", values, b.ints(-1)), cls]
        if extras:
            parts.append(b("GatherND", "extras", box, batch_dims=1))
        rows = b("Concat", *parts, axis=-1)
        valid = b("Unsqueeze", b("GreaterOrEqual", values, b.float(0.0)), b.ints(-1))
        inputs = ["boxes", "scores", *(["extras"] if extras else []), "max_boxes", "iou_threshold",
                  "score_threshold", "classes", "last_index", "padding"]
        return b.function(_nms_name(extras, center), inputs, b("Where", valid, rows, "padding"), opset,
                          ["iou_threshold", "score_threshold", "max_boxes", "format"])
    return body


def _nms_name(extras: bool, center: bool) -> str:
    return f"Nms{'Center' if center else ''}{'Extras' if extras else ''}"


def _exact(value: float) -> float:
    """The decimal a float32 attribute was written from (0.45, not 0.44999998807907104)."""
    return float(np.format_float_positional(np.float32(value), unique=True, trim="-"))


def _nms_attributes(a: o.NmsAttrs) -> dict[str, Any]:
    return {"iou_threshold": a.iou_threshold, "score_threshold": a.score_threshold, "max_boxes": a.max_boxes,
            "format": a.format}


def _nms_from(d: dict[str, Any]) -> o.NmsAttrs:
    return o.NmsAttrs(_exact(d["iou_threshold"]), _exact(d["score_threshold"]), int(d["max_boxes"]), str(d["format"]))


def _nms_keywords(a: o.NmsAttrs) -> tuple[list[str], list[tuple[str, str]]]:
    return [], [("iou_threshold", repr(a.iou_threshold)), ("score_threshold", repr(a.score_threshold)),
                ("max_boxes", str(a.max_boxes)), ("format", a.format)]


NMS_VARIANTS = {(extras, center): LocalOp(_nms_name(extras, center), _nms_attributes, _nms_from, _nms_constants,
                                          _nms_keywords, _nms_body(extras, center))
                for extras in (False, True) for center in (False, True)}


# ---- instance_masks -------------------------------------------------------------------------


def _mask_constants(a: o.InstanceMasksAttrs, shapes: list[Shape]) -> list[np.ndarray]:
    _, _, h, w = shapes[0]  # pixel centres, exact in float32
    return [((np.arange(w, dtype=np.float64) + 0.5) * a.stride[1]).astype(np.float32),
            ((np.arange(h, dtype=np.float64) + 0.5) * a.stride[0]).astype(np.float32).reshape(h, 1)]


def _mask_body(helper: Any, onnx: Any, opset: int) -> Any:
    b = _Body(helper, onnx)

    def column(index: int) -> str:  # column `index` of every detection row, as [N, D, 1, 1]
        return b("Unsqueeze", b.last("detections", index, index + 1), b.ints(3))

    x1, y1, x2, y2, score = (column(i) for i in range(5))
    logits = b("MatMul", b.last("detections", 6, INT_END), b("Reshape", "protos", b.ints(0, 0, -1)))
    size = b("Concat", b("Slice", b("Shape", "detections"), b.ints(0), b.ints(2)),
             b("Slice", b("Shape", "protos"), b.ints(2), b.ints(4)), axis=0)
    masks = b("Reshape", b("Sigmoid", logits), size)  # [N, D, H, W]
    columns = b("And", b("GreaterOrEqual", "xs", x1), b("Less", "xs", x2))
    rows = b("And", b("GreaterOrEqual", "ys", y1), b("Less", "ys", y2))
    inside = b("And", b("And", rows, columns), b("GreaterOrEqual", score, b.float(0.0)))
    return b.function("InstanceMasks", ["protos", "detections", "xs", "ys"], b("Where", inside, masks, b.float(0.0)),
                      opset, ["stride"])


INSTANCE_MASKS = LocalOp(
    "InstanceMasks", lambda a: {"stride": list(a.stride)},
    lambda d: o.InstanceMasksAttrs((int(d["stride"][0]), int(d["stride"][1]))), _mask_constants,
    lambda a: ([], [("stride", f"({a.stride[0]}, {a.stride[1]})")]), _mask_body)


def local_op(op: Op, attrs: Any, inputs: int) -> LocalOp | None:
    """How `op` (with `attrs` and `inputs` data inputs) is exported, if it is one of these."""
    if op == Op.NMS:
        return NMS_VARIANTS[(inputs == 3, attrs.format == "center")]
    return {Op.YOLO_DECODE: YOLO_DECODE, Op.INSTANCE_MASKS: INSTANCE_MASKS}.get(op)


# op_type → (the cnnc op, its .cnn word, how many data inputs, how it travels)
BY_NAME: dict[str, tuple[Op, str, int, LocalOp]] = {
    "YoloDecode": (Op.YOLO_DECODE, "yolo_decode", 1, YOLO_DECODE),
    "InstanceMasks": (Op.INSTANCE_MASKS, "instance_masks", 2, INSTANCE_MASKS),
    **{local.name: (Op.NMS, "nms", 3 if extras else 2, local) for (extras, _), local in NMS_VARIANTS.items()},
}
