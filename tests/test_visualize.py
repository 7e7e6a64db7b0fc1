"""`cnnc run --draw / --mask` (cnnc/runtime/visualize.py): boxes drawn where the outputs say, masks in
palette colours at the image's size, instance masks blended onto the photograph where a plain-loop
resampling says, and one-line errors for outputs that cannot be drawn. The photographs are
scikit-learn's sample images (china.jpg, flower.jpg), read from the installed package."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES, ROOT

import cnnc
from cnnc.ir.preprocess import Placement
from cnnc.runtime import visualize
from cnnc.runtime.batches import read_examples
from cnnc.runtime.inputs import steps_for

Image = pytest.importorskip("PIL.Image")
TINY = ROOT / "tests" / "golden" / "tiny.cnn"


def sample_image(name: str) -> Path:
    """scikit-learn's sample photograph (sklearn.datasets.load_sample_image reads the same file)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        pytest.skip("scikit-learn is not installed (pip install '.[test]')")
    return Path(spec.origin).parent / "datasets" / "images" / name


def cnnc_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnc", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)


def colours(path: Path) -> set[tuple[int, int, int]]:
    with Image.open(path) as image:
        return {tuple(c) for c in np.asarray(image.convert("RGB")).reshape(-1, 3)}


def test_voc_palette():
    palette = visualize.voc_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert [tuple(palette[i]) for i in (0, 1, 2, 3, 15, 20)] == [
        (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (192, 128, 128), (0, 64, 128)]
    assert len({tuple(c) for c in palette}) == 256


DETECTOR = """
input image: [N, 3, 100, 100]
raw = image |> conv(3 * (5 + 4), 25x25, stride=25) |> yolo_decode(((20, 20), (40, 40), (80, 80)), 4, 25)
output detections = nms(raw |> slice(2, 0, 4), raw |> slice(2, 4, 8))
"""

LOCALIZER = """
input image: [N, 3, 32, 32]
features = image |> global_avg_pool |> flatten
output class_scores = features |> dense(10) |> softmax
output box = features |> dense(4) |> sigmoid
"""


def white(path: Path, size=(200, 100)) -> str:
    Image.new("RGB", size, (255, 255, 255)).save(path)
    return str(path)


def test_detections_are_drawn_rescaled_to_the_image(tmp_path):
    graph = cnnc.parse(DETECTOR)
    plan = visualize.plan_draw(graph)
    assert plan == visualize.DrawPlan("detections", "detections")
    rows = np.zeros((1, 100, 6), np.float32)
    rows[:, :, 4] = -1.0  # padding
    rows[0, 0] = (10, 20, 50, 60, 0.9, 0)  # in input pixels (100 x 100)
    rows[0, 1] = (70, 70, 90, 95, 0.4, 2)
    count = visualize.draw_boxes(graph, plan, {"detections": rows}, None,  # None: the input squashed on the image
                                 white(tmp_path / "in.png"), str(tmp_path / "out.png"))
    assert count == 2
    with Image.open(tmp_path / "out.png") as image:
        assert image.size == (200, 100)
        pixels = np.asarray(image.convert("RGB"))
    red, olive = tuple(visualize.PALETTE[1]), tuple(visualize.PALETTE[3])
    # the image is twice as wide as the input: x doubles, y stays
    assert tuple(pixels[59, 60]) == red and tuple(pixels[40, 99]) == red and tuple(pixels[40, 20]) == red
    assert tuple(pixels[40, 60]) == (255, 255, 255)  # inside: untouched
    assert tuple(pixels[94, 160]) == olive and tuple(pixels[85, 179]) == olive
    assert tuple(pixels[5, 5]) == (255, 255, 255)


def test_a_localization_box_is_drawn_with_its_class(tmp_path):
    graph = cnnc.parse(LOCALIZER)
    plan = visualize.plan_draw(graph)
    assert plan == visualize.DrawPlan("box", "box", "class_scores")
    scores = np.full((1, 10), 0.05, np.float32)
    scores[0, 7] = 0.55
    outputs = {"box": np.array([[0.5, 0.5, 0.5, 0.5]], np.float32), "class_scores": scores}
    assert visualize.draw_boxes(graph, plan, outputs, None, white(tmp_path / "in.png"),
                                str(tmp_path / "out.png")) == 1
    pixels = np.asarray(Image.open(tmp_path / "out.png").convert("RGB"))
    colour = tuple(visualize.PALETTE[8])  # class 7
    assert tuple(pixels[74, 100]) == colour and tuple(pixels[50, 149]) == colour and tuple(pixels[50, 50]) == colour
    assert tuple(pixels[50, 100]) == (255, 255, 255)


def test_mask_holds_palette_colours_at_the_image_size(tmp_path):
    scores = np.zeros((1, 3, 4, 6), np.float32)
    scores[0, 1, :2] = 1.0  # top half class 1, bottom class 2 except one class-0 pixel
    scores[0, 2, 2:] = 1.0
    scores[0, 0, 3, 5] = 5.0
    assert visualize.write_mask(scores, white(tmp_path / "in.png", (60, 40)), str(tmp_path / "m.png")) == (60, 40)
    pixels = np.asarray(Image.open(tmp_path / "m.png").convert("RGB"))
    assert tuple(pixels[0, 0]) == tuple(visualize.PALETTE[1]) and tuple(pixels[25, 0]) == tuple(visualize.PALETTE[2])
    assert tuple(pixels[39, 59]) == (0, 0, 0)
    assert visualize.write_mask(scores, None, str(tmp_path / "small.png")) == (6, 4)


@pytest.mark.parametrize("example, option, image", [
    ("yolo_tiny.cnn", "--draw", "china.jpg"),
    ("classify_localize.cnn", "--draw", "china.jpg"),
    ("segmentation.cnn", "--mask", "flower.jpg"),
])
def test_cli_draws_on_the_photograph(tmp_path, example, option, image):
    photo = sample_image(image)
    out = tmp_path / "out.png"
    result = cnnc_cli("run", str(EXAMPLES / example), "--input", str(photo), option, str(out))
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    with Image.open(out) as drawn, Image.open(photo) as original:
        assert drawn.format == "PNG" and drawn.size == original.size == (640, 427)
    if option == "--mask":
        palette = {tuple(c) for c in visualize.PALETTE[:21]}  # 21 classes
        assert colours(out) <= palette and len(colours(out)) > 1
    else:
        assert colours(out) & {tuple(c) for c in visualize.PALETTE[1:22]}  # boxes in class colours


@pytest.mark.parametrize("args, message", [
    (["--draw", "x.png", "--input", "IMAGE"],
     "--draw: error: --draw needs a detection output [N, K, 6] (from nms) or a box output [N, 4] (normalized "
     "cx, cy, w, h); this network's outputs: probs [N, 10]"),
    (["--mask", "x.png"],
     "--mask: error: --mask needs a score map output [N, classes, H, W] with 2 or more classes, or instance "
     "masks [N, D, H, W] from instance_masks; this network's outputs: probs [N, 10]"),
])
def test_cli_refuses_outputs_that_cannot_be_drawn(tmp_path, args, message):
    white(tmp_path / "photo.png")
    args = [str(tmp_path / "photo.png") if a == "IMAGE" else a for a in args]
    result = cnnc_cli("run", str(TINY), *args)
    assert result.returncode == 1 and result.stderr.strip() == message
    assert not (ROOT / "x.png").exists()


def test_cli_draw_needs_an_image(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 32, 32), np.float32))
    program = tmp_path / "loc.cnn"
    program.write_text(LOCALIZER)
    for extra in ([], ["--input", str(tmp_path / "x.npy")]):
        result = cnnc_cli("run", str(program), "--draw", str(tmp_path / "out.png"), *extra)
        assert result.returncode == 1
        assert result.stderr.strip() == ("--draw: error: --draw draws on the input image: give one with "
                                         "--input photo.jpg")
    bad = tmp_path / "out.bad"
    result = cnnc_cli("run", str(program), "--draw", str(bad), "--input", white(tmp_path / "a.png"))
    assert result.returncode == 1 and result.stderr.strip() == f"{bad}: error: unknown image file type; use .png"


