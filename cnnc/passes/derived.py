"""Derived parameters: values a pass computes from the user's parameters (folded BN weights, …).

A pass never overwrites a user-visible parameter. It records a *derivation* — a rule name, the
parameters it reads and constant arguments — under a new name (`conv1.weight~bn`), and the
runtime computes it from the current user values whenever they change. So `net.params` keeps
the names and shapes of the source program, and loading new weights re-folds them.
"""
from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ir.graph import Graph, ParamSpec
from ..kernels.numpy_kernels import _winograd_f4x3
from ..names import unique


@dataclass(frozen=True)
class Derivation:
    rule: str
    inputs: tuple[str, ...]
    kwargs: tuple[tuple[str, object], ...] = ()


def _bn_scale(gamma, var, *, eps):
    return gamma / np.sqrt(var + eps)


def _bn_shift(gamma, beta, mean, var, *, eps):
    return beta - mean * gamma / np.sqrt(var + eps)


def _scale_out_channels(w, scale):
    """Scale axis 0 (conv OIHW and dense [out, in] weights): one factor per output channel."""
    return w * scale.reshape((-1,) + (1,) * (w.ndim - 1))


def _scale_transpose_out_channels(w, scale, *, groups):
    """conv_transpose weights [C, O/groups, kh, kw]: output channel g·O/groups + j sits at
    row block g, column j."""
    c, og, kh, kw = w.shape
    blocks = w.reshape(groups, c // groups, og, kh, kw) * scale.reshape(groups, 1, og, 1, 1)
    return blocks.reshape(c, og, kh, kw)


def _affine_bias(*values):
    """bias·scale + shift (or shift alone for a layer without bias)."""
    *bias, scale, shift = values
    return bias[0] * scale + shift if bias else shift


def _mul(a, b):
    return a * b


def _reshape(w, *, shape):
    return w.reshape(shape)


def _fill(*, shape, value):
    return np.full(shape, value)


def _winograd_weight(w):
    """conv weights [O, C, 3, 3] → Winograd F(4x4, 3x3) weights U = G g Gᵀ as [36, O, C]."""
    _, g, _ = _winograd_f4x3()
    o, c = w.shape[:2]
    return np.einsum("ai,ocij,bj->aboc", g, w, g, optimize=True).reshape(36, o, c)  # two GEMMs, not one loop


RULES: dict[str, Callable[..., np.ndarray]] = {
    "bn_scale": _bn_scale,
    "bn_shift": _bn_shift,
    "scale_out_channels": _scale_out_channels,
    "scale_transpose_out_channels": _scale_transpose_out_channels,
    "affine_bias": _affine_bias,
    "mul": _mul,
    "reshape": _reshape,
    "fill": _fill,
    "winograd_weight": _winograd_weight,
}


# Rules whose result has exactly the spec's shape: `derive` hands them `shape` itself.
_SHAPED_RULES = ("reshape", "fill")


def derive(graph: Graph, name: str, rule: str, inputs: tuple[str, ...], shape: tuple[int, ...],
           **kwargs: object) -> str:
    """Register a derived parameter (unique name) and return its name."""
    if rule not in RULES:
        raise KeyError(f"unknown derivation rule {rule!r}; rules: {', '.join(sorted(RULES))}")
    if rule in _SHAPED_RULES:  # their `shape=` cannot be passed here (it would clash with `shape`)
        kwargs["shape"] = tuple(shape)
    # Taken: the user's parameters, the nodes' current ones and every derivation (intermediates
    # too), so a derived name never shadows another value.
    name = unique(name, ChainMap[str, Any](graph.info.param_specs, graph.info.user_param_specs(), graph.info.derived))
    graph.info.derived[name] = Derivation(rule, tuple(inputs), tuple(sorted(kwargs.items())))
    graph.info.param_specs[name] = ParamSpec(tuple(shape), "derived")
    return name


# Rules that make one product of two float32 values per element, or none: a float32 product is
# correctly rounded, so it is bit for bit the float64 product rounded to float32 — and it skips
# converting every weight to float64 and back (most of ResNet-152's 0.5 s of folding).
_FLOAT32_EXACT = frozenset({"scale_out_channels", "scale_transpose_out_channels", "mul", "reshape"})


def materialize(graph: Graph, values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The parameters the graph's nodes read, computed from the user's `values` (float32): in
    float64, then rounded once, except the rules that are exact in float32 (_FLOAT32_EXACT)."""
    cache: dict[str, np.ndarray] = dict(values)
    for name, d in graph.info.derived.items():  # insertion order is dependency order
        dtype = np.float32 if d.rule in _FLOAT32_EXACT else np.float64
        args = [np.asarray(cache[i], dtype=dtype) for i in d.inputs]
        cache[name] = np.ascontiguousarray(RULES[d.rule](*args, **dict(d.kwargs)), dtype=np.float32)
    return {name: cache[name] for name in graph.info.param_specs}


def prune(graph: Graph) -> None:
    """Forget derivations (and specs) that no node reads any more, directly or indirectly."""
    read = {p for n in graph.nodes for p in graph.node(n).params.values()}
    needed = set(read)
    derived = graph.info.derived
    for name in reversed(list(derived)):
        if name in needed:
            needed.update(derived[name].inputs)
        else:
            del derived[name]
    for name in list(graph.info.param_specs):
        if name not in read:  # specs describe what nodes read; intermediates live in `derived` only
            del graph.info.param_specs[name]
