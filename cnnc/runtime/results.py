"""Results of a run as rows other programs read: JSON Lines and CSV (`cnnc run --output`).

The schema (version 1; docs/cli.md states it for readers) has one row per example and output,
in the order the examples ran, plus one row per input file that could not be read:

- `path`: the input file as `--input` named or expanded it (null for a random input);
  `index`: the example's place within its file (0 for an image; row i of an .npy holding
  several); `batch`: the forward pass it ran in, from 0; `output`: the output's name;
  `kind`: what the row holds, one of
- `"classes"` (a classifier output `[N, classes]` from dense or softmax): `labels`, the top-k
  class indices best first, and `scores`, their probabilities (softmax of the logits unless the
  output is a softmax); `names`, their class names, when the output has a label set;
- `"detections"` (an output `[N, K, 6]` of rows x1, y1, x2, y2, score, class, as `nms` gives
  them, or an `nms` output whose rows carry more columns after these six): `boxes`
  `[[x1, y1, x2, y2], ...]`, `scores` and `labels`, padding rows (negative score) left out;
  coordinates in the input image's own pixels (the network input's pixels for an .npy or a
  random input);
- `"tensor"` (any other output): `shape` of one example's value, `min`, `max`, `mean`, `std`,
  and `values` (nested lists) when the value has at most `MAX_VALUES` elements;
- `"error"` (an input file that could not be read; `output` and `batch` null): `error`, why.

Numbers have six significant digits; a NaN or infinite value is null in JSON Lines and `nan`,
`inf` or `-inf` in CSV. CSV is the long form of the same rows, with the fixed `CSV_COLUMNS`:
one line per top-k class (`rank` 1, 2, ...) or per box, and one line with an empty `rank` for a
detection output without boxes, for a tensor output (its statistics and values are in JSON
Lines only) and for an error.
`jsonl_lines` and `csv_lines` turn rows into text; `ResultWriter` writes a file atomically.
"""
from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np

from ..errors import CnncInputError
from ..ir.graph import Graph
from ..ir.preprocess import Placement
from .files import atomic_write
from .report import class_probabilities, is_classifier, is_detections

SCHEMA_VERSION = 1
MAX_VALUES = 64  # a tensor output's example with at most this many elements is written out
CSV_COLUMNS = ("path", "index", "batch", "output", "kind", "rank", "label", "name", "score", "x1", "y1", "x2", "y2",
               "error")
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}

Row = dict[str, Any]


@dataclass(frozen=True)
class Source:
    """Where one example of a batch came from: the file (None for a random input), its place in
    the file, and for an image where its pixels landed in the input (detection boxes are mapped
    back to the image's own pixels through it)."""

    path: str | None
    index: int = 0
    placement: Placement | None = None


def result_format(path: str | Path) -> str:
    """"jsonl" or "csv", from the file's suffix; a CnncInputError for any other."""
    found = FORMATS.get(Path(path).suffix.lower())
    if found is None:
        raise CnncInputError("results are written as JSON Lines (.jsonl) or CSV (.csv); "
                             "for the raw output arrays use --save-output out.npz", where=str(path))
    return found


def output_kinds(graph: Graph) -> dict[str, str]:
    """Each output's row kind: "classes", "detections" or "tensor" (see the module docstring)."""
    kinds = {}
    for out, node in graph.info.outputs.items():
        if is_classifier(graph, node):
            kinds[out] = "classes"
        elif is_detections(graph, node):
            kinds[out] = "detections"
        else:
            kinds[out] = "tensor"
    return kinds


def _number(value: Any) -> float | None:
    number = float(value)
    return float(f"{number:.6g}") if math.isfinite(number) else None


def _numbers(values: Iterable[Any]) -> list[float | None]:
    return [_number(v) for v in values]


def _nested(value: np.ndarray) -> Any:
    if value.ndim == 0:
        return _number(value)
    return [_nested(v) for v in value]


def prediction_rows(graph: Graph, outputs: Mapping[str, np.ndarray], sources: Sequence[Source], batch: int,
                    top: int = 5) -> list[Row]:
    """The rows of one forward pass: example by example (`sources[i]` is example i), output by
    output. Examples beyond `len(sources)` (the padding of a fixed-size batch) are left out."""
    kinds = output_kinds(graph)
    probabilities = {out: class_probabilities(graph, graph.info.outputs[out], np.asarray(value, dtype=np.float64))
                     for out, value in outputs.items() if kinds[out] == "classes"}  # the whole batch at once
    rows = []
    for example, source in enumerate(sources):
        for out, value in outputs.items():
            row: Row = {"path": source.path, "index": source.index, "batch": batch, "output": out,
                        "kind": kinds[out]}
            one = np.asarray(value[example])
            if kinds[out] == "classes":
                probs = probabilities[out][example]
                best = np.argsort(-probs, kind="stable")[:top]
                row["labels"] = [int(c) for c in best]
                row["scores"] = _numbers(probs[best])
                if out in graph.info.labels:
                    row["names"] = [graph.info.labels[out][c] for c in best]
            elif kinds[out] == "detections":
                row.update(_detections(one, source.placement))
                names = graph.info.labels.get(out)
                if names is not None:
                    row["names"] = [names[c] if c is not None and 0 <= c < len(names) else None
                                    for c in row["labels"]]
            else:
                with np.errstate(all="ignore"):
                    row.update(shape=list(one.shape), min=_number(one.min()) if one.size else None,
                               max=_number(one.max()) if one.size else None,
                               mean=_number(one.mean(dtype=np.float64)) if one.size else None,
                               std=_number(one.std(dtype=np.float64)) if one.size else None)
                if one.size <= MAX_VALUES:
                    row["values"] = _nested(one)
            rows.append(row)
    return rows


