"""How an image becomes an input tensor: the `prepare` clause of an input declaration.

    input image: [N, 3, 224, 224] prepare resize(256) |> center_crop |> normalize(imagenet)

A preparation is a sequence of `Step`s, applied in order to a decoded, upright image: first
the geometric steps (on the image), then the value steps (on its pixels, scaled to [0, 1]):

- `resize(S)`: the shorter side to S pixels, keeping the aspect ratio (torchvision's
  `Resize(S)`); `resize(HxW)`: exactly H×W (the aspect ratio is not kept).
- `center_crop`, `center_crop(S)`, `center_crop(HxW)`: the centre H×W (by default the input's),
  the offsets rounded as torchvision's `CenterCrop` rounds them.
- `letterbox`, `letterbox(fill=0.5)`: scaled to fit inside the input's H×W keeping the aspect
  ratio, centred, the rest filled with `fill` (YOLO's preparation).
- `scale(k)`: pixels times k (`scale(255)` for networks trained on 0–255 values).
- `normalize(imagenet)`, `normalize(mean=m, std=s)`: (pixel − mean) / std per channel; a number
  or one per channel.
- `bgr`: the channels in blue, green, red order (Caffe's networks).

The geometry must end at the input's size (a `center_crop`, a `letterbox` or a `resize(HxW)` of
exactly that size last), so every image fits, whatever its own size. Without a `prepare` clause
an input gets `default_steps`: squashed to H×W, and ImageNet's mean and standard deviation for
three channels (what `cnnc run` always did).

This module is pure: the steps, their checks and their text, and `Placement`, the map from an
image's pixels to the input's (for drawing boxes and masks back on the photo). The pixel work
is cnnc/runtime/inputs.py's.
"""
from __future__ import annotations

from dataclasses import dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's
IMAGENET_STD = (0.229, 0.224, 0.225)
GEOMETRIC = ("resize", "center_crop", "letterbox")
VALUES = ("scale", "normalize", "bgr")
STEPS = GEOMETRIC + VALUES


@dataclass(frozen=True)
class Step:
    """One step; only the fields of its kind are used (see the module docstring)."""

    kind: str
    size: tuple[int, int] | int | None = None  # resize: int (shorter side) or (h, w); center_crop
    fill: float = 0.5  # letterbox
    factor: float = 1.0  # scale
    mean: tuple[float, ...] = ()  # normalize
    std: tuple[float, ...] = ()
    preset: str | None = None  # normalize(imagenet)

    def text(self) -> str:
        """The step as a `.cnn` file spells it."""
        if self.kind in ("resize", "center_crop"):
            if self.size is None:
                return self.kind
            size = self.size if isinstance(self.size, int) else f"{self.size[0]}x{self.size[1]}"
            return f"{self.kind}({size})"
        if self.kind == "letterbox":
            return "letterbox" if self.fill == 0.5 else f"letterbox(fill={self.fill:g})"
        if self.kind == "scale":
            return f"scale({self.factor:g})"
        if self.kind == "normalize":
            if self.preset:
                return f"normalize({self.preset})"
            return f"normalize(mean={_numbers(self.mean)}, std={_numbers(self.std)})"
        return self.kind


def _numbers(values: tuple[float, ...]) -> str:
    return f"{values[0]:g}" if len(values) == 1 else "(" + ", ".join(f"{v:g}" for v in values) + ")"


def describe(steps: tuple[Step, ...]) -> str:
    """`resize(256) |> center_crop |> normalize(imagenet)`."""
    return " |> ".join(step.text() for step in steps)


def default_steps(shape: tuple) -> tuple[Step, ...]:
    """An input without a `prepare` clause: squashed to its H×W; ImageNet's statistics for RGB."""
    squash = Step("resize", (int(shape[2]), int(shape[3])))
    if len(shape) == 4 and shape[1] == 3:
        return squash, Step("normalize", mean=IMAGENET_MEAN, std=IMAGENET_STD, preset="imagenet")
    return (squash,)


def image_input(shape: tuple) -> bool:
    """Whether an input of `shape` can take images: [N, 1 or 3, H, W]."""
    return len(shape) == 4 and shape[1] in (1, 3)


