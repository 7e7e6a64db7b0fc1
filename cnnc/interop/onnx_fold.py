"""Constant folding for the ONNX importer: evaluate, in NumPy, every node whose inputs are all
constants, before the importer maps what is left to cnnc ops.

Exporters compute shapes, reshaped weights and shared parameters with small graphs of constants
(`Constant → Unsqueeze → Concat → Reshape`, `Shape → Gather → Div` from `x.size()`, `Identity` of a
deduplicated bias). `fold(model)` evaluates those graphs and returns the model's constants
(initializers and folded values, with their ONNX data types), the nodes left to map (in the
model's order, under their original indices) and the static shapes that folded `Shape` nodes
read. A folded value keeps the name of the tensor it replaces, so every node that read the
tensor now reads the constant; nodes that no graph output depends on are dropped.

Only the fixed list of ops in `FOLDERS` is evaluated, each by a small NumPy function that checks
its inputs; nothing from the model is executed, and results are limited in size
(`MAX_ELEMENTS`). `Shape` (and `Size`) of a computed tensor fold when ONNX's shape inference
(`onnx.shape_inference`, run on the graph with the folded values substituted) gives that tensor a
static shape; the importer checks those shapes against the ones cnnc computes.

Errors name the node the way the importer does: `ONNX node '/Reshape' (Reshape): error: ...`.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np

from ..errors import CnncError
from ..source import safe_comment

MAX_ELEMENTS = 1 << 28  # the largest tensor folding may create (256 Mi elements, 1 GiB of float32)
SMALL = 4096  # constants up to this size are given to shape inference as values, larger ones as shapes only
MAX_INFERENCE_ROUNDS = 8
DEFAULT_DOMAINS = ("", "ai.onnx")

# ONNX element types folding computes with (bfloat16, float8, strings and complex are refused).
FOLDABLE_TYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
                  9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64}
TYPE_NAMES = {1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64", 8: "STRING",
              9: "BOOL", 10: "FLOAT16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64", 14: "COMPLEX64",
              15: "COMPLEX128", 16: "BFLOAT16"}


def node_where(node: Any, index: int) -> str:
    """How errors name a node: `ONNX node 'conv1' (Conv)`, or `#3 (unnamed)` without a name."""
    label = repr(node.name) if node.name else f"#{index} (unnamed)"
    return f"ONNX node {label} ({safe_comment(node.op_type)[:60]})"


def read_array(tensor: Any, what: str) -> np.ndarray:
    """A TensorProto as a NumPy array of its own data type, or a CnncError saying which failed."""
    from onnx import numpy_helper

    try:
        return numpy_helper.to_array(tensor)
    except Exception as error:  # a malformed or unreadable tensor: say which
        raise CnncError(f"cannot read {what}: {error}", where="ONNX model") from None


@dataclass
class Folded:
    """What folding leaves for the importer."""

    consts: dict[str, np.ndarray]  # every constant tensor: initializers and folded values (ONNX data types)
    nodes: dict[int, Any]  # the nodes left to map, by index in the model, in the model's order
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # static shapes read by folded Shape nodes
    folded: int = 0  # how many nodes were folded
    dropped: int = 0  # how many nodes were dropped because no output depends on them


class _Fail(Exception):
    """Raised by a folder; turned into a CnncError naming the node."""


def _fail(message: str) -> NoReturn:
    raise _Fail(message)


class _Node:
    """The node being folded: its attributes and constant inputs, with checked conversions."""

    def __init__(self, node: Any, inputs: list[np.ndarray | None], opset: int):
        self.node, self.inputs, self.opset = node, inputs, opset

    def attr(self, name: str, default: Any = None) -> Any:
        from onnx import helper

        for attribute in self.node.attribute:
            if attribute.name == name:
                if attribute.ref_attr_name:
                    _fail(f"attribute '{name}' refers to a function attribute, which is not supported")
                value = helper.get_attribute_value(attribute)
                if isinstance(value, bytes):
                    value = value.decode("utf-8", "replace")
                return value
        return default

    def check_attrs(self, known: Iterable[str]) -> None:
        allowed = set(known)
        for attribute in self.node.attribute:
            if attribute.name not in allowed:
                _fail(f"attribute '{safe_comment(attribute.name)[:40]}' is not supported")

    def input(self, i: int, what: str) -> np.ndarray:
        value = self.inputs[i] if i < len(self.inputs) else None
        if value is None:
            _fail(f"the {what} (input {i}) is missing")
        return value

    def optional(self, i: int) -> np.ndarray | None:
        return self.inputs[i] if i < len(self.inputs) else None

    def ints(self, i: int, what: str) -> list[int]:
        """A constant input of integers (a 1-D tensor or a scalar) as Python ints."""
        value = self.input(i, what)
        if value.dtype.kind not in "iu" or value.ndim > 1:
            _fail(f"the {what} (input {i}) must be a 1-D integer tensor, got {_describe(value)}")
        return [int(v) for v in np.reshape(value, -1)]

    def optional_ints(self, i: int, what: str) -> list[int] | None:
        return None if self.optional(i) is None else self.ints(i, what)

    def scalar(self, i: int, what: str) -> np.ndarray:
        value = self.input(i, what)
        if value.size != 1 or value.ndim > 1:
            _fail(f"the {what} (input {i}) must be a scalar, got {_describe(value)}")
        return np.reshape(value, ())

    def axes(self, what: str = "axes", input_from: int = 13, index: int = 1) -> list[int] | None:
        """Axes as an attribute before opset `input_from`, as input `index` from it on."""
        if self.opset < input_from:
            given = self.attr("axes")
            return None if given is None else [int(a) for a in given]
        return self.optional_ints(index, what)


def _describe(value: np.ndarray) -> str:
    return f"{value.dtype} of shape {list(value.shape)}"


def _axis(axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < rank:
        _fail(f"{what} {axis} is out of range for rank {rank}")
    return axis % rank


def _limit(shape: Sequence[int]) -> tuple[int, ...]:
    dims = tuple(int(d) for d in shape)
    if any(d < 0 for d in dims):
        _fail(f"shape {list(dims)} has a negative dimension")
    if math.prod(dims) > MAX_ELEMENTS:
        _fail(f"the result would have {math.prod(dims)} elements; cnnc folds constants of at most "
              f"{MAX_ELEMENTS} elements")
    return dims


def _same_types(values: Sequence[np.ndarray], op: str) -> None:
    kinds = {v.dtype for v in values}
    if len(kinds) > 1:
        _fail(f"{op} of {' and '.join(str(k) for k in sorted(kinds, key=str))} inputs: ONNX requires one type")


def _broadcast(values: Sequence[np.ndarray]) -> tuple[int, ...]:
    try:
        shape = np.broadcast_shapes(*(v.shape for v in values))
    except ValueError:
        _fail(f"shapes {' and '.join(str(list(v.shape)) for v in values)} do not broadcast")
    return _limit(shape)


# ---- the folders: one function per op, (node) -> outputs ----------------------------------------

def _constant(n: _Node) -> list[np.ndarray]:
    values = list(n.node.attribute)
    if len(values) != 1:
        _fail("expected exactly one value attribute")
    name = values[0].name
    if name == "sparse_value":
        _fail("sparse constants are not supported")
    if name in ("value_string", "value_strings"):
        _fail("string constants are not supported")
    value = n.attr(name)
    if name == "value":
        return [read_array(value, f"the value of Constant {n.node.name!r}")]
    if name in ("value_float", "value_floats"):
        return [np.array(value, np.float32)]
    if name in ("value_int", "value_ints"):
        return [np.array(value, np.int64)]
    _fail(f"constant attribute '{safe_comment(name)[:40]}' is not supported")


def _identity(n: _Node) -> list[np.ndarray]:
    n.check_attrs(())
    return [n.input(0, "input")]


def _cast(n: _Node) -> list[np.ndarray]:
    n.check_attrs({"to", "saturate"})
    x, to = n.input(0, "input"), n.attr("to")
    if to not in FOLDABLE_TYPES:
        _fail(f"Cast to {TYPE_NAMES.get(to, to)} cannot be folded")
    with np.errstate(all="ignore"):
        return [x.astype(FOLDABLE_TYPES[to])]


def _cast_like(n: _Node) -> list[np.ndarray]:
    n.check_attrs({"saturate"})
    with np.errstate(all="ignore"):
        return [n.input(0, "input").astype(n.input(1, "target_type").dtype)]


def _shape_slice(shape: tuple[int, ...], n: _Node) -> tuple[int, ...]:
    rank = len(shape)
    start, end = int(n.attr("start", 0)), n.attr("end")
    end = rank if end is None else int(end)
    start, end = (min(max(v + rank if v < 0 else v, 0), rank) for v in (start, end))
    return shape[start:end]


def _shape(n: _Node) -> list[np.ndarray]:
    n.check_attrs({"start", "end"})
    return [np.array(_shape_slice(n.input(0, "input").shape, n), np.int64)]


def _size(n: _Node) -> list[np.ndarray]:
    n.check_attrs(())
    return [np.array(n.input(0, "input").size, np.int64)]


def _unsqueeze(n: _Node) -> list[np.ndarray]:
    n.check_attrs({"axes"} if n.opset < 13 else ())
    x, axes = n.input(0, "input"), n.axes()
    if axes is None:
        _fail("the axes are missing")
    rank = x.ndim + len(axes)
    resolved = sorted(_axis(a, rank) for a in axes)
    if len(set(resolved)) != len(resolved):
        _fail(f"axes {axes} repeat an axis")
    shape = list(x.shape)
    for a in resolved:
        shape.insert(a, 1)
    return [np.reshape(x, shape)]


def _squeeze(n: _Node) -> list[np.ndarray]:
    n.check_attrs({"axes"} if n.opset < 13 else ())
    x, axes = n.input(0, "input"), n.axes()
    if axes is None:
        return [np.reshape(x, [d for d in x.shape if d != 1])]
    resolved = {_axis(a, x.ndim) for a in axes}
    if any(x.shape[a] != 1 for a in resolved):
        _fail(f"axes {axes} of a tensor of shape {list(x.shape)} are not all of size 1")
    return [np.reshape(x, [d for i, d in enumerate(x.shape) if i not in resolved])]


def reshape_target(input_shape: Sequence[int], target: Sequence[int], allowzero: bool) -> tuple[int, ...]:
    """ONNX Reshape's output shape: 0 copies the input's dimension (unless allowzero), one -1 is
    inferred. Raises _Fail when the shape does not fit."""
    if not allowzero:
        for i, v in enumerate(target):
            if v == 0 and i >= len(input_shape):
                _fail(f"shape {list(target)} copies dimension {i}, which the input {list(input_shape)} lacks")
    dims = [input_shape[i] if v == 0 and not allowzero else v for i, v in enumerate(target)]
    if dims.count(-1) > 1 or any(v < -1 for v in dims):
        _fail(f"shape {list(target)} is not a valid shape")
    total = math.prod(input_shape)
    if -1 in dims:
        known = math.prod(v for v in dims if v != -1)
        if known == 0 or total % known:
            _fail(f"shape {list(target)} does not fit an input of shape {list(input_shape)}")
        dims[dims.index(-1)] = total // known
    if math.prod(dims) != total:
        _fail(f"shape {list(target)} does not fit an input of shape {list(input_shape)}")
    return tuple(dims)


def _reshape(n: _Node) -> list[np.ndarray]:
    x = n.input(0, "input")
    if n.opset < 5:
        n.check_attrs({"shape", "consumed_inputs"})
        target = [int(v) for v in (n.attr("shape") or [])]
    else:
        n.check_attrs({"allowzero"})
        target = n.ints(1, "shape")
    return [np.reshape(x, reshape_target(x.shape, target, bool(n.attr("allowzero", 0))))]


def _flatten(n: _Node) -> list[np.ndarray]:
    n.check_attrs({"axis"})
    x = n.input(0, "input")
    axis = int(n.attr("axis", 1))
    axis = axis + x.ndim if axis < 0 else axis
    if not 0 <= axis <= x.ndim:
        _fail(f"axis {n.attr('axis', 1)} is out of range for rank {x.ndim}")
    return [np.reshape(x, (math.prod(x.shape[:axis]), math.prod(x.shape[axis:])))]


def _gather(n: _Node) -> list[np.ndarray]:
    n.check_attrs({"axis"})
    data, indices = n.input(0, "data"), n.input(1, "indices")
    if data.ndim == 0:
        _fail("Gather of a scalar")
    if indices.dtype.kind not in "iu":
        _fail(f"the indices are {indices.dtype}, not integers")
    axis = _axis(int(n.attr("axis", 0)), data.ndim)
    size = data.shape[axis]
    index = indices.astype(np.int64)
    if np.any(index < -size) or np.any(index >= size):
        _fail(f"an index of {np.reshape(indices, -1).tolist()[:8]} is out of range for axis {axis} of size {size}")
    _limit((*data.shape[:axis], *index.shape, *data.shape[axis + 1:]))
    return [np.take(data, np.where(index < 0, index + size, index), axis=axis)]


def _concat(n: _Node) -> list[np.ndarray]:
    n.check_attrs({"axis"})
    values = [n.input(i, "input") for i in range(len(n.inputs))]
    if not values:
        _fail("no inputs")
    if n.attr("axis") is None:
        _fail("attribute 'axis' is missing")
    _same_types(values, "Concat")
    rank = values[0].ndim
    if rank == 0 or any(v.ndim != rank for v in values):
        _fail(f"inputs of shapes {[list(v.shape) for v in values]} cannot be concatenated")
    axis = _axis(int(n.attr("axis")), rank)
    if any(v.shape[:axis] + v.shape[axis + 1:] != values[0].shape[:axis] + values[0].shape[axis + 1:]
           for v in values):
        _fail(f"inputs of shapes {[list(v.shape) for v in values]} differ outside axis {axis}")
    return [np.concatenate(values, axis=axis)]


def _slice(n: _Node) -> list[np.ndarray]:
    x = n.input(0, "data")
    if n.opset < 10:
        n.check_attrs({"starts", "ends", "axes"})
        starts, ends = [int(v) for v in n.attr("starts") or []], [int(v) for v in n.attr("ends") or []]
        given_axes, steps = n.attr("axes"), None
        axes = None if given_axes is None else [int(a) for a in given_axes]
    else:
        n.check_attrs(())
        starts, ends = n.ints(1, "starts"), n.ints(2, "ends")
        axes, steps = n.optional_ints(3, "axes"), n.optional_ints(4, "steps")
    axes = list(range(len(starts))) if axes is None else [_axis(a, x.ndim) for a in axes]
    steps = [1] * len(starts) if steps is None else steps
    if not len(starts) == len(ends) == len(axes) == len(steps):
        _fail("starts, ends, axes and steps differ in length")
    if len(set(axes)) != len(axes):
        _fail(f"axes {axes} repeat an axis")
    index: list[Any] = [slice(None)] * x.ndim
    for axis, start, end, step in zip(axes, starts, ends, steps):
        dim = x.shape[axis]
        if step == 0:
            _fail("a step of 0")
        start, end = start + dim if start < 0 else start, end + dim if end < 0 else end
        if step > 0:
            start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        else:
            start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
        index[axis] = np.arange(start, end, step, dtype=np.int64)
    result = x
    for axis, chosen in enumerate(index):
        if isinstance(chosen, np.ndarray):
            result = np.take(result, chosen, axis=axis)
    return [result]


def _transpose(n: _Node) -> list[np.ndarray]:
    n.check_attrs({"perm"})
    x = n.input(0, "input")
    perm = n.attr("perm")
    perm = list(range(x.ndim))[::-1] if perm is None else [int(p) for p in perm]
    if sorted(perm) != list(range(x.ndim)):
        _fail(f"perm {perm} is not a permutation of the {x.ndim} axes")
    return [np.transpose(x, perm)]


def _expand(n: _Node) -> list[np.ndarray]:
    n.check_attrs(())
    x, shape = n.input(0, "input"), n.ints(1, "shape")
    if any(d < 0 for d in shape):
        _fail(f"shape {shape} has a negative dimension")
    try:
        target = np.broadcast_shapes(x.shape, tuple(shape))
    except ValueError:
        _fail(f"an input of shape {list(x.shape)} cannot be expanded to {shape}")
    return [np.array(np.broadcast_to(x, _limit(target)))]


def _constant_of_shape(n: _Node) -> list[np.ndarray]:
    n.check_attrs({"value"})
    shape = _limit(n.ints(0, "shape"))
    value = n.attr("value")
    fill = np.zeros(1, np.float32) if value is None else read_array(value, "the value of ConstantOfShape")
    if fill.size != 1:
        _fail(f"the value has {fill.size} elements, expected 1")
    return [np.full(shape, np.reshape(fill, -1)[0], fill.dtype)]


def _range(n: _Node) -> list[np.ndarray]:
    n.check_attrs(())
    start, limit, delta = n.scalar(0, "start"), n.scalar(1, "limit"), n.scalar(2, "delta")
    _same_types([start, limit, delta], "Range")
    if delta == 0:
        _fail("a delta of 0")
    if start.dtype.kind in "iu":
        a, b, d = int(start), int(limit), int(delta)
        count = max(-((a - b) // d), 0)
    else:
        count = max(math.ceil((float(limit) - float(start)) / float(delta)), 0)
    _limit((count,))
    if count == 0:
        return [np.zeros(0, start.dtype)]
    steps = np.full(count, delta, start.dtype)
    steps[0] = start
    with np.errstate(all="ignore"):
        return [np.add.accumulate(steps, dtype=start.dtype)]  # start, start+delta, ... as ONNX's loop adds


def _split(n: _Node) -> list[np.ndarray]:
    n.check_attrs({"axis", "split", "num_outputs"})
    x = n.input(0, "input")
    axis = _axis(int(n.attr("axis", 0)), x.ndim)
    outputs, dim = len(n.node.output), x.shape[axis]
    sizes = [int(v) for v in n.attr("split")] if n.opset < 13 and n.attr("split") is not None else \
        n.optional_ints(1, "split") if n.opset >= 13 else None
    if sizes is None:
        parts = int(n.attr("num_outputs", outputs))
        chunk = -(-dim // parts)
        sizes = [min(chunk, max(dim - chunk * i, 0)) for i in range(parts)]
    if sum(sizes) != dim or len(sizes) != outputs or any(s < 0 for s in sizes):
        _fail(f"split sizes {sizes} do not divide axis {axis} of size {dim} into {outputs} outputs")
    bounds = np.cumsum([0, *sizes])
    return [np.take(x, np.arange(bounds[i], bounds[i + 1]), axis=axis) for i in range(outputs)]


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iu":
        if np.any(b == 0):
            _fail("integer division by zero")
        quotient = np.abs(a) // np.abs(b)  # ONNX (like C) truncates toward zero
        return np.where((a < 0) != (b < 0), -quotient, quotient).astype(a.dtype) if a.dtype.kind == "i" else a // b
    return np.divide(a, b)


def _mod(n: _Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    fmod = int(n.attr("fmod", 0))
    if a.dtype.kind == "f" and not fmod:
        _fail("Mod of floats needs fmod=1")
    if a.dtype.kind in "iu" and np.any(b == 0):
        _fail("integer modulo by zero")
    return np.fmod(a, b) if fmod else np.mod(a, b)


def _elementwise(function: Callable[..., np.ndarray], count: int | None, attrs: Iterable[str] = (),
                 same_type: bool = True, kinds: str = "") -> Callable[[_Node], list[np.ndarray]]:
    """A folder for an elementwise op (NumPy broadcasting is ONNX's multidirectional broadcasting)."""
    def fold(n: _Node) -> list[np.ndarray]:
        n.check_attrs(attrs)
        values = [n.input(i, "input") for i in range(len(n.inputs))]
        if (count is not None and len(values) != count) or not values:
            _fail(f"expected {count} inputs, got {len(values)}")
        if same_type:
            _same_types(values, n.node.op_type)
        if kinds and any(v.dtype.kind not in kinds for v in values):
            _fail(f"inputs of type {values[0].dtype} are not supported")
        _broadcast(values)
        with np.errstate(all="ignore"):
            result = function(n, *values)
        return [np.asarray(result)]
    return fold


def _where(n: _Node, cond: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if cond.dtype != np.bool_:
        _fail(f"the condition is {cond.dtype}, not bool")
    _same_types([x, y], "Where")
    return np.where(cond, x, y)


def _variadic(function: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def apply(n: _Node, *values: np.ndarray) -> np.ndarray:
        result = values[0]
        for value in values[1:]:
            result = function(result, value)
        return np.array(result, values[0].dtype)  # as ONNX: the inputs' type, also for a single input
    return apply


def _pow(n: _Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ONNX Pow: the result has the base's type (the exponent may have another)."""
    if a.dtype.kind == "f":
        return np.power(a, b.astype(a.dtype))
    if b.dtype.kind == "f":
        return np.power(a.astype(np.float64), b.astype(np.float64)).astype(a.dtype)
    if np.any(b < 0):
        _fail("an integer to a negative power")
    return np.power(a, b.astype(a.dtype))


def _float_only(function: Callable[[np.ndarray], np.ndarray]) -> Callable[..., np.ndarray]:
    def apply(n: _Node, x: np.ndarray) -> np.ndarray:
        if x.dtype.kind != "f":
            _fail(f"{n.node.op_type} of {x.dtype} is not supported")
        return function(x)
    return apply


FOLDERS: dict[str, Callable[[_Node], list[np.ndarray]]] = {
    "Constant": _constant,
    "Identity": _identity,
    "Cast": _cast,
    "CastLike": _cast_like,
    "Shape": _shape,
    "Size": _size,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Gather": _gather,
    "Concat": _concat,
    "Slice": _slice,
    "Split": _split,
    "Transpose": _transpose,
    "Expand": _expand,
    "ConstantOfShape": _constant_of_shape,
    "Range": _range,
    "Add": _elementwise(lambda n, a, b: np.add(a, b), 2),
    "Sub": _elementwise(lambda n, a, b: np.subtract(a, b), 2),
    "Mul": _elementwise(lambda n, a, b: np.multiply(a, b), 2),
    "Div": _elementwise(lambda n, a, b: _div(a, b), 2),
    "Mod": _elementwise(_mod, 2, {"fmod"}),
    "Pow": _elementwise(_pow, 2, same_type=False),
    "Neg": _elementwise(lambda n, x: np.negative(x), 1),
    "Abs": _elementwise(lambda n, x: np.abs(x), 1),
    "Sqrt": _elementwise(_float_only(np.sqrt), 1),
    "Reciprocal": _elementwise(_float_only(np.reciprocal), 1),
    "Floor": _elementwise(_float_only(np.floor), 1),
    "Ceil": _elementwise(_float_only(np.ceil), 1),
    "Min": _elementwise(_variadic(np.minimum), None),
    "Max": _elementwise(_variadic(np.maximum), None),
    "Sum": _elementwise(_variadic(np.add), None),
    "Equal": _elementwise(lambda n, a, b: np.equal(a, b), 2),
    "Less": _elementwise(lambda n, a, b: np.less(a, b), 2),
    "LessOrEqual": _elementwise(lambda n, a, b: np.less_equal(a, b), 2),
    "Greater": _elementwise(lambda n, a, b: np.greater(a, b), 2),
    "GreaterOrEqual": _elementwise(lambda n, a, b: np.greater_equal(a, b), 2),
    "Not": _elementwise(lambda n, x: np.logical_not(x), 1, kinds="b"),
    "And": _elementwise(lambda n, a, b: np.logical_and(a, b), 2, kinds="b"),
    "Or": _elementwise(lambda n, a, b: np.logical_or(a, b), 2, kinds="b"),
    "Xor": _elementwise(lambda n, a, b: np.logical_xor(a, b), 2, kinds="b"),
    "Where": _elementwise(_where, 3, same_type=False),
}
SHAPE_OPS = ("Shape", "Size")


# ---- the folding stage ----------------------------------------------------------------------

def _opset(model: Any) -> int:
    return next((imp.version for imp in model.opset_import if imp.domain in DEFAULT_DOMAINS), 1)


def _live(nodes: dict[int, Any], outputs: set[str]) -> dict[int, Any]:
    """The nodes some graph output depends on (the others are dropped), in order."""
    needed, live = set(outputs), set()
    for index in reversed(list(nodes)):
        node = nodes[index]
        if any(out in needed for out in node.output if out):
            live.add(index)
            needed.update(name for name in node.input if name)
    return {index: node for index, node in nodes.items() if index in live}


def _static_shapes(model: Any, nodes: dict[int, Any], consts: dict[str, np.ndarray],
                   input_shapes: dict[str, Sequence]) -> dict[str, tuple[int, ...]]:
    """Static shapes of computed tensors by ONNX's shape inference on the graph that is left,
    with the folded values as initializers (large constants as typed inputs, their values do not
    matter for shapes). A failure of shape inference gives no shapes."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    inputs, initializers = [], []
    for value_info in graph.input:
        if value_info.name in consts:
            continue
        given = input_shapes.get(value_info.name)
        if given is not None and value_info.type.HasField("tensor_type"):
            dims = [d if isinstance(d, str) else int(d) for d in given]
            value_info = helper.make_tensor_value_info(value_info.name, value_info.type.tensor_type.elem_type, dims)
        inputs.append(value_info)
    used = {name for node in nodes.values() for name in node.input if name}
    for name in sorted(used & set(consts)):
        value = consts[name]
        try:
            elem_type = helper.np_dtype_to_tensor_dtype(value.dtype)
        except Exception:  # a type ONNX has no name for: its shape cannot matter here
            continue
        if value.size <= SMALL:
            initializers.append(numpy_helper.from_array(value, name))
        else:
            inputs.append(helper.make_tensor_value_info(name, elem_type, list(value.shape)))
    stripped = helper.make_graph(list(nodes.values()), graph.name or "graph", inputs, list(graph.output),
                                 initializers)
    copy = helper.make_model(stripped, opset_imports=list(model.opset_import))
    copy.ir_version = model.ir_version
    copy.functions.extend(model.functions)
    try:
        inferred = onnx.shape_inference.infer_shapes(copy, strict_mode=False, data_prop=True)
    except Exception:  # inference is a help, not a requirement: without it Shape does not fold
        return {}
    shapes = {}
    for value_info in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]:
        tensor_type = value_info.type.tensor_type
        if not value_info.type.HasField("tensor_type") or not tensor_type.HasField("shape"):
            continue
        dims = tensor_type.shape.dim
        if all(d.HasField("dim_value") and d.dim_value >= 0 for d in dims):
            shapes[value_info.name] = tuple(int(d.dim_value) for d in dims)
    return shapes


def fold(model: Any, input_shapes: dict[str, Sequence] | None = None) -> Folded:
    """Fold every node whose inputs are all constants (see the module's docstring)."""
    graph = model.graph
    opset = _opset(model)
    consts = {init.name: read_array(init, f"initializer {init.name!r}") for init in graph.initializer}
    nodes = _live(dict(enumerate(graph.node)), {out.name for out in graph.output})
    total = len(graph.node)
    folded, read_shapes = 0, {}
    shapes: dict[str, tuple[int, ...]] | None = None  # from shape inference, once needed
    for _ in range(MAX_INFERENCE_ROUNDS):
        progress = False
        for index, node in list(nodes.items()):
            if node.domain not in DEFAULT_DOMAINS or node.op_type not in FOLDERS:
                continue
            names = list(node.input)
            while names and not names[-1]:
                names.pop()
            if node.op_type in SHAPE_OPS and names and names[0] not in consts:
                if shapes is None or names[0] not in shapes:
                    continue
                static = shapes[names[0]]
                # A zero-strided view: the shape without the memory (Shape and Size read nothing else).
                inputs: list[np.ndarray | None] = [np.broadcast_to(np.zeros((), np.bool_), static)]
                read_shapes[names[0]] = static
            elif all(not name or name in consts for name in names):
                inputs = [consts[name] if name else None for name in names]
            else:
                continue
            try:
                values = FOLDERS[node.op_type](_Node(node, inputs, opset))
            except _Fail as error:
                raise CnncError(f"cannot fold this node (all its inputs are constants): {error}",
                                where=node_where(node, index)) from None
            except (ValueError, TypeError, IndexError, MemoryError) as error:  # NumPy refusing something unchecked
                raise CnncError(f"cannot fold this node (all its inputs are constants): {error}",
                                where=node_where(node, index)) from None
            if len(values) < len([out for out in node.output if out]):
                raise CnncError(f"cannot fold this node: it has {len(node.output)} outputs",
                                where=node_where(node, index))
            for out, value in zip(node.output, values):
                if out:
                    consts[out] = value
            del nodes[index]
            folded += 1
            progress = True
        pending = any(node.op_type in SHAPE_OPS and node.domain in DEFAULT_DOMAINS and node.input
                      and node.input[0] not in consts for node in nodes.values())
        if not pending or (shapes is not None and not progress):
            break
        nodes = _live(nodes, {out.name for out in graph.output})
        shapes = _static_shapes(model, nodes, consts, dict(input_shapes or {}))
    nodes = _live(nodes, {out.name for out in graph.output})
    return Folded(consts, nodes, read_shapes, folded, total - folded - len(nodes))
