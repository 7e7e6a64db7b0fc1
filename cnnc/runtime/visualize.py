"""Pictures of a network's outputs for `cnnc run --draw` and `--mask`.

`--draw` draws boxes on the input image, at its original size: the rows of a detection output
`[N, K, 6]` (x1, y1, x2, y2, score, class in the network's input pixels, as `nms` gives them;
rows with a negative score are padding) or the one box of a localization output `[N, 4]`
(normalized cx, cy, w, h, as examples/classify_localize.cnn's `box`), labelled with the top class
of a classifier output beside it. `--mask` colours the argmax over the classes of a score map
`[N, C, H, W]` with the PASCAL VOC palette (class 0, the background, black) and resizes it to
the image with nearest-neighbour sampling, so that the file holds palette colours only.
Only the first example of the batch is drawn.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CnncError, CnncInputError
from ..ir.graph import Graph
from ..ir.ops import Op
from ..ir.preprocess import Placement, default_placement
from ..ir.shapes import fmt
from .files import atomic_write
from .report import is_classifier


def voc_palette(count: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map: `[count, 3]` uint8, colour i from the bits of i (0 is black)."""
    palette = np.zeros((count, 3), np.uint8)
    for index in range(count):
        code, red, green, blue = index, 0, 0, 0
        for shift in range(7, -1, -1):
            red |= (code & 1) << shift
            green |= ((code >> 1) & 1) << shift
            blue |= ((code >> 2) & 1) << shift
            code >>= 3
        palette[index] = (red, green, blue)
    return palette


PALETTE = voc_palette()


@dataclass(frozen=True)
class DrawPlan:
    """Which outputs `--draw` uses: `kind` "detections" (output `boxes`) or "box" (`boxes` and,
    when the network has one, the classifier output `classes`)."""

    kind: str
    boxes: str
    classes: str | None = None


def _outputs_listing(graph: Graph) -> str:
    return ", ".join(f"{out} {fmt(graph.shape(node))}" for out, node in graph.info.outputs.items())


def plan_draw(graph: Graph) -> DrawPlan:
    """The outputs to draw, or a CnncError saying what `--draw` needs."""
    outputs = graph.info.outputs
    shapes = {out: graph.shape(node) for out, node in outputs.items()}
    detections = [out for out, shape in shapes.items() if len(shape) == 3 and shape[2] == 6]
    if detections:
        return DrawPlan("detections", detections[0])
    boxes = [out for out, shape in shapes.items() if len(shape) == 2 and shape[1] == 4
             and graph.op(outputs[out]) != Op.SOFTMAX]
    if boxes:
        named = [out for out in boxes if out.lower() in ("box", "boxes", "bbox")]
        box = (named or boxes)[0]
        # a classifier, as `cnnc run` reports one
        classes = [out for out in shapes if out != box and is_classifier(graph, outputs[out])]
        return DrawPlan("box", box, classes[0] if classes else None)
    raise CnncError("--draw needs a detection output [N, K, 6] (from nms) or a box output [N, 4] "
                    f"(normalized cx, cy, w, h); this network's outputs: {_outputs_listing(graph)}",
                    where="--draw")


def plan_mask(graph: Graph) -> str:
    """The score map output `[N, C, H, W]` that `--mask` colours, or a CnncError."""
    for out, node in graph.info.outputs.items():
        shape = graph.shape(node)
        if len(shape) == 4 and shape[1] >= 2:
            return out
    raise CnncError("--mask needs a score map output [N, classes, H, W] with 2 or more classes; "
                    f"this network's outputs: {_outputs_listing(graph)}", where="--mask")


def _pillow(option: str):
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        raise CnncError("drawing needs Pillow: pip install 'cnnc[image]'", where=option) from None
    return Image, ImageDraw, ImageFont


def _open_image(path: str, option: str):
    Image, _, _ = _pillow(option)
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError as error:
        raise CnncInputError(f"{option} draws on the input image, and this is not one ({error})",
                             where=path) from None


def image_format(path: str, option: str) -> str:
    """Pillow's name of the file type that `path`'s suffix asks for (a CnncError if none)."""
    Image, _, _ = _pillow(option)
    name = Image.registered_extensions().get(Path(path).suffix.lower())
    if name is None:
        raise CnncError("unknown image file type; use .png", where=path)
    return name


def _save(image, path: str, option: str) -> None:
    file_format = image_format(path, option)
    with atomic_write(path, "wb") as handle:
        image.save(handle, format=file_format)


def _font(size: int):
    _, _, ImageFont = _pillow("--draw")
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow before 10.1: one bitmap size
        return ImageFont.load_default()


def _class_name(graph: Graph, output: str, number: int) -> str:
    """The output's name for class `number` when it has a label set (`labels …`), else `class N`."""
    names = graph.info.labels.get(output)
    return names[number] if names is not None and 0 <= number < len(names) else f"class {number}"