def _detections(rows: np.ndarray, placement: Placement | None) -> Row:
    def point(x: float, y: float) -> tuple[float, float]:
        return placement.to_image(x, y) if placement is not None else (x, y)

    boxes, scores, labels = [], [], []
    for x1, y1, x2, y2, score, cls in rows[:, :6].astype(np.float64):  # carried columns are not listed
        if not score >= 0:  # padding (score -1); NaN is no detection either
            continue
        boxes.append(_numbers((*point(x1, y1), *point(x2, y2))))
        scores.append(_number(score))
        labels.append(int(cls) if math.isfinite(cls) else None)
    return {"boxes": boxes, "scores": scores, "labels": labels}


def error_row(path: str, reason: str) -> Row:
    """The row of an input file that could not be read."""
    return {"path": path, "index": None, "batch": None, "output": None, "kind": "error", "error": reason}


# ---- serialization ------------------------------------------------------------------------------

def jsonl_lines(rows: Iterable[Row]) -> Iterator[str]:
    """One JSON object per row, each line ending in a newline (non-finite numbers are null already)."""
    for row in rows:
        yield json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _csv_records(row: Row) -> Iterator[dict[str, Any]]:
    """The CSV lines of one row, as column → value (missing columns are empty)."""
    base = {key: row.get(key) for key in ("path", "index", "batch", "output", "kind")}
    kind = row["kind"]
    if kind == "classes":
        names = row.get("names") or [None] * len(row["labels"])
        for rank, (label, name, score) in enumerate(zip(row["labels"], names, row["scores"]), 1):
            yield {**base, "rank": rank, "label": label, "name": name, "score": _nan(score)}
    elif kind == "detections" and row["boxes"]:
        names = row.get("names") or [None] * len(row["labels"])
        for rank, (box, score, label, name) in enumerate(zip(row["boxes"], row["scores"], row["labels"], names), 1):
            yield {**base, "rank": rank, "label": label, "name": name, "score": _nan(score),
                   **{key: _nan(v) for key, v in zip(("x1", "y1", "x2", "y2"), box)}}
    elif kind == "error":
        yield {**base, "error": row["error"]}
    else:
        yield base


def _nan(value: float | None) -> float:
    """CSV has no null number: a non-finite value (null in the row) is written `nan`."""
    return math.nan if value is None else value


def csv_lines(rows: Iterable[Row], header: bool = True) -> Iterator[str]:
    """The rows in CSV's long form (module docstring), `CSV_COLUMNS` first when `header`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def take(cells: Sequence[Any]) -> str:
        writer.writerow(cells)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    if header:
        yield take(CSV_COLUMNS)
    for row in rows:
        for record in _csv_records(row):
            yield take([_cell(record.get(column)) for column in CSV_COLUMNS])


class ResultWriter:
    """Rows into a .jsonl or .csv file, written atomically: the file appears (or replaces the
    old one) only when the writer closes without an error.

        with ResultWriter("preds.jsonl") as out:
            out.write(rows)
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.format = result_format(path)
        self.rows = 0
        self._context: Any = None
        self._handle: IO[str] | None = None

    def __enter__(self) -> ResultWriter:
        self._context = atomic_write(self.path, "w")
        self._handle = self._context.__enter__()
        if self.format == "csv":
            self._handle.writelines(csv_lines((), header=True))
        return self

    def write(self, rows: Iterable[Row]) -> None:
        assert self._handle is not None, "use ResultWriter as a context manager"
        rows = list(rows)
        self._handle.writelines(jsonl_lines(rows) if self.format == "jsonl" else csv_lines(rows, header=False))
        self.rows += len(rows)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> bool | None:
        context, self._context, self._handle = self._context, None, None
        return context.__exit__(kind, error, trace)


def write_results(path: str | Path, rows: Iterable[Row]) -> int:
    """Write `rows` to `path` (.jsonl or .csv) atomically; returns the number of rows."""
    with ResultWriter(path) as writer:
        writer.write(rows)
    return writer.rows


def read_results(path: str | Path) -> list[Row]:
    """The rows of a .jsonl results file (for tests and scripts; CSV readers have csv.DictReader)."""
    if result_format(path) != "jsonl":
        raise CnncInputError("read_results reads JSON Lines (.jsonl)", where=str(path))
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
