"""Detection ops: iou, nms (with carried columns), yolo_decode (with extras), instance_masks and
slice — both kernel modules against plain loops written
straight from the formulas and against torchvision.ops' logic (box_iou, nms, batched_nms)
rewritten here in torch (torchvision itself is not a dependency); their shape rules and
arguments; and examples/yolo_tiny.cnn's generated code against the interpreter."""
from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import EXAMPLES, randomize

import cnnc
from cnnc.kernels import numpy_kernels as fast
from cnnc.kernels import reference as ref

torch = pytest.importorskip("torch")

KERNELS = [pytest.param(fast, id="numpy"), pytest.param(ref, id="reference")]


# ---------------------------------------------------------------- plain-loop references


def loop_corners(box, format):
    if format == "center":
        cx, cy, w, h = (float(v) for v in box)
        return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    return tuple(float(v) for v in box)


def loop_iou(a, b):
    """IoU of two corner boxes; inverted boxes are empty; 0 when the union is empty."""
    inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    area_a = max(a[2] - a[0], 0.0) * max(a[3] - a[1], 0.0)
    area_b = max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def loop_box_iou(a, b, format):
    out = np.zeros((a.shape[0], a.shape[1], b.shape[1]))
    for n in range(a.shape[0]):
        for i in range(a.shape[1]):
            for j in range(b.shape[1]):
                out[n, i, j] = loop_iou(loop_corners(a[n, i], format), loop_corners(b[n, j], format))
    return out


def loop_nms(boxes, scores, iou_threshold, score_threshold, max_boxes, format, extras=None):
    """Greedy class-wise NMS exactly as documented, one candidate at a time; a kept row carries its
    box's `extras` after the class."""
    n, k_count, c_count = scores.shape
    e_count = 0 if extras is None else extras.shape[2]
    out = np.zeros((n, max_boxes, 6 + e_count))
    out[:, :, 4] = -1.0
    for image in range(n):
        candidates = sorted((-float(scores[image, k, c]), k, c) for k in range(k_count) for c in range(c_count)
                            if float(scores[image, k, c]) > score_threshold)
        kept = []
        for negative, k, c in candidates:
            if len(kept) == max_boxes:
                break
            box = loop_corners(boxes[image, k], format)
            if all(loop_iou(box, other) <= iou_threshold for other, other_class, _, _ in kept if other_class == c):
                kept.append((box, c, -negative, k))
        for row, (box, c, score, k) in enumerate(kept):
            carried = [] if extras is None else [float(v) for v in extras[image, k]]
            out[image, row] = (*box, score, c, *carried)
    return out


def loop_yolo_decode(x, anchors, classes, stride, extras=0):
    n, _, h, w = x.shape
    count = len(anchors)
    fields = 5 + classes + extras
    out = np.zeros((n, h * w * count, 4 + classes + extras))

    def sig(v):
        return 1.0 / (1.0 + math.exp(-v))

    for b in range(n):
        for i in range(h):
            for j in range(w):
                for a, (anchor_w, anchor_h) in enumerate(anchors):
                    t = [float(v) for v in x[b, a * fields:(a + 1) * fields, i, j]]
                    cx, cy = (sig(t[0]) + j) * stride[1], (sig(t[1]) + i) * stride[0]
                    bw, bh = anchor_w * math.exp(t[2]), anchor_h * math.exp(t[3])
                    row = (i * w + j) * count + a
                    out[b, row, :4] = (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)
                    out[b, row, 4:4 + classes] = [sig(t[4]) * sig(t[5 + c]) for c in range(classes)]
                    out[b, row, 4 + classes:] = t[5 + classes:]
    return out


def loop_instance_masks(protos, detections, stride):
    """Each mask pixel from the documented formula: σ(Σ_p coefficient_p · prototype_p) where the
    pixel's centre ((j + ½)·sw, (i + ½)·sh) is in the box (x1 ≤ x < x2, y1 ≤ y < y2), else 0."""
    n, count, h, w = protos.shape
    out = np.zeros((n, detections.shape[1], h, w))
    for b in range(n):
        for d in range(detections.shape[1]):
            x1, y1, x2, y2, score = (float(v) for v in detections[b, d, :5])
            if score < 0:
                continue
            for i in range(h):
                for j in range(w):
                    x, y = (j + 0.5) * stride[1], (i + 0.5) * stride[0]
                    if x1 <= x < x2 and y1 <= y < y2:
                        logit = sum(float(detections[b, d, 6 + p]) * float(protos[b, p, i, j]) for p in range(count))
                        out[b, d, i, j] = 1.0 / (1.0 + math.exp(-logit))
    return out


