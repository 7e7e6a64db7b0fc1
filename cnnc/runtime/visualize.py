"""Pictures of a network's outputs for `cnnc run --draw` and `--mask`.

`--draw` draws boxes on the input image, at its original size: the rows of a detection output
`[N, K, 6]` (x1, y1, x2, y2, score, class in the network's input pixels, as `nms` gives them;
rows with a negative score are padding) or the one box of a localization output `[N, 4]`
(normalized cx, cy, w, h, as examples/classify_localize.cnn's `box`), labelled with the top class
of a classifier output beside it.

`--mask` pictures a segmentation output, in one of two modes (`plan_mask`):

- instances, for an output of `instance_masks` (`[N, D, H, W]` probabilities on the prototype
  grid, one mask per detection row; examples/yolo_tiny_seg.cnn): each instance is blended in a
  colour of its own onto the input image at its original size, where its mask, sampled
  bilinearly at the image's pixels through the preparation's placement, exceeds ½; lower-scoring
  rows are painted first, so that the best detection lies on top; when the detections are an
  output too, each instance's box and "class score" label are drawn over the colours.
- semantic, for a score map `[N, C, H, W]`: the argmax over the classes, coloured with the PASCAL
  VOC palette (class 0, the background, black) and resized to the image with nearest-neighbour
  sampling, so that the file holds palette colours only.

Only the first example of the batch is drawn.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CnncError, CnncInputError
from ..ir.graph import Graph
from ..ir.ops import Op
from ..ir.preprocess import Placement, default_placement
from ..ir.shapes import fmt
from .files import atomic_write
from .report import is_classifier, is_detections


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
    detections = [out for out, node in outputs.items() if is_detections(graph, node)]
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


@dataclass(frozen=True)
class MaskPlan:
    """What `--mask` pictures: `kind` "instances" (`masks`, an output of `instance_masks`, and
    `detections`, the output holding its detection rows when they are one) or "semantic"
    (`masks`, a score map `[N, C, H, W]`)."""

    kind: str
    masks: str
    detections: str | None = None


def plan_mask(graph: Graph) -> MaskPlan:
    """The output `--mask` pictures, or a CnncError saying what `--mask` needs: instance masks
    (an output of `instance_masks`) before a score map `[N, C, H, W]`."""
    outputs = graph.info.outputs
    for out, node in outputs.items():
        if graph.op(node) == Op.INSTANCE_MASKS:
            rows = graph.inputs_of(node)[1]
            detections = [name for name, other in outputs.items() if other == rows]
            return MaskPlan("instances", out, detections[0] if detections else None)
    for out, node in outputs.items():
        shape = graph.shape(node)
        if len(shape) == 4 and shape[1] >= 2:
            return MaskPlan("semantic", out)
    raise CnncError("--mask needs a score map output [N, classes, H, W] with 2 or more classes, or instance "
                    f"masks [N, D, H, W] from instance_masks; this network's outputs: {_outputs_listing(graph)}",
                    where="--mask")


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
        for x1, y1, x2, y2, score, cls in outputs[plan.boxes][0][:, :6].astype(np.float64):  # not the extras
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


@dataclass(frozen=True)
class _Pen:
    """How boxes and labels are drawn on an image: the outline's width, the label's font, and a
    bound on coordinates (absurd ones are kept within what Pillow can draw)."""

    line: int
    font: object
    limit: float


def _pen(size: tuple[int, int]) -> _Pen:
    """The pen for an image of (w, h) `size`: lines and letters that grow with it."""
    return _Pen(max(2, round(min(size) / 200)), _font(max(11, round(min(size) / 32))), 2.0 * max(size))


def _rgb(colour: np.ndarray) -> tuple[int, int, int]:
    """A palette row as Pillow's colour."""
    return int(colour[0]), int(colour[1]), int(colour[2])


