"""Inputs for `cnnc run`: random arrays, .npy files, and images prepared for the input (its `prepare` steps);
`--input` arguments (files, folders, glob patterns) expanded to the files they name."""
from __future__ import annotations

import glob
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CnncInputError
from ..ir.preprocess import (
    Placement,
    Step,
    crop_box,
    default_steps,
    final_size,
    image_input,
    placement,
    resized,
)
from ..ir.shapes import fmt

# What reads as an image (cnnc run --input, image folders of cnnc train).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
INPUT_SUFFIXES = frozenset(IMAGE_SUFFIXES | {".npy"})  # what a folder contributes to a run
_GLOB_CHARACTERS = frozenset("*?[")


class ImageConversion(UserWarning):
    """What loading an image changed about it (bit depth, channels, alpha, orientation); the CLI
    prints each as a `note:` line, API users see an ordinary warning."""


# Pillow modes whose pixels are integers wider than 8 bits, and the largest value of each.
_WIDE_MODES = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535}


@dataclass
class InputFiles:
    """What `--input` arguments name: `files` in order (no duplicates); `skipped`, the files of
    named folders that are neither images nor .npy arrays; `several`, whether the arguments could
    name more than one file (several arguments, a folder or a pattern), which makes the run a
    batch run that reports a bad file and goes on instead of stopping."""

    files: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    several: bool = False


def expand_inputs(arguments: list[str]) -> InputFiles:
    """Files, folders (their images and .npy files, sorted by name, hidden files left out, not
    recursive) and glob patterns (`imgs/*.jpg`, `data/**/*.png`; sorted) → the files to run.

    An argument naming nothing is an error before anything runs: a mistyped path is not a file
    that failed."""
    found = InputFiles(several=len(arguments) > 1)
    seen: set[str] = set()

    def add(path: str) -> None:
        key = os.path.normpath(path)
        if key not in seen:
            seen.add(key)
            found.files.append(path)

    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found.several = True
            entries = sorted(p for p in path.iterdir() if not p.name.startswith(".") and p.is_file())
            inputs = [p for p in entries if p.suffix.lower() in INPUT_SUFFIXES]
            found.skipped += [str(p) for p in entries if p.suffix.lower() not in INPUT_SUFFIXES]
            if not inputs:
                raise CnncInputError("the folder holds no images or .npy files", where=argument)
            for entry in inputs:
                add(str(entry))
        elif path.is_file():
            add(argument)
        elif _GLOB_CHARACTERS & set(argument):
            found.several = True
            matches = sorted(m for m in glob.glob(argument, recursive=True) if Path(m).is_file())
            if not matches:
                raise CnncInputError("no file matches this pattern", where=argument)
            for match in matches:
                add(match)
        elif path.exists():
            raise CnncInputError("not a file or folder", where=argument)
        else:
            raise CnncInputError("no such input file or folder", where=argument)
    return found


def random_input(shape: tuple, batch: int, seed: int) -> np.ndarray:
    """Standard-normal input; a symbolic batch dimension becomes `batch`."""
    concrete = tuple(batch if isinstance(d, str) else d for d in shape)
    return np.random.default_rng(seed + 1).standard_normal(concrete, dtype=np.float32)


def load_input(path: str, shape: tuple, steps: tuple[Step, ...] | None = None) -> np.ndarray:
    """A .npy array (shape checked by the network) or an image prepared by `steps` to fit `shape`."""
    return load_input_sized(path, shape, steps)[0]


def load_input_sized(path: str, shape: tuple,
                     steps: tuple[Step, ...] | None = None) -> tuple[np.ndarray, Placement | None]:
    """`load_input`'s array and, for an image, where its pixels landed in the input (for boxes
    and masks drawn back on it)."""
    file = Path(path)
    if not file.is_file():
        raise CnncInputError("no such input file", where=path)
    if file.suffix.lower() == ".npy":
        _check_npy_header(file, path)
        try:
            array = np.load(file, allow_pickle=False)
        except ValueError as error:
            raise CnncInputError(f"not a numeric .npy array ({error})", where=path) from None
        if array.ndim == len(shape) - 1:
            array = array[None]  # a single example without its batch axis
        return array.astype(np.float32), None
    if file.suffix.lower() in IMAGE_SUFFIXES:
        return load_image_sized(file, shape, steps)
    raise CnncInputError("expected a .npy array or an image (.jpg, .png, ...)", where=path)


def steps_for(graph, name: str) -> tuple[Step, ...]:
    """How images become the input `name` of `graph`: its `prepare` clause, or the default."""
    return graph.info.preprocess.get(name) or default_steps(tuple(graph.shape(name)))


