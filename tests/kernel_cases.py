"""Kernel calls covering every op of the IR and the interesting cases of each (strides, asymmetric
pads, dilation, groups, depthwise multipliers, fused epilogues, chunked workspaces, in-place
calls, broadcasting), shared by the CuPy kernel tests on the GPU (tests/test_gpu.py) and on the
CPU emulator (tests/test_cupy_emulated.py). Each case is checked against the NumPy kernel.

Also shared by those two: how the detection networks' NMS outputs are checked (`PROBES`,
`check_detections`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from cnnc.ir.ops import Op
from cnnc.ir.shapes import pool_out
from cnnc.kernels import numpy_kernels


@dataclass
class Case:
    id: str
    kernel: str
    args: tuple  # arrays (float32) or None
    kwargs: dict = field(default_factory=dict)
    in_place: bool = False  # also call with out= the first input
    workspace: int | None = None  # workspace elements to pass (forcing chunks)


def _n(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _boxes(rng, shape, center=False):
    b = rng.uniform(0, 40, shape).astype(np.float32)
    if center:
        b[..., 2:] = rng.uniform(0, 10, shape[:-1] + (2,))
    else:
        b[..., 2:] = b[..., :2] + rng.uniform(-2, 10, shape[:-1] + (2,))  # some inverted (empty) boxes
    return b


def _detections(rng, n, prototypes):
    """nms rows [n, 8, 6 + prototypes] for instance_masks on a 7x9 grid of stride (3, 2) (input
    21x18) or smaller: boxes inside, partly outside, inverted, edges on pixel centres (x1 ≤ x <
    x2 keeps the first, drops the last), a nan corner, a score of exactly 0 (kept), then padding
    rows (0, 0, 0, 0, −1, 0, 0…)."""
    rows = np.zeros((n, 8, 6 + prototypes), dtype=np.float32)
    rows[..., 4] = -1.0
    boxes = [(2.0, 1.5, 12.0, 16.0), (-5.0, -4.0, 7.5, 30.0), (9.0, 12.0, 3.0, 20.0), (3.0, 4.5, 9.0, 13.5),
             (float("nan"), 0.0, 10.0, 10.0), (0.0, 0.0, 18.0, 21.0)]
    for i, box in enumerate(boxes):
        rows[:, i, :4] = box
        rows[:, i, 4] = 0.0 if i == 5 else rng.uniform(0.3, 1.0)
        rows[:, i, 5] = i % 3
        rows[:, i, 6:] = rng.standard_normal((n, prototypes))
    return rows


def cases(seed: int = 0) -> list[Case]:
    rng = np.random.default_rng(seed)
    conv = dict(stride=(1, 1), pads=(1, 1, 1, 1), dilation=(1, 1), groups=1)
    x = _n(rng, 2, 6, 9, 11)
    out = [
        Case("conv3x3_relu", "conv", (x, _n(rng, 7, 6, 3, 3), _n(rng, 7)), {**conv, "activation": "relu"}),
        Case("conv3x3_s2_asym_dil", "conv", (x, _n(rng, 5, 6, 3, 2), None),
             dict(stride=(2, 2), pads=(0, 1, 1, 2), dilation=(2, 1), groups=1)),
        Case("conv1x1_residual_relu6", "conv", (x, _n(rng, 6, 6, 1, 1), _n(rng, 6)),
             dict(stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1, activation="relu6",
                  residual=_n(rng, 2, 6, 9, 11))),
        Case("conv1x1_groups2_leaky", "conv", (x, _n(rng, 4, 3, 1, 1), _n(rng, 4)),
             dict(stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=2, activation="leaky_relu", slope=0.1)),
        Case("conv1x1_stride2", "conv", (x, _n(rng, 8, 6, 1, 1), None),
             dict(stride=(2, 2), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1)),
        Case("conv3x3_groups3_sigmoid", "conv", (x, _n(rng, 9, 2, 3, 3), _n(rng, 9)),
             {**conv, "groups": 3, "activation": "sigmoid"}),
        Case("conv5x5_big_pad", "conv", (_n(rng, 1, 2, 4, 4), _n(rng, 3, 2, 5, 5), _n(rng, 3)),
             dict(stride=(1, 1), pads=(3, 3, 3, 3), dilation=(1, 1), groups=1)),
        Case("depthwise_residual_relu", "conv", (x, _n(rng, 6, 1, 3, 3), _n(rng, 6)),
             {**conv, "groups": 6, "activation": "relu", "residual": _n(rng, 2, 6, 9, 11)}),
        Case("depthwise_multiplier2_s2", "conv", (x, _n(rng, 12, 1, 3, 3), None),
             dict(stride=(2, 2), pads=(0, 1, 1, 0), dilation=(1, 1), groups=6)),
        Case("depthwise_dilated_leaky", "conv", (x, _n(rng, 6, 1, 3, 3), _n(rng, 6)),
             dict(stride=(1, 1), pads=(2, 2, 2, 2), dilation=(2, 2), groups=6, activation="leaky_relu", slope=0.2)),
        Case("conv_chunked_workspace", "conv", (_n(rng, 5, 3, 8, 8), _n(rng, 4, 3, 3, 3), _n(rng, 4)),
             {**conv, "activation": "relu"}, workspace=2 * 27 * 64),  # 2 images per chunk: 2 + 2 + 1
        Case("winograd_relu", "winograd_conv", (x, _n(rng, 36, 7, 6), _n(rng, 7)),
             {"pads": (1, 1, 1, 1), "out_size": (9, 11), "activation": "relu"}),
        Case("winograd_asym_residual", "winograd_conv", (x, _n(rng, 36, 5, 6), None),
             {"pads": (0, 1, 2, 0), "out_size": (9, 10), "residual": _n(rng, 2, 5, 9, 10), "activation": "silu"}),
        Case("winograd_chunked", "winograd_conv", (_n(rng, 3, 4, 8, 8), _n(rng, 36, 3, 4), _n(rng, 3)),
             {"pads": (1, 1, 1, 1), "out_size": (8, 8)}, workspace=36 * 7 * 4),  # one image per chunk
        Case("layer_norm_4d", "layer_norm", (_n(rng, 2, 5, 3, 4, scale=3), _n(rng, 5), _n(rng, 5)), {"eps": 1e-6}),
        Case("layer_norm_2d", "layer_norm", (_n(rng, 3, 7), _n(rng, 7), _n(rng, 7)), {"eps": 1e-5}),
        Case("group_norm", "group_norm", (_n(rng, 2, 6, 3, 5), _n(rng, 6), _n(rng, 6)), {"groups": 3, "eps": 1e-5}),
        Case("instance_norm", "group_norm", (_n(rng, 2, 4, 3, 3), _n(rng, 4), _n(rng, 4)), {"groups": 4, "eps": 1e-3}),
        Case("layer_scale", "layer_scale", (x, _n(rng, 6)), in_place=True),
        Case("clip", "clip", (x,), {"min": -0.5, "max": 1.25}, in_place=True),
        Case("adaptive_avg", "adaptive_pool", (x,), {"size": (4, 3), "mode": "avg"}),
        Case("adaptive_max", "adaptive_pool", (x,), {"size": (2, 5), "mode": "max"}),
        Case("channel_shuffle", "channel_shuffle", (x,), {"groups": 3}),
        Case("pixel_shuffle", "pixel_shuffle", (_n(rng, 2, 8, 3, 2),), {"factor": 2}),
        Case("sub_broadcast", "sub", (x, _n(rng, 2, 6, 1, 1))),
        Case("sub", "sub", (x, _n(rng, 2, 6, 9, 11)), in_place=True),
        Case("div", "div", (x, _n(rng, 2, 6, 9, 11) + 4), in_place=True),
        Case("scalar_affine", "scalar_affine", (x,), {"scale": -0.5, "shift": 3.0}, in_place=True),
        Case("prelu", "prelu", (x, _n(rng, 6)), in_place=True),
        Case("permute", "permute", (x,), {"order": (0, 2, 3, 1)}),
        Case("matmul", "matmul", (_n(rng, 2, 3, 4, 5), _n(rng, 2, 3, 5, 6))),
        Case("matmul_broadcast", "matmul", (_n(rng, 2, 3, 4, 5), _n(rng, 2, 1, 5, 2))),
        Case("reduce_sum", "reduce", (x,), {"mode": "sum", "axes": (1, 3), "keepdims": False}),
        Case("conv_transpose_k4s2p1", "conv_transpose", (_n(rng, 2, 4, 5, 6), _n(rng, 4, 3, 4, 4), _n(rng, 3)),
             dict(stride=(2, 2), pads=(1, 1, 1, 1), output_padding=(0, 0), dilation=(1, 1), groups=1)),
        Case("conv_transpose_groups_asym", "conv_transpose", (_n(rng, 2, 4, 5, 5), _n(rng, 4, 3, 3, 3), None),
             dict(stride=(2, 3), pads=(0, 1, 1, 0), output_padding=(1, 2), dilation=(1, 2), groups=2)),
        Case("conv_transpose_chunked", "conv_transpose", (_n(rng, 3, 2, 4, 4), _n(rng, 2, 5, 2, 2), _n(rng, 5)),
             dict(stride=(2, 2), pads=(0, 0, 0, 0), output_padding=(0, 0), dilation=(1, 1), groups=1),
             workspace=5 * 4 * 16),  # one image per chunk
        Case("dense_relu", "dense", (_n(rng, 3, 20), _n(rng, 7, 20), _n(rng, 7)), {"activation": "relu"}),
        Case("dense_4d_sigmoid", "dense", (_n(rng, 3, 20, 1, 1), _n(rng, 7, 20), None), {"activation": "sigmoid"}),
        Case("batch_norm_4d", "batch_norm", (x, _n(rng, 6), _n(rng, 6), _n(rng, 6),
                                             rng.uniform(0.5, 2, 6).astype(np.float32)), {"eps": 1e-5}, in_place=True),
        Case("batch_norm_2d", "batch_norm", (_n(rng, 4, 6), _n(rng, 6), _n(rng, 6), _n(rng, 6),
                                             rng.uniform(0.5, 2, 6).astype(np.float32)), {"eps": 1e-3}),
        Case("channel_affine_4d", "channel_affine", (x, _n(rng, 6), _n(rng, 6)), in_place=True),
        Case("channel_affine_2d", "channel_affine", (_n(rng, 4, 6), _n(rng, 6), _n(rng, 6))),
        *(Case(name, name, (_n(rng, 2, 3, 4, 5, scale=4),), in_place=True)
          for name in ("relu", "relu6", "sigmoid", "tanh", "hardsigmoid", "hardswish", "silu", "gelu", "gelu_tanh")),
        Case("gelu_tails", "gelu", (np.linspace(-12, 12, 97, dtype=np.float32).reshape(1, 97),), in_place=True),
        Case("gelu_tanh_tails", "gelu_tanh", (np.linspace(-12, 12, 97, dtype=np.float32).reshape(1, 97),)),
        Case("silu_tails", "silu", (np.linspace(-100, 100, 97, dtype=np.float32).reshape(1, 97),)),
        # the newer epilogues: depthwise convs apply them in cnnc_activate, GEMM convs and dense in
        # the ElementwiseKernel epilogue (_epilogue_spec)
        *(Case(f"depthwise_residual_{act}", "conv", (x, _n(rng, 6, 1, 3, 3), _n(rng, 6)),
               {**conv, "groups": 6, "activation": act, "residual": _n(rng, 2, 6, 9, 11)})
          for act in ("hardswish", "silu", "gelu", "gelu_tanh")),
        *(Case(f"conv1x1_{act}", "conv", (x, _n(rng, 7, 6, 1, 1), _n(rng, 7)),
               dict(stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1, activation=act))
          for act in ("hardsigmoid", "hardswish", "silu", "gelu", "gelu_tanh")),
        *(Case(f"dense_{act}", "dense", (_n(rng, 3, 20), _n(rng, 7, 20), _n(rng, 7)), {"activation": act})
          for act in ("hardswish", "silu", "gelu", "gelu_tanh")),
        Case("leaky_relu", "leaky_relu", (_n(rng, 2, 3, 4, 5),), {"slope": 0.2}, in_place=True),
        Case("softmax_2d", "softmax", (_n(rng, 3, 10, scale=5),), {"axis": 1}),
        Case("softmax_3d_last", "softmax", (_n(rng, 2, 4, 6),), {"axis": -1}),
        Case("softmax_4d", "softmax", (_n(rng, 2, 5, 3, 3),), {"axis": 1}),
        Case("lrn5", "lrn", (_n(rng, 2, 8, 4, 5),), dict(size=5, alpha=1e-2, beta=0.75, k=2.0)),
        Case("lrn4", "lrn", (_n(rng, 2, 8, 4, 5),), dict(size=4, alpha=1e-1, beta=0.5, k=1.0)),
        Case("max_pool_3x3s2p1", "max_pool", (x,), dict(kernel=(3, 3), stride=(2, 2), pads=(1, 1, 1, 1),
                                                          dilation=(1, 1), ceil_mode=False)),
        Case("max_pool_same_bottom_right", "max_pool", (x,), dict(kernel=(2, 2), stride=(1, 1), pads=(0, 0, 1, 1),
                                                                    dilation=(1, 1), ceil_mode=False)),
        Case("max_pool_ceil_dilated", "max_pool", (x,), dict(kernel=(2, 3), stride=(2, 2), pads=(0, 1, 0, 1),
                                                               dilation=(2, 1), ceil_mode=True)),
        *(Case(f"avg_pool_include_{flag}", "avg_pool", (x,), dict(kernel=(3, 3), stride=(1, 1), pads=(1, 1, 1, 1),
                                                                    ceil_mode=False, count_include_pad=flag))
          for flag in (True, False)),
        *(Case(f"avg_pool_ceil_include_{flag}", "avg_pool", (x,), dict(kernel=(3, 2), stride=(2, 2),
                                                                         pads=(1, 0, 1, 0), ceil_mode=True,
                                                                         count_include_pad=flag))
          for flag in (True, False)),
        Case("global_avg_pool", "global_avg_pool", (x,)),
        Case("global_max_pool", "global_max_pool", (x,)),
        Case("depthwise_pool_max", "depthwise_pool", (x,), {"size": 2, "mode": "max"}),
        Case("depthwise_pool_avg", "depthwise_pool", (x,), {"size": 3, "mode": "avg"}),
        Case("flatten", "flatten", (x,)),
        Case("reshape", "reshape", (x,), {"shape": (3, -1)}),
        Case("add", "add", (x, _n(rng, 2, 6, 9, 11)), in_place=True),
        Case("add_broadcast", "add", (x, _n(rng, 2, 6, 1, 1))),
        Case("mul_broadcast", "mul", (x, _n(rng, 2, 6, 1, 1)), in_place=True),
        Case("concat_channels", "concat", (x, _n(rng, 2, 3, 9, 11), _n(rng, 2, 1, 9, 11)), {"axis": 1}),
        Case("concat_rows", "concat", (_n(rng, 2, 5, 6), _n(rng, 2, 3, 6)), {"axis": 1}),
        Case("concat_last", "concat", (_n(rng, 2, 5, 6), _n(rng, 2, 5, 2)), {"axis": -1}),
        Case("upsample_nearest", "upsample", (x,), {"scale": (2, 3), "mode": "nearest"}),
        Case("upsample_bilinear", "upsample", (x,), {"scale": (2, 2), "mode": "bilinear"}),
        Case("upsample_bilinear_32", "upsample", (x,), {"scale": (3, 2), "mode": "bilinear"}),
        Case("pad_constant", "pad", (x,), {"pads": (1, 2, 0, 3), "mode": "constant", "value": 1.5}),
        Case("pad_reflect", "pad", (x,), {"pads": (2, 3, 4, 1), "mode": "reflect"}),
        Case("pad_edge", "pad", (x,), {"pads": (3, 0, 1, 2), "mode": "edge"}),
        Case("crop", "crop", (x,), {"offset": (2, 3), "size": (5, 4)}),
        Case("slice_channels", "slice_axis", (x,), {"axis": 1, "start": 1, "stop": 4}),
        Case("slice_last_negative", "slice_axis", (_n(rng, 2, 7, 9),), {"axis": -1, "start": -5, "stop": -1}),
        *(Case(f"box_iou_{fmt}", "iou", (_boxes(rng, (2, 5, 4), fmt == "center"),
                                              _boxes(rng, (2, 7, 4), fmt == "center")), {"format": fmt})
          for fmt in ("corners", "center")),
        Case("nms", "nms", (_boxes(rng, (2, 30, 4)), rng.uniform(0, 1, (2, 30, 3)).astype(np.float32)),
             dict(iou_threshold=0.4, score_threshold=0.2, max_boxes=12, format="corners")),
        Case("nms_extras", "nms", (_boxes(rng, (2, 30, 4)), rng.uniform(0, 1, (2, 30, 3)).astype(np.float32),
                                   _n(rng, 2, 30, 5)),
             dict(iou_threshold=0.4, score_threshold=0.6, max_boxes=40, format="corners")),  # padding rows too
        Case("yolo_decode", "yolo_decode", (_n(rng, 2, 3 * 7, 4, 5),),
             dict(anchors=((10.0, 14.0), (23.0, 27.0), (37.0, 58.0)), classes=2, stride=(16, 8))),
        Case("yolo_decode_extras", "yolo_decode", (_n(rng, 2, 3 * (5 + 2 + 4), 3, 5),),
             dict(anchors=((10.0, 14.0), (23.0, 27.0), (37.0, 58.0)), classes=2, stride=(16, 8), extras=4)),
        Case("yolo_decode_one_class_extras", "yolo_decode", (_n(rng, 1, 1 * (5 + 1 + 3), 5, 3),),
             dict(anchors=((12.0, 9.0),), classes=1, stride=(4, 6), extras=3)),
        Case("instance_masks", "instance_masks", (_n(rng, 2, 5, 7, 9), _detections(rng, 2, 5)),
             {"stride": (3, 2)}),
        Case("instance_masks_square_stride", "instance_masks", (_n(rng, 1, 3, 5, 5), _detections(rng, 1, 3)),
             {"stride": (4, 4)}),
        Case("reduce_mean_hw", "reduce", (x,), {"mode": "mean", "axes": (2, 3), "keepdims": True}),
        Case("reduce_max_hw", "reduce", (x,), {"mode": "max", "axes": (-2, -1), "keepdims": False}),
        Case("reduce_mean_channels", "reduce", (x,), {"mode": "mean", "axes": (1,), "keepdims": True}),
        Case("reduce_max_groups", "reduce", (_n(rng, 2, 3, 2, 4, 5),), {"mode": "max", "axes": (2,),
                                                                          "keepdims": False}),
    ]
    return [_sized(case) for case in out]


def _sized(case: Case) -> Case:
    """Give a window kernel its `out_size`, decided as the IR's shape rules decide it (the cases
    spell `ceil_mode` where a pool has one, which the kernels no longer take)."""
    if case.kernel not in ("conv", "max_pool", "avg_pool"):
        return case
    kwargs = dict(case.kwargs)
    ceil = kwargs.pop("ceil_mode", False)
    _, _, h, w = case.args[0].shape
    kh, kw = case.args[1].shape[2:] if case.kernel == "conv" else kwargs["kernel"]
    (sh, sw), (dh, dw) = kwargs["stride"], kwargs.get("dilation", (1, 1))
    top, left, bottom, right = kwargs["pads"]
    kwargs["out_size"] = (pool_out(h, kh, sh, top, bottom, dh, ceil, case.id, "height"),
                          pool_out(w, kw, sw, left, right, dw, ceil, case.id, "width"))
    return replace(case, kwargs=kwargs)


def tolerance(case: Case) -> tuple[float, float]:
    """(rtol, atol relative to the reference's scale): float32 sums in another order."""
    return (1e-4, 1e-5) if case.kernel not in ("lrn",) else (2e-4, 2e-5)


# ---- networks with NMS ---------------------------------------------------------------------------

# NMS is discontinuous (a last-bit difference in a score can change which boxes survive), so a
# detection network is checked through extra outputs, its "probes": the NMS inputs are compared
# like any output, then NMS, and the masks built from its rows, are recomputed by the NumPy
# kernels from the backend's own probes and detections.
PROBES = {"yolo_tiny.cnn": ("candidates",), "yolo_tiny_seg.cnn": ("candidates", "protos")}


def with_probes(name: str, text: str) -> str:
    """The example's source with its probes declared as outputs."""
    return text + "".join(f"\noutput {probe}\n" for probe in PROBES.get(name, ()))


def anchor_sized_boxes(net) -> None:
    """Make the random yolo heads of `net` predict boxes of about their anchors' size: the rows of
    the tw and th channels of each head conv scaled by 0.05, their biases 0 (so e^tw ≈ 1). Random
    He weights give |tw| of several units, mostly boxes far smaller than a prototype pixel, whose
    masks are empty; these cover many pixels and cross the image's edges."""
    graph = net.graph
    for node in (n for n in graph.nodes if graph.op(n) == Op.YOLO_DECODE):
        attrs = graph.attrs(node)
        roles = graph.params_of(graph.inputs_of(node)[0])
        weight, bias = net.params[roles["weight"]].copy(), net.params[roles["bias"]].copy()
        fields = 5 + attrs.classes + attrs.extras
        rows = [a * fields + f for a in range(len(attrs.anchors)) for f in (2, 3)]
        weight[rows] *= np.float32(0.05)
        bias[rows] = 0.0
        net.params[roles["weight"]] = weight
        net.params[roles["bias"]] = bias


def check_detections(graph, got: dict, rtol: float, atol_scale: float) -> set:
    """Check the outputs of `graph`'s nms and instance_masks nodes in `got` (host arrays, with the
    probes) against the NumPy kernels run on the probes; returns the output names checked.

    NMS's inputs are the candidates' columns as yolo_decode lays them out (4 corners, the class
    scores, then the extras, which yolo_tiny_seg squashes with tanh before NMS). The boxes,
    scores and classes must be equal; the carried extras, computed by the backend's own tanh,
    agree to a few ulps. The masks come from the backend's detections and prototypes (so both
    crop alike), compared with (rtol, atol_scale × max|mask|)."""
    outputs = {graph.op(value): name for name, value in graph.info.outputs.items()}
    if Op.NMS not in outputs:
        return set()
    decode = graph.attrs(next(n for n in graph.nodes if graph.op(n) == Op.YOLO_DECODE))
    attrs = graph.attrs(graph.info.outputs[outputs[Op.NMS]])
    candidates = got["candidates"]
    first_extra = 4 + decode.classes
    extras = None
    if decode.extras:
        extras = numpy_kernels.tanh(np.ascontiguousarray(candidates[..., first_extra:first_extra + decode.extras]))
    want = numpy_kernels.nms(candidates[..., :4], candidates[..., 4:first_extra], extras,
                             iou_threshold=attrs.iou_threshold, score_threshold=attrs.score_threshold,
                             max_boxes=attrs.max_boxes, format=attrs.format)
    detections = got[outputs[Op.NMS]]
    assert detections.shape == want.shape and detections.dtype == np.float32
    np.testing.assert_array_equal(detections[..., :6], want[..., :6])
    np.testing.assert_allclose(detections[..., 6:], want[..., 6:], rtol=1e-5, atol=1e-6)
    checked = {outputs[Op.NMS]}
    if Op.INSTANCE_MASKS in outputs:
        name = outputs[Op.INSTANCE_MASKS]
        stride = graph.attrs(graph.info.outputs[name]).stride
        masks = numpy_kernels.instance_masks(got["protos"], detections, stride=stride)
        assert got[name].shape == masks.shape and got[name].dtype == np.float32
        np.testing.assert_allclose(got[name], masks, rtol=rtol, atol=atol_scale * max(float(masks.max()), 1e-6))
        checked.add(name)
    return checked
