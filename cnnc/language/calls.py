"""Binding call arguments to an op's or a block's parameters, with precise messages."""
from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import CnncError, CnncNameError, CnncTypeError
from ..source import Span
from ..syntax import tree as t
from .arguments import ArgError, to_float, to_int
from .layers import REQUIRED, LayerOp
from .values import Symbol, Tensor, describe

if TYPE_CHECKING:
    from .elaborate import Elaborator

Given = list[tuple[object, Span]]
Keywords = dict[str, tuple[object, Span]]


def _keyword_span(call: t.Call, name: str, fallback: Span) -> Span:
    """The whole `name=value` of a keyword argument (errors about the name point at the name)."""
    return next((arg.span for arg in call.args if arg.name == name), fallback)


def _unknown_keyword(owner: str, name: str, known: list[str], span: Span) -> CnncTypeError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    listing = ", ".join(known) if known else "none besides its input"
    return CnncTypeError(f"{owner} has no argument '{name}'{hint} (its arguments: {listing})", span)


def bind_layer_args(layer: LayerOp, call: t.Call, positional: Given, keywords: Keywords,
                    undefined: Callable[[str, Span], CnncError]) -> tuple[list[Tensor], dict]:
    """Split the call into tensor inputs and converted arguments for `layer`."""
    count = layer.inputs
    if count is None:
        count = next((i for i, (v, _) in enumerate(positional) if not isinstance(v, Tensor)), len(positional))
    inputs: list[Tensor] = []
    for value, span in positional[:count]:
        if isinstance(value, Symbol):
            raise undefined(value.name, span)
        if not isinstance(value, Tensor):
            raise CnncTypeError(f"{layer.name} expects a tensor input here, got {describe(value)}", span)
        inputs.append(value)
    if len(inputs) < max(count, 1):
        needed = "two tensors" if count == 2 else "an input tensor"
        raise CnncTypeError(f"{layer.name} needs {needed}: write `x |> {layer.name}(...)` or "
                            f"`{layer.name}(x, ...)`", call.span)
    rest = positional[count:]
    names = [spec.name for spec in layer.args]
    if len(rest) > len(layer.args):
        raise CnncTypeError(f"{layer.name} takes at most {len(layer.args)} argument(s) after its "
                            f"input(s) ({', '.join(names) or 'none'}), got {len(rest)}", rest[len(layer.args)][1])
    given = dict(zip(names, rest))
    for name, (value, span) in keywords.items():
        if name not in names:
            raise _unknown_keyword(layer.name, name, names, _keyword_span(call, name, span))
        if name in given:
            raise CnncTypeError(f"{layer.name}: argument '{name}' is given twice", _keyword_span(call, name, span))
        given[name] = (value, span)
    args = {}
    for spec in layer.args:
        if spec.name not in given:
            if spec.default is REQUIRED:
                raise CnncTypeError(f"{layer.name} needs argument '{spec.name}'", call.span)
            args[spec.name] = spec.default
            continue
        value, span = given[spec.name]
        try:
            args[spec.name] = spec.convert(value)
        except ArgError as error:
            raise CnncTypeError(f"{layer.name}: argument '{spec.name}': {error}", span) from None
    return inputs, args


_TYPES = ("int", "float", "bool", "tensor", "str")


def _check_type(type_name: str | None, value: object, param: str, span: Span) -> object:
    if isinstance(value, Symbol):
        # A bare word (`pad=valid`) passes through an untyped or `str` parameter to the op
        # that will interpret it; anywhere else it is an undefined name.
        if type_name is None:
            return value
        if type_name == "str":
            return value.name
        raise CnncNameError(f"undefined name '{value.name}'", span)
    try:
        if type_name == "int":
            return to_int(value)
        if type_name == "float":
            return to_float(value)
        if type_name == "bool" and not isinstance(value, bool):
            raise ArgError(f"expected true or false, got {describe(value)}")
        if type_name == "tensor" and not isinstance(value, Tensor):
            raise ArgError(f"expected a tensor, got {describe(value)}")
        if type_name == "str" and not isinstance(value, str):
            raise ArgError(f"expected a string, got {describe(value)}")
    except ArgError as error:
        raise CnncTypeError(f"parameter '{param}': {error}", span) from None
    return value


def check_block(definition: t.BlockDef) -> None:
    """Reject blocks that cannot mean what they say, at their definition."""
    block_params(definition)
    seen = set()
    for param in definition.params:
        if param.name in seen:
            raise CnncNameError(f"parameter '{param.name}' is declared twice", param.span)
        seen.add(param.name)
    returns = [i for i, s in enumerate(definition.body) if isinstance(s, t.Return)]
    if returns and returns[0] != len(definition.body) - 1:
        raise CnncError("statements after `return` would never run", definition.body[returns[0] + 1].span)


def block_params(definition: t.BlockDef) -> list[t.Param]:
    """The block's parameters; a block that declares no tensor parameter takes its input as `x`."""
    for param in definition.params:
        if param.type is not None and param.type not in _TYPES:
            raise CnncTypeError(f"unknown type '{param.type}' (types: {', '.join(_TYPES)})", param.span)
    if any(p.type == "tensor" for p in definition.params):
        return list(definition.params)
    clash = next((p for p in definition.params if p.name == "x"), None)
    if clash is not None:
        raise CnncTypeError("'x' is the block's input; declare it `x: tensor` or rename this parameter",
                            clash.span)
    return [t.Param(definition.span, "x", "tensor", None), *definition.params]


def bind_block_args(definition: t.BlockDef, call: t.Call, positional: Given, keywords: Keywords,
                    elaborator: Elaborator, module_env: dict) -> dict:
    """The block body's environment: module-level names plus the bound parameters."""
    params = block_params(definition)
    names = [p.name for p in params]
    if len(positional) > len(params):
        raise CnncTypeError(f"block '{definition.name}' takes {len(params)} argument(s) "
                            f"({', '.join(names)}), got {len(positional)}", positional[len(params)][1])
    given = dict(zip(names, positional))
    for name, (value, span) in keywords.items():
        if name not in names:
            raise _unknown_keyword(f"block '{definition.name}'", name, names, _keyword_span(call, name, span))
        if name in given:
            raise CnncTypeError(f"block '{definition.name}': argument '{name}' is given twice",
                                _keyword_span(call, name, span))
        given[name] = (value, span)
    # The body sees module-level constants and blocks, never the main program's tensors, so a
    # block means the same wherever it is called.
    local = {k: v for k, v in module_env.items() if not isinstance(v, Tensor)}
    for param in params:
        if param.name in given:
            value, span = given[param.name]
        elif param.default is not None:  # defaults may use earlier parameters: c: int = channels(x)
            value, span = elaborator.eval(param.default, local), param.default.span
        else:
            raise CnncTypeError(f"block '{definition.name}' needs argument '{param.name}'", call.span)
        local[param.name] = _check_type(param.type, value, param.name, span)
    return local