def _check_npy_header(file: Path, path: str) -> None:
    """Read only the .npy header: refuse a non-numeric dtype, and a header that declares more
    data than the file holds (np.load would first allocate all of it)."""
    try:
        with open(file, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(handle)
            start = handle.tell()
    except (OSError, ValueError) as error:
        raise CnncInputError(f"not a .npy array ({error})", where=path) from None
    if dtype.kind not in "biuf":
        raise CnncInputError(f"not a numeric .npy array (its dtype is {dtype})", where=path)
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if declared > file.stat().st_size - start:
        raise CnncInputError(f"the .npy header declares {fmt(shape)} of {dtype} ({declared} bytes), more "
                             "than the file holds", where=path)


def load_image(path: Path, shape: tuple, steps: tuple[Step, ...] | None = None) -> np.ndarray:
    """The image prepared by `steps` (default: `default_steps(shape)`: squashed to the input's
    H×W, ImageNet's mean and std for three channels; cnnc/ir/preprocess.py), NCHW with batch 1."""
    return load_image_sized(path, shape, steps)[0]


def load_image_sized(path: Path, shape: tuple, steps: tuple[Step, ...] | None = None) -> tuple[np.ndarray, Placement]:
    """`load_image`'s array and where the image's pixels landed in it."""
    if not image_input(shape):
        raise CnncInputError(f"an image needs a [N, 1 or 3, H, W] input, the network's is {fmt(shape)}",
                             where=str(path))
    try:
        from PIL import Image
    except ImportError:
        raise CnncInputError("reading images needs Pillow: pip install 'cnnc[image]'", where=str(path)) from None
    steps = steps or default_steps(shape)
    try:
        with Image.open(path) as image:
            pixels, placement = _pixels(image, shape, str(path), steps)
    except (OSError, ValueError, Image.DecompressionBombError) as error:  # a header claiming 65535×65535
        raise CnncInputError(f"cannot read the image ({error})", where=str(path)) from None
    pixels = pixels.transpose(2, 0, 1) if pixels.ndim == 3 else pixels[None]
    return np.ascontiguousarray(pixels[None], dtype=np.float32), placement


def _pixels(image, shape: tuple, where: str, steps: tuple[Step, ...]) -> tuple[np.ndarray, Placement]:
    """The image as float32 H×W(×3) after EXIF orientation and `steps`; every change beyond the
    steps themselves is reported (ImageConversion)."""
    from PIL import Image, ImageOps

    changes = []
    orientation = image.getexif().get(0x0112, 1)  # the EXIF Orientation tag; 1 is upright
    if orientation not in (0, 1):
        image = ImageOps.exif_transpose(image)
        changes.append(f"turned upright as its EXIF orientation ({orientation}) says")
    size = (int(image.size[0]), int(image.size[1]))
    target = (int(shape[2]), int(shape[3]))
    want_rgb = shape[1] == 3
    wide = image.mode in _WIDE_MODES
    if wide:  # 16-bit grey: scale the full range, not Pillow's clip to 255
        values = np.asarray(image, dtype=np.float32) / _WIDE_MODES[image.mode]
        changes.append(f"{image.mode} (16-bit) pixels scaled from 0–65535 to 0–1")
        image = Image.fromarray(np.clip(values, 0, 1).astype(np.float32), mode="F")
    else:
        if "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info):
            changes.append("alpha channel dropped (transparent pixels keep their colour)")
        if want_rgb and image.mode in ("L", "LA", "1"):
            changes.append("grey copied to the 3 channels")
        elif not want_rgb and image.mode not in ("L", "1"):
            changes.append(f"{image.mode} converted to grey (the network takes 1 channel)")
        image = image.convert("RGB" if want_rgb else "L")
    for step in steps:
        if step.kind in ("resize", "letterbox"):
            fitted = image.resize(resized(image.size, step, target), Image.Resampling.BILINEAR)
            if step.kind == "letterbox":
                fill = step.fill if image.mode == "F" else round(255 * min(max(step.fill, 0.0), 1.0))
                canvas = Image.new(image.mode, (target[1], target[0]), (fill,) * 3 if image.mode == "RGB" else fill)
                canvas.paste(fitted, ((target[1] - fitted.size[0]) // 2, (target[0] - fitted.size[1]) // 2))
                fitted = canvas
            image = fitted
        elif step.kind == "center_crop":
            crop = target if step.size is None else final_size(step, target)
            assert crop is not None
            left, top = crop_box(image.size, crop)
            image = image.crop((left, top, left + crop[1], top + crop[0]))  # outside the image: 0
    pixels: np.ndarray = np.asarray(image, dtype=np.float32) * np.float32(1.0 if image.mode == "F" else 1.0 / 255.0)
    if wide and want_rgb:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
        changes.append("grey copied to the 3 channels")
    for step in steps:
        if step.kind == "scale":
            pixels = pixels * np.float32(step.factor)
        elif step.kind == "normalize":
            pixels = (pixels - np.asarray(step.mean, np.float32)) / np.asarray(step.std, np.float32)
        elif step.kind == "bgr":
            pixels = pixels[..., ::-1]
    for change in changes:
        warnings.warn(f"{where}: {change}", ImageConversion, stacklevel=3)
    return pixels, placement(steps, size, target)
