"""`--verify`'s per-pass table: what each pass changed and how far it moved the outputs.

The pass manager verifies the IR after every pass; `--verify` also compares the outputs after
every pass with the un-optimized graph's, both evaluated by the reference interpreter on the
same random input (batch 2) and random parameters (`NumericChecker`). `VerifyTable` is the
observer that runs that comparison and prints one row per pass as it finishes (a long compile
shows its progress: the comparison, one interpreter run per pass, is most of its time), then
a closing line; a pass that moves an output beyond the tolerance
stops the compile with an error naming it, after its row.
"""
from __future__ import annotations

import sys
import time
from typing import IO

from ..ir.graph import Graph
from ..passes.manager import NUMERIC_ATOL, NUMERIC_RTOL, NumericChecker

_HEADER = f"{'pass':<32} {'changed':>7} {'nodes':>6} {'max rel diff':>13} {'check ms':>9}"


class VerifyTable:
    """An observer for `build_graph(observer=...)`: checks and prints each pass (see above)."""

    def __init__(self, original: Graph, stream: IO[str] | None = None, seed: int = 0):
        self.stream = stream if stream is not None else sys.stderr
        start = time.perf_counter()
        self.checker = NumericChecker(original, seed)
        self.reference_ms = (time.perf_counter() - start) * 1000
        self.nodes = len(original)
        self.rows: list[tuple[str, bool, int, float, float]] = []
        inputs = ", ".join(f"{name} {list(value.shape)}" for name, value in self.checker.inputs.items())
        self._print(f"verify: each pass's IR is verified and its outputs are compared with the un-optimized "
                    f"graph's ({self.nodes} nodes), both run by the reference interpreter on a random input "
                    f"({inputs}) and random parameters; tolerance {NUMERIC_RTOL:g} of each output's largest "
                    f"magnitude (+{NUMERIC_ATOL:g})")
        self._print(_HEADER)

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def __call__(self, name: str, graph: Graph, changed: bool) -> None:
        start = time.perf_counter()
        try:
            worst = self.checker.check(graph, name)
        except Exception:
            self._print(f"{name:<32} {'yes' if changed else 'no':>7} {len(graph):>6} {'FAILED':>13} "
                        f"{(time.perf_counter() - start) * 1000:>9.0f}")
            raise
        ms = (time.perf_counter() - start) * 1000
        self.rows.append((name, changed, len(graph), worst, ms))
        self._print(f"{name:<32} {'yes' if changed else 'no':>7} {len(graph):>6} {worst:>13.2e} {ms:>9.0f}")

    def finish(self) -> None:
        """The closing line (after the last pass)."""
        if not self.rows:
            self._print("verify: no pass ran, nothing to compare")
            return
        name, _, nodes, worst, _ = max(self.rows, key=lambda row: row[3])
        changed = sum(1 for row in self.rows if row[1])
        self._print(f"verify: ok — {len(self.rows)} passes ({changed} changed the graph), {self.nodes} → "
                    f"{self.rows[-1][2]} nodes; largest difference {worst:.2e} of the output scale "
                    f"(after {name}); the reference run took {self.reference_ms:.0f} ms")
