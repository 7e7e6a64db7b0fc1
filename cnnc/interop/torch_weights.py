"""PyTorch state dicts in and out of a cnnc network, by name.

cnnc names parameters the way PyTorch names module paths (`layer1.0.conv1.weight`), so a
torchvision-style state dict maps onto a network written with the same layer names with one
renaming: batch norm's `weight, bias, running_mean, running_var` are cnnc's `gamma, beta, mean,
var`. Which modules are batch norms is read from the network itself (a layer with a `gamma`
parameter), never guessed from the state dict. `num_batches_tracked` (a training counter) is
skipped. Conv and dense weights share PyTorch's layouts (OIHW, `[out, in]`): nothing is
transposed.

torch is optional: the values may be torch tensors or NumPy arrays, and this module never
imports torch.

    import torch, torchvision, cnnc
    net = cnnc.compile("examples/resnet50.cnn")
    cnnc.load_torch_state_dict(net, torchvision.models.resnet50(weights="DEFAULT").state_dict())
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any, NamedTuple

import numpy as np

from ..errors import CnncParamError

# torch BatchNorm2d's state dict leaf -> cnnc's bn parameter role, and back.
BN_FROM_TORCH = {"weight": "gamma", "bias": "beta", "running_mean": "mean", "running_var": "var"}
BN_TO_TORCH = {role: leaf for leaf, role in BN_FROM_TORCH.items()}
SKIPPED_LEAVES = frozenset({"num_batches_tracked"})
SHOWN = 5  # names listed per kind of problem in an error message


class LoadResult(NamedTuple):
    """What `load_torch_state_dict(..., strict=False)` left out, in PyTorch's names (both lists
    are empty after a strict load). Shaped like the result of torch's `load_state_dict`."""

    missing_keys: list[str]
    unexpected_keys: list[str]


def load_torch_state_dict(net, state_dict: Mapping[str, object], strict: bool = True, *,
                          source: str = "torch state_dict") -> LoadResult:
    """Load a PyTorch (torchvision-style) state dict into `net`'s parameters, all or nothing.

    `net` is a compiled network (anything with a `.params` ParamStore) or a ParamStore. Keys are
    matched by name: `<module>.weight` / `.bias` as they are, batch norm's `weight, bias,
    running_mean, running_var` as `gamma, beta, mean, var`, a layer_scale's parameter `<layer>`
    as `<layer>.scale`; `num_batches_tracked` is ignored. A value whose shape differs from its
    parameter's only by trailing dimensions of size 1 is reshaped (a Linear's `[O, I]` into a
    1x1 conv's `[O, I, 1, 1]`, ConvNeXt's `[C, 1, 1]` layer scale into `[C]`).

    strict=True: every parameter of the network must be given and every key used, else nothing is
    loaded and a CnncParamError lists the first missing and unexpected names. strict=False loads
    the keys that match and keeps the other parameters' values; unexpected keys are ignored. In
    both modes a value whose shape does not fit its layer is an error and nothing is loaded.
    Returns the (missing_keys, unexpected_keys) that strict=False tolerated.
    """
    params = _param_store(net)
    specs = params.specs
    if not isinstance(state_dict, Mapping):
        raise CnncParamError(f"expected a mapping of names to tensors or arrays, got {type(state_dict).__name__}",
                             where=source)
    bn_layers = _bn_layers(specs)
    scale_layers = _scale_layers(specs)

    values: dict[str, np.ndarray] = {}
    unexpected: list[str] = []
    wrong_shape: list[str] = []
    given = set()  # cnnc names the state dict has a value for (a fitting one or not)
    for key, value in state_dict.items():
        if not isinstance(key, str):
            unexpected.append(repr(key))
            continue
        module, _, leaf = key.rpartition(".")
        if leaf in SKIPPED_LEAVES:
            continue
        name = f"{key}.scale" if key in scale_layers else _cnnc_name(module, leaf, bn_layers)
        if name is None or name not in specs:
            unexpected.append(key)
            continue
        given.add(name)
        array = _to_numpy(value, key, source)
        expected = tuple(specs[name].shape)
        if array.shape != expected and _same_but_trailing_ones(array.shape, expected):
            array = array.reshape(expected)  # a Linear [O, I] into a 1x1 conv, a [C, 1, 1] scale into [C]
        if array.shape != expected:
            alias = f" (cnnc '{name}')" if name != key else ""
            wrong_shape.append(f"'{key}'{alias} is {_fmt(array.shape)}, layer '{module}' expects {_fmt(expected)}")
            continue
        values[name] = array
    missing = [_torch_name(name, bn_layers, scale_layers) for name in specs if name not in given]

    problems = []
    if strict and missing:
        problems.append(_listing(f"missing {_count(len(missing), 'key')}", missing,
                                 lambda k: f"'{k}' (layer '{k.rpartition('.')[0]}')"))
    if strict and unexpected:
        expected_keys = [_torch_name(name, bn_layers, scale_layers) for name in specs]
        problems.append(_listing(f"unexpected {_count(len(unexpected), 'key')}", unexpected,
                                 lambda k: f"'{k}'" + _suggestion(k, expected_keys)))
    if wrong_shape:
        problems.append(_listing(f"{_count(len(wrong_shape), 'shape mismatch', 'shape mismatches')}", wrong_shape,
                                 str))
    if problems:
        raise CnncParamError("the state dict does not fit the network; nothing was loaded\n"
                             + "\n".join("  " + p for p in problems), where=source)

    merged = {name: values.get(name, params[name]) for name in specs}
    params.update_from(merged, source)  # validates everything again before anything changes
    return LoadResult(missing if not strict else [], unexpected if not strict else [])


