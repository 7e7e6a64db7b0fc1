"""Instance segmentation: examples/yolo_tiny_seg.cnn (YOLOv3-tiny with YOLACT's prototype masks)
against a PyTorch twin with the same weights, at -O0 and -O2.

The twin is written independently of cnnc's IR: torch.nn layers with the names cnnc gives the
parameters (`cbl1.conv1`, `yolo2.conv1`, `protonet1.conv4`), YOLOv3's decoding written out in
torch, torchvision's `batched_nms` logic (tests/test_detection.py's rewrite) with the kept boxes'
coefficients gathered by index, and YOLACT's mask assembly, σ(C·Pᵀ) cropped to each box.

Tolerance: everything before NMS is continuous and is bounded as tests/test_networks_vs_torch.py
bounds whole networks, max |cnnc − torch| ≤ 1e-4 · max |torch| (measured about 1e-6). NMS is
discontinuous: the kept boxes and their order are compared exactly (class indices equal, the
same number of detections), which holds because with these seeded weights no score tie or IoU
lies within float32 rounding of a decision; the rows and masks then agree within the same
relative bound.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import EXAMPLES
from test_detection import tv_batched_nms

import cnnc

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional

from torch_models import randomize_, torch_to_cnnc  # noqa: E402

CLASSES, PROTOTYPES = 20, 32
LARGE = ((81, 82), (135, 169), (344, 319))
SMALL = ((10, 14), (23, 27), (37, 58))
RTOL = 1e-4


class CBL(nn.Module):
    """darknet's convolutional layer: conv (no bias), BN, leaky ReLU 0.1; pad=same."""

    def __init__(self, cin: int, c: int, k: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, k, padding=k // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(c)

    def forward(self, x):
        return F.leaky_relu(self.bn1(self.conv1(x)), 0.1)


class Head(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, 3 * (5 + CLASSES + PROTOTYPES), 1)


class Protonet(nn.Module):
    def __init__(self, cin: int, c: int = 64):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(cin, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)
        self.conv3, self.conv4 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, PROTOTYPES, 1)

    def forward(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return F.relu(self.conv4(F.relu(self.conv3(x))))


def decode(head: torch.Tensor, anchors, stride: int) -> torch.Tensor:
    """YOLOv3's decoding: [N, A·(5+C+E), H, W] → [N, H·W·A, 4 + C + E] rows per cell, then anchor."""
    n, _, h, w = head.shape
    t = head.view(n, len(anchors), 5 + CLASSES + PROTOTYPES, h, w).permute(0, 3, 4, 1, 2)  # N H W A F
    cols = torch.arange(w, dtype=head.dtype).view(1, 1, w, 1)
    rows = torch.arange(h, dtype=head.dtype).view(1, h, 1, 1)
    size = torch.tensor(anchors, dtype=head.dtype)
    cx, cy = (torch.sigmoid(t[..., 0]) + cols) * stride, (torch.sigmoid(t[..., 1]) + rows) * stride
    bw, bh = size[:, 0] * torch.exp(t[..., 2]), size[:, 1] * torch.exp(t[..., 3])
    scores = torch.sigmoid(t[..., 4:5]) * torch.sigmoid(t[..., 5:5 + CLASSES])
    rows_out = torch.cat([torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1), scores,
                          t[..., 5 + CLASSES:]], -1)
    return rows_out.reshape(n, h * w * len(anchors), -1)