def check(steps: tuple[Step, ...], shape: tuple) -> tuple[int, str] | None:
    """(index of the offending step, what is wrong) for steps that cannot prepare an image of the
    input `shape` [N, C, H, W]; None when they can."""
    if not image_input(shape):
        return 0, f"only an image input [N, 1 or 3, H, W] can be prepared, this one is {list(shape)}"
    channels, target = int(shape[1]), (int(shape[2]), int(shape[3]))
    last_geometry = None
    for index, step in enumerate(steps):
        if step.kind in GEOMETRIC:
            if any(s.kind in VALUES for s in steps[:index]):
                return index, f"{step.kind} changes the image's geometry: it must come before the value steps " \
                              f"({', '.join(VALUES)})"
            last_geometry = index
        if step.kind == "normalize" and (len(step.mean) not in (1, channels) or len(step.std) not in (1, channels)):
            return index, f"normalize needs one mean and std, or {channels} (one per channel)"
        if step.kind == "normalize" and any(s <= 0 for s in step.std):
            return index, "normalize's std must be positive"
        if step.kind == "bgr" and channels != 3:
            return index, f"bgr reorders three channels; this input has {channels}"
    if last_geometry is None or final_size(steps[last_geometry], target) != target:
        where = len(steps) - 1 if last_geometry is None else last_geometry
        return where, (f"the image must end {target[0]}x{target[1]}, the input's size: end the geometry with "
                       f"center_crop, letterbox or resize({target[0]}x{target[1]})")
    return None


def final_size(step: Step, target: tuple[int, int]) -> tuple[int, int] | None:
    """The (h, w) a geometric step leaves for any image, or None when it depends on the image."""
    if step.kind == "letterbox":
        return target
    if step.kind == "center_crop":
        return target if step.size is None else _pair(step.size)
    if step.kind == "resize" and not isinstance(step.size, int) and step.size is not None:
        return _pair(step.size)
    return None


def _pair(size: tuple[int, int] | int) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


@dataclass(frozen=True)
class Placement:
    """Where an image's pixels land in the input: input = image · scale + offset, per axis (x, y)."""

    scale: tuple[float, float]
    offset: tuple[float, float]

    def to_image(self, x: float, y: float) -> tuple[float, float]:
        """Input coordinates → the image's own pixel coordinates."""
        return (x - self.offset[0]) / self.scale[0], (y - self.offset[1]) / self.scale[1]


def resized(size: tuple[int, int], step: Step, target: tuple[int, int]) -> tuple[int, int]:
    """The (w, h) an image of (w, h) `size` has after `resize` or `letterbox` (before its fill)."""
    w, h = size
    if step.kind == "letterbox":
        ratio = min(target[1] / w, target[0] / h)
        return max(1, round(w * ratio)), max(1, round(h * ratio))
    assert step.size is not None
    if isinstance(step.size, int):  # torchvision: the shorter side to S, the other side truncated
        short, long_ = (w, h) if w <= h else (h, w)
        other = int(step.size * long_ / short)
        return (step.size, other) if w <= h else (other, step.size)
    return int(step.size[1]), int(step.size[0])


def crop_box(size: tuple[int, int], crop: tuple[int, int]) -> tuple[int, int]:
    """The (left, top) of torchvision's centre crop of (h, w) `crop` from an image of (w, h) `size`."""
    w, h = size
    return int(round((w - crop[1]) / 2.0)), int(round((h - crop[0]) / 2.0))


def placement(steps: tuple[Step, ...], size: tuple[int, int], target: tuple[int, int]) -> Placement:
    """The placement of an image of (w, h) `size` after the geometric `steps` (input (h, w) `target`)."""
    sx = sy = 1.0
    ox = oy = 0.0
    w, h = size
    for step in steps:
        if step.kind in ("resize", "letterbox"):
            nw, nh = resized((w, h), step, target)
            sx, sy, ox, oy = sx * nw / w, sy * nh / h, ox * nw / w, oy * nh / h
            w, h = nw, nh
            if step.kind == "letterbox":
                left, top = (target[1] - w) // 2, (target[0] - h) // 2
                ox, oy, w, h = ox + left, oy + top, target[1], target[0]
        elif step.kind == "center_crop":
            crop = target if step.size is None else _pair(step.size)
            left, top = crop_box((w, h), crop)
            ox, oy, w, h = ox - left, oy - top, crop[1], crop[0]
    return Placement((sx, sy), (ox, oy))


def default_placement(shape: tuple, size: tuple[int, int]) -> Placement:
    """Where an image of (w, h) `size` lands in an input of `shape` [N, C, H, W] prepared by the
    default steps (squashed to H×W): for pictures of images read without a known preparation."""
    return placement(default_steps(shape), size, (int(shape[2]), int(shape[3])))
