"""The pass manager: the pass registry, its order, pipelines per -O level, IR checks after each pass.

A pass is a function `graph → changed?` in a module of this package; it rewrites the graph in
place (the manager hands it a clone) and states its preconditions in code. It registers itself,
and everything the manager knows about it, in one decorator:

    @register("fold_batch_norm", level=2, after=("dense_to_conv",))

`level` is the lowest -O level that runs it (0: only when asked for by name, `passes=` or
`enable=`). `after` (and `before`) name the passes it must run after (before); the pipeline order
is the one order that satisfies every constraint, and `pass_order` refuses constraints that name
no registered pass, form a cycle, or leave two passes free to run either way — so a new pass
cannot land in an order nobody chose. The package imports each of its modules (see __init__.py),
so a pass file registers its passes by existing.

After every pass the IR verifier runs; with `check_numerics=True` the optimized graph's outputs
are also compared with the un-optimized graph's on random inputs and weights, so a pass that
breaks numerics is caught at that pass.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import networkx as nx
import numpy as np

from ..errors import CnncError, CnncIRError
from ..ir.graph import Graph
from ..ir.verify import verify
from ..runtime.params import random_params
from .derived import materialize, prune

LEVELS = (0, 1, 2)
DEFAULT_LEVEL = 2
NUMERIC_RTOL = 1e-4  # outputs must match the un-optimized graph within this, relative to their scale
NUMERIC_ATOL = 1e-6  # plus float32 rounding of values far larger than a tiny output (e.g. a relu near 0)

PassFunction = Callable[[Graph], bool]


@dataclass(frozen=True)
class Pass:
    """A registered pass and its place in the pipeline (see the module docstring)."""
    name: str
    run: PassFunction
    level: int  # the lowest -O level that runs it; 0: only when asked for by name
    after: tuple[str, ...] = ()  # passes that must run before this one
    before: tuple[str, ...] = ()  # passes that must run after this one


PASSES: dict[str, Pass] = {}


def register(name: str, level: int, after: tuple[str, ...] = (),
             before: tuple[str, ...] = ()) -> Callable[[PassFunction], PassFunction]:
    """Decorator: make the function the pass `name`, run from -O`level` on, after/before the named passes."""
    if level not in LEVELS:
        raise ValueError(f"pass '{name}': level {level} is not one of {LEVELS}")

    def wrap(function: PassFunction) -> PassFunction:
        if name in PASSES:  # two passes with one name: the later would silently replace the earlier
            raise ValueError(f"pass '{name}' is registered twice")
        PASSES[name] = Pass(name, function, level, tuple(after), tuple(before))
        return function
    return wrap


def order_passes(passes: Mapping[str, Pass]) -> list[str]:
    """The one order of `passes` that runs each after its `after` and before its `before` passes.

    Raises ValueError, naming the passes, when a constraint names an unregistered pass, when the
    constraints form a cycle, or when they leave two passes unordered (a topological order is
    unique exactly when each pass is constrained to follow the one before it).
    """
    constraints = _constraint_graph(passes)
    try:
        order = list(nx.topological_sort(constraints))
    except nx.NetworkXUnfeasible:
        cycle = [edge[0] for edge in nx.find_cycle(constraints)]
        raise ValueError(f"pass order constraints form a cycle: {' → '.join([*cycle, cycle[0]])}") from None
    for first, second in zip(order, order[1:]):
        if not constraints.has_edge(first, second):
            raise ValueError(f"passes '{first}' and '{second}' may run in either order: give one of them "
                             f"after= or before= naming the other")
    return order


def _constraint_graph(passes: Mapping[str, Pass]) -> nx.DiGraph:
    """An edge a → b for every 'a runs before b' that a registration states."""
    constraints = nx.DiGraph()
    constraints.add_nodes_from(passes)
    for p in passes.values():
        for other in (*p.after, *p.before):
            if other not in passes:
                raise ValueError(f"pass '{p.name}' is ordered against '{other}', which is no registered pass "
                                 f"(registered: {', '.join(sorted(passes))})")
        constraints.add_edges_from((other, p.name) for other in p.after)
        constraints.add_edges_from((p.name, other) for other in p.before)
    return constraints


def pass_order() -> list[str]:
    """Every registered pass, in the order pipelines run them."""
    return order_passes(PASSES)


def pipeline(level: int = DEFAULT_LEVEL, passes: list[str] | None = None, disable: tuple[str, ...] = (),
             enable: tuple[str, ...] = ()) -> list[str]:
    """The pass names to run, in order.

    `passes` names exactly the passes to run; otherwise the level's passes run, plus those
    `enable` names (level-0 passes, say). `disable` then removes passes either way.
    """
    if level not in LEVELS:
        raise CnncError(f"unknown optimization level -O{level} (use -O0, -O1 or -O2)", where="-O")
    order = pass_order()
    for name in [*(passes or []), *disable, *enable]:
        if name not in PASSES:
            close = difflib.get_close_matches(name, order, n=1)  # as the language's names do
            listed = f"passes: {', '.join(order)}"
            hint = f"did you mean '{close[0]}'? ({listed})" if close else listed
            raise CnncError(f"unknown pass '{name}'; {hint}", where="passes")
    if passes is not None:
        chosen = set(passes)
    else:
        chosen = {n for n in order if 0 < PASSES[n].level <= level} | set(enable)
    return [n for n in order if n in chosen and n not in disable]


Observer = Callable[[str, Graph, bool], None]


def optimize(graph: Graph, level: int = DEFAULT_LEVEL, passes: list[str] | None = None,
             disable: tuple[str, ...] = (), enable: tuple[str, ...] = (), check_numerics: bool = False,
             observer: Observer | None = None, seed: int = 0) -> Graph:
    """A rewritten copy of `graph`. `graph` itself is never changed.

    The passes are `pipeline(level, passes, disable, enable)`. `observer(name, graph, changed)` is
    called after each pass (for --print-after-all); `check_numerics` compares outputs with the
    original graph after every pass.
    """
    names = pipeline(level, passes, disable, enable)
    result = graph.clone()
    if result.info.user_params is None:  # what the user supplies, before any pass derives more
        result.info.user_params = dict(graph.info.param_specs)
    result.info.passes_run = []
    checker = NumericChecker(graph, seed) if check_numerics else None
    quiet: list[str] = []  # passes run since the last verification that said they changed nothing
    for name in names:
        changed = PASSES[name].run(result)
        prune(result)
        # A pass that changed nothing leaves the graph it was given, already verified (verifying
        # after every pass was half of -O2's time on ResNet-152); the final graph is verified
        # whatever the passes said, naming those that claimed no change.
        if changed or name == names[-1] or checker is not None:
            culprits = [name] if changed else [*quiet, name]
            try:
                verify(result)
            except CnncIRError as error:
                raise CnncIRError(f"after pass {', '.join(culprits)}: {error.message}", where=error.where) from None
            quiet = []
        else:
            quiet.append(name)
        result.info.passes_run.append(name)
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
        self.values = random_params(original.info.param_specs, rng)
        self.inputs = {n: rng.standard_normal(tuple(batch if isinstance(d, str) else d
                                                    for d in original.shape(n))).astype(np.float32)
                       for n in original.info.inputs}
        self.expected = eval_graph(original, self.values, self.inputs)
        self.report: list[tuple[str, float]] = []

    def check(self, graph: Graph, after: str) -> float:
        from ..interpreter import eval_graph

        got = eval_graph(graph, materialize(graph, self.values), self.inputs)
        worst = 0.0
        for out, want in self.expected.items():
            if got[out].shape == want.shape + (1, 1):  # a pass may lift [N, O] to [N, O, 1, 1] (FCN)
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