# ---------------------------------------------------------------- torchvision.ops, rewritten


def tv_box_convert_cxcywh(boxes):
    """torchvision.ops.box_convert(boxes, "cxcywh", "xyxy")."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def tv_box_iou(boxes1, boxes2):
    """torchvision.ops.box_iou (areas not clamped, 0/0 = nan)."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    lt = torch.max(boxes1[:, None, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, :, 0] * wh[:, :, 1]
    return inter / (area1[:, None] + area2 - inter)


def tv_nms(boxes, scores, iou_threshold):
    """torchvision's CPU nms kernel (nms_kernel.cpp), with a stable sort so that ties go by index."""
    order = torch.sort(scores, descending=True, stable=True).indices
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    suppressed = torch.zeros(len(scores), dtype=torch.bool)
    keep = []
    for position, i in enumerate(order.tolist()):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = order[position + 1:]
        w = (torch.min(x2[i], x2[rest]) - torch.max(x1[i], x1[rest])).clamp(min=0)
        h = (torch.min(y2[i], y2[rest]) - torch.max(y1[i], y1[rest])).clamp(min=0)
        inter = w * h
        suppressed[rest[inter / (areas[i] + areas[rest] - inter) > iou_threshold]] = True
    return torch.tensor(keep, dtype=torch.int64)