def state_dict_from(net) -> dict[str, np.ndarray]:
    """The network's parameters under PyTorch's names (the inverse of `load_torch_state_dict`):
    float32 NumPy arrays, batch norm's `gamma, beta, mean, var` as `weight, bias, running_mean,
    running_var`. For torch: `model.load_state_dict({k: torch.from_numpy(v) for k, v in ...})`
    (torch fills in BN's `num_batches_tracked` itself)."""
    params = _param_store(net)
    bn_layers, scale_layers = _bn_layers(params.specs), _scale_layers(params.specs)
    return {_torch_name(name, bn_layers, scale_layers): np.array(params[name]) for name in params.specs}


# ------------------------------------------------------------------------------------ helpers

def _param_store(net):
    params = getattr(net, "params", net)
    if not (hasattr(params, "specs") and hasattr(params, "update_from")):
        raise CnncParamError(f"expected a compiled network or its .params, got {type(net).__name__}",
                             where="load_torch_state_dict")
    return params


def _bn_layers(specs: Mapping[str, object]) -> set[str]:
    """Layers whose parameters are a batch norm's (`<layer>.gamma` ... `<layer>.var`)."""
    return {name.rpartition(".")[0] for name in specs if name.endswith(".gamma")}


def _scale_layers(specs: Mapping[str, object]) -> set[str]:
    """layer_scale layers (`<layer>.scale`): torchvision stores such a scale as a parameter named
    like the layer itself (ConvNeXt's `features.1.0.layer_scale`)."""
    return {name.rpartition(".")[0] for name in specs if name.endswith(".scale")}


def _same_but_trailing_ones(given: tuple[int, ...], expected: tuple[int, ...]) -> bool:
    """Whether two shapes differ only by trailing dimensions of size 1 ([O, I] and [O, I, 1, 1])."""
    def core(shape: tuple[int, ...]) -> tuple[int, ...]:
        while shape and shape[-1] == 1:
            shape = shape[:-1]
        return shape
    return core(tuple(given)) == core(tuple(expected))


def _cnnc_name(module: str, leaf: str, bn_layers: set[str]) -> str | None:
    if module in bn_layers:
        return f"{module}.{BN_FROM_TORCH[leaf]}" if leaf in BN_FROM_TORCH else None
    return f"{module}.{leaf}" if module else leaf


def _torch_name(name: str, bn_layers: set[str], scale_layers: AbstractSet[str] = frozenset()) -> str:
    layer, _, role = name.rpartition(".")
    if layer in scale_layers and role == "scale":
        return layer
    return f"{layer}.{BN_TO_TORCH[role]}" if layer in bn_layers and role in BN_TO_TORCH else name


def _to_numpy(value: Any, key: str, source: str) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor (torch is not imported)
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()  # bfloat16 and half have no NumPy conversion; cnnc runs float32
        value = value.numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise CnncParamError(f"the value of '{key}' is not a numeric array ({error})", where=source) from None


def _listing(title: str, items: list[str], show) -> str:
    listed = ", ".join(show(item) for item in items[:SHOWN])
    more = f", and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return f"{title}: {listed}{more}"


def _suggestion(key: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.8)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"


def _fmt(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"