class YoloTinySeg(nn.Module):
    def __init__(self):
        super().__init__()
        widths = [(3, 16), (16, 32), (32, 64), (64, 128), (128, 256), (256, 512), (512, 1024), (1024, 256, 1),
                  (256, 512), (256, 128, 1), (384, 256)]
        for index, spec in enumerate(widths, 1):
            setattr(self, f"cbl{index}", CBL(*spec))
        self.yolo1, self.yolo2 = Head(512), Head(256)
        self.protonet1 = Protonet(128)

    def forward(self, image):
        pool = F.max_pool2d
        x = pool(self.cbl1(image), 2)
        x = pool(self.cbl2(x), 2)
        x = pool(self.cbl3(x), 2)
        stride8 = self.cbl4(x)
        trunk = self.cbl5(pool(stride8, 2))
        neck = self.cbl6(pool(trunk, 2))
        neck = pool(F.pad(neck, (0, 1, 0, 1), value=float("-inf")), 2, stride=1)
        neck = self.cbl8(self.cbl7(neck))
        size = image.shape[2]
        large = decode(self.yolo1.conv1(self.cbl9(neck)), LARGE, size // neck.shape[2])
        small = torch.cat([F.interpolate(self.cbl10(neck), scale_factor=2, mode="nearest"), trunk], 1)
        small = decode(self.yolo2.conv1(self.cbl11(small)), SMALL, size // trunk.shape[2])
        return torch.cat([large, small], 1), self.protonet1(stride8)


def detect_and_mask(candidates: torch.Tensor, protos: torch.Tensor, stride: int, max_boxes: int = 100):
    """torchvision-style postprocessing carrying each box's tanh'd coefficients, then YOLACT's masks."""
    n, _, h, w = protos.shape
    detections = torch.zeros(n, max_boxes, 6 + PROTOTYPES, dtype=torch.float64)
    detections[:, :, 4] = -1
    for image in range(n):
        flat = candidates[image, :, 4:4 + CLASSES].flatten()
        index = torch.nonzero(flat > 0.25).flatten()
        boxes, labels = candidates[image, index // CLASSES, :4], index % CLASSES
        keep = tv_batched_nms(boxes, flat[index], labels, 0.45)[:max_boxes]
        coefficients = torch.tanh(candidates[image, index // CLASSES, 4 + CLASSES:])
        detections[image, :len(keep)] = torch.cat([boxes[keep], flat[index][keep, None],
                                                   labels[keep, None].double(), coefficients[keep]], 1)
    masks = torch.sigmoid(torch.einsum("ndp,nphw->ndhw", detections[..., 6:], protos))
    xs, ys = (torch.arange(w).double() + 0.5) * stride, (torch.arange(h).double() + 0.5) * stride
    d = detections
    inside = (((ys >= d[..., 1:2]) & (ys < d[..., 3:4]))[..., :, None] & ((xs >= d[..., 0:1]) & (xs < d[..., 2:3]))
              [..., None, :] & (d[..., 4, None, None] >= 0))
    return detections, masks * inside


@pytest.fixture(scope="module")
def twin():
    shape = (2, 3, 160, 160)
    model = randomize_(YoloTinySeg(), seed=4)
    with torch.no_grad():  # trained-like head logits (no saturated sigmoids), and a prior on objectness
        for head in (model.yolo1, model.yolo2):  # that leaves some of the 100 rows unused
            head.conv1.weight *= 0.05
            head.conv1.bias[4::5 + CLASSES + PROTOTYPES] = -0.5
    x = np.random.default_rng(4).uniform(0, 1, shape).astype(np.float32)
    with torch.no_grad():
        candidates, protos = model(torch.from_numpy(x))
    candidates, protos = candidates.double(), protos.double()
    detections, masks = detect_and_mask(candidates, protos, shape[2] // protos.shape[2])
    want = {"candidates": candidates.numpy(), "protos": protos.numpy(), "detections": detections.numpy(),
            "masks": masks.numpy()}
    return shape, torch_to_cnnc(model), x, want


def _close(got: np.ndarray, want: np.ndarray, what: str) -> float:
    assert got.shape == want.shape, what
    scale = float(np.abs(want).max())
    diff = float(np.abs(got.astype(np.float64) - want).max())
    print(f"\n  {what:<24} max|diff| {diff:.2e}  max|torch| {scale:.2e}  ratio {diff / scale:.1e}", end="")
    assert diff <= RTOL * scale, f"{what}: max|diff| {diff:.3e} > {RTOL * scale:.3e}"
    return diff


@pytest.mark.parametrize("optimize", [0, 2])
def test_yolo_tiny_seg_matches_torch_twin(twin, optimize):
    shape, params, x, want = twin
    text = (EXAMPLES / "yolo_tiny_seg.cnn").read_text(encoding="utf-8") + "\noutput candidates\noutput protos\n"
    net = cnnc.compile(text, name="yolo_tiny_seg.cnn", input_shapes={"image": shape}, optimize=optimize)
    net.params.update_from(params, "torch state_dict")  # every name and shape must match
    got = net.run(image=x)
    for name in ("candidates", "protos"):
        _close(got[name], want[name], f"-O{optimize} {name}")
    detections, masks = got["detections"], got["masks"]
    real = want["detections"][..., 4] >= 0
    assert real.sum() >= 20 and not real.all()  # detections, and padding rows too
    np.testing.assert_array_equal(detections[..., 4] >= 0, real)  # the same number kept
    np.testing.assert_array_equal(detections[..., 5], want["detections"][..., 5])  # the same classes, in order
    _close(detections, want["detections"], f"-O{optimize} detections")
    _close(masks, want["masks"], f"-O{optimize} masks")
    inside = masks[real]
    assert (inside > 0.5).any() and ((inside > 0) & (inside < 0.5)).any()  # masks with both sides
    assert np.all(masks[~real] == 0)


def test_yolo_tiny_seg_shapes_and_parameters():
    graph = cnnc.parse(EXAMPLES / "yolo_tiny_seg.cnn")
    shapes = {out: graph.shape(node) for out, node in graph.info.outputs.items()}
    assert shapes == {"detections": ("N", 100, 38), "masks": ("N", 100, 104, 104)}
    assert graph.attrs(graph.info.outputs["masks"]).stride == (4, 4)
    assert graph.shape("yolo1.yolo_decode1") == ("N", 13 * 13 * 3, 4 + CLASSES + PROTOTYPES)
    model = YoloTinySeg()
    assert sum(p.numel() for p in model.parameters()) == sum(
        int(np.prod(s.shape)) for n, s in graph.info.param_specs.items() if not n.endswith((".mean", ".var")))


def test_results_rows_list_the_detections_of_an_nms_with_coefficients():
    """`cnnc run --output` writes the boxes of an nms output whatever columns its rows carry."""
    from cnnc.runtime import results

    graph = cnnc.parse(EXAMPLES / "yolo_tiny_seg.cnn")
    assert results.output_kinds(graph) == {"detections": "detections", "masks": "tensor"}
    rows = np.zeros((1, 100, 38), np.float32)
    rows[0, :, 4] = -1.0
    rows[0, 0, :6] = (10, 20, 30, 40, 0.9, 14)
    rows[0, 0, 6:] = 0.5  # coefficients: not listed
    got = results.prediction_rows(graph, {"detections": rows}, [results.Source(None)], batch=0)
    assert got[0]["boxes"] == [[10.0, 20.0, 30.0, 40.0]] and got[0]["labels"] == [14]
    assert got[0]["names"] == ["person"] and got[0]["scores"] == [pytest.approx(0.9)]


def test_draw_takes_the_detections_of_an_nms_with_coefficients():
    from cnnc.ir.preprocess import default_placement
    from cnnc.runtime import visualize

    graph = cnnc.parse(EXAMPLES / "yolo_tiny_seg.cnn")
    plan = visualize.plan_draw(graph)
    assert (plan.kind, plan.boxes) == ("detections", "detections")
    rows = np.zeros((1, 100, 38), np.float32)
    rows[0, :, 4] = -1.0
    rows[0, 0, :6] = (10, 20, 30, 40, 0.9, 14)
    rows[0, 0, 6:] = 7.0
    placement = default_placement(graph.shape(graph.info.inputs[0]), (416, 416))
    drawn = visualize._boxes_to_draw(plan, {"detections": rows}, graph, placement, (416, 416))
    assert drawn == [(10.0, 20.0, 30.0, 40.0, 14, "person 0.90")]
