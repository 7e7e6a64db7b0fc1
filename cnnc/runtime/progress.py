"""A one-line progress bar on standard error for long runs (`cnnc run --input imgs/`), and a
one-line status note while a single long step runs (`Status`).

Plain text, no dependency: it is drawn only when the stream is a terminal (never into a log or a
pipe) and only once the run has taken `delay` seconds, redrawn at most every `interval` seconds
with `\\r`, and erased when the run ends or something else is printed (`clear`).
"""
from __future__ import annotations

import shutil
import sys
import time
from typing import IO


class Progress:
    def __init__(self, total: int, unit: str = "images", stream: IO[str] | None = None,
                 enabled: bool | None = None, delay: float = 1.0, interval: float = 0.2):
        self.total = total
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _is_terminal(self.stream) if enabled is None else enabled
        self.delay = delay
        self.interval = interval
        self.done = 0  # inputs (files) finished, out of `total`
        self.examples = 0  # examples run, for the rate
        self.start = time.perf_counter()
        self._drawn_at = -1.0
        self._width = 0  # characters of the line on screen now (0: nothing drawn)

    def advance(self, inputs: int = 0, examples: int = 0) -> None:
        self.done += inputs
        self.examples += examples
        now = time.perf_counter()
        if self.enabled and now - self.start >= self.delay and now - self._drawn_at >= self.interval:
            self.draw(now)

    def line(self, now: float | None = None) -> str:
        elapsed = (time.perf_counter() if now is None else now) - self.start
        rate = self.examples / elapsed if elapsed > 0 else 0.0
        fraction = self.done / self.total if self.total else 1.0
        bar_width = 24
        filled = round(fraction * bar_width)
        eta = ""
        if 0 < self.done < self.total and elapsed > 0:
            eta = f"  ETA {_clock(elapsed * (self.total - self.done) / self.done)}"
        return (f"[{'#' * filled}{'.' * (bar_width - filled)}] {self.done}/{self.total} files  "
                f"{rate:.1f} {self.unit}/s  {_clock(elapsed)}{eta}")

    def draw(self, now: float | None = None) -> None:
        columns = shutil.get_terminal_size((80, 24)).columns
        text = self.line(now)[:max(columns - 1, 10)]
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)
        self._drawn_at = time.perf_counter() if now is None else now

    def clear(self) -> None:
        """Erase the line (before other output), to be redrawn on the next `advance`."""
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0
            self._drawn_at = -1.0

    def close(self) -> None:
        self.clear()


class Status:
    """A one-line note on a terminal's standard error while a long step runs (erased after):

        with Status("compiled in 2.1 s; running 8 examples ..."):
            outputs = net.run(x)
    """

    def __init__(self, text: str, stream: IO[str] | None = None, enabled: bool | None = None):
        self.text = text
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _is_terminal(self.stream) if enabled is None else enabled

    def __enter__(self) -> Status:
        if self.enabled:
            self.stream.write(self.text)
            self.stream.flush()
        return self

    def __exit__(self, *_: object) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * len(self.text) + "\r")
            self.stream.flush()


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