def _draw_labelled_box(canvas, pen: _Pen, box: tuple[float, float, float, float],
                       colour: tuple[int, int, int], label: str) -> None:
    """Outline `box` (x1, y1, x2, y2 in the image's pixels) in `colour`, with `label` on a patch of
    that colour above it where it fits, else inside its top (black or white text, as reads best)."""
    x1, x2 = sorted(float(np.clip(v, -pen.limit, pen.limit)) for v in (box[0], box[2]))
    y1, y2 = sorted(float(np.clip(v, -pen.limit, pen.limit)) for v in (box[1], box[3]))
    canvas.rectangle((x1, y1, x2, y2), outline=colour, width=pen.line)
    left, top = max(x1, 0.0), max(y1, 0.0)
    text_box = canvas.textbbox((left, top), label, font=pen.font)
    height = text_box[3] - top + 2
    if top - height >= 0:  # the label above the box where it fits, else inside its top
        top -= height
        text_box = canvas.textbbox((left, top), label, font=pen.font)
    canvas.rectangle((text_box[0] - 2, text_box[1] - 2, text_box[2] + 2, text_box[3] + 2), fill=colour)
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    canvas.text((left, top), label, fill=(0, 0, 0) if luminance > 140 else (255, 255, 255), font=pen.font)


def _photo(graph: Graph, image_path: str, placement: Placement | None, option: str):
    """(the image at `image_path` as RGB, where its pixels landed in the network's input, the
    input's (H, W)): `placement` as the run read it, or, for an image not read through a
    preparation, the default one's (a squash)."""
    image = _open_image(image_path, option)
    shape = graph.shape(graph.info.inputs[0])
    if placement is None:
        placement = default_placement(shape, image.size)
    return image, placement, (int(shape[2]), int(shape[3]))


def draw_boxes(graph: Graph, plan: DrawPlan, outputs: dict[str, np.ndarray], placement: Placement | None,
               image_path: str, out_path: str) -> int:
    """Draw the planned boxes on the image at `image_path` (original size; `placement`: where its
    pixels landed in the input), write `out_path`; returns the number of boxes drawn."""
    _, ImageDraw, _ = _pillow("--draw")
    image, placement, input_size = _photo(graph, image_path, placement, "--draw")
    boxes = _boxes_to_draw(plan, outputs, graph, placement, input_size)
    canvas = ImageDraw.Draw(image)
    pen = _pen(image.size)
    for x1, y1, x2, y2, cls, label in boxes:
        _draw_labelled_box(canvas, pen, (x1, y1, x2, y2),
                           _rgb(PALETTE[(cls + 1) % len(PALETTE) if cls is not None else 15]), label)
    _save(image, out_path, "--draw")
    return len(boxes)


INSTANCE_ALPHA = 0.5  # an instance's colour over the photograph's


def instance_colours(count: int) -> np.ndarray:
    """`[count, 3]` uint8 colours for instances 0, 1, …: bright hues a golden ratio apart, so
    that any few consecutive instances differ clearly (and none is grey, black or white)."""
    hues = (0.6 + np.arange(count) * 0.6180339887498949) % 1.0
    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb(float(h), 0.85, 1.0)] for h in hues],
                    np.uint8).reshape(count, 3)


@dataclass(frozen=True)
class _Taps:
    """Bilinear sampling along one axis of a mask grid at the centres of an image's pixels: pixel
    i reads grid pixels `low[i]` and `high[i]` with weights 1 − `frac[i]` and `frac[i]`, where
    `inside[i]` (its centre within the input; elsewhere the preparation cropped it away)."""

    low: np.ndarray
    high: np.ndarray
    frac: np.ndarray
    inside: np.ndarray


def _taps(image_pixels: int, scale: float, offset: float, input_pixels: int, mask_pixels: int) -> _Taps:
    """The taps along one axis, through input = image · scale + offset and mask = input /
    (input_pixels / mask_pixels) − ½, clamped at the grid's edges."""
    at_input = (np.arange(image_pixels) + 0.5) * scale + offset
    at_mask = np.clip(at_input * (mask_pixels / input_pixels) - 0.5, 0.0, mask_pixels - 1)
    low = np.floor(at_mask).astype(np.int64)
    return _Taps(low, np.minimum(low + 1, mask_pixels - 1), at_mask - low,
                 (at_input >= 0) & (at_input < input_pixels))


def _span(taps: _Taps, hot: np.ndarray) -> slice | None:
    """The image pixels (a span) whose taps reach a `hot` grid pixel, or None."""
    found = np.flatnonzero(taps.inside & (hot[taps.low] | hot[taps.high]))
    return slice(int(found[0]), int(found[-1]) + 1) if found.size else None