# ---------------------------------------------------------------- instance masks (instance_masks)

SEG = EXAMPLES / "yolo_tiny_seg.cnn"


def blend(pixel, colour) -> np.ndarray:
    alpha = visualize.INSTANCE_ALPHA
    return np.asarray(pixel, np.float64) * (1 - alpha) + np.asarray(colour, np.float64) * alpha


def sample_mask(mask: np.ndarray, placement: Placement, input_size: tuple[int, int], row: int, col: int) -> float:
    """The probability of `mask` [h, w] at image pixel (row, col), one pixel at a time: its centre
    in input pixels, then on the mask's grid (centres at (j + ½)·stride), bilinear, clamped at the
    edges, 0 outside the input."""
    x = (col + 0.5) * placement.scale[0] + placement.offset[0]
    y = (row + 0.5) * placement.scale[1] + placement.offset[1]
    (input_h, input_w), (h, w) = input_size, mask.shape
    if not (0 <= x < input_w and 0 <= y < input_h):
        return 0.0
    u = min(max(x / (input_w / w) - 0.5, 0.0), w - 1.0)
    v = min(max(y / (input_h / h) - 0.5, 0.0), h - 1.0)
    u0, v0 = int(np.floor(u)), int(np.floor(v))
    u1, v1 = min(u0 + 1, w - 1), min(v0 + 1, h - 1)
    fu, fv = u - u0, v - v0
    top = mask[v0, u0] * (1 - fu) + mask[v0, u1] * fu
    bottom = mask[v1, u0] * (1 - fu) + mask[v1, u1] * fu
    return float(top * (1 - fv) + bottom * fv)