def _boxes_to_draw(plan: DrawPlan, outputs: dict[str, np.ndarray], graph: Graph, placement: Placement,
                   input_size: tuple[int, int]) -> list[tuple]:
    """(x1, y1, x2, y2, class or None, label) in the image's own pixels, for the first example;
    `placement` maps the input's pixels back to the image's (the preparation's resize, crop or
    letterbox undone)."""
    drawn = []
    if plan.kind == "detections":
        for x1, y1, x2, y2, score, cls in outputs[plan.boxes][0].astype(np.float64):
            if score < 0 or not np.all(np.isfinite((x1, y1, x2, y2, score, cls))):
                continue  # padding (score -1), or nothing that can be drawn
            drawn.append((*placement.to_image(x1, y1), *placement.to_image(x2, y2), int(cls),
                          f"{_class_name(graph, plan.boxes, int(cls))} {score:.2f}"))
        return drawn
    cx, cy, w, h = outputs[plan.boxes][0].astype(np.float64)
    cls, label = None, plan.boxes
    if plan.classes is not None:
        probs = outputs[plan.classes][0].astype(np.float64)
        if graph.op(graph.info.outputs[plan.classes]) != Op.SOFTMAX:  # logits
            probs = np.exp(probs - probs.max())
            probs /= probs.sum()
        cls = int(np.argmax(probs))
        label = f"{_class_name(graph, plan.classes, cls)} {probs[cls]:.0%}"
    if np.all(np.isfinite((cx, cy, w, h))):  # normalized to the input's size
        input_h, input_w = input_size
        drawn.append((*placement.to_image((cx - w / 2) * input_w, (cy - h / 2) * input_h),
                      *placement.to_image((cx + w / 2) * input_w, (cy + h / 2) * input_h), cls, label))
    return drawn


def draw_boxes(graph: Graph, plan: DrawPlan, outputs: dict[str, np.ndarray], placement: Placement | None,
               image_path: str, out_path: str) -> int:
    """Draw the planned boxes on the image at `image_path` (original size; `placement`: where its
    pixels landed in the input), write `out_path`; returns the number of boxes drawn."""
    _, ImageDraw, _ = _pillow("--draw")
    image = _open_image(image_path, "--draw")
    shape = graph.shape(graph.info.inputs[0])
    input_size = (int(shape[2]), int(shape[3]))
    if placement is None:  # not read through a preparation: the default one's (a squash)
        placement = default_placement(shape, image.size)
    boxes = _boxes_to_draw(plan, outputs, graph, placement, input_size)
    canvas = ImageDraw.Draw(image)
    line = max(2, round(min(image.size) / 200))
    font = _font(max(11, round(min(image.size) / 32)))
    limit = 2 * max(image.size)  # keep absurd coordinates within what Pillow can draw
    for x1, y1, x2, y2, cls, label in boxes:
        x1, x2 = sorted(float(np.clip(v, -limit, limit)) for v in (x1, x2))
        y1, y2 = sorted(float(np.clip(v, -limit, limit)) for v in (y1, y2))
        colour = tuple(int(v) for v in PALETTE[(cls + 1) % len(PALETTE) if cls is not None else 15])
        canvas.rectangle((x1, y1, x2, y2), outline=colour, width=line)
        left, top = max(x1, 0.0), max(y1, 0.0)
        text_box = canvas.textbbox((left, top), label, font=font)
        height = text_box[3] - top + 2
        if top - height >= 0:  # the label above the box where it fits, else inside its top
            top -= height
            text_box = canvas.textbbox((left, top), label, font=font)
        canvas.rectangle((text_box[0] - 2, text_box[1] - 2, text_box[2] + 2, text_box[3] + 2), fill=colour)
        luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
        canvas.text((left, top), label, fill=(0, 0, 0) if luminance > 140 else (255, 255, 255), font=font)
    _save(image, out_path, "--draw")
    return len(boxes)


def write_mask(scores: np.ndarray, image_path: str | None, out_path: str,
               placement: Placement | None = None) -> tuple[int, int]:
    """Colour the argmax over classes of `scores` `[N, C, H, W]` (first example); with the image
    at `image_path`, at the image's size, each of its pixels coloured by the input pixel it landed
    on (`placement`; black where the preparation cropped it away). Write `out_path`; returns the
    mask's (width, height)."""
    Image, _, _ = _pillow("--mask")
    classes = np.argmax(scores[0], axis=0)
    if image_path is not None:
        width, height = _open_image(image_path, "--mask").size
        h, w = classes.shape
        if placement is None:  # the default preparation's (a squash to the mask's size)
            placement = default_placement(scores.shape, (width, height))
        # the input pixel under each image pixel's centre (nearest), as the mask is drawn back
        xs = np.floor((np.arange(width) + 0.5) * placement.scale[0] + placement.offset[0]).astype(np.int64)
        ys = np.floor((np.arange(height) + 0.5) * placement.scale[1] + placement.offset[1]).astype(np.int64)
        inside = (ys[:, None] >= 0) & (ys[:, None] < h) & (xs[None, :] >= 0) & (xs[None, :] < w)
        classes = np.where(inside, classes[np.clip(ys, 0, h - 1)[:, None], np.clip(xs, 0, w - 1)[None, :]], 0)
    mask = Image.fromarray(PALETTE[classes % len(PALETTE)])
    _save(mask, out_path, "--mask")
    return mask.size
