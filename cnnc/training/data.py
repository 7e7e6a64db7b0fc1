"""Training data: .npz arrays and image folders, seeded shuffling and batching, augmentation.

A data set is the examples of the network's input and one target array per loss output. It
comes from
- an `.npz` file: the input under the network input's name (or `x`, `images`), each target
  under its output's name (or `y`, `labels` when there is one loss); class indices are checked
  against the output's number of classes;
- an image folder: one subfolder per class (`digits/3/img_001.png`), every image read exactly as
  `cnnc run` reads it (cnnc/runtime/inputs.py, with the input's declared `prepare` steps), so a
  trained network sees at run time what it saw in training. Classes are the subfolders' names
  in sorted order, or, when the output declares labels and every folder is one of them, the
  declared label's index.

Every problem is an error naming the file, folder or array: a corrupt or non-image file, an
empty class folder, more classes than the output has, labels out of range, a batch larger than
the data. Shuffling, the validation split and augmentation draw from `numpy.random.Generator`s
seeded from the run's seed, so a run is reproducible and `--resume` continues it exactly.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CnncError
from ..ir.preprocess import Step
from ..ir.shapes import fmt
from .autodiff import CnncTrainError


@dataclass
class Dataset:
    """`x` [M, ...] float32 and `targets` (output name → [M, ...]); `classes`: class names of an
    image folder, by index."""

    x: np.ndarray
    targets: dict[str, np.ndarray]
    source: str
    classes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, index: np.ndarray, source: str) -> Dataset:
        return Dataset(self.x[index], {k: v[index] for k, v in self.targets.items()}, source, self.classes)

    def split(self, fraction: float, seed: int) -> tuple[Dataset, Dataset | None]:
        """(training, validation): a seeded random `fraction` of the examples held out (None at 0)."""
        if not 0 <= fraction < 1:
            raise CnncTrainError(f"the validation fraction must be in [0, 1), not {fraction}", where="--val-split")
        count = int(round(len(self) * fraction))
        if count == 0:
            return self, None
        order = np.random.default_rng([seed, 0x5EED]).permutation(len(self))
        return (self.subset(np.sort(order[count:]), self.source),
                self.subset(np.sort(order[:count]), f"{self.source} (validation split)"))


def load_dataset(path: str | Path, input_name: str, input_shape: tuple, outputs: dict[str, tuple],
                 kinds: dict[str, str], labels: dict[str, tuple[str, ...]] | None = None,
                 steps: tuple[Step, ...] | None = None) -> Dataset:
    """The data set at `path` (an .npz file or an image folder) for a network whose input is
    `input_name` of `input_shape` and whose loss outputs have `outputs` shapes and `kinds`; the
    images of a folder are prepared by `steps` (the input's `prepare` clause)."""
    file = Path(path)
    if file.is_dir():
        if len(outputs) != 1 or next(iter(kinds.values())) != "cross_entropy":
            raise CnncTrainError("an image folder gives class labels: it trains one cross_entropy output",
                                 where=str(path))
        output = next(iter(outputs))
        data = _image_folder(file, input_shape, output, outputs[output], (labels or {}).get(output, ()), steps)
    elif file.is_file():
        data = _npz(file, input_name, input_shape, outputs, kinds)
    else:
        raise CnncTrainError("no such data file or folder", where=str(path))
    for name, target in data.targets.items():
        if kinds[name] == "cross_entropy":
            _check_classes(target, outputs[name], name, str(path))
    return data


def _npz(file: Path, input_name: str, input_shape: tuple, outputs: dict[str, tuple],
         kinds: dict[str, str]) -> Dataset:
    from ..runtime.params import read_npz

    try:
        arrays = read_npz(file)
    except CnncError as error:
        raise CnncTrainError(error.message.replace("parameter file", "data file"), where=str(file)) from None
    x = _pick(arrays, (input_name, "x", "images"), file, "the input")
    targets = {}
    for name in outputs:
        keys = (name, "y", "labels") if len(outputs) == 1 else (name,)
        targets[name] = _pick(arrays, keys, file, f"the targets of output '{name}'")
    if x.dtype.kind not in "biuf":
        raise CnncTrainError(f"the input array has dtype {x.dtype}; it must be numeric", where=str(file))
    if tuple(x.shape[1:]) != tuple(input_shape[1:]):
        raise CnncTrainError(f"the input array has shape {fmt(x.shape)}; the network's input '{input_name}' "
                             f"takes {fmt(input_shape)}", where=str(file))
    for name, target in targets.items():
        if len(target) != len(x):
            raise CnncTrainError(f"{len(x)} inputs but {len(target)} targets for output '{name}'", where=str(file))
        if kinds[name] == "cross_entropy":
            if target.dtype.kind not in "iu" and not (target.dtype.kind == "f" and np.all(target == np.round(target))):
                raise CnncTrainError(f"the targets of output '{name}' must be integer class indices "
                                     f"(they are {target.dtype})", where=str(file))
            targets[name] = target.astype(np.int64)
        else:
            expected = tuple(outputs[name][1:])
            if tuple(target.shape[1:]) != expected:
                raise CnncTrainError(f"the targets of output '{name}' have shape {fmt(target.shape)}; the output "
                                     f"is {fmt(outputs[name])}", where=str(file))
            targets[name] = target.astype(np.float32)
    if not np.isfinite(x).all():
        raise CnncTrainError("the input array holds NaN or infinite values", where=str(file))
    return Dataset(np.ascontiguousarray(x, dtype=np.float32), targets, str(file))


def _pick(arrays: dict[str, np.ndarray], keys: tuple[str, ...], file: Path, what: str) -> np.ndarray:
    for key in keys:
        if key in arrays:
            return arrays[key]
    raise CnncTrainError(f"no array for {what}: expected one named {' or '.join(repr(k) for k in keys)} "
                         f"(the file has {', '.join(repr(k) for k in arrays) or 'none'})", where=str(file))


def _check_classes(target: np.ndarray, shape: tuple, output: str, where: str) -> None:
    classes = int(shape[1])
    flat = target.reshape(len(target), -1)
    bad = (flat < 0) | (flat >= classes)
    if bad.any():
        example = int(np.flatnonzero(bad.any(axis=1))[0])
        value = int(flat[example][bad[example]][0])
        raise CnncTrainError(f"label {value} (example {example}) is out of range: output '{output}' has "
                             f"{classes} classes (0–{classes - 1})", where=where)


def _image_folder(folder: Path, input_shape: tuple, output: str, output_shape: tuple,
                  declared: tuple[str, ...], steps: tuple[Step, ...] | None) -> Dataset:
    from ..runtime.inputs import IMAGE_SUFFIXES, load_image

    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise CnncTrainError("the folder has no class subfolders (one folder of images per class)",
                             where=str(folder))
    files: dict[str, list[Path]] = {}
    for name in classes:
        files[name] = sorted(p for p in (folder / name).iterdir() if p.is_file() and not p.name.startswith("."))
        if not files[name]:
            raise CnncTrainError("the class folder is empty", where=str(folder / name))
    if len(classes) > int(output_shape[1]):
        raise CnncTrainError(f"{len(classes)} class folders but output '{output}' has {output_shape[1]} "
                             "classes", where=str(folder))
    index = {name: declared.index(name) for name in classes} if declared and set(classes) <= set(declared) \
        else {name: i for i, name in enumerate(classes)}
    images, labels = [], []
    for name in classes:
        for path in files[name]:
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise CnncTrainError("not an image (expected .png, .jpg, ...): remove it or move it out of the "
                                     "data folder", where=str(path))
            try:
                images.append(load_image(path, input_shape, steps)[0])
            except CnncError as error:
                raise CnncTrainError(error.message, where=str(path)) from None
            labels.append(index[name])
    names = [""] * (max(index.values()) + 1)
    for name, i in index.items():
        names[i] = name
    return Dataset(np.stack(images), {output: np.array(labels, np.int64)}, str(folder), names)


@dataclass(frozen=True)
class Augment:
    """The seed's augmentations, applied per example on each training batch: random shifts of up
    to `shift` pixels (zero fill), horizontal flips (probability ½), brightness (+U(−b, b)) and
    contrast (×U(1−c, 1+c)) changes. All off by default."""

    shift: int = 0
    flip: bool = False
    brightness: float = 0.0
    contrast: float = 0.0

    def __bool__(self) -> bool:
        return bool(self.shift or self.flip or self.brightness or self.contrast)

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not self or x.ndim != 4:
            return x
        n = len(x)
        out = x.copy()
        if self.shift:
            s = self.shift
            padded = np.pad(x, ((0, 0), (0, 0), (s, s), (s, s)))
            dy, dx = rng.integers(0, 2 * s + 1, size=(2, n))
            h, w = x.shape[2:]
            for i in range(n):  # one strided copy per example
                out[i] = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        if self.flip:
            flipped = rng.random(n) < 0.5
            out[flipped] = out[flipped, :, :, ::-1]
        if self.contrast:
            out *= rng.uniform(1 - self.contrast, 1 + self.contrast, size=(n, 1, 1, 1)).astype(np.float32)
        if self.brightness:
            out += rng.uniform(-self.brightness, self.brightness, size=(n, 1, 1, 1)).astype(np.float32)
        return out


def batch_count(data: Dataset, size: int, shuffled: bool) -> int:
    """How many batches `batches` yields; an error for a batch size the data cannot fill."""
    if size < 1:
        raise CnncTrainError(f"the batch size must be at least 1, not {size}", where="--batch")
    if size > len(data):
        raise CnncTrainError(f"the batch size {size} is larger than the {len(data)} examples of {data.source}",
                             where="--batch")
    full, rest = divmod(len(data), size)
    return full + (1 if rest > 1 or (rest == 1 and not shuffled) else 0)


def batches(data: Dataset, size: int, rng: np.random.Generator | None) -> Iterator[tuple[np.ndarray, dict]]:
    """(x, targets) batches of `size` in a shuffled order (`rng`) or in order (None); the last,
    smaller batch is kept, except a last batch of one when shuffling (batch norm's statistics
    need two examples)."""
    batch_count(data, size, rng is not None)
    order = rng.permutation(len(data)) if rng is not None else np.arange(len(data))
    for start in range(0, len(data), size):
        index = order[start:start + size]
        if rng is not None and len(index) == 1 and start > 0:
            continue
        yield data.x[index], {k: v[index] for k, v in data.targets.items()}