def test_plan_mask_prefers_instance_masks():
    net = cnnc.compile(SEG, input_shapes={"image": (1, 3, 64, 64)})
    assert net.graph.shape(net.graph.info.outputs["masks"])[1:] == (100, 16, 16)  # a "score map" shape too
    assert visualize.plan_mask(net.graph) == visualize.MaskPlan("instances", "masks", "detections")
    hidden = SEG.read_text().replace("output detections = nms(", "detections = nms(").replace(" labels voc", "")
    assert visualize.plan_mask(cnnc.parse(hidden)) == visualize.MaskPlan("instances", "masks", None)
    semantic = cnnc.parse(EXAMPLES / "segmentation.cnn")
    assert visualize.plan_mask(semantic) == visualize.MaskPlan("semantic", "scores")


def test_instances_are_painted_by_score_and_cropped_at_the_input():
    photo = np.full((12, 12, 3), 100, np.uint8)
    photo[:, :, 2] = np.arange(12, dtype=np.uint8)[None, :] * 10
    masks = np.zeros((3, 4, 4), np.float32)
    masks[0] = 1.0                      # everywhere
    masks[1, :2] = 1.0                  # the top half
    masks[2] = 1.0                      # a padding row: never painted
    scores = np.array([0.3, 0.9, -1.0])
    # the image 1:1 in an 8x8 input, shifted: image pixels outside 2..9 were cropped away
    placement = Placement((1.0, 1.0), (-2.0, -2.0))
    picture, painted = visualize.paint_instances(photo, masks, scores, placement, (8, 8))
    assert painted == [0, 1]  # the lower score first, the best on top
    colours = visualize.instance_colours(3)
    for row, col in np.ndindex(12, 12):
        expected = photo[row, col].astype(np.float64)
        for d in painted:
            if sample_mask(masks[d], placement, (8, 8), row, col) > 0.5:
                expected = blend(expected, colours[d])
        assert np.abs(picture[row, col].astype(int) - np.rint(expected)).max() <= 1, (row, col)
    assert np.array_equal(picture[:, :2], photo[:, :2]) and np.array_equal(picture[:2], photo[:2])  # cropped
    assert np.array_equal(picture[:, 10:], photo[:, 10:]) and np.array_equal(picture[10:], photo[10:])
    both = np.rint(blend(blend(photo[3, 5], colours[0]), colours[1]))
    assert np.array_equal(picture[3, 5], both)  # both rows, the best over the other
    assert np.array_equal(picture[8, 5], np.rint(blend(photo[8, 5], colours[0])))  # row 0 only
    # without the scores (the detections not an output), rows are taken as ranked: row 0 on top
    picture, painted = visualize.paint_instances(photo, masks[:2], None, placement, (8, 8))
    assert painted == [1, 0]
    assert np.array_equal(picture[3, 5], np.rint(blend(blend(photo[3, 5], colours[1]), colours[0])))


