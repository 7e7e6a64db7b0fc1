"""`cnnc run --draw / --mask` (cnnc/runtime/visualize.py): boxes drawn where the outputs say, masks in
palette colours at the image's size, and one-line errors for outputs that cannot be drawn. The
photographs are scikit-learn's sample images (china.jpg, flower.jpg), read from the installed package."""
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
from cnnc.runtime import visualize

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
     "--mask: error: --mask needs a score map output [N, classes, H, W] with 2 or more classes; this "
     "network's outputs: probs [N, 10]"),
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