def tv_batched_nms(boxes, scores, idxs, iou_threshold):
    """torchvision.ops.batched_nms (the coordinate trick: each class's boxes moved apart)."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64)
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    return tv_nms(boxes + offsets[:, None], scores, iou_threshold)


def tv_detect(boxes, scores, iou_threshold, score_threshold, max_boxes, format):
    """torchvision's detection postprocessing (RetinaNet/FCOS style): every (box, class) score above
    the threshold is a candidate, batched_nms by class, the best `detections_per_img` kept."""
    boxes = torch.from_numpy(boxes.astype(np.float64))
    scores = torch.from_numpy(scores.astype(np.float64))
    if format == "center":
        boxes = tv_box_convert_cxcywh(boxes)
    n, _, classes = scores.shape
    out = np.zeros((n, max_boxes, 6))
    out[:, :, 4] = -1.0
    for image in range(n):
        flat = scores[image].flatten()
        index = torch.nonzero(flat > score_threshold).flatten()
        labels = index % classes
        image_boxes = boxes[image, index // classes]
        keep = tv_batched_nms(image_boxes, flat[index], labels, iou_threshold)[:max_boxes]
        rows = torch.cat([image_boxes[keep], flat[index][keep, None], labels[keep, None].to(boxes)], dim=1)
        out[image, :len(keep)] = rows.numpy()
    return out


# ---------------------------------------------------------------- data


def random_boxes(rng, shape, format="corners", scale=100.0, quantum=None):
    """Boxes with degenerate ones mixed in: zero width, zero height, points, duplicates, inverted."""
    x1, y1 = rng.uniform(0, scale, shape), rng.uniform(0, scale, shape)
    w, h = rng.uniform(0, scale / 2, shape), rng.uniform(0, scale / 2, shape)
    kind = rng.integers(0, 8, shape)
    w[kind == 1] = 0.0
    h[kind == 2] = 0.0
    w[kind == 3] = h[kind == 3] = 0.0
    w[kind == 4] *= -1.0  # inverted (x2 < x1)
    boxes = np.stack([x1, y1, x1 + w, y1 + h], axis=-1) if format == "corners" else \
        np.stack([x1, y1, w, h], axis=-1)
    if shape[-1] > 2:
        boxes[..., 1, :] = boxes[..., 0, :]  # an exact duplicate
    if quantum:
        boxes = np.round(boxes / quantum) * quantum
    return boxes.astype(np.float32)


def random_scores(rng, shape, quantum=None):
    scores = rng.uniform(0, 1, shape)
    if quantum:
        scores = np.round(scores / quantum) * quantum  # many exact ties
    return scores.astype(np.float32)


# ---------------------------------------------------------------- iou


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("format", ["corners", "center"])
def test_iou_matches_plain_loop(kernels, format):
    rng = np.random.default_rng(1)
    a, b = random_boxes(rng, (2, 9), format), random_boxes(rng, (2, 7), format)
    got = kernels.iou(a, b, format=format)
    assert got.dtype == np.float32 and got.shape == (2, 9, 7)
    np.testing.assert_allclose(got, loop_box_iou(a, b, format), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("format", ["corners", "center"])
def test_iou_matches_torchvision_box_iou(kernels, format):
    rng = np.random.default_rng(2)
    a, b = random_boxes(rng, (3, 12), format), random_boxes(rng, (3, 10), format)
    got = kernels.iou(a, b, format=format)
    for n in range(3):
        ta, tb = (torch.from_numpy(v[n].astype(np.float64)) for v in (a, b))
        if format == "center":
            ta, tb = tv_box_convert_cxcywh(ta), tv_box_convert_cxcywh(tb)
        want = tv_box_iou(ta, tb).numpy()
        # The documented differences: torchvision gives nan for two empty boxes and does not treat
        # inverted boxes as empty (its IoU is then 0 or -0, or nan); cnnc gives 0 in all these cases.
        inverted = lambda t: ((t[:, 2] < t[:, 0]) | (t[:, 3] < t[:, 1])).numpy()  # noqa: E731
        differs = np.isnan(want) | inverted(ta)[:, None] | inverted(tb)[None, :]
        assert np.all(got[n][differs] == 0)
        np.testing.assert_allclose(got[n][~differs], want[~differs], rtol=1e-6, atol=1e-7)


def test_iou_conventions():
    point = [[5, 5, 5, 5]]
    line = [[0, 5, 10, 5]]
    square = [[0, 0, 10, 10]]
    inverted = [[10, 10, 0, 0]]
    a = np.array([point + line + square + inverted], np.float32)
    for kernels in (fast, ref):
        got = kernels.iou(a, a, format="corners")[0]
        # an empty (zero-area or inverted) box has IoU 0 with everything, itself included
        np.testing.assert_array_equal(got, np.diag([0, 0, 1, 0]).astype(np.float32))
        half = np.array([[[0, 0, 10, 10]]], np.float32), np.array([[[5, 0, 15, 10]]], np.float32)
        np.testing.assert_allclose(kernels.iou(*half, format="corners"), [[[1 / 3]]], rtol=1e-6)
        center = np.array([[[5, 5, 10, 10]]], np.float32)  # the square, as (cx, cy, w, h)
        assert kernels.iou(center, center, format="center")[0, 0, 0] == 1.0


# ---------------------------------------------------------------- nms


NMS_CASES = [
    # iou_threshold, score_threshold, max_boxes, format, classes, boxes, quantized
    (0.5, 0.05, 100, "corners", 3, 40, False),
    (0.3, 0.2, 10, "corners", 4, 60, True),      # ties in scores and coordinates, truncation
    (0.7, 0.0, 500, "center", 2, 50, True),      # more rows than candidates: padding
    (0.0, 0.5, 50, "corners", 5, 30, False),     # any overlap suppresses
    (1.0, 0.1, 300, "corners", 3, 30, True),     # nothing is suppressed
    (0.45, 0.99, 20, "center", 3, 30, False),    # almost no candidates
]


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("case", NMS_CASES)
def test_nms_matches_plain_loop_and_torchvision(kernels, case):
    iou_threshold, score_threshold, max_boxes, format, classes, count, quantized = case
    rng = np.random.default_rng(count + classes)
    boxes = random_boxes(rng, (2, count), format, quantum=0.25 if quantized else None)
    scores = random_scores(rng, (2, count, classes), quantum=0.05 if quantized else None)
    args = dict(iou_threshold=iou_threshold, score_threshold=score_threshold, max_boxes=max_boxes, format=format)
    got = kernels.nms(boxes, scores, **args)
    assert got.dtype == np.float32 and got.shape == (2, max_boxes, 6)
    np.testing.assert_array_equal(got, loop_nms(boxes, scores, **args).astype(np.float32))
    np.testing.assert_array_equal(got, tv_detect(boxes, scores, **args).astype(np.float32))


@pytest.mark.parametrize("kernels", KERNELS)
def test_nms_layout_padding_and_order(kernels):
    boxes = np.array([[[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]]], np.float32)
    scores = np.array([[[0.9, 0.1], [0.8, 0.7], [0.3, 0.0], [0.8, 0.2]]], np.float32)
    got = kernels.nms(boxes, scores, iou_threshold=0.5, score_threshold=0.05, max_boxes=6, format="corners")
    np.testing.assert_allclose(got[0], [
        [0, 0, 10, 10, 0.9, 0],     # best; suppresses boxes 1 and 3 in class 0 (IoU 0.68 and 1)
        [1, 1, 11, 11, 0.7, 1],     # class 1 is suppressed only by class 1
        [20, 20, 30, 30, 0.3, 0],
        [0, 0, 0, 0, -1, 0],        # suppressed in class 1 by box 1 (IoU 0.68): box 3's 0.2 and box 0's 0.1
        [0, 0, 0, 0, -1, 0],
        [0, 0, 0, 0, -1, 0],
    ], rtol=1e-6)
    # equal scores: the lower box index first, then the lower class
    tie = kernels.nms(boxes[:, [2, 0]], np.full((1, 2, 2), 0.5, np.float32), iou_threshold=0.5,
                      score_threshold=0.05, max_boxes=4, format="corners")
    np.testing.assert_array_equal(tie[0, :, 5], [0, 1, 0, 1])
    np.testing.assert_array_equal(tie[0, :, 0], [20, 20, 0, 0])
    # a score equal to the threshold is not a candidate
    none = kernels.nms(boxes, np.full((1, 4, 2), 0.25, np.float32), iou_threshold=0.5, score_threshold=0.25,
                       max_boxes=2, format="corners")
    np.testing.assert_array_equal(none[0], [[0, 0, 0, 0, -1, 0]] * 2)


@pytest.mark.parametrize("kernels", KERNELS)
def test_nms_center_format_outputs_corners(kernels):
    boxes = np.array([[[5, 5, 10, 10], [6, 5, 10, 10]]], np.float32)  # (cx, cy, w, h)
    scores = np.array([[[0.6], [0.9]]], np.float32)
    got = kernels.nms(boxes, scores, iou_threshold=0.5, score_threshold=0.05, max_boxes=2, format="center")
    np.testing.assert_array_equal(got[0], np.array([[1, 0, 11, 10, 0.9, 0], [0, 0, 0, 0, -1, 0]], np.float32))


def test_nms_non_finite_boxes_agree():
    rng = np.random.default_rng(5)
    boxes = random_boxes(rng, (1, 30))
    boxes[0, 3] = [np.nan, 0, 5, 5]
    boxes[0, 4] = [0, 0, np.inf, 5]
    boxes[0, 5] = [-np.inf, -np.inf, np.inf, np.inf]
    scores = random_scores(rng, (1, 30, 2))
    args = dict(iou_threshold=0.4, score_threshold=0.1, max_boxes=40, format="corners")
    np.testing.assert_array_equal(fast.nms(boxes, scores, **args), ref.nms(boxes, scores, **args))
    np.testing.assert_array_equal(fast.iou(boxes, boxes, format="corners"),
                                  ref.iou(boxes, boxes, format="corners"))


def test_nms_many_candidates_is_quick():
    """At most max_boxes vector steps per image: 50,000 candidates take well under a second."""
    import time

    rng = np.random.default_rng(6)
    boxes, scores = random_boxes(rng, (1, 2500), scale=400.0), random_scores(rng, (1, 2500, 20))
    start = time.perf_counter()
    got = fast.nms(boxes, scores, iou_threshold=0.45, score_threshold=0.05, max_boxes=100, format="corners")
    assert time.perf_counter() - start < 1.0
    assert np.all(got[0, :, 4] > 0) and np.all(np.diff(got[0, :, 4]) <= 0)


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("case", NMS_CASES[:4])
def test_nms_carries_extra_columns(kernels, case):
    """The third input's columns follow their box: each kept row ends with its box's extras, the
    padding rows with zeros, and the first six columns are those of nms without extras."""
    iou_threshold, score_threshold, max_boxes, format, classes, count, quantized = case
    rng = np.random.default_rng(count + classes + 1)
    boxes = random_boxes(rng, (2, count), format, quantum=0.25 if quantized else None)
    scores = random_scores(rng, (2, count, classes), quantum=0.05 if quantized else None)
    extras = rng.standard_normal((2, count, 5)).astype(np.float32)
    args = dict(iou_threshold=iou_threshold, score_threshold=score_threshold, max_boxes=max_boxes, format=format)
    got = kernels.nms(boxes, scores, extras, **args)
    assert got.dtype == np.float32 and got.shape == (2, max_boxes, 11)
    np.testing.assert_array_equal(got, loop_nms(boxes, scores, **args, extras=extras).astype(np.float32))
    np.testing.assert_array_equal(got[..., :6], kernels.nms(boxes, scores, **args))
    assert np.all(got[got[..., 4] < 0][:, 6:] == 0)


@pytest.mark.parametrize("kernels", KERNELS)
def test_yolo_decode_passes_extras_through(kernels):
    anchors, classes, extras = ((10.0, 14.0), (23.0, 27.0)), 3, 4
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((2, len(anchors) * (5 + classes + extras), 3, 5)) * 2).astype(np.float32)
    got = kernels.yolo_decode(x, anchors=anchors, classes=classes, stride=(8, 16), extras=extras)
    assert got.dtype == np.float32 and got.shape == (2, 3 * 5 * 2, 4 + classes + extras)
    want = loop_yolo_decode(x, anchors, classes, (8, 16), extras)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6 * np.abs(want).max())
    np.testing.assert_array_equal(got[0, 1, 4 + classes:], x[0, 5 + classes + 5 + classes + extras:, 0, 0])


def _detections(rng, count, prototypes, size):
    """nms-like rows: boxes partly outside the input, inverted, empty, covering everything, and
    padding rows (score −1)."""
    h, w = size
    x1 = rng.uniform(-0.3 * w, w, (2, count))
    y1 = rng.uniform(-0.3 * h, h, (2, count))
    x2, y2 = x1 + rng.uniform(-0.2 * w, 0.8 * w, (2, count)), y1 + rng.uniform(-0.2 * h, 0.8 * h, (2, count))
    score = rng.uniform(0.05, 1.0, (2, count))
    score[:, -2:] = -1.0  # padding
    rows = np.stack([x1, y1, x2, y2, score, rng.integers(0, 5, (2, count))], axis=-1)
    rows[0, 0, :4] = (-10, -10, 2 * w, 2 * h)  # the whole grid
    rows[0, 1, :4] = (4.0, 4.0, 4.0, 9.0)  # zero width: empty
    coefficients = np.tanh(rng.standard_normal((2, count, prototypes)) * 1.5)
    return np.concatenate([rows, coefficients], axis=-1).astype(np.float32)


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("prototypes, size, stride", [(3, (5, 7), (4, 4)), (8, (6, 4), (2, 3)), (1, (1, 1), (16, 16))])
def test_instance_masks_matches_plain_loop_and_torch(kernels, prototypes, size, stride):
    rng = np.random.default_rng(prototypes)
    protos = np.maximum(rng.standard_normal((2, prototypes, *size)), 0).astype(np.float32)
    input_size = (size[0] * stride[0], size[1] * stride[1])
    detections = _detections(rng, 9, prototypes, input_size)
    got = kernels.instance_masks(protos, detections, stride=stride)
    assert got.dtype == np.float32 and got.shape == (2, 9, *size)
    want = loop_instance_masks(protos, detections, stride)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert np.array_equal(got == 0, want == 0)  # the same pixels cropped
    # YOLACT's assembly written in torch: sigmoid(C·Pᵀ), then the crop by pixel centres
    p, d = torch.from_numpy(protos).double(), torch.from_numpy(detections).double()
    masks = torch.sigmoid(torch.einsum("ndp,nphw->ndhw", d[..., 6:], p))
    xs = (torch.arange(size[1], dtype=torch.float64) + 0.5) * stride[1]
    ys = (torch.arange(size[0], dtype=torch.float64) + 0.5) * stride[0]
    keep_x = (xs >= d[..., 0:1]) & (xs < d[..., 2:3])
    keep_y = (ys >= d[..., 1:2]) & (ys < d[..., 3:4])
    keep = keep_y[..., :, None] & keep_x[..., None, :] & (d[..., 4, None, None] >= 0)
    np.testing.assert_allclose(got, (masks * keep).numpy(), rtol=1e-6, atol=1e-7)
    assert np.all(got[0, 1] == 0) and np.all(got[:, -2:] == 0) and np.all(got[0, 0] > 0)


@pytest.mark.parametrize("kernels", KERNELS)
def test_instance_masks_edges(kernels):
    """A centre on x1 is inside, one on x2 outside; a nan coefficient poisons only its box."""
    protos = np.ones((1, 1, 2, 4), np.float32)
    rows = np.array([[[2.0, 0.0, 6.0, 2.0, 0.9, 0.0, 0.0],      # centres x = 2, 6, 10, 14; y = 1, 3
                      [1.0, 2.0, 16.0, 4.0, 0.5, 0.0, np.nan],  # second row of pixels (y = 3), nan
                      [0.0, 0.0, 16.0, 4.0, -1.0, 0.0, 5.0]]], np.float32)  # padding
    got = kernels.instance_masks(protos, rows, stride=(2, 4))
    np.testing.assert_array_equal(got[0, 0], [[0.5, 0, 0, 0], [0, 0, 0, 0]])  # x = 2 in, x = 6 and y = 3 out
    assert np.all(np.isnan(got[0, 1, 1])) and np.all(got[0, 1, 0] == 0)
    assert np.all(got[0, 2] == 0)


# ---------------------------------------------------------------- yolo_decode and slice


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("anchors, classes, stride, size", [
    (((10.0, 14.0), (23.0, 27.0), (37.0, 58.0)), 4, (32, 32), (3, 4)),
    (((1.5, 2.0),), 1, (8, 16), (5, 2)),
    (((81.0, 82.0), (135.0, 169.0)), 3, (16, 16), (1, 1)),
])
def test_yolo_decode_matches_plain_loop(kernels, anchors, classes, stride, size):
    rng = np.random.default_rng(classes)
    x = (rng.standard_normal((2, len(anchors) * (5 + classes), *size)) * 2).astype(np.float32)
    got = kernels.yolo_decode(x, anchors=anchors, classes=classes, stride=stride)
    assert got.dtype == np.float32 and got.shape == (2, size[0] * size[1] * len(anchors), 4 + classes)
    want = loop_yolo_decode(x, anchors, classes, stride)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6 * np.abs(want).max())


@pytest.mark.parametrize("kernels", KERNELS)
def test_slice(kernels):
    x = np.random.default_rng(0).standard_normal((2, 5, 7, 3)).astype(np.float32)
    np.testing.assert_array_equal(kernels.slice_axis(x, axis=1, start=1, stop=4), x[:, 1:4])
    np.testing.assert_array_equal(kernels.slice_axis(x, axis=-2, start=-3, stop=7), x[:, :, -3:7])
    y = kernels.slice_axis(x, axis=3, start=0, stop=2)
    np.testing.assert_array_equal(y, x[..., 0:2])
    assert not np.shares_memory(x, y) and y.flags.c_contiguous


# ---------------------------------------------------------------- the language


PROGRAM = """
input image: [N, 3, 64, 64]
head = image |> conv(3 * (5 + 4), 3x3, stride=16, pad=1)            # [N, 27, 4, 4]
raw = head |> yolo_decode(((10, 14), (23, 27), (37, 58)), 4, 16)      # [N, 48, 8]
boxes = raw |> slice(2, 0, 4)                                         # [N, 48, 4]
scores = raw |> slice(-1, 4, 8)                                       # [N, 48, 4]
output detections = nms(boxes, scores, iou_threshold=0.45, max_boxes=20)
output overlap = iou(boxes, boxes |> slice(1, 0, 10), format=corners)
"""


def test_program_shapes_and_generated_code():
    graph = cnnc.parse(PROGRAM)
    shape = {out: graph.shape(node) for out, node in graph.info.outputs.items()}
    assert shape == {"detections": ("N", 20, 6), "overlap": ("N", 48, 10)}
    assert graph.shape("yolo_decode1") == ("N", 48, 8)
    net = cnnc.compile(PROGRAM)
    rng = np.random.default_rng(0)
    net.params["conv1.weight"] = rng.normal(0, 0.1, net.params["conv1.weight"].shape)
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    got = net.run(image=x)
    want = cnnc.eval_graph(net.source_graph, net.params, {"image": x})
    np.testing.assert_allclose(got["overlap"], want["overlap"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["detections"], want["detections"], rtol=1e-4, atol=1e-3)
    assert "def nms(" in net.source and "def yolo_decode(" in net.source


def test_ir_text_of_detection_ops():
    from cnnc.ir.printer import print_graph

    text = print_graph(cnnc.parse(PROGRAM))
    assert ("yolo_decode(%conv1) {anchors=((10.0, 14.0), (23.0, 27.0), (37.0, 58.0)), classes=4, "
            "stride=(16, 16)} : [N, 48, 8]") in text
    assert "slice(%yolo_decode1) {axis=-1, start=4, stop=8} : [N, 48, 4]" in text
    assert ("nms(%slice1, %slice2) {iou_threshold=0.45, score_threshold=0.05, max_boxes=20, "
            "format=corners} : [N, 20, 6]") in text


@pytest.mark.parametrize("body, message", [
    ("output y = x |> yolo_decode(((1, 2), (3, 4)), 20, 32)",
     "yolo_decode: 2 anchors × (5 + 20 classes) = 50 channels expected, the input has 75 (layer 'yolo_decode1')"),
    ("output y = x |> yolo_decode((1, 2, 3), 20, 32)",
     "yolo_decode: argument 'anchors': expected anchors as pairs ((w, h), (w, h), …), got the tuple (1, 2, 3)"),
    ("output y = x |> yolo_decode(((1, 0),), 20, 32)",
     "yolo_decode: argument 'anchors': anchor sizes must be positive, got (1, 0)"),
    ("output y = x |> slice(0, 0, 1)", "slice: the batch axis cannot be sliced (layer 'slice1')"),
    ("output y = x |> slice(4, 0, 1)", "slice: axis 4 is out of range for [N, 75, 13, 13] (layer 'slice1')"),
    ("output y = x |> slice(1, 5, 5)",
     "slice: 5:5 selects nothing of axis 1 of [N, 75, 13, 13] (size 75; need start < stop, negative indices "
     "count from the end) (layer 'slice1')"),
    ("output y = iou(x, x)", "iou: the first boxes must be [N, count, 4], got [N, 75, 13, 13] (layer 'iou1')"),
    ("b = x |> slice(1, 0, 4) |> flatten |> reshape((-1, 4))\noutput y = nms(b, b |> slice(1, 0, 10))",
     "nms: boxes [N, 169, 4] and scores [N, 10, 4] differ in the number of boxes: 169 vs 10 (layer 'nms1')"),
    ("b = x |> slice(1, 0, 4) |> flatten |> reshape((-1, 4))\noutput y = nms(b, b, iou_threshold=1.5)",
     "nms: argument 'iou_threshold': expected a number in [0, 1], got 1.5"),
    ("b = x |> slice(1, 0, 4) |> flatten |> reshape((-1, 4))\noutput y = nms(b, b, score_threshold=-0.1)",
     "nms: argument 'score_threshold': expected a non-negative number, got -0.1"),
    ("b = x |> slice(1, 0, 4) |> flatten |> reshape((-1, 4))\noutput y = nms(b, b, format=xyxy)",
     "nms: argument 'format': expected one of corners, center, got the undefined name 'xyxy'"),
    ("b = x |> slice(1, 0, 4) |> flatten |> reshape((-1, 4))\noutput y = nms(b, b, b |> slice(1, 0, 9))",
     "nms: the extra columns must be [N, count, E] like boxes [N, 169, 4], got [N, 9, 4] (layer 'nms1')"),
    ("b = x |> slice(1, 0, 4) |> flatten |> reshape((-1, 4))\noutput y = nms(b)",
     "nms takes boxes, scores and optionally per-box extra columns, got 1 inputs (layer 'nms1')"),
    ("output y = x |> yolo_decode(((1, 2), (3, 4)), 20, 32, extras=-1)",
     "yolo_decode: argument 'extras': expected a count of 0 or more, got -1"),
    ("output y = x |> yolo_decode(((1, 2), (3, 4), (5, 6)), 20, 32, extras=1)",
     "yolo_decode: 3 anchors × (5 + 20 classes + 1 extras) = 78 channels expected, the input has 75"),
    ("b = x |> slice(1, 0, 4) |> flatten |> reshape((-1, 4))\nd = nms(b, b, b)\n"
     "output y = instance_masks(x, d, stride=4)",
     "instance_masks: 75 prototypes [N, 75, 13, 13] need detections rows of 6 + 75 = 81 columns "
     "(nms(boxes, scores, coefficients)), got [N, 100, 10] (layer 'instance_masks1')"),
    ("b = x |> slice(1, 0, 4) |> flatten |> reshape((-1, 4))\noutput y = instance_masks(b, b, stride=4)",
     "instance_masks: prototypes must be [N, P, H, W], got [N, 169, 4] (layer 'instance_masks1')"),
])
def test_errors(body, message):
    with pytest.raises(cnnc.CnncError) as caught:
        cnnc.parse("input x: [N, 75, 13, 13]\n" + body + "\n", name="example.cnn")
    assert message in str(caught.value)


# ---------------------------------------------------------------- examples/yolo_tiny.cnn


def test_yolo_tiny_shapes():
    graph = cnnc.parse(EXAMPLES / "yolo_tiny.cnn")
    assert graph.shape(graph.info.outputs["detections"]) == ("N", 100, 6)
    assert graph.shape("yolo1.yolo_decode1") == ("N", 13 * 13 * 3, 24)
    assert graph.shape("yolo2.yolo_decode1") == ("N", 26 * 26 * 3, 24)
    assert graph.attrs("yolo2.yolo_decode1").stride == (16, 16)
    trainable = sum(math.prod(s.shape) for n, s in graph.info.param_specs.items() if not n.endswith((".mean", ".var")))
    assert trainable == 8_713_766
    smaller = cnnc.parse(EXAMPLES / "yolo_tiny.cnn", input_shapes={"image": (1, 3, 320, 320)})
    assert smaller.attrs("yolo1.yolo_decode1").stride == (32, 32)  # computed from the sizes
    assert smaller.shape("concat2") == ("N", 10 * 10 * 3 + 20 * 20 * 3, 24)


def test_yolo_tiny_generated_code_matches_interpreter():
    """NMS is discontinuous (a tie or an IoU at the threshold decides), so the generated code and
    the interpreter are compared before it, on the candidates, and the generated code's NMS is
    compared with the reference NMS on the same candidates."""
    text = (EXAMPLES / "yolo_tiny.cnn").read_text(encoding="utf-8") + "\noutput candidates\n"
    net = cnnc.compile(text, name="yolo_tiny.cnn", input_shapes={"image": (1, 3, 160, 160)})
    randomize(net, seed=3)
    for head in ("yolo1.conv1.weight", "yolo2.conv1.weight"):  # trained-like logits: no saturation
        net.params[head] = net.params[head] * 0.02
    x = np.random.default_rng(0).standard_normal((2, 3, 160, 160)).astype(np.float32)
    got = net.run(image=x)
    want = cnnc.eval_graph(net.source_graph, net.params, {"image": x})
    scale = float(np.abs(want["candidates"]).max())
    np.testing.assert_allclose(got["candidates"], want["candidates"], rtol=1e-3, atol=2e-4 * scale)
    candidates = got["candidates"]
    again = ref.nms(candidates[..., :4], candidates[..., 4:], iou_threshold=0.45, score_threshold=0.25,
                    max_boxes=100, format="corners")
    np.testing.assert_array_equal(got["detections"], again)
    kept = got["detections"][..., 4]
    assert np.all(kept > 0.25) and np.all(np.diff(kept, axis=1) <= 0)  # 100 real rows, best first
