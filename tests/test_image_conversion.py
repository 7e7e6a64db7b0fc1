"""Images that are not 8-bit RGB: converted correctly, and each conversion said (ImageConversion)."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from cnnc.cli import main
from cnnc.ir import preprocess
from cnnc.runtime.inputs import ImageConversion, load_image

IMAGENET_MEAN = np.array(preprocess.IMAGENET_MEAN, np.float32)
IMAGENET_STD = np.array(preprocess.IMAGENET_STD, np.float32)


def _load(path, shape):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pixels = load_image(path, shape)
    return pixels, [str(w.message) for w in caught if issubclass(w.category, ImageConversion)]


def test_a_16_bit_png_keeps_its_range(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    pixels, notes = _load(tmp_path / "g16.png", (1, 1, 48, 64))
    np.testing.assert_allclose(pixels[0, 0], ramp / 65535, atol=1e-6)  # not clipped at 255/65535
    assert any("16-bit" in n for n in notes)
    rgb, notes = _load(tmp_path / "g16.png", (1, 3, 48, 64))
    want = (ramp[None] / 65535 - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]
    np.testing.assert_allclose(rgb[0], want, atol=1e-5)
    assert any("copied to the 3 channels" in n for n in notes)


def test_grey_rgba_and_exif_rotation_are_converted_and_said(tmp_path):
    Image.new("L", (8, 6), 51).save(tmp_path / "grey.png")
    pixels, notes = _load(tmp_path / "grey.png", (1, 3, 6, 8))
    np.testing.assert_allclose(pixels[0, :, 0, 0], (0.2 - IMAGENET_MEAN) / IMAGENET_STD, atol=1e-6)
    assert notes == [f"{tmp_path / 'grey.png'}: grey copied to the 3 channels"]
    Image.new("RGBA", (8, 6), (255, 0, 0, 0)).save(tmp_path / "rgba.png")
    _, notes = _load(tmp_path / "rgba.png", (1, 3, 6, 8))
    assert any("alpha channel dropped" in n for n in notes)
    wide = Image.new("RGB", (8, 4), (0, 0, 0))
    wide.putpixel((7, 0), (255, 255, 255))  # top right
    exif = wide.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    wide.save(tmp_path / "rot.png", exif=exif)
    pixels, notes = _load(tmp_path / "rot.png", (1, 1, 8, 4))  # upright it is 4 wide, 8 tall
    assert pixels.shape == (1, 1, 8, 4) and pixels[0, 0].argmax() == np.ravel_multi_index((7, 3), (8, 4))
    assert any("EXIF orientation (6)" in n for n in notes)


def test_an_8_bit_rgb_photo_has_nothing_to_say(tmp_path):
    Image.new("RGB", (8, 6), (10, 20, 30)).save(tmp_path / "rgb.png")
    _, notes = _load(tmp_path / "rgb.png", (1, 3, 6, 8))
    assert notes == []


def test_the_cli_prints_conversions_as_notes(tmp_path, capsys):
    Image.fromarray(np.full((32, 32), 40000, np.uint16)).save(tmp_path / "g16.png")
    lenet = Path(__file__).resolve().parents[1] / "examples" / "lenet5.cnn"
    assert main(["run", str(lenet), "--input", str(tmp_path / "g16.png")]) == 0
    err = capsys.readouterr().err
    assert f"note: {tmp_path / 'g16.png'}: I;16 (16-bit) pixels scaled from 0–65535 to 0–1" in err
    assert "Warning" not in err
