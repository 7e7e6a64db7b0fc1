"""The `prepare` clause: its steps' calls bound to `Step`s (cnnc/ir/preprocess.py), with precise errors.

    input image: [N, 3, 224, 224] prepare resize(256) |> center_crop |> normalize(imagenet)

Each step is a call in the language's own syntax, so its arguments are expressions (constants
of the file work: `resize(side)`), and the command line's `--prepare` text goes through the same
binder (`preparation_from_text`).
"""
from __future__ import annotations

import difflib
import math
from collections.abc import Callable

from ..errors import CnncTypeError
from ..ir import preprocess as pp
from ..source import SourceFile, Span
from ..syntax import tree as t
from .values import Symbol, describe

PRESETS = {"imagenet": (pp.IMAGENET_MEAN, pp.IMAGENET_STD)}
# step → its arguments in positional order
ARGUMENTS = {"resize": ("size",), "center_crop": ("size",), "letterbox": ("fill",), "scale": ("factor",),
             "normalize": ("preset", "mean", "std"), "bgr": ()}

Evaluate = Callable[[t.Expr], object]


def bind_steps(calls: tuple[t.Call, ...], shape: tuple, evaluate: Evaluate, where: Span) -> tuple[pp.Step, ...]:
    """The steps of `calls` for an input of `shape`, checked as a whole (cnnc.ir.preprocess.check)."""
    steps = tuple(_step(call, evaluate) for call in calls)
    problem = pp.check(steps, shape)
    if problem is not None:
        index, message = problem
        raise CnncTypeError(f"prepare: {message}", calls[index].span if calls else where)
    return steps


def preparation_from_text(text: str, shape: tuple, option: str = "--prepare") -> tuple[pp.Step, ...]:
    """Steps from command-line text (`resize(256) |> center_crop`); errors point into the text."""
    from ..syntax.parser import parse_preparation

    source = SourceFile(option, text, None)
    calls = parse_preparation(source)

    from .elaborate import Elaborator  # elaborate imports this module

    elaborator = Elaborator()  # the language's own evaluation, with no names bound: words stay words

    def evaluate(node: t.Expr) -> object:
        return elaborator.eval(node, {})

    return bind_steps(calls, shape, evaluate, calls[0].span if calls else Span(source, 1, 1, 1, 1))


def _step(call: t.Call, evaluate: Evaluate) -> pp.Step:
    if call.func not in ARGUMENTS:
        close = difflib.get_close_matches(call.func, list(ARGUMENTS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise CnncTypeError(f"unknown preparation step '{call.func}'{hint} (the steps: {', '.join(ARGUMENTS)})",
                            call.func_span)
    names = ARGUMENTS[call.func]
    given: dict[str, tuple[object, Span]] = {}
    positional = [arg for arg in call.args if arg.name is None]
    if len(positional) > (1 if names else 0):
        raise CnncTypeError(f"{call.func} takes {'one argument' if names else 'no arguments'}, "
                            f"got {len(positional)}", positional[-1].span)
    for arg in call.args:
        name = names[0] if arg.name is None else arg.name
        if name not in names:
            raise CnncTypeError(f"{call.func} has no argument '{arg.name}' (its arguments: "
                                f"{', '.join(names) or 'none'})", arg.span)
        if name in given:
            raise CnncTypeError(f"{call.func}: argument '{name}' is given twice", arg.span)
        given[name] = (evaluate(arg.value), arg.span)
    try:
        return _build(call.func, {k: v for k, (v, _) in given.items()})
    except ValueError as error:
        span = next((s for _, s in given.values()), call.span)
        raise CnncTypeError(f"{call.func}: {error}", span) from None


def _build(kind: str, args: dict[str, object]) -> pp.Step:
    if kind in ("resize", "center_crop"):
        if "size" not in args:
            if kind == "resize":
                raise ValueError("needs a size: the shorter side (resize(256)) or HxW (resize(224x224))")
            return pp.Step(kind)
        return pp.Step(kind, _size(args["size"]))
    if kind == "letterbox":
        return pp.Step(kind, fill=_number(args.get("fill", 0.5), "fill"))
    if kind == "scale":
        if "factor" not in args:
            raise ValueError("needs a factor, e.g. scale(255)")
        return pp.Step(kind, factor=_number(args["factor"], "factor"))
    if kind == "normalize":
        preset = args.get("preset")
        if preset is not None:
            if not isinstance(preset, Symbol) or preset.name not in PRESETS:
                raise ValueError(f"expected a preset ({', '.join(PRESETS)}) or mean=, std=, got {describe(preset)}")
            if "mean" in args or "std" in args:
                raise ValueError(f"give either the preset {preset.name} or mean= and std=")
            mean, std = PRESETS[preset.name]
            return pp.Step(kind, mean=mean, std=std, preset=preset.name)
        if "mean" not in args or "std" not in args:
            raise ValueError("needs a preset (normalize(imagenet)) or both mean= and std=")
        return pp.Step(kind, mean=_numbers(args["mean"], "mean"), std=_numbers(args["std"], "std"))
    return pp.Step(kind)


def _size(value: object) -> tuple[int, int] | int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                            for v in value):
        return int(value[0]), int(value[1])
    raise ValueError(f"expected a positive size (256) or HxW (224x224), got {describe(value)}")


def _number(value: object, name: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise ValueError(f"{name} must be a number, got {describe(value)}")


def _numbers(value: object, name: str) -> tuple[float, ...]:
    items = value if isinstance(value, tuple) else (value,)
    return tuple(_number(v, name) for v in items)
