"""Declared preprocessing: the `prepare` clause, its steps against plain Pillow/NumPy, its errors,
`--prepare`, and boxes and masks mapped back onto the photo through the preparation."""
from __future__ import annotations

import numpy as np
import pytest

PIL = pytest.importorskip("PIL")
from PIL import Image

import cnnc
from cnnc.cli import main
from cnnc.ir import preprocess as pp
from cnnc.language.prepare import preparation_from_text
from cnnc.runtime.inputs import load_image_sized, steps_for

SHAPE = (1, 3, 224, 224)


def photo(tmp_path, size=(320, 240), name="photo.png"):
    """A deterministic RGB image of `size` (w, h): smooth gradients, so resampling is gentle."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    pixels = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 127 // (w + h)], axis=2)
    path = tmp_path / name
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(path)
    return path


def prepared(path, text, shape=SHAPE):
    steps = preparation_from_text(text, shape)
    return load_image_sized(path, shape, steps)


def test_resize_shorter_side_then_centre_crop_is_torchvision_s(tmp_path):
    path = photo(tmp_path)  # 320x240: shorter side 240 → 256, the other int(256·320/240) = 341
    got, placement = prepared(path, "resize(256) |> center_crop |> normalize(imagenet)")
    image = Image.open(path).convert("RGB").resize((341, 256), Image.Resampling.BILINEAR)
    left, top = int(round((341 - 224) / 2.0)), int(round((256 - 224) / 2.0))
    want = np.asarray(image.crop((left, top, left + 224, top + 224)), np.float32) / 255
    want = (want - np.array(pp.IMAGENET_MEAN, np.float32)) / np.array(pp.IMAGENET_STD, np.float32)
    np.testing.assert_allclose(got[0], want.transpose(2, 0, 1), atol=1e-6)
    assert placement.scale == pytest.approx((341 / 320, 256 / 240)) and placement.offset == (-left, -top)


def test_letterbox_keeps_the_whole_image_and_fills_the_rest(tmp_path):
    path = photo(tmp_path, (400, 200))  # fits as 224x112, centred: rows 56..167
    got, placement = prepared(path, "letterbox(fill=0.25)", (1, 3, 224, 224))
    image = np.asarray(Image.open(path).convert("RGB").resize((224, 112), Image.Resampling.BILINEAR), np.float32)
    np.testing.assert_allclose(got[0, :, 56:168, :], image.transpose(2, 0, 1) / 255, atol=1e-6)
    assert np.all(got[0, :, :56] == round(0.25 * 255) / 255) and np.all(got[0, :, 168:] == round(0.25 * 255) / 255)
    assert placement.to_image(0, 56) == pytest.approx((0, 0))
    assert placement.to_image(224, 168) == pytest.approx((400, 200))


def test_value_steps_scale_normalize_bgr(tmp_path):
    path = photo(tmp_path, (16, 16))
    plain, _ = prepared(path, "resize(16x16)", (1, 3, 16, 16))
    got, _ = prepared(path, "resize(16x16) |> scale(255) |> normalize(mean=(1, 2, 3), std=2) |> bgr", (1, 3, 16, 16))
    want = ((plain[0] * 255 - np.array([1, 2, 3], np.float32)[:, None, None]) / 2)[::-1]
    np.testing.assert_allclose(got[0], want, rtol=1e-6)


def test_default_is_squash_and_imagenet(tmp_path):
    path = photo(tmp_path, (50, 30))
    graph = cnnc.parse("input image: [N, 3, 20, 20]\noutput y = image |> relu")
    assert pp.describe(steps_for(graph, "image")) == "resize(20x20) |> normalize(imagenet)"
    got, _ = load_image_sized(path, (1, 3, 20, 20))
    want = np.asarray(Image.open(path).convert("RGB").resize((20, 20), Image.Resampling.BILINEAR), np.float32) / 255
    want = (want - np.array(pp.IMAGENET_MEAN, np.float32)) / np.array(pp.IMAGENET_STD, np.float32)
    np.testing.assert_allclose(got[0], want.transpose(2, 0, 1), atol=1e-6)


def test_a_feature_lands_back_where_it_was(tmp_path):
    """A white square in the photo, found in the prepared input and mapped back through the placement."""
    pixels = np.zeros((300, 500, 3), np.uint8)
    pixels[100:140, 300:340] = 255
    path = tmp_path / "square.png"
    Image.fromarray(pixels).save(path)
    for text in ("letterbox", "resize(256) |> center_crop", "resize(224x224)"):
        got, placement = prepared(path, text)
        ys, xs = np.nonzero(got[0, 0] > 0.9)  # the square, not letterbox's grey (0.5)
        x0, y0 = placement.to_image(xs.min(), ys.min())
        x1, y1 = placement.to_image(xs.max() + 1, ys.max() + 1)
        assert (x0, y0, x1, y1) == pytest.approx((300, 100, 340, 140), abs=3), text


@pytest.mark.parametrize("text, message", [
    ("resize(256)", "the image must end 224x224"),
    ("normalize(imagenet) |> resize(224x224)", "must come before the value steps"),
    ("resize(224x224) |> normalise(imagenet)", "did you mean 'normalize'"),
    ("resize(-3)", "expected a positive size"),
    ("resize(224x224) |> normalize(cifar)", r"expected a preset \(imagenet\)"),
    ("resize(224x224) |> normalize(mean=(1, 2), std=1)", "one per channel"),
    ("resize(224x224) |> scale", "needs a factor"),
    ("letterbox(colour=0.5)", "letterbox has no argument 'colour'"),
])
def test_bad_preparations_are_positioned_errors(text, message):
    with pytest.raises(cnnc.CnncError, match=message) as error:
        cnnc.parse(f"input image: [N, 3, 224, 224] prepare {text}\noutput y = image |> relu")
    assert str(error.value).startswith("<string>:1:")


def test_prepare_text_alone():
    with pytest.raises(cnnc.CnncError, match="unexpected end") as error:
        preparation_from_text("resize(224x224) |>", SHAPE)
    assert str(error.value).startswith("--prepare:1:")
    assert pp.describe(preparation_from_text("resize(256)|>center_crop(224)", SHAPE)) == \
        "resize(256) |> center_crop(224)"


def test_bgr_needs_three_channels():
    with pytest.raises(cnnc.CnncError, match="bgr reorders three channels"):
        cnnc.parse("input digit: [N, 1, 8, 8] prepare resize(8x8) |> bgr\noutput y = digit |> relu")


def test_cli_prepare_overrides_and_check_shows_it(tmp_path, capsys):
    path = photo(tmp_path)
    source = tmp_path / "net.cnn"
    source.write_text("input image: [N, 3, 32, 32] prepare resize(32x32)\noutput y = image |> global_avg_pool\n")
    assert main(["check", str(source)]) == 0
    assert "images become 'image' by: resize(32x32)" in capsys.readouterr().out
    outputs = []
    for extra in ([], ["--prepare", "resize(40) |> center_crop |> scale(255)"]):
        out = tmp_path / f"out{len(outputs)}.npz"
        assert main(["run", str(source), "--input", str(path), "--save-output", str(out), *extra]) == 0
        outputs.append(np.load(out)["y"])
    assert outputs[1].mean() > 100 * outputs[0].mean()  # 0–255 pixels instead of 0–1
    capsys.readouterr()
    assert main(["run", str(source), "--input", str(path), "--prepare", "resize(40) |> centre_crop"]) == 1
    assert capsys.readouterr().err.startswith("--prepare:1:15: error: unknown preparation step 'centre_crop'")


def test_mask_follows_the_letterbox(tmp_path):
    from cnnc.runtime.visualize import write_mask

    path = photo(tmp_path, (400, 200))
    _, placement = prepared(path, "letterbox", (1, 3, 224, 224))
    scores = np.zeros((1, 3, 224, 224), np.float32)
    scores[0, 1, :, :112] = 1  # the left half of the input is class 1, the right half class 2
    scores[0, 2, :, 112:] = 1
    out = tmp_path / "mask.png"
    assert write_mask(scores, str(path), str(out), placement) == (400, 200)
    mask = np.asarray(Image.open(out))
    assert (mask[100, 50] == mask[100, 150]).all() and not (mask[100, 50] == mask[100, 350]).all()


def test_examples_declare_their_preparations():
    graph = cnnc.parse("examples/resnet50.cnn")
    assert pp.describe(graph.info.preprocess["image"]) == "resize(256) |> center_crop |> normalize(imagenet)"
    assert pp.describe(cnnc.parse("examples/yolo_tiny.cnn").info.preprocess["image"]) == "letterbox"


def test_training_folders_use_the_declared_preparation(tmp_path):
    from cnnc.training.trainer import TrainConfig, train

    for label in ("a", "b"):
        folder = tmp_path / "data" / label
        folder.mkdir(parents=True)
        for i in range(3):
            photo(folder, (20 + i, 12), f"{i}.png")
    source = "input image: [N, 3, 8, 8] prepare resize(8x8) |> scale(2)\noutput p = image |> flatten |> dense(2)\n"
    result = train(source, tmp_path / "data", TrainConfig(epochs=1, batch=2, val_split=0))
    assert result.history and result.history[0].loss > 0
    from cnnc.training.data import load_dataset

    graph = cnnc.parse(source)
    data = load_dataset(tmp_path / "data", "image", (None, 3, 8, 8), {"p": (None, 2)}, {"p": "cross_entropy"},
                        steps=steps_for(graph, "image"))
    assert 1.5 < data.x.max() <= 2.0  # scale(2) of pixels in [0, 1]