def paint_instances(photo: np.ndarray, masks: np.ndarray, scores: np.ndarray | None, placement: Placement,
                    input_size: tuple[int, int]) -> tuple[np.ndarray, list[int]]:
    """Blend instance masks onto `photo` (`[height, width, 3]` uint8, the image at its own size).

    `masks` `[D, h, w]` holds one probability map per detection row on a grid that covers the
    input of (H, W) `input_size`; `scores` `[D]` are the rows' scores (None when the detection
    rows are not at hand: then every row counts, in its order, the best first). Each image pixel
    centre is mapped through `placement` into the input, and on into the grid (pixel (i, j) has
    its centre at ((j + ½)·W/w, (i + ½)·H/h) input pixels), where the mask is sampled bilinearly,
    clamped at the grid's edges (0 outside the input). Row d covers the pixels where that exceeds
    ½ and is blended there in `instance_colours` colour d, with weight `INSTANCE_ALPHA`; rows with
    a negative (padding) or non-finite score, or covering no pixel, are left out. The lowest
    score is painted first, so the best lies on top. Returns the picture (uint8) and the rows
    painted, in painting order.
    """
    height, width = photo.shape[:2]
    count, mask_h, mask_w = masks.shape
    input_h, input_w = input_size
    down = _taps(height, placement.scale[1], placement.offset[1], input_h, mask_h)
    across = _taps(width, placement.scale[0], placement.offset[0], input_w, mask_w)
    rows = np.arange(count)
    if scores is None:
        order = rows[::-1]
    else:
        scores = np.asarray(scores, np.float64)
        with np.errstate(invalid="ignore"):
            kept = np.isfinite(scores) & (scores >= 0)
        order = np.lexsort((-rows, scores))  # ascending score; of equal ones, the later row first
        order = order[kept[order]]
    colours = instance_colours(count).astype(np.float32)
    picture = photo.astype(np.float32)  # photograph-sized: float32 keeps a large one affordable
    painted = []
    for d in order:
        mask = np.nan_to_num(np.asarray(masks[d], np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        # A bilinear sample is a weighted mean of its taps, so it exceeds ½ only where a tap does:
        # sample only the span of image rows and columns whose taps reach such mask rows and
        # columns (about the box, for a mask that is 0 outside it).
        ys, xs = _span(down, mask.max(axis=1) > 0.5), _span(across, mask.max(axis=0) > 0.5)
        if ys is None or xs is None:
            continue
        fy, fx = down.frac[ys, None], across.frac[xs]
        columns = mask[down.low[ys]] * (1.0 - fy) + mask[down.high[ys]] * fy  # [rows, w]
        probability = columns[:, across.low[xs]] * (1.0 - fx) + columns[:, across.high[xs]] * fx
        covered = (probability > 0.5) & down.inside[ys, None] & across.inside[None, xs]
        if not covered.any():
            continue
        patch = picture[ys, xs]  # a view: blended in place
        np.copyto(patch, patch * np.float32(1.0 - INSTANCE_ALPHA) + colours[d] * np.float32(INSTANCE_ALPHA),
                  where=covered[..., None])
        painted.append(int(d))
    return np.clip(np.rint(picture), 0, 255).astype(np.uint8), painted


def write_instances(graph: Graph, plan: MaskPlan, outputs: dict[str, np.ndarray], placement: Placement | None,
                    image_path: str, out_path: str) -> int:
    """Picture the instance masks of `plan` (first example) on the image at `image_path` at its
    own size (`placement`: where its pixels landed in the input; None: the default preparation's
    squash) with `paint_instances`; with the detection rows as an output, each painted instance's
    box and "class score" label are drawn too, in its colour. Write `out_path`; returns the number
    of instances painted."""
    Image, ImageDraw, _ = _pillow("--mask")
    image, placement, input_size = _photo(graph, image_path, placement, "--mask")
    rows = outputs[plan.detections][0].astype(np.float64) if plan.detections is not None else None
    picture, painted = paint_instances(np.asarray(image), outputs[plan.masks][0],
                                       rows[:, 4] if rows is not None else None, placement, input_size)
    image = Image.fromarray(picture)
    if rows is not None and plan.detections is not None:
        canvas = ImageDraw.Draw(image)
        pen = _pen(image.size)
        colours = instance_colours(len(rows))
        for d in painted:
            x1, y1, x2, y2, score, cls = rows[d, :6]
            if not np.all(np.isfinite((x1, y1, x2, y2, cls))):
                continue  # coloured, but no box to draw
            _draw_labelled_box(canvas, pen, (*placement.to_image(x1, y1), *placement.to_image(x2, y2)),
                               _rgb(colours[d]),
                               f"{_class_name(graph, plan.detections, int(cls))} {score:.2f}")
    _save(image, out_path, "--mask")
    return len(painted)


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
