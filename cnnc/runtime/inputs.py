"""Inputs for `cnnc run`: random arrays, .npy files, and images resized to the input shape;
`--input` arguments (files, folders, glob patterns) expanded to the files they name."""
from __future__ import annotations

import glob
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CnncInputError
from ..ir.shapes import fmt

# ImageNet statistics (torchvision's): the usual normalization for 3-channel classifiers.
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
INPUT_SUFFIXES = frozenset(_IMAGE_SUFFIXES | {".npy"})  # what a folder contributes to a run
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


def load_input(path: str, shape: tuple) -> np.ndarray:
    """A .npy array (shape checked by the network) or an image made to fit `shape`."""
    return load_input_sized(path, shape)[0]


def load_input_sized(path: str, shape: tuple) -> tuple[np.ndarray, tuple[int, int] | None]:
    """`load_input`'s array and, for an image, its own (width, height) before resizing."""
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
    if file.suffix.lower() in _IMAGE_SUFFIXES:
        return load_image_sized(file, shape)
    raise CnncInputError("expected a .npy array or an image (.jpg, .png, ...)", where=path)


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


def load_image(path: Path, shape: tuple) -> np.ndarray:
    """Resize (bilinear) to the input's H×W, scale to [0, 1], normalize, NCHW with batch 1.

    Three-channel inputs use ImageNet mean/std; one-channel inputs are converted to grey.
    """
    return load_image_sized(path, shape)[0]


def load_image_sized(path: Path, shape: tuple) -> tuple[np.ndarray, tuple[int, int]]:
    """`load_image`'s array and the image's own (width, height)."""
    if len(shape) != 4 or shape[1] not in (1, 3):
        raise CnncInputError(f"an image needs a [N, 1 or 3, H, W] input, the network's is {fmt(shape)}",
                             where=str(path))
    try:
        from PIL import Image
    except ImportError:
        raise CnncInputError("reading images needs Pillow: pip install 'cnnc[image]'", where=str(path)) from None
    try:
        with Image.open(path) as image:
            pixels, size = _pixels(image, shape, str(path))
    except (OSError, ValueError, Image.DecompressionBombError) as error:  # a header claiming 65535×65535
        raise CnncInputError(f"cannot read the image ({error})", where=str(path)) from None
    if shape[1] == 3:
        pixels = ((pixels - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
    else:
        pixels = pixels[None]
    return np.ascontiguousarray(pixels[None], dtype=np.float32), (int(size[0]), int(size[1]))


def _pixels(image, shape: tuple, where: str) -> tuple[np.ndarray, tuple[int, int]]:
    """The image as float32 in [0, 1], H×W(×3), resized (bilinear) to the input's size, after
    EXIF orientation; every change beyond the resize is reported (ImageConversion)."""
    from PIL import Image, ImageOps

    changes = []
    orientation = image.getexif().get(0x0112, 1)  # the EXIF Orientation tag; 1 is upright
    if orientation not in (0, 1):
        image = ImageOps.exif_transpose(image)
        changes.append(f"turned upright as its EXIF orientation ({orientation}) says")
    size = (int(image.size[0]), int(image.size[1]))
    target = (shape[3], shape[2])
    want_rgb = shape[1] == 3
    if image.mode in _WIDE_MODES:  # 16-bit grey: scale the full range, not Pillow's clip to 255
        wide = np.asarray(image, dtype=np.float32) / _WIDE_MODES[image.mode]
        grey = Image.fromarray(np.clip(wide, 0, 1).astype(np.float32), mode="F")
        pixels = np.asarray(grey.resize(target, Image.Resampling.BILINEAR), dtype=np.float32)
        changes.append(f"{image.mode} (16-bit) pixels scaled from 0–65535 to 0–1")
        if want_rgb:
            pixels = np.repeat(pixels[..., None], 3, axis=2)
            changes.append("grey copied to the 3 channels")
    else:
        if "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info):
            changes.append("alpha channel dropped (transparent pixels keep their colour)")
        if want_rgb and image.mode in ("L", "LA", "1"):
            changes.append("grey copied to the 3 channels")
        elif not want_rgb and image.mode not in ("L", "1"):
            changes.append(f"{image.mode} converted to grey (the network takes 1 channel)")
        converted = image.convert("RGB" if want_rgb else "L").resize(target, Image.Resampling.BILINEAR)
        pixels = np.asarray(converted, dtype=np.float32) / 255.0
    for change in changes:
        warnings.warn(f"{where}: {change}", ImageConversion, stacklevel=3)
    return pixels, size