def test_instance_masks_of_a_network_are_painted_where_a_plain_loop_says(tmp_path):
    net = cnnc.compile(SEG, input_shapes={"image": (1, 3, 64, 64)})
    rng = np.random.default_rng(3)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)).save(path)  # wide: letterboxed
    (example,) = read_examples(str(path), net.graph.shape("image"), steps_for(net.graph, "image"))
    placement = example.source.placement
    assert placement is not None and placement.offset[1] > 0  # grey bands above and below
    outputs = net.run(image=example.array)
    masks, scores = outputs["masks"][0].astype(np.float64), outputs["detections"][0, :, 4].astype(np.float64)
    photo = np.asarray(Image.open(path).convert("RGB"))
    picture, painted = visualize.paint_instances(photo, outputs["masks"][0], scores, placement, (64, 64))
    assert picture.shape == photo.shape and len(painted) >= 3  # random weights, but masks that show
    assert [scores[d] for d in painted] == sorted(scores[d] for d in painted)
    # the reference: every detection row by ascending score, each pixel resampled by hand
    order = sorted((d for d in range(len(scores)) if scores[d] >= 0), key=lambda d: (scores[d], -d))
    colours = visualize.instance_colours(len(scores))
    changed = np.argwhere(np.any(picture != photo, axis=-1))
    pixels = [tuple(p) for p in changed[rng.choice(len(changed), 60, replace=False)]]
    pixels += [(int(r), int(c)) for r, c in zip(rng.integers(0, 60, 140), rng.integers(0, 90, 140))]
    covered = 0
    for row, col in pixels:
        expected = photo[row, col].astype(np.float64)
        hits = [d for d in order if sample_mask(masks[d], placement, (64, 64), row, col) > 0.5]
        for d in hits:
            expected = blend(expected, colours[d])
        covered += bool(hits)
        if not hits:
            assert np.array_equal(picture[row, col], photo[row, col]), (row, col)  # the photograph's colour
        assert np.abs(picture[row, col].astype(int) - np.rint(expected)).max() <= 1, (row, col, hits)
    assert covered >= 60 and covered < len(pixels)
    # with boxes and labels: the image's size, the instances counted
    plan = visualize.plan_mask(net.graph)
    count = visualize.write_instances(net.graph, plan, outputs, placement, str(path), str(tmp_path / "out.png"))
    assert count == len(painted)
    with Image.open(tmp_path / "out.png") as drawn:
        assert drawn.size == (90, 60)


def test_cli_colours_instances_on_the_photograph(tmp_path):
    photo = sample_image("flower.jpg")
    out = tmp_path / "out.png"
    result = cnnc_cli("run", str(SEG), "--input", str(photo), "--mask", str(out))
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith(f"wrote {out}: "))
    count = int(line.split()[2])
    assert count > 0 and line == f"wrote {out}: {count} instance{'s' if count != 1 else ''} from 'masks'"
    with Image.open(out) as drawn, Image.open(photo) as original:
        assert drawn.format == "PNG" and drawn.size == original.size == (640, 427)
    assert colours(out) & {tuple(c) for c in visualize.instance_colours(100)}  # box outlines


def test_cli_instance_masks_need_an_image(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 416, 416), np.float32))
    for extra in ([], ["--input", str(tmp_path / "x.npy")]):
        result = cnnc_cli("run", str(SEG), "--mask", str(tmp_path / "out.png"), *extra)
        assert result.returncode == 1
        assert result.stderr.strip() == ("--mask: error: --mask colours the instances on the input image: give "
                                         "one with --input photo.jpg")
    assert not (tmp_path / "out.png").exists()
