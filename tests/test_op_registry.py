"""The op registry is complete: every op in the enum has a record with every rule, kernel and
trait decision its consumers need. Each failure names the op and the missing piece.

The numerics of each kernel are tested elsewhere (test_reference_kernels, test_numpy_kernels,
test_cupy_emulated, test_gpu); here we test that nothing about an op is missing or inconsistent.
"""
from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest

from cnnc.ir.ops import RECORDS, Op, Output, record
from cnnc.kernels import cupy_kernels, numpy_kernels, reference
from cnnc.language.layers import BUILDERS, CONVERTERS, LAYER_OPS
from cnnc.passes.derived import RULES

KERNEL_MODULES = {"reference": reference, "numpy": numpy_kernels, "cupy": cupy_kernels}


def _problems(op: Op) -> list[str]:
    """What the op's record lacks or gets wrong, one line each."""
    if op not in RECORDS:
        return [f"{op}: no record in cnnc/ir/ops.py RECORDS"]
    rec = record(op)
    found = []
    if not (dataclasses.is_dataclass(rec.attrs) and rec.attrs.__dataclass_params__.frozen):  # type: ignore
        found.append(f"{op}: attrs {rec.attrs.__name__} is not a frozen dataclass")
        return found
    fields = {f.name: f for f in dataclasses.fields(rec.attrs)}
    for name in rec.kwargs:
        if name not in fields:
            found.append(f"{op}: kernel kwarg '{name}' is not a field of {rec.attrs.__name__}")
    for name, _ in rec.kwarg_defaults:
        if name not in rec.kwargs:
            found.append(f"{op}: kwarg default for '{name}', which is not a kernel kwarg")
    if bool(rec.roles) != (rec.params is not None):
        found.append(f"{op}: parameter roles {rec.roles} without a parameter rule, or the reverse")
    if rec.scale_rule is not None and rec.scale_rule not in RULES:
        found.append(f"{op}: scale_rule '{rec.scale_rule}' is not a derivation rule in passes/derived.py")
    if rec.fused_epilogue and not {"activation", "slope"} <= set(fields):
        found.append(f"{op}: fused_epilogue needs attrs fields activation and slope")
    found += _kernel_problems(op)
    found += _surface_problems(op, fields)
    return found


def _kernel_problems(op: Op) -> list[str]:
    rec = record(op)
    if rec.kernel is None:
        if op not in (Op.INPUT, Op.DROPOUT) and rec.output != Output.VIEW:
            return [f"{op}: no kernel, yet its output is not a view of its input"]
        return []
    found = []
    for label, module in KERNEL_MODULES.items():
        function = getattr(module, rec.kernel, None)
        if not callable(function):
            found.append(f"{op}: no {label} kernel '{rec.kernel}' in {module.__name__}")
            continue
        parameters = inspect.signature(function).parameters
        for name in (*rec.kwargs, *rec.keyword_inputs):
            if name not in parameters:
                found.append(f"{op}: {label} kernel '{rec.kernel}' takes no '{name}'")
        if rec.in_place and label != "reference" and "out" not in parameters:
            found.append(f"{op}: in_place, but the {label} kernel '{rec.kernel}' takes no out=")
    if rec.epilogue:
        if op.value not in cupy_kernels._ACTIVATIONS:
            found.append(f"{op}: epilogue, but the CuPy epilogue (_ACTIVATIONS) lacks '{op.value}'")
        try:
            numpy_kernels._epilogue(np.zeros((1, 2), np.float32), op.value, 0.1, None)
        except Exception as error:  # the NumPy epilogue must know the activation by its op's name
            found.append(f"{op}: epilogue, but the NumPy epilogue refuses '{op.value}': {error}")
    return found


def _surface_problems(op: Op, fields: dict) -> list[str]:
    found = []
    for surface in record(op).surfaces:
        if LAYER_OPS.get(surface.name) is None:
            found.append(f"{op}: surface '{surface.name}' is not in the language's LAYER_OPS")
        for arg in surface.args:
            if arg.kind == "choice" and not arg.choices:
                found.append(f"{op}: surface '{surface.name}' argument '{arg.name}' is a choice of nothing")
            elif arg.kind != "choice" and arg.kind not in CONVERTERS:
                found.append(f"{op}: surface '{surface.name}' argument '{arg.name}' has unknown kind '{arg.kind}'")
        if surface.builder is not None:
            if surface.builder not in BUILDERS:
                found.append(f"{op}: surface '{surface.name}' names builder '{surface.builder}', "
                             "which cnnc/language/layers.py does not define")
            continue
        given = {arg.name for arg in surface.args} | {name for name, _ in surface.fixed}
        for name in given - set(fields):
            found.append(f"{op}: surface '{surface.name}' argument '{name}' is not an attrs field")
        for name, f in fields.items():
            if name not in given and f.default is dataclasses.MISSING:
                found.append(f"{op}: surface '{surface.name}' leaves attrs field '{name}' unset")
    return found


@pytest.mark.parametrize("op", list(Op), ids=str)
def test_record_is_complete(op):
    assert _problems(op) == []


def test_registry_is_in_enum_order_and_keyed_by_its_ops():
    assert list(RECORDS) == [op for op in Op if op in RECORDS]


def test_kernels_are_named_after_their_ops():
    """One internal name per op: the IR op and its kernels share it. The one exception is slice,
    whose kernel `slice_axis` would otherwise shadow Python's builtin `slice` in the kernel
    modules and in every generated module."""
    renamed = {op: rec.kernel for op, rec in RECORDS.items() if rec.kernel not in (None, op.value)}
    assert renamed == {Op.SLICE: "slice_axis"}


def test_every_spelling_is_unique():
    names = [s.name for rec in RECORDS.values() for s in rec.surfaces]
    assert len(names) == len(set(names))
    assert set(names) == set(LAYER_OPS)


def test_the_check_catches_a_missing_kernel(monkeypatch):
    """The completeness check itself can fail: a record naming a kernel no module has."""
    broken = dataclasses.replace(record(Op.RELU), kernel="no_such_kernel")
    monkeypatch.setitem(RECORDS, Op.RELU, broken)
    problems = _problems(Op.RELU)
    assert "relu: no numpy kernel 'no_such_kernel' in cnnc.kernels.numpy_kernels" in problems


def test_the_check_catches_an_unset_attrs_field(monkeypatch):
    rec = record(Op.LEAKY_RELU)
    broken = dataclasses.replace(rec, surfaces=(dataclasses.replace(rec.surfaces[0], args=()),))
    monkeypatch.setitem(RECORDS, Op.LEAKY_RELU, broken)
    assert "leaky_relu: surface 'leaky_relu' leaves attrs field 'slope' unset" in _problems(Op.LEAKY_RELU)
