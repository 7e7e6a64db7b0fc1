"""The pass manager: pipelines per -O level, passes switched by name, IR dumps, verification.

A pass is a function `graph → changed?` registered with `@register(name, level)`; it rewrites
the graph in place (the manager hands it a clone) and states its preconditions in code.
After every pass the IR verifier runs; with `check_numerics=True` the optimized graph's outputs
are also compared with the un-optimized graph's on random inputs and weights, so a pass that
breaks numerics is caught at that pass.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import CnncError, CnncIRError
from ..ir.graph import Graph
from ..ir.verify import verify
from ..runtime.params import random_params
from .derived import materialize, prune

# The order passes run in; a level runs the passes whose level is at most it.
ORDER = ["eliminate_identity", "dense_to_conv", "fold_batch_norm", "fold_constants", "lower_pooling",
         "fuse_conv_bias_activation", "eliminate_common_subexpressions", "eliminate_dead_code",
         "plan_memory"]
DEFAULT_LEVEL = 2
NUMERIC_RTOL = 1e-4  # outputs must match the un-optimized graph within this, relative to their scale
NUMERIC_ATOL = 1e-6  # plus float32 rounding of values far larger than a tiny output (e.g. a relu near 0)


@dataclass(frozen=True)
class Pass:
    name: str
    run: Callable[[Graph], bool]
    level: int  # the lowest -O level that runs it; 0: only when asked for by name (dense_to_conv)
    summary: str


PASSES: dict[str, Pass] = {}


def register(name: str, level: int) -> Callable:
    """Decorator: make `function` the pass called `name`, run from -O`level` on."""
    def wrap(function: Callable[[Graph], bool]) -> Callable[[Graph], bool]:
        doc = (function.__doc__ or "").strip().splitlines()
        PASSES[name] = Pass(name, function, level, doc[0] if doc else "")
        return function
    return wrap


def pipeline(level: int = DEFAULT_LEVEL, passes: list[str] | None = None, disable: tuple[str, ...] = (),
             fcn: bool = False) -> list[str]:
    """The pass names to run, in order."""
    if level not in (0, 1, 2):
        raise CnncError(f"unknown optimization level -O{level} (use -O0, -O1 or -O2)", where="-O")
    for name in [*(passes or []), *disable]:
        if name not in PASSES:
            raise CnncError(f"unknown pass '{name}'; passes: {', '.join(n for n in ORDER if n in PASSES)}",
                            where="passes")
    if passes is not None:
        chosen = [n for n in ORDER if n in passes]
    else:
        chosen = [n for n in ORDER if n in PASSES and 0 < PASSES[n].level <= level]
        if fcn:
            chosen = [n for n in ORDER if n in chosen or n == "dense_to_conv"]
    return [n for n in chosen if n not in disable]


Observer = Callable[[str, Graph, bool], None]


def optimize(graph: Graph, level: int = DEFAULT_LEVEL, passes: list[str] | None = None,
             disable: tuple[str, ...] = (), fcn: bool = False, check_numerics: bool = False,
             observer: Observer | None = None, seed: int = 0) -> Graph:
    """A rewritten copy of `graph`. `graph` itself is never changed.

    `observer(name, graph, changed)` is called after each pass (for --print-after-all);
    `check_numerics` compares outputs with the original graph after every pass.
    """
    names = pipeline(level, passes, disable, fcn)
    result = graph.clone()
    result.graph.setdefault("user_params", dict(graph.graph["params"]))
    result.graph.setdefault("derived", {})
    result.graph["passes"] = []
    checker = NumericChecker(graph, seed) if check_numerics else None
    for name in names:
        changed = PASSES[name].run(result)
        prune(result)
        try:
            verify(result)
        except CnncIRError as error:
            raise CnncIRError(f"after pass {name}: {error.message}", where=error.where) from None
        result.graph["passes"].append(name)
        if checker is not None:
            checker.check(result, name)
        if observer is not None:
            observer(name, result, changed)
    return result


class NumericChecker:
    """Compares a rewritten graph's outputs with the original's on fixed random inputs and weights."""

    def __init__(self, original: Graph, seed: int = 0, batch: int = 2):
        from ..interpreter import eval_graph

        rng = np.random.default_rng(seed)
        self.values = random_params(original.graph["params"], rng)
        self.inputs = {n: rng.standard_normal(tuple(batch if isinstance(d, str) else d
                                                    for d in original.shape(n))).astype(np.float32)
                       for n in original.graph["inputs"]}
        self.expected = eval_graph(original, self.values, self.inputs)
        self.report: list[tuple[str, float]] = []

    def check(self, graph: Graph, after: str) -> float:
        from ..interpreter import eval_graph

        got = eval_graph(graph, materialize(graph, self.values), self.inputs)
        worst = 0.0
        for out, want in self.expected.items():
            if got[out].shape == want.shape + (1, 1):  # dense_to_conv: [N, O] is now [N, O, 1, 1]
                got[out] = got[out].reshape(want.shape)
            if got[out].shape != want.shape:
                raise CnncIRError(f"after pass {after}: output '{out}' has shape {got[out].shape}, "
                                  f"expected {want.shape}", where=after)
            scale = max(float(np.abs(want).max()), 1e-6)
            diff = float(np.abs(got[out].astype(np.float64) - want).max())
            worst = max(worst, diff / scale)
            if not diff <= NUMERIC_RTOL * scale + NUMERIC_ATOL:
                raise CnncIRError(f"after pass {after}: output '{out}' differs from the un-optimized graph "
                                  f"by {diff:.3g} (scale {scale:.3g})", where=after)
        self.report.append((after, worst))
        return worst
