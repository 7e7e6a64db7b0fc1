"""Running a network over many input files, a batch at a time (`cnnc run --input imgs/`).

Files are read as the batches need them (a folder of 100,000 images is never in memory at
once); each file gives one example (an image) or several (an .npy array with a batch axis). A
file that cannot be read, or whose array does not fit the input, is reported by `on_failure`
and left out, and the run goes on (one file named alone on the command line is read with
`read_examples`, whose error stops the run, as it always did).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import CnncInputError
from ..ir.preprocess import Step
from ..ir.shapes import fmt
from .inputs import load_input_sized
from .results import Source

Outputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class Example:
    array: np.ndarray  # [1, ...]: one example, with its batch axis
    source: Source


@dataclass
class RunStats:
    files: int = 0  # files read successfully
    failed: int = 0  # files left out
    examples: int = 0  # examples run
    batches: int = 0
    seconds: float = 0.0  # reading and running, from the first file to the last batch

    @property
    def rate(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else 0.0


def fits(array: np.ndarray, shape: tuple) -> bool:
    """Whether `array` (with its batch axis) fits the declared input `shape` but for the batch."""
    return array.ndim == len(shape) and all(isinstance(d, str) or d == s
                                             for d, s in zip(shape[1:], array.shape[1:]))


def read_examples(path: str, shape: tuple, steps: tuple[Step, ...] | None = None) -> list[Example]:
    """The examples of one file (an image prepared by `steps`), or a CnncInputError naming the
    file and the problem."""
    array, size = load_input_sized(path, shape, steps)
    if not fits(array, shape):
        raise CnncInputError(f"the input expects {fmt(shape)}, the file holds {fmt(array.shape)}", where=path)
    if array.shape[0] == 0:
        raise CnncInputError("the array holds no examples (its batch axis is 0)", where=path)
    return [Example(array[i:i + 1], Source(path, i, size)) for i in range(array.shape[0])]


def iter_examples(files: Sequence[str], shape: tuple, stats: RunStats,
                  on_failure: Callable[[str, str], None], steps: tuple[Step, ...] | None = None) -> Iterator[Example]:
    """The examples of every file in order; a bad file is counted in `stats.failed` and goes to
    `on_failure(path, reason)`, a good one is counted in `stats.files`."""
    for path in files:
        try:
            examples = read_examples(path, shape, steps)
        except CnncInputError as error:
            stats.failed += 1
            on_failure(path, error.message)
            continue
        stats.files += 1
        yield from examples


def run_batches(run: Callable[..., Outputs], input_name: str, shape: tuple, examples: Iterable[Example],
                batch: int, on_batch: Callable[[int, list[Source], Outputs], None],
                stats: RunStats | None = None) -> RunStats:
    """Run `run(**{input_name: x})` over the examples, `batch` at a time, in order.

    `on_batch(index, sources, outputs)` gets each pass's outputs; when the input's batch
    dimension is fixed (`[1, 3, 224, 224]`) every pass has that size, the last one padded with
    zeros, and `sources` is then shorter than the outputs (the padding's results are to be
    ignored). Returns `stats` (a new RunStats by default) with the examples, batches and time."""
    fixed = None if isinstance(shape[0], str) else int(shape[0])
    size = fixed or batch
    stats = RunStats() if stats is None else stats
    start = time.perf_counter()
    pending: list[Example] = []

    def flush() -> None:
        arrays = [example.array for example in pending]
        if fixed is not None and len(arrays) < fixed:
            arrays.append(np.zeros((fixed - len(arrays), *arrays[0].shape[1:]), np.float32))
        outputs = run(**{input_name: np.concatenate(arrays) if len(arrays) > 1 else arrays[0]})
        on_batch(stats.batches, [example.source for example in pending], outputs)
        stats.batches += 1
        stats.examples += len(pending)
        pending.clear()

    for example in examples:
        pending.append(example)
        if len(pending) == size:
            flush()
    if pending:
        flush()
    stats.seconds += time.perf_counter() - start
    return stats
