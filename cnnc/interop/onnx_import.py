"""Import an ONNX model as a readable `.cnn` program and its parameters.

    model = cnnc.import_onnx("model.onnx")               # or bytes, or an onnx.ModelProto
    logits = model(image)                                # model.network, compiled on first use
    text, params = model                                 # it is the pair (text, params)
    net = cnnc.compile(text, params=params)

Constant subgraphs are folded first (`onnx_fold`: shape arithmetic, reshaped or shared weights,
Constant nodes); the program then has one statement per ONNX node that is left, in the model's
order:

    conv1_out = image |> conv(64, 7x7, stride=2, pad=3, bias=false) as conv1   # Conv 'conv1'

Names from the model are kept where they are legal `.cnn` layer names: a layer whose parameters
have PyTorch's names (`layer1.0.conv1.weight`) is named after them (`layer1.0.conv1`), so a state
dict of the source model loads; PyTorch's node scopes (`/layer1/layer1.0/conv1/Conv`) become the
module path. Any other name is turned into an identifier by `Names`: only [A-Za-z0-9_], never a
keyword of the cnn language or of Python, an op or a built-in function, and distinct from each
other. Parameters are named `<layer>.<role>` exactly as the program's layers name them, so the
returned dict loads into `cnnc.compile(text, params=params)` as it is.

The model is only read. Nothing in it is executed: constant folding computes a fixed list of ONNX
ops with NumPy, attribute values are checked numbers and words, tensors become NumPy arrays, and
names and other text from the model enter the program only as sanitized identifiers, checked
dotted layer names or inside `#` comments (made one printable line).

Every ONNX feature that cnnc cannot represent exactly is a `CnncError` naming the op type and
the node (`ONNX node 'pool1' (MaxPool): ...`); nothing is approximated silently. The op mapping
and its conventions are documented in docs/onnx.md.
"""
from __future__ import annotations

import keyword
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal, NoReturn, overload

import numpy as np

from ..errors import CnncError
from ..ir import ops as o
from ..ir.ops import Op, Pads, Pair, infer_shape, param_specs
from ..ir.shapes import ShapeRuleError, fmt
from ..language import builtins as language_builtins
from ..language.layers import LAYER_OPS, same_pads
from ..names import unique
from ..source import safe_comment
from . import onnx_functions
from .onnx_fold import FOLDERS, fold, node_where

# Words an identifier must never be: the cnn language's keywords, Python's (the generated code
# is Python), ops and built-in functions (legal, but confusing), and the batch symbol.
CNN_KEYWORDS = frozenset("import input output block inline return if else and or not true false as".split())
RESERVED = (CNN_KEYWORDS | frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(LAYER_OPS)
            | frozenset(language_builtins.FUNCTIONS) | {"N"})
MAX_IDENTIFIER = 80
BATCH_SYMBOL = "N"
FLOAT32_MAX = float(np.finfo(np.float32).max)


MAX_LAYER_NAME = 200
_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+", flags=re.ASCII)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", flags=re.ASCII)


def dotted_layer_name(name: str) -> bool:
    """Whether `name` is a dotted .cnn layer name the importer keeps as it is (`layer1.0.conv1`):
    two or more parts, each an identifier or digits, none a keyword of the cnn language."""
    parts = name.split(".")
    return (len(parts) >= 2 and len(name) <= MAX_LAYER_NAME
            and all(_PART.fullmatch(p) and p not in CNN_KEYWORDS for p in parts))


class Names:
    """Distinct, safe identifiers for arbitrary strings (deterministic, first come first served)."""

    def __init__(self, reserved: frozenset[str] = RESERVED):
        self._taken: set[str] = set(reserved)

    def take(self, raw: str, fallback: str = "v") -> str:
        base = re.sub(r"[^0-9A-Za-z_]+", "_", raw, flags=re.ASCII).strip("_")[:MAX_IDENTIFIER].rstrip("_")
        base = base or fallback
        if base[0].isdigit():
            base = f"v_{base}"
        candidate = unique(base, self._taken)
        self._taken.add(candidate)
        return candidate

    def reserve(self, name: str) -> None:
        self._taken.add(name)

    def claim(self, name: str) -> bool:
        """Take exactly `name` if it is free and a layer name kept as it is: a dotted name, or an
        identifier that is not a keyword of the cnn language (an op's name, `conv`, is a legal
        layer name)."""
        legal = dotted_layer_name(name) or (_IDENTIFIER.fullmatch(name) is not None and len(name) <= MAX_IDENTIFIER
                                            and name not in CNN_KEYWORDS)
        if not legal or name in self._taken:
            return False
        self._taken.add(name)
        return True

    def take_layer(self, candidates: Sequence[str]) -> str:
        """The first free dotted candidate, else the last one numbered (`..._2`), else (and for a
        plain name) the first one made an identifier by `take`."""
        first = candidates[0]
        if dotted_layer_name(first):
            for candidate in candidates:
                if dotted_layer_name(candidate) and candidate not in self._taken:
                    self._taken.add(candidate)
                    return candidate
            last = candidates[-1]
            if dotted_layer_name(last) and not last.rpartition(".")[2].isdigit():
                numbered = unique(last, self._taken)
                if dotted_layer_name(numbered):
                    self._taken.add(numbered)
                    return numbered
        return self.take(first, "layer")


def torch_path(scopes: Sequence[str]) -> list[str]:
    """PyTorch's scope names as a module path: the exporter names a child scope either by its own
    name (`conv1`) or by its parent's name and its own (`layer1.0` inside `layer1`), so
    `/layer1/layer1.0/conv1` is the module `layer1.0.conv1` and `/features/features.0/features.0.0`
    is `features.0.0`."""
    parts: list[str] = []
    previous = None
    for scope in scopes:
        if previous is not None and scope.startswith(previous + "."):
            parts.extend(scope[len(previous) + 1:].split("."))
        else:
            parts.extend(scope.split("."))
        previous = scope
    return parts


def layer_candidates(name: str, op_type: str) -> list[str]:
    """Layer names for a node, best first. PyTorch names nodes `/<scopes>/<OpType>[_k]`: the
    module path (`layer1.0.conv1`), then the path and the op (`layer1.0.Relu_1`) for a second op
    of the same module; any other name as it is (made an identifier unless it is a dotted name)."""
    scopes = name[1:].split("/")
    if name.startswith("/") and len(scopes) >= 2 and all(scopes) and \
            re.fullmatch(re.escape(op_type) + r"(_\d+)?", scopes[-1]):
        path = ".".join(torch_path(scopes[:-1]))
        return [path, f"{path}.{scopes[-1]}"]
    return [name]


def readable_tensor(name: str) -> str:
    """PyTorch names tensors `/<scopes>/<OpType>_output_0`: the module path and the op
    (`/layer1/layer1.0/conv1/Conv_output_0` → `layer1_0_conv1_Conv` once made an identifier)."""
    if not (name.startswith("/") and name.endswith("_output_0")):
        return name
    scopes = name[1:-len("_output_0")].split("/")
    if not all(scopes):
        return name[:-len("_output_0")]
    return "_".join([*torch_path(scopes[:-1]), scopes[-1]])


def with_suffix(name: str, suffix: str) -> str:
    """`name` + `suffix` for an extra layer of a node; a dotted name ending in a number gets the
    suffix as one more part (`features.3.pad`), which keeps it a legal name."""
    if suffix and dotted_layer_name(name) and name.rpartition(".")[2].isdigit():
        return f"{name}.{suffix.lstrip('_')}"
    return name + suffix


@dataclass(frozen=True)
class Value:
    """A tensor of the program: the variable holding it and its shape (dim 0 may be "N")."""

    var: str
    shape: tuple
    onnx_name: str  # the ONNX tensor the variable was named after


# ---- rendering cnn syntax -----------------------------------------------------------------------

def fmt_float(value: float) -> str:
    """The shortest text that reads back as the same float32 (the cnn lexer's float forms)."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{number} cannot be written in a .cnn file")
    text = str(np.float32(number))  # numpy's shortest round-trip repr: '0.0001', '1e-05', '6.0'
    if "e" not in text and "." not in text:
        text += ".0"
    return text


def _pair(p: Sequence[int]) -> str:
    return str(p[0]) if p[0] == p[1] else f"({p[0]}, {p[1]})"


def _kernel(k: Sequence[int]) -> str:
    return f"{k[0]}x{k[1]}"


def _pads(p: Sequence[int]) -> str:
    top, left, bottom, right = p
    if top == left == bottom == right:
        return str(top)
    if (top, left) == (bottom, right):
        return f"({top}, {left})"
    return f"({top}, {left}, {bottom}, {right})"


def _call(op: str, positional: Sequence[str] = (), keywords: Sequence[tuple[str, str]] = ()) -> str:
    args = [*positional, *(f"{k}={v}" for k, v in keywords)]
    return f"{op}({', '.join(args)})" if args else op


# ---- the importer ----------------------------------------------------------------------------

_ONNX_TYPES = {1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64", 8: "STRING",
               9: "BOOL", 10: "FLOAT16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64", 16: "BFLOAT16"}


def require_onnx() -> Any:
    """The `onnx` module, or a CnncError that says how to install it."""
    try:
        import onnx
    except ImportError:
        raise CnncError("ONNX support needs the onnx package: pip install 'cnnc[onnx]'", where="onnx") from None
    return onnx


class _Fail(Exception):
    """Raised inside an op handler; turned into a CnncError naming the node."""


class Importer:
    def __init__(self, model: Any, input_shapes: dict | None = None):
        self.onnx = require_onnx()
        from onnx import numpy_helper

        self.numpy_helper = numpy_helper
        self.model = model
        self.graph = model.graph
        self.opset = next((imp.version for imp in model.opset_import if imp.domain in ("", "ai.onnx")), 1)
        self.input_shapes = dict(input_shapes or {})
        self.vars = Names()
        self.layers = Names()
        self.tensors: dict[str, Value] = {}
        self.consts: dict[str, np.ndarray] = {}  # initializers and folded values (floats as float32)
        self.nodes: dict[int, Any] = {}  # the nodes left after folding, by index in the model
        self.folded_shapes: dict[str, tuple[int, ...]] = {}  # shapes that folded Shape nodes read
        self.param_layers: dict[int, str] = {}  # layer names taken from parameter names, by node index
        self.lines: list[str] = []
        self.params: dict[str, np.ndarray] = {}
        self.done: set[int] = set()  # nodes already imported as part of an earlier pattern
        self.consumers: dict[str, list[int]] = {}
        self.graph_outputs = {out.name for out in self.graph.output}
        self.node: Any = None  # the onnx.NodeProto being imported
        self.node_index = 0
        # ONNX tensors that are an NCHW value seen channels-last: the output of Transpose(0, 2, 3, 1),
        # and of the channel-wise ops after it, until Transpose(0, 3, 1, 2) (ConvNeXt's blocks). The
        # program keeps them NCHW: each op on one is imported as its NCHW equivalent (_channels_last).
        self.channels_last: set[str] = set()

    # ---- errors -------------------------------------------------------------------------------
    def _where(self, node: Any = None, index: int | None = None) -> str:
        return node_where(node if node is not None else self.node, self.node_index if index is None else index)

    def fail(self, message: str) -> NoReturn:
        raise _Fail(message)

    # ---- reading the model --------------------------------------------------------------------
    def run(self) -> tuple[str, dict[str, np.ndarray]]:
        graph = self.graph
        if graph.sparse_initializer:
            raise CnncError("sparse initializers are not supported", where="ONNX model")
        folded = fold(self.model, self.input_shapes)
        self.consts = {name: value.astype(np.float32, copy=False) if value.dtype.kind == "f" else value
                       for name, value in folded.consts.items()}
        self.nodes, self.folded_shapes = folded.nodes, folded.shapes
        for index, node in self.nodes.items():
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(index)
        producer = " ".join(filter(None, [self.model.producer_name, self.model.producer_version]))
        self.lines.append(f"# Imported from ONNX by `cnnc import`: graph {safe_comment(repr(graph.name))[:100]}"
                          f"{f' from {safe_comment(producer)[:60]}' if producer else ''}, opset {self.opset}.")
        self.lines.append("# One statement per ONNX node; a layer's parameters are named <layer>.<role>.")
        self.lines.append("")
        self._inputs()
        self._reserve_param_layers()
        self.lines.append("")
        for index, node in self.nodes.items():
            if index in self.done:
                continue
            self.node, self.node_index = node, index
            try:
                self._import_node(node)
            except _Fail as error:
                raise CnncError(str(error), where=self._where()) from None
            except ShapeRuleError as error:
                raise CnncError(f"cnnc cannot apply this op here: {error}", where=self._where()) from None
        self.lines.append("")
        self._outputs()
        return "\n".join(self.lines) + "\n", self.params

    def _reserve_param_layers(self) -> None:
        """Layers whose parameters have PyTorch's names (`layer1.0.conv1.weight`) are named after
        them (`layer1.0.conv1`), so a state dict of the source model loads into the program. The
        names are reserved before any layer is named, first come first served."""
        for index, node in self.nodes.items():
            prefixes = set()
            for i in PARAM_INPUTS.get(node.op_type, ()) if node.domain in ("", "ai.onnx") else ():
                if i < len(node.input) and node.input[i] in self.consts:
                    prefix, _, leaf = node.input[i].rpartition(".")
                    if leaf in PARAM_LEAVES and prefix:
                        prefixes.add(prefix)
            if len(prefixes) == 1:
                prefix = prefixes.pop()
                if self.layers.claim(prefix):
                    self.param_layers[index] = prefix

    def _array(self, tensor: Any, what: str) -> np.ndarray:
        try:
            array = self.numpy_helper.to_array(tensor)
        except Exception as error:  # a malformed or unreadable tensor: say which
            raise CnncError(f"cannot read {what}: {error}", where="ONNX model") from None
        if array.dtype.kind == "f":
            array = array.astype(np.float32, copy=False)
        return array

    def _define(self, name: str, value: Value) -> None:
        """`name` is computed as `value`; a shape that a folded Shape node read must be cnnc's."""
        self.tensors[name] = value
        folded = self.folded_shapes.get(name)
        if folded is not None and (len(folded) != len(value.shape) or any(
                isinstance(d, int) and d != f for d, f in zip(value.shape, folded))):
            raise CnncError(f"ONNX's shape inference gives {name!r} the shape {list(folded)}, which a Shape node "
                            f"was folded with, but cnnc computes {fmt(value.shape)}",
                            where=self._where() if self.node is not None else f"ONNX tensor {name!r}")

    def _inputs(self) -> None:
        for value_info in self.graph.input:
            name = value_info.name
            if name in self.consts:  # old exporters list initializers among the inputs
                continue
            where = f"ONNX input {name!r}"
            tensor_type = value_info.type.tensor_type
            if not value_info.type.HasField("tensor_type"):
                raise CnncError("only tensor inputs are supported", where=where)
            if tensor_type.elem_type != 1:
                kind = _ONNX_TYPES.get(tensor_type.elem_type, str(tensor_type.elem_type))
                raise CnncError(f"has data type {kind}; cnnc networks take float32 inputs", where=where)
            if not tensor_type.HasField("shape"):
                raise CnncError("has no shape; give its shape with input_shapes (--input-shape)", where=where)
            dims: list = []
            for axis, dim in enumerate(tensor_type.shape.dim):
                if dim.HasField("dim_value") and dim.dim_value > 0:
                    dims.append(int(dim.dim_value))
                elif axis == 0:
                    dims.append(BATCH_SYMBOL)
                else:
                    dims.append(None)
            if name in self.input_shapes:
                given = list(self.input_shapes[name])
                if len(given) != len(dims):
                    raise CnncError(f"input_shapes gives rank {len(given)}, the model's input has rank {len(dims)}",
                                    where=where)
                dims = [BATCH_SYMBOL if isinstance(g, str) else int(g) for g in given]
            if any(d is None for d in dims[1:]) or any(isinstance(d, int) and d < 1 for d in dims):
                raise CnncError(f"has a dynamic dimension ({[d if d is not None else '?' for d in dims]}); cnnc "
                                "needs static shapes except the batch: give its shape with input_shapes "
                                "(--input-shape NAME=1x3x224x224)", where=where)
            if not dims:
                raise CnncError("is a scalar; cnnc inputs are tensors", where=where)
            ident = self.vars.take(name, "input")
            self.layers.reserve(ident)  # the input's IR node is named after it
            self._define(name, Value(ident, tuple(dims), name))
            self.lines.append(f"input {ident}: [{', '.join(str(d) for d in dims)}]{self._comment(name, ident)}")

    def _outputs(self) -> None:
        for out in self.graph.output:
            where = f"ONNX output {out.name!r}"
            if out.name not in self.tensors:
                if out.name in self.consts:
                    raise CnncError("is a constant; cnnc outputs are computed tensors", where=where)
                raise CnncError("is not computed by any node", where=where)
            if out.name in self.channels_last:  # cnnc's value is NCHW, the model's output NHWC
                raise CnncError("is channels-last (a Transpose(0, 2, 3, 1) not taken back); cnnc outputs NCHW "
                                "tensors", where=where)
            value = self.tensors[out.name]
            if value.onnx_name == out.name and out.name not in self.input_names:
                self.lines.append(f"output {value.var}")
            else:
                ident = self.vars.take(out.name, "output")
                self.lines.append(f"output {ident} = {value.var}{self._comment(out.name, ident)}")

    @property
    def input_names(self) -> set[str]:
        return {i.name for i in self.graph.input if i.name not in self.consts}

    @staticmethod
    def _comment(name: str, ident: str) -> str:
        return f"  # {safe_comment(repr(name))[:120]}" if name != ident else ""

    # ---- node helpers -------------------------------------------------------------------------
    def attr(self, name: str, default: Any = None) -> Any:
        for attribute in self.node.attribute:
            if attribute.name == name:
                if attribute.ref_attr_name:
                    self.fail(f"attribute '{name}' refers to a function attribute, which is not supported")
                value = self.onnx.helper.get_attribute_value(attribute)
                if isinstance(value, bytes):
                    value = value.decode("utf-8", "replace")
                elif isinstance(value, list):
                    value = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
                elif isinstance(value, self.onnx.TensorProto):
                    value = self._array(value, f"attribute '{name}'")
                return value
        return default

    def check_attrs(self, known: set[str]) -> None:
        for attribute in self.node.attribute:
            if attribute.name not in known:
                self.fail(f"attribute '{safe_comment(attribute.name)[:40]}' is not supported")

    def has_input(self, i: int) -> bool:
        return len(self.node.input) > i and bool(self.node.input[i])

    def data(self, i: int) -> Value:
        if not self.has_input(i):
            self.fail(f"input {i} is missing")
        name = self.node.input[i]
        if name in self.tensors:
            return self.tensors[name]
        if name in self.consts:
            self.fail(f"input {i} ({name!r}) is a constant; cnnc needs a computed tensor there")
        self.fail(f"input {i} ({name!r}) is not computed by an earlier node")

    def is_const(self, i: int) -> bool:
        return self.has_input(i) and self.node.input[i] in self.consts

    @overload
    def const(self, i: int, what: str, required: Literal[True] = True) -> np.ndarray: ...
    @overload
    def const(self, i: int, what: str, required: bool) -> np.ndarray | None: ...

    def const(self, i: int, what: str, required: bool = True) -> np.ndarray | None:
        if not self.has_input(i):
            if required:
                self.fail(f"the {what} (input {i}) is missing")
            return None
        name = self.node.input[i]
        if name not in self.consts:
            self.fail(f"the {what} (input {i}, {name!r}) must be a constant (an initializer, a Constant node or "
                      "a value cnnc folds from constants); cnnc fixes it when the program is compiled")
        return self.consts[name]

    def ints(self, name: str, count: int, default: int) -> tuple[int, ...]:
        given = self.attr(name)
        if given is None:
            return (default,) * count
        value = tuple(int(v) for v in given)
        if len(value) != count:
            self.fail(f"attribute '{name}' has {len(value)} values, expected {count} (a 2-D op on NCHW input)")
        return value

    def pair(self, name: str, default: int) -> Pair:
        """An attribute of two ints (one per spatial axis)."""
        first, second = self.ints(name, 2, default)
        return first, second

    def quad(self, name: str, default: int) -> Pads:
        """An attribute of four ints (begin and end of both spatial axes)."""
        top, left, bottom, right = self.ints(name, 4, default)
        return top, left, bottom, right

    def need_rank(self, value: Value, ranks: tuple[int, ...], what: str = "its input") -> None:
        if len(value.shape) not in ranks:
            expected = " or ".join(f"{r}-D" for r in ranks)
            self.fail(f"{what} is {fmt(value.shape)}; cnnc supports {expected} here"
                      + (" (NCHW images)" if 4 in ranks else ""))

    def output_unused(self, i: int) -> bool:
        if len(self.node.output) <= i or not self.node.output[i]:
            return True
        name = self.node.output[i]
        return name not in self.consumers and name not in self.graph_outputs

    def only_first_output(self) -> None:
        for i in range(1, len(self.node.output)):
            if not self.output_unused(i):
                self.fail(f"output {i} ({self.node.output[i]!r}) is used; cnnc computes only the first output")

    # ---- emitting statements ------------------------------------------------------------------
    def emit(self, op: Op, attrs: object, inputs: list[Value], word: str, positional: Sequence[str] = (),
             keywords: Sequence[tuple[str, str]] = (), params: dict | None = None, out: str | None = None,
             note: str = "", suffix: str = "") -> Value:
        """One statement `var = first |> word(other inputs, positional, k=v) as layer` computing `op`."""
        shapes = [v.shape for v in inputs]
        shape = infer_shape(op, attrs, shapes)
        specs = param_specs(op, attrs, shapes)
        node = self.node
        layer = self.param_layers.pop(self.node_index, None) if not suffix else None
        if layer is None:
            candidates = layer_candidates(node.name, node.op_type) if node.name else \
                [f"{node.op_type.lower()}_{self.node_index}"]
            layer = self.layers.take_layer([with_suffix(c, suffix) for c in candidates])
        for role, spec in specs.items():
            array = np.ascontiguousarray((params or {}).get(role), dtype=np.float32)
            if array.shape != tuple(spec.shape):
                self.fail(f"its {role} has shape {array.shape}, cnnc expects {tuple(spec.shape)}")
            self.params[f"{layer}.{role}"] = array
        out = out if out is not None else node.output[0]
        var = self.vars.take(readable_tensor(out), "t")
        first, *rest = inputs
        call = _call(word, [*(v.var for v in rest), *positional], keywords)
        comment = f"{safe_comment(node.op_type)[:40]} {safe_comment(repr(node.name))[:100]}"
        self.lines.append(f"{var} = {first.var} |> {call} as {layer}  # {comment}"
                          f"{f'; {note}' if note else ''}")
        value = Value(var, tuple(shape), out)
        self._define(out, value)
        return value

    def alias(self, value: Value, out: str | None = None) -> None:
        """The node computes the identity: its output is the same variable."""
        self._define(out if out is not None else self.node.output[0], value)

    # ---- dispatch -----------------------------------------------------------------------------
    def _import_node(self, node: Any) -> None:
        if node.domain == onnx_functions.DOMAIN and node.op_type in onnx_functions.BY_NAME:
            self.local_function()  # cnnc's own, as its exporter writes them
            return
        if node.domain not in ("", "ai.onnx"):
            self.fail(f"op type '{safe_comment(node.domain)[:40]}.{safe_comment(node.op_type)[:40]}' "
                      "from a custom domain is not supported")
        handler = HANDLERS.get(node.op_type)
        if handler is None and node.op_type in FOLDERS:
            self.fold_only()
        if handler is None:
            self.fail(f"unsupported op type '{safe_comment(node.op_type)[:60]}' (cnnc imports: "
                      f"{', '.join(sorted(HANDLERS))}; and folds, when all their inputs are constants: "
                      f"{', '.join(sorted(set(FOLDERS) - set(HANDLERS)))})")
        if any(name in self.channels_last for name in node.input):
            self._channels_last(handler)
            return
        handler(self)

    # ---- channels-last regions (Transpose(0, 2, 3, 1) ... Transpose(0, 3, 1, 2)) ----------------
    def _channels_last(self, handler: Callable[[Importer], None]) -> None:
        """Import a node that reads a channels-last tensor (see `channels_last`) as its NCHW
        equivalent: the way back is an alias; LayerNormalization over the last axis is cnnc's
        layer_norm over the channels; MatMul by a constant [C, D] (and its bias Add) a 1x1 conv;
        a constant operand of Add, Sub, Mul or Div has its last axis moved to axis 1; elementwise
        ops are themselves. Whatever they define is channels-last too. Any other op is refused."""
        node = self.node
        op = node.op_type
        perm = [list(a.ints) for a in node.attribute if a.name == "perm"]
        if op == "Transpose":
            if perm != [[0, 3, 1, 2]]:
                self.fail(f"Transpose {perm[0] if perm else '(reversed)'} of a channels-last tensor; cnnc follows "
                          "channels-last values only back to NCHW with Transpose(0, 3, 1, 2)")
            self.alias(self.data(0))
            return
        before = set(self.tensors)
        if op == "LayerNormalization":
            axis = int(self.attr("axis", -1))
            if axis not in (-1, 3):
                self.fail(f"LayerNormalization over axis {axis} of a channels-last tensor; only the last axis "
                          "(the channels) maps to cnnc's layer_norm")
            self._emit_layer_norm(self.data(0), node)
        elif op == "MatMul":
            self._channels_last_matmul()
        elif op == "ReduceMean" and self._decomposed_layer_norm():
            pass
        elif op in ("Add", "Sub", "Mul", "Div"):
            self.node = self._nchw_constants(node)
            handler(self)
        elif op in _LAYOUT_FREE:
            handler(self)
        else:
            self.fail(f"{op} reads a channels-last tensor (after Transpose(0, 2, 3, 1)); cnnc follows "
                      f"channels-last values only through Transpose back, LayerNormalization, MatMul by a "
                      f"constant, Add/Sub/Mul/Div and elementwise ops ({', '.join(sorted(_LAYOUT_FREE))})")
        self.node = node
        self.channels_last.update(set(self.tensors) - before)

    def _nchw_constants(self, node: Any) -> Any:
        """A copy of `node` whose constant inputs are seen from NCHW: each one's last axis (the
        channels of a channels-last operand) moved to axis 1, as a new constant."""
        copy = type(node)()
        copy.CopyFrom(node)
        for i, name in enumerate(node.input):
            value = self.consts.get(name)
            if value is None or value.size == 1:
                continue
            if value.ndim > 4:
                self.fail(f"the constant {name!r} of shape {list(value.shape)} has more than 4 axes")
            four = value.reshape((1,) * (4 - value.ndim) + value.shape)
            moved = f"{name}~nchw"
            self.consts[moved] = np.ascontiguousarray(np.moveaxis(four, 3, 1))
            copy.input[i] = moved
        return copy

    def _decomposed_layer_norm(self) -> bool:
        """LayerNormalization over the last axis as exporters before opset 17 write it, from this
        ReduceMean: m = mean(v); d = v − m; s = sqrt(mean(d^2) + eps); (d / s)·γ + β (γ, β
        constants [C]). Matched whole, it is one layer_norm; otherwise False."""
        node, v = self.node, self.node.input[0]

        def one(out: str, op_type: str, inputs: int = 2) -> tuple[int, Any] | None:
            found = self._user(out, op_type)  # the only reader, attributes allowed
            return found if found is not None and len(found[1].input) == inputs else None

        def last_axis(reduce: Any) -> bool:
            axes = [list(a.ints) for a in reduce.attribute if a.name == "axes"]
            keep = [a.i for a in reduce.attribute if a.name == "keepdims"]
            return axes in ([[-1]], [[3]]) and keep in ([], [1]) and len(reduce.input) == 1

        def scalar(name: str) -> float | None:
            value = self.consts.get(name)
            return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None

        m = node.output[0]
        sub = one(m, "Sub")
        if not last_axis(node) or sub is None or list(sub[1].input) != [v, m]:
            return False
        d = sub[1].output[0]
        readers = self.consumers.get(d, [])
        d_users = {self.nodes[i].op_type: (i, self.nodes[i]) for i in readers}
        if set(d_users) != {"Pow", "Div"} or len(readers) != 2 or d in self.graph_outputs:
            return False
        power, div = d_users["Pow"], d_users["Div"]
        if list(power[1].input)[0] != d or scalar(power[1].input[1]) != 2.0:
            return False
        mean2 = one(power[1].output[0], "ReduceMean", 1)
        add = one(mean2[1].output[0], "Add") if mean2 is not None and last_axis(mean2[1]) else None
        eps = scalar(next((n for n in add[1].input if n != mean2[1].output[0]), "")) if add and mean2 else None
        sqrt = one(add[1].output[0], "Sqrt", 1) if add is not None and eps is not None else None
        if sqrt is None or list(div[1].input) != [d, sqrt[1].output[0]]:
            return False
        mul = one(div[1].output[0], "Mul")
        shift = one(mul[1].output[0], "Add") if mul is not None else None
        if mul is None or shift is None:
            return False
        gamma = [self.consts.get(n) for n in mul[1].input if n != div[1].output[0]]
        beta = [self.consts.get(n) for n in shift[1].input if n != mul[1].output[0]]
        x = self.data(0)
        if len(gamma) != 1 or len(beta) != 1 or gamma[0] is None or beta[0] is None:
            return False
        gamma_c, beta_c = self._vector(gamma[0], x.shape[1]), self._vector(beta[0], x.shape[1])
        if gamma_c is None or beta_c is None:
            return False
        assert mean2 is not None and add is not None and eps is not None  # matched above
        self.done.update(i for i, _ in (sub, power, div, mean2, add, sqrt, mul, shift))
        keywords = [] if fmt_float(eps) == fmt_float(1e-5) else [("eps", fmt_float(eps))]
        self.emit(Op.LAYER_NORM, o.NormAttrs(eps), [x], "layer_norm", keywords=keywords,
                  params={"gamma": gamma_c, "beta": beta_c}, out=shift[1].output[0],
                  note="LayerNormalization written out (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add)")
        return True

    def _channels_last_matmul(self) -> None:
        """x · B on the last axis, B a constant [C, D] (a Linear on channels-last pixels): a 1x1
        conv with D filters, its weight Bᵀ; a following Add of a constant [D] is its bias."""
        self.check_attrs(set())
        x = self.data(0)
        b = self.const(1, "matrix B")
        if b.ndim != 2 or b.shape[0] != x.shape[1]:
            self.fail(f"B of shape {list(b.shape)} does not fit the {x.shape[1]} channels of the channels-last "
                      "input; cnnc supports a constant [C, D] there (a Linear layer applied to every pixel)")
        filters = int(b.shape[1])
        weight = np.ascontiguousarray(b.T.reshape(filters, -1, 1, 1))
        bias, out, note = None, None, ""
        found = self._bias_add(filters)
        if found is not None:
            bias, add = found
            out, note = add.output[0], f"with Add {safe_comment(repr(add.name))[:80]} as the bias"
        attrs = o.ConvAttrs(filters, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, bias is not None)
        self.emit(Op.CONV, attrs, [x], "conv", [str(filters), "1x1"], [] if bias is not None else [("bias", "false")],
                  {"weight": weight, "bias": bias}, out=out,
                  note=f"MatMul of channels-last pixels as a 1x1 conv{'; ' + note if note else ''}")

    def fold_only(self) -> NoReturn:
        """An op cnnc evaluates only on constants, here with a computed input."""
        op = safe_comment(self.node.op_type)[:60]
        computed = next(((i, n) for i, n in enumerate(self.node.input) if n and n not in self.consts), None)
        if computed is None:  # cannot happen: folding took every node whose inputs are constants
            self.fail(f"{op} of constants was not folded")
        i, name = computed
        if op in ("Shape", "Size"):
            shape = f", {fmt(self.tensors[name].shape)}" if name in self.tensors else ""
            self.fail(f"the shape of input {i} ({name!r}{shape}) is not static, so {op} cannot be folded into a "
                      "constant (cnnc fixes every shape when the program is compiled, except a symbolic batch): "
                      "export with a static batch, or give the input's shape with input_shapes "
                      "(--input-shape NAME=1x3x224x224)")
        self.fail(f"{op} is supported only on constants: cnnc folds it when all its inputs are initializers, "
                  f"Constant nodes or folded values, but input {i} ({name!r}) is computed")

    # ---- padding ------------------------------------------------------------------------------
    def window_pads(self, x: Value, kernel: Pair, stride: Pair, dilation: Pair) -> Pads:
        auto_pad = self.attr("auto_pad", "NOTSET")
        if auto_pad in ("NOTSET", ""):
            pads = self.quad("pads", 0)
            if any(p < 0 for p in pads):
                self.fail(f"negative pads {list(pads)} are not supported")
            return pads
        if auto_pad == "VALID":
            return (0, 0, 0, 0)
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            top, left, bottom, right = same_pads((x.shape[2], x.shape[3]), kernel, stride, dilation)
            return (top, left, bottom, right) if auto_pad == "SAME_UPPER" else (bottom, right, top, left)
        self.fail(f"auto_pad={auto_pad!r} is not supported")

    # ---- ops ----------------------------------------------------------------------------------
    def conv(self) -> None:
        self.check_attrs({"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"})
        x = self.data(0)
        self.need_rank(x, (4,))
        w = self.const(1, "weight")
        b = self.const(2, "bias", required=False)
        if w.ndim != 4:
            self.fail(f"the weight is {w.ndim}-D; cnnc supports 2-D convolutions (a 4-D weight)")
        kernel = self.pair("kernel_shape", 0) if self.attr("kernel_shape") is not None else \
            (int(w.shape[2]), int(w.shape[3]))
        if kernel != tuple(w.shape[2:]):
            self.fail(f"kernel_shape {list(kernel)} does not match the weight's {list(w.shape[2:])}")
        stride, dilation = self.pair("strides", 1), self.pair("dilations", 1)
        groups = int(self.attr("group", 1))
        pads = self.window_pads(x, kernel, stride, dilation)
        filters, channels = int(w.shape[0]), x.shape[1]
        attrs = o.ConvAttrs(filters, kernel, stride, pads, dilation, groups, b is not None)
        keywords = []
        if stride != (1, 1):
            keywords.append(("stride", _pair(stride)))
        if pads != (0, 0, 0, 0):
            keywords.append(("pad", _pads(pads)))
        if dilation != (1, 1):
            keywords.append(("dilation", _pair(dilation)))
        if groups > 1 and groups == channels and filters % channels == 0:
            if filters != channels:
                keywords.append(("multiplier", str(filters // channels)))
            word, positional = "depthwise_conv", [_kernel(kernel)]
        else:
            if groups != 1:
                keywords.append(("groups", str(groups)))
            word, positional = "conv", [str(filters), _kernel(kernel)]
        if b is None:
            keywords.append(("bias", "false"))
        self.emit(Op.CONV, attrs, [x], word, positional, keywords, {"weight": w, "bias": b})

    def conv_transpose(self) -> None:
        self.check_attrs({"auto_pad", "dilations", "group", "kernel_shape", "output_padding", "output_shape",
                          "pads", "strides"})
        x = self.data(0)
        self.need_rank(x, (4,))
        w = self.const(1, "weight")
        b = self.const(2, "bias", required=False)
        if w.ndim != 4:
            self.fail(f"the weight is {w.ndim}-D; cnnc supports 2-D transposed convolutions (a 4-D weight)")
        kernel = (int(w.shape[2]), int(w.shape[3]))
        if self.attr("kernel_shape") is not None and self.pair("kernel_shape", 0) != kernel:
            self.fail(f"kernel_shape {self.attr('kernel_shape')} does not match the weight's {list(kernel)}")
        stride, dilation = self.pair("strides", 1), self.pair("dilations", 1)
        groups = int(self.attr("group", 1))
        extra = list(self.pair("output_padding", 0))  # output_padding, grown below for a larger output_shape
        auto_pad = self.attr("auto_pad", "NOTSET")
        output_shape = self.attr("output_shape")
        pads: Pads
        if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            # ONNX: total padding = stride·(in − 1) + output_padding + (k − 1)·d + 1 − out, split
            # with the odd one at the start, except for SAME_UPPER (at the end).
            if output_shape is not None:
                out_size = [int(v) for v in output_shape][-2:]
            else:
                out_size = [x.shape[2] * stride[0], x.shape[3] * stride[1]]
            begin, end = [], []
            for axis in range(2):
                total = (stride[axis] * (x.shape[axis + 2] - 1) + extra[axis]
                         + (kernel[axis] - 1) * dilation[axis] + 1 - out_size[axis])
                if auto_pad == "SAME_UPPER":
                    begin.append(total // 2)
                    end.append(total - total // 2)
                else:
                    begin.append(total - total // 2)
                    end.append(total // 2)
            if min(begin) < 0:
                self.fail(f"output_shape {out_size} needs negative leading padding, which cnnc cannot express")
            for axis in range(2):
                if end[axis] < 0:  # a larger output: extra rows/columns at the end are output_padding
                    extra[axis] -= end[axis]
                    end[axis] = 0
            pads = (begin[0], begin[1], end[0], end[1])
        elif auto_pad == "VALID":
            pads = (0, 0, 0, 0)
        elif auto_pad in ("NOTSET", ""):
            pads = self.quad("pads", 0)
            if any(p < 0 for p in pads):
                self.fail(f"negative pads {list(pads)} are not supported")
        else:
            self.fail(f"auto_pad={auto_pad!r} is not supported")
        filters = int(w.shape[1]) * groups
        output_padding = (extra[0], extra[1])
        attrs = o.ConvTransposeAttrs(filters, kernel, stride, pads, output_padding, dilation, groups, b is not None)
        keywords = []
        if stride != (1, 1):
            keywords.append(("stride", _pair(stride)))
        if pads != (0, 0, 0, 0):
            keywords.append(("pad", _pads(pads)))
        if output_padding != (0, 0):
            keywords.append(("output_padding", _pair(output_padding)))
        if dilation != (1, 1):
            keywords.append(("dilation", _pair(dilation)))
        if groups != 1:
            keywords.append(("groups", str(groups)))
        if b is None:
            keywords.append(("bias", "false"))
        self.emit(Op.CONV_TRANSPOSE, attrs, [x], "conv_transpose", [str(filters), _kernel(kernel)], keywords,
                  {"weight": w, "bias": b})

    def max_pool(self) -> None:
        self.check_attrs({"auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"})
        self.only_first_output()
        x = self.data(0)
        self.need_rank(x, (4,))
        if self.attr("kernel_shape") is None:
            self.fail("attribute 'kernel_shape' is missing")
        kernel, stride = self.pair("kernel_shape", 0), self.pair("strides", 1)
        dilation = self.pair("dilations", 1)
        ceil_mode = bool(self.attr("ceil_mode", 0))
        pads = self.window_pads(x, kernel, stride, dilation)
        if self._wide_pads(kernel, pads):
            # cnnc (like PyTorch) limits pool padding to half the kernel; ONNX does not. Padding
            # explicitly with the lowest float32 gives the same maxima as ONNX's −∞ as long as
            # every window still covers an input pixel.
            if ceil_mode:
                self.fail(f"pads {list(pads)} are more than half the kernel {list(kernel)} with ceil_mode=1, "
                          "which cnnc cannot express")
            for axis in range(2):
                size, begin, end = x.shape[axis + 2], pads[axis], pads[axis + 2]
                span = dilation[axis] * (kernel[axis] - 1) + 1
                for start in range(-begin, size + end - span + 1, stride[axis]):
                    if not any(0 <= start + j * dilation[axis] < size for j in range(kernel[axis])):
                        self.fail(f"with pads {list(pads)} a window covers only padding, where ONNX gives −∞; "
                                  "cnnc cannot express that")
            x = self.emit(Op.PAD, o.PadAttrs(pads, "constant", -FLOAT32_MAX), [x], "pad", [_pads(pads)],
                          [("value", fmt_float(-FLOAT32_MAX))], out=f"{self.node.output[0]}_padded",
                          note="padding wider than half the kernel, made explicit", suffix="_pad")
            pads = (0, 0, 0, 0)
        attrs = o.MaxPoolAttrs(kernel, stride, pads, dilation, ceil_mode)
        keywords = []
        if stride != kernel:
            keywords.append(("stride", _pair(stride)))
        if pads != (0, 0, 0, 0):
            keywords.append(("pad", _pads(pads)))
        if dilation != (1, 1):
            keywords.append(("dilation", _pair(dilation)))
        if ceil_mode:
            keywords.append(("ceil_mode", "true"))
        self.emit(Op.MAX_POOL, attrs, [x], "maxpool", [_kernel(kernel)], keywords)

    def avg_pool(self) -> None:
        self.check_attrs({"auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads",
                          "strides"})
        x = self.data(0)
        self.need_rank(x, (4,))
        if self.attr("kernel_shape") is None:
            self.fail("attribute 'kernel_shape' is missing")
        kernel, stride = self.pair("kernel_shape", 0), self.pair("strides", 1)
        if self.pair("dilations", 1) != (1, 1):
            self.fail(f"dilations {self.attr('dilations')} are not supported (cnnc's avgpool has no dilation)")
        ceil_mode = bool(self.attr("ceil_mode", 0))
        include_pad = bool(self.attr("count_include_pad", 0))
        pads = self.window_pads(x, kernel, stride, (1, 1))
        if self._wide_pads(kernel, pads):
            # Wider than cnnc's limit of half the kernel: with count_include_pad=1 (and no ceil_mode
            # overhang) explicit zero padding divides by the same window size.
            if not include_pad or ceil_mode:
                self.fail(f"pads {list(pads)} are more than half the kernel {list(kernel)}, which cnnc's avgpool "
                          f"refuses; only count_include_pad=1 without ceil_mode can be rewritten exactly")
            x = self.emit(Op.PAD, o.PadAttrs(pads, "constant", 0.0), [x], "pad", [_pads(pads)],
                          out=f"{self.node.output[0]}_padded",
                          note="padding wider than half the kernel, made explicit", suffix="_pad")
            pads = (0, 0, 0, 0)
        if pads == (0, 0, 0, 0):
            include_pad = True  # without padding both divisors are the same; keep cnnc's default
        attrs = o.AvgPoolAttrs(kernel, stride, pads, ceil_mode, include_pad)
        keywords = []
        if stride != kernel:
            keywords.append(("stride", _pair(stride)))
        if pads != (0, 0, 0, 0):
            keywords.append(("pad", _pads(pads)))
        if ceil_mode:
            keywords.append(("ceil_mode", "true"))
        if not include_pad:
            keywords.append(("count_include_pad", "false"))
        self.emit(Op.AVG_POOL, attrs, [x], "avgpool", [_kernel(kernel)], keywords)

    @staticmethod
    def _wide_pads(kernel: Pair, pads: Pads) -> bool:
        return any(p > k // 2 for p, k in zip(pads, (*kernel, *kernel)))

    def global_pool(self, op: Op, word: str) -> None:
        self.check_attrs(set())
        x = self.data(0)
        self.need_rank(x, (4,))
        self.emit(op, o.NoAttrs(), [x], word)

    def batch_norm(self) -> None:
        self.check_attrs({"epsilon", "momentum", "training_mode", "spatial", "is_test", "consumed_inputs"})
        self.only_first_output()
        if self.attr("training_mode", 0):
            self.fail("training_mode=1 (batch statistics) is not supported; cnnc's bn is inference batch norm")
        if self.attr("spatial", 1) != 1:
            self.fail("spatial=0 (per-activation statistics) is not supported")
        x = self.data(0)
        self.need_rank(x, (2, 4))
        roles = ["gamma", "beta", "mean", "var"]
        values = {role: self.const(i + 1, f"{role} ({['scale', 'B', 'input_mean', 'input_var'][i]})")
                  for i, role in enumerate(roles)}
        eps = float(self.attr("epsilon", 1e-5))
        keywords = [] if fmt_float(eps) == fmt_float(1e-5) else [("eps", fmt_float(eps))]
        self.emit(Op.BATCH_NORM, o.BatchNormAttrs(float(np.float32(eps))), [x], "bn", [], keywords,
                  {role: np.reshape(v, -1) if v.ndim != 1 else v for role, v in values.items()})

    def lrn(self) -> None:
        self.check_attrs({"alpha", "beta", "bias", "size"})
        x = self.data(0)
        self.need_rank(x, (4,))
        if self.attr("size") is None:
            self.fail("attribute 'size' is missing")
        size = int(self.attr("size"))
        if size < 1 or size % 2 == 0:
            self.fail(f"size={size}: an even LRN window is asymmetric, and ONNX puts the extra channel after "
                      "the centre where cnnc (like PyTorch) puts it before; only odd sizes map exactly")
        alpha, beta, bias = (float(self.attr(n, d)) for n, d in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)))
        cnnc_alpha = float(np.float32(alpha)) / size  # ONNX divides alpha by size; cnnc does not
        attrs = o.LrnAttrs(size, float(np.float32(cnnc_alpha)), float(np.float32(beta)), float(np.float32(bias)))
        keywords = [("size", str(size)), ("alpha", fmt_float(cnnc_alpha)), ("beta", fmt_float(beta)),
                    ("k", fmt_float(bias))]
        self.emit(Op.LRN, attrs, [x], "lrn", [], keywords, note=f"ONNX alpha {fmt_float(alpha)} / size {size}")

    def activation(self, op: Op, word: str) -> None:
        self.check_attrs(set())
        self.emit(op, o.NoAttrs(), [self.data(0)], word)

    def _sole_user(self, out: str, op_type: str) -> tuple[int, Any] | None:
        """The node that alone reads `out` (once), if it is an `op_type` and `out` is no output."""
        users = self.consumers.get(out, [])
        if len(users) != 1 or out in self.graph_outputs:
            return None
        node = self.nodes[users[0]]
        if node.op_type != op_type or node.domain not in ("", "ai.onnx") or node.attribute:
            return None
        return users[0], node

    def _is_scalar(self, name: str, value: float) -> bool:
        """Whether `name` is a constant holding the one float32 `value`."""
        c = self.consts.get(name)
        return c is not None and c.size == 1 and np.float32(np.reshape(c, -1)[0]) == np.float32(value)

    def gate(self, op: Op, word: str, gated: Op, gated_word: str) -> None:
        """g(x), or x · g(x) as one op when the only reader of g(x) is Mul(x, g(x)): Sigmoid →
        silu (how PyTorch exports SiLU), HardSigmoid → hardswish (PyTorch before opset 14)."""
        x, out = self.data(0), self.node.output[0]
        user = self._sole_user(out, "Mul")
        if user is not None and sorted(user[1].input) == sorted([self.node.input[0], out]):
            self.done.add(user[0])
            gate_node = self.node
            self.node, self.node_index = user[1], user[0]  # the layer is named after the Mul
            self.emit(gated, o.NoAttrs(), [x], gated_word, out=user[1].output[0],
                      note=f"with {safe_comment(gate_node.op_type)} {safe_comment(repr(gate_node.name))[:80]}: "
                           f"x · {word}(x)")
            return
        self.emit(op, o.NoAttrs(), [x], word)

    def sigmoid(self) -> None:
        self.check_attrs(set())
        self.gate(Op.SIGMOID, "sigmoid", Op.SILU, "silu")

    def hard_sigmoid(self) -> None:
        self.check_attrs({"alpha", "beta"})
        alpha, beta = float(self.attr("alpha", 0.2)), float(self.attr("beta", 0.5))
        if np.float32(alpha) != np.float32(1 / 6) or np.float32(beta) != np.float32(0.5):
            self.fail(f"HardSigmoid(alpha={alpha:g}, beta={beta:g}), max(0, min(1, alpha·x + beta)), has no cnnc "
                      "equivalent; cnnc's hardsigmoid is alpha = 1/6, beta = 0.5 (PyTorch's; ONNX's default alpha "
                      "is 0.2)")
        self.gate(Op.HARDSIGMOID, "hardsigmoid", Op.HARDSWISH, "hardswish")

    def gelu(self) -> None:
        self.check_attrs({"approximate"})
        form = self.attr("approximate", "none")
        if form not in o.GELU_FORMS:
            self.fail(f"approximate={safe_comment(repr(form))[:40]} is not a GELU form (none, tanh)")
        self.emit(o.GELU_FORMS[form], o.NoAttrs(), [self.data(0)], "gelu", [],
                  [] if form == "none" else [("approximate", form)])

    def div(self) -> None:
        """Div only as the start of the exact GELU that PyTorch exports before opset 20:
        Div(x, √2) → Erf → Add(·, 1) → Mul(x, ·) → Mul(·, 0.5) (operands in either order)."""
        self.check_attrs(set())
        node = self.node
        x = node.input[0] if len(node.input) == 2 and self._is_scalar(node.input[1], math.sqrt(2.0)) else None
        out, chain = node.output[0], []
        for op_type, operand in (("Erf", None), ("Add", 1.0), ("Mul", x), ("Mul", 0.5)):
            user = self._sole_user(out, op_type) if x is not None else None
            if user is None:
                break
            inputs = list(user[1].input)
            if operand is None:
                if inputs != [out]:
                    break
            else:
                other = inputs[1] if len(inputs) == 2 and inputs[0] == out else inputs[0]
                if len(inputs) != 2 or out not in inputs or not (
                        other == operand if isinstance(operand, str) else self._is_scalar(other, operand)):
                    break
            chain.append(user[0])
            out = user[1].output[0]
        if len(chain) != 4:
            self._divide()
            return
        self.done.update(chain)
        self.emit(Op.GELU, o.NoAttrs(), [self.data(0)], "gelu", out=out,
                  note="with the Erf, Add and Muls after it: x · (1 + erf(x / √2)) / 2")

    def _divide(self) -> None:
        """Div that is no GELU: tensor / tensor is div; tensor / constant is a multiply by 1/c."""
        if len(self.node.input) != 2:
            self.fail(f"expected 2 inputs, got {len(self.node.input)}")
        if self.is_const(0):
            self.fail("a constant divided by a tensor has no cnnc equivalent")
        if self.is_const(1):
            c = self.consts[self.node.input[1]]
            if not np.all(c):
                self.fail("division by a constant that holds zeros")
            self._affine(self.data(0), 1.0 / c.astype(np.float64), "Mul")
            return
        self.binary(Op.DIV, "div")

    def sub(self) -> None:
        """tensor − tensor is sub; tensor − constant adds −c (one value per channel, or a scalar)."""
        self.check_attrs(set())
        if len(self.node.input) == 2 and self.is_const(1) and not self.is_const(0):
            self._affine(self.data(0), -self.consts[self.node.input[1]].astype(np.float64), "Add")
            return
        if len(self.node.input) == 2 and self.is_const(0) and not self.is_const(1):  # c − x = −1·x + c
            self._affine(self.data(1), self.consts[self.node.input[0]].astype(np.float64), "RSub")
            return
        self.binary(Op.SUB, "sub")

    def instance_norm(self) -> None:
        self.check_attrs({"epsilon"})
        x = self.data(0)
        if len(x.shape) not in (3, 4):
            self.fail(f"expected a 3-D or 4-D input, got {fmt(x.shape)}")
        eps = float(self.attr("epsilon", 1e-5))
        keywords = [] if fmt_float(eps) == fmt_float(1e-5) else [("eps", fmt_float(eps))]
        self.emit(Op.GROUP_NORM, o.NormAttrs(eps, x.shape[1]), [x], "instance_norm", keywords=keywords,
                  params={"gamma": self.const(1, "scale"), "beta": self.const(2, "bias")})

    def _layer_norm_params(self, node: Any) -> dict[str, np.ndarray]:
        scale = self.consts.get(node.input[1]) if len(node.input) > 1 else None
        if scale is None:
            self.fail("LayerNormalization's scale must be a constant")
        bias = self.consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        return {"gamma": scale, "beta": np.zeros_like(scale) if bias is None else bias}

    def _emit_layer_norm(self, x: Value, node: Any, out: str | None = None) -> None:
        eps = next((float(a.f) for a in node.attribute if a.name == "epsilon"), 1e-5)
        keywords = [] if fmt_float(eps) == fmt_float(1e-5) else [("eps", fmt_float(eps))]
        self.emit(Op.LAYER_NORM, o.NormAttrs(eps), [x], "layer_norm", keywords=keywords,
                  params=self._layer_norm_params(node), out=out)

    def layer_norm(self) -> None:
        """LayerNormalization over the last axis of [N, C]: cnnc's layer_norm (over the channels).
        On 4-D tensors it is imported only between Transposes to channels-last and back."""
        self.check_attrs({"axis", "epsilon", "stash_type"})
        x = self.data(0)
        axis = int(self.attr("axis", -1))
        if len(x.shape) != 2 or axis not in (-1, 1):
            self.fail(f"LayerNormalization over axis {axis} of {fmt(x.shape)} is supported only on [N, C] "
                      "(axis -1), or on NCHW tensors as Transpose(0, 2, 3, 1) → LayerNormalization → "
                      "Transpose(0, 3, 1, 2) (ConvNeXt's channels-first LayerNorm)")
        self._emit_layer_norm(x, self.node)

    def _user(self, out: str, op_type: str) -> tuple[int, Any] | None:
        """The node that alone reads `out`, if it is an `op_type` (attributes allowed) and `out` no output."""
        users = self.consumers.get(out, [])
        if len(users) != 1 or out in self.graph_outputs:
            return None
        node = self.nodes[users[0]]
        return (users[0], node) if node.op_type == op_type and node.domain in ("", "ai.onnx") else None

    def reduce(self, mode: str) -> None:
        """ReduceMean/Max/Sum over listed axes (an attribute, or from opset 13 for ReduceSum and
        18 for the others an input); never the batch axis."""
        self.check_attrs({"axes", "keepdims", "noop_with_empty_axes"})
        x = self.data(0)
        given = self.const(1, "axes", required=False) if len(self.node.input) > 1 else None
        axes = [int(a) for a in np.reshape(given, -1)] if given is not None else list(self.attr("axes") or [])
        if not axes:
            self.fail("a reduction over all axes (no axes given) includes the batch axis")
        keepdims = bool(int(self.attr("keepdims", 1)))
        normalized = tuple(a % len(x.shape) for a in axes)
        if 0 in normalized:
            self.fail("reducing the batch axis is not supported")
        keywords = [] if keepdims else [("keepdims", "false")]
        self.emit(Op.REDUCE, o.ReduceAttrs(mode, normalized, keepdims), [x], f"reduce_{mode}",
                  [f"({', '.join(map(str, normalized))},)"], keywords)

    def depth_to_space(self) -> None:
        self.check_attrs({"blocksize", "mode"})
        mode = self.attr("mode", "DCR")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode != "CRD":
            self.fail(f"DepthToSpace mode {mode} orders the channels depth-column-row; cnnc's pixel_shuffle is "
                      "mode CRD (PyTorch's PixelShuffle)")
        factor = int(self.attr("blocksize"))
        self.emit(Op.PIXEL_SHUFFLE, o.PixelShuffleAttrs(factor), [self.data(0)], "pixel_shuffle", [str(factor)])

    def leaky_relu(self) -> None:
        self.check_attrs({"alpha"})
        slope = float(self.attr("alpha", 0.01))
        keywords = [] if fmt_float(slope) == fmt_float(0.01) else [("slope", fmt_float(slope))]
        self.emit(Op.LEAKY_RELU, o.LeakyReluAttrs(float(np.float32(slope))), [self.data(0)],
                  "leaky_relu", [], keywords)

    def clip(self) -> None:
        self.check_attrs({"min", "max"})
        x = self.data(0)
        if self.opset < 11:
            low, high = self.attr("min"), self.attr("max")
        else:
            bounds = [self.const(i, what, required=False) for i, what in ((1, "min"), (2, "max"))]
            for bound, what in zip(bounds, ("min", "max")):
                if bound is not None and bound.size != 1:
                    self.fail(f"the {what} bound must be a scalar, got shape {list(bound.shape)}")
            low, high = (None if b is None else float(np.reshape(b, -1)[0]) for b in bounds)
        no_low = low is None or low <= -FLOAT32_MAX
        no_high = high is None or high >= FLOAT32_MAX
        if no_low and no_high:
            self.alias(x)
        elif low == 0 and no_high:
            self.emit(Op.RELU, o.NoAttrs(), [x], "relu", note="Clip(0, inf)")
        elif low == 0 and high == 6:
            self.emit(Op.RELU6, o.NoAttrs(), [x], "relu6", note="Clip(0, 6)")
        else:
            lo = -FLOAT32_MAX if no_low else float(low)  # type: ignore[arg-type]
            hi = FLOAT32_MAX if no_high else float(high)  # type: ignore[arg-type]
            if lo > hi:
                self.fail(f"Clip({lo:g}, {hi:g}) has min above max")
            self.emit(Op.CLIP, o.ClipAttrs(lo, hi), [x], "clip", [fmt_float(lo), fmt_float(hi)])

    def softmax(self) -> None:
        self.check_attrs({"axis"})
        x = self.data(0)
        rank = len(x.shape)
        axis = int(self.attr("axis", 1 if self.opset < 13 else -1))
        if not -rank <= axis < rank:
            self.fail(f"axis {axis} is out of range for a {rank}-D input")
        axis %= rank
        if self.opset < 13:
            # Before opset 13, softmax normalizes over all the axes from `axis` on (flattened).
            wide = [i for i in range(axis, rank) if x.shape[i] != 1]
            if len(wide) > 1:
                self.fail(f"before opset 13, Softmax(axis={axis}) normalizes over axes {axis}..{rank - 1} of "
                          f"{fmt(x.shape)} together; cnnc's softmax takes one axis")
            axis = wide[0] if wide else axis
        keywords = [] if axis == 1 else [("axis", str(axis))]
        self.emit(Op.SOFTMAX, o.SoftmaxAttrs(axis), [x], "softmax", [], keywords)

    def dense(self, x: Value, weight: np.ndarray, bias: np.ndarray | None, note: str = "",
              out: str | None = None) -> None:
        units = int(weight.shape[0])
        keywords = [] if bias is not None else [("bias", "false")]
        self.emit(Op.DENSE, o.DenseAttrs(units, bias is not None), [x], "dense", [str(units)], keywords,
                  {"weight": weight, "bias": bias}, out=out, note=note)

    @staticmethod
    def _vector(c: np.ndarray, units: int) -> np.ndarray | None:
        """`c` as a bias of `units` entries, if it broadcasts along the batch; else None."""
        if c.size == 1:
            return np.full(units, float(np.reshape(c, -1)[0]), np.float32)
        if c.shape in ((units,), (1, units)):
            return np.reshape(c, units).astype(np.float32)
        return None

    def gemm(self) -> None:
        self.check_attrs({"alpha", "beta", "transA", "transB"})
        a = self.data(0)
        self.need_rank(a, (2,), "input A")
        if self.attr("transA", 0):
            self.fail("transA=1 (a transposed data input) is not supported")
        b = self.const(1, "matrix B")
        if b.ndim != 2:
            self.fail(f"B is {b.ndim}-D; Gemm needs a 2-D matrix")
        weight = b if self.attr("transB", 0) else b.T
        if weight.shape[1] != a.shape[1]:
            self.fail(f"B of shape {list(b.shape)} does not fit A {fmt(a.shape)}")
        alpha, beta = float(self.attr("alpha", 1.0)), float(self.attr("beta", 1.0))
        weight = np.ascontiguousarray(weight * np.float32(alpha) if alpha != 1.0 else weight, dtype=np.float32)
        c = self.const(2, "bias C", required=False)
        bias = None
        if c is not None:
            bias = self._vector(c, weight.shape[0])
            if bias is None:
                self.fail(f"bias C of shape {list(c.shape)} varies along the batch; dense needs a bias of "
                          f"[{weight.shape[0]}], [1, {weight.shape[0]}] or a scalar")
            if beta != 1.0:
                bias = bias * np.float32(beta)
        notes = [f"{n}={v:g} folded into the {p}" for n, v, p in (("alpha", alpha, "weight"), ("beta", beta, "bias"))
                 if v != 1.0 and (n == "alpha" or c is not None)]
        self.dense(a, weight, bias, "; ".join(notes))

    def local_function(self) -> None:
        """An `ai.cnnc` node (cnnc/interop/onnx_functions.py) back as its op, read from its
        attributes; its constant inputs must be those the attributes give, so that the op imported
        is the one the model's function computes."""
        op, word, count, local = onnx_functions.BY_NAME[self.node.op_type]
        try:
            attrs = local.from_attributes({a.name: self.attr(a.name) for a in self.node.attribute})
        except (KeyError, TypeError, ValueError, IndexError) as error:
            self.fail(f"its attributes do not describe cnnc's {word} ({type(error).__name__}: {error})")
        inputs = [self.data(i) for i in range(count)]
        expected = local.constants(attrs, [v.shape for v in inputs])
        if len(self.node.input) != count + len(expected):
            self.fail(f"it has {len(self.node.input)} inputs; cnnc's exporter writes {count + len(expected)}")
        for i, want in enumerate(expected, count):
            got = self.const(i, f"constant {i}")
            if got.shape != want.shape or not np.array_equal(got, want):
                self.fail(f"its constant input {i} ({self.node.input[i]!r}) is not the one its attributes give")
        positional, keywords = local.keywords(attrs)
        self.emit(op, attrs, inputs, word, positional, keywords)

    def matmul(self) -> None:
        self.check_attrs(set())
        a = self.data(0)
        self.need_rank(a, (2,), "input A")
        b = self.const(1, "matrix B")
        if b.ndim != 2 or b.shape[0] != a.shape[1]:
            self.fail(f"B of shape {list(b.shape)} does not fit A {fmt(a.shape)}; cnnc supports [N, K] × [K, M] "
                      "with a constant B (dense)")
        weight = np.ascontiguousarray(b.T)
        # MatMul followed by Add of a constant vector (the bias) is one dense layer.
        found = self._bias_add(weight.shape[0])
        if found is not None:
            bias, add = found
            self.dense(a, weight, bias, f"with Add {safe_comment(repr(add.name))[:80]} as the bias", out=add.output[0])
            return
        self.dense(a, weight, None)

    def _bias_add(self, units: int) -> tuple[np.ndarray, Any] | None:
        """(bias, the Add node) when this node's only reader adds a constant vector of `units`
        values to it (a MatMul's bias); the Add is then taken (marked done)."""
        out = self.node.output[0]
        users = self.consumers.get(out, [])
        if len(users) != 1 or out in self.graph_outputs:
            return None
        add = self.nodes[users[0]]
        if add.op_type != "Add" or add.domain not in ("", "ai.onnx") or len(add.input) != 2:
            return None
        other = add.input[1] if add.input[0] == out else add.input[0]
        if other not in self.consts or other == out:
            return None
        bias = self._vector(self.consts[other], units)
        if bias is None:
            return None
        self.done.add(users[0])
        return bias, add

    def flatten(self) -> None:
        self.check_attrs({"axis"})
        x = self.data(0)
        rank = len(x.shape)
        axis = int(self.attr("axis", 1))
        if axis < 0:
            axis += rank
        if axis != 1:
            self.fail(f"axis={self.attr('axis', 1)} on a {rank}-D input would change the batch dimension; "
                      "only axis 1 maps to flatten")
        self.emit(Op.FLATTEN, o.NoAttrs(), [x], "flatten")

    def _reshape_target(self, x: Value, shape: np.ndarray, allowzero: bool) -> list[int]:
        """The new shape without the batch dimension, or a failure if the batch would change."""
        target = [int(v) for v in np.reshape(shape, -1)]
        if allowzero and 0 in target:
            self.fail("allowzero=1 with a 0 in the shape (an empty tensor) is not supported")
        dims = list(x.shape)
        if not target:
            self.fail("reshaping to a scalar would drop the batch dimension")
        resolved = [dims[i] if v == 0 and i < len(dims) else v for i, v in enumerate(target)]
        if any(v == 0 for v in resolved):
            self.fail(f"shape {target} copies a dimension the input does not have")
        per_example = math.prod(dims[1:])
        first, rest = resolved[0], resolved[1:]
        if rest.count(-1) + (first == -1) > 1 or any(v < -1 for v in rest) or (isinstance(first, int) and first < -1):
            self.fail(f"shape {target} is not a valid shape")
        if -1 in rest:
            known = math.prod(v for v in rest if v != -1)
            if first == -1 or known == 0 or per_example % known:
                self.fail(f"shape {target} does not fit {fmt(x.shape)} with the batch kept")
            rest[rest.index(-1)] = per_example // known
        if math.prod(rest) != per_example or not (first == -1 or first == dims[0]):
            self.fail(f"shape {target} changes the batch dimension of {fmt(x.shape)}; cnnc's reshape keeps "
                      "the batch")
        return rest

    def reshape(self) -> None:
        self.check_attrs({"allowzero", "shape"})
        x = self.data(0)
        shape = self.attr("shape") if self.opset < 5 else self.const(1, "shape")
        rest = self._reshape_target(x, np.asarray(shape), bool(self.attr("allowzero", 0)))
        if self._channel_shuffle(x, rest) or self._depthwise_pool(x, rest):
            return
        self._reshape_to(x, rest)

    def _reshape_to(self, x: Value, rest: Sequence[int], note: str = "") -> None:
        """`x` reshaped to [batch, *rest]: flatten for one dimension, else reshape."""
        if len(rest) == 1:
            self.emit(Op.FLATTEN, o.NoAttrs(), [x], "flatten", note=note)
        else:
            self.emit(Op.RESHAPE, o.ReshapeAttrs(tuple(rest)), [x], "reshape", [f"[{', '.join(map(str, rest))}]"],
                      note=note)

    def _axes(self) -> list[int] | None:
        """Unsqueeze's and Squeeze's axes: an attribute before opset 13, an input from 13 on."""
        if self.opset < 13:
            self.check_attrs({"axes"})
            given = self.attr("axes")
            return None if given is None else [int(a) for a in given]
        self.check_attrs(set())
        axes = self.const(1, "axes", required=False)
        return None if axes is None else [int(a) for a in np.reshape(axes, -1)]

    def unsqueeze(self) -> None:
        """Unsqueeze of a computed tensor, after the batch axis, is a reshape."""
        x = self.data(0)
        axes = self._axes()
        if not axes:
            self.fail("the axes are missing")
        rank = len(x.shape) + len(axes)
        if any(not -rank <= a < rank for a in axes):
            self.fail(f"axes {axes} are out of range for a {rank}-D result")
        resolved = sorted(a % rank for a in axes)
        if len(set(resolved)) != len(resolved) or resolved[0] == 0:
            self.fail(f"axes {axes} {'repeat an axis' if len(set(resolved)) != len(resolved) else 'move the batch'}; "
                      "cnnc keeps the batch first")
        shape = list(x.shape)
        for a in resolved:
            shape.insert(a, 1)
        self._reshape_to(x, shape[1:], note=f"Unsqueeze axes {resolved}")

    def squeeze(self) -> None:
        """Squeeze of a computed tensor, of axes after the batch, is a reshape."""
        x = self.data(0)
        axes = self._axes()
        rank = len(x.shape)
        if axes is None:
            if not isinstance(x.shape[0], int) or x.shape[0] == 1:
                self.fail(f"Squeeze without axes of {fmt(x.shape)} may drop the batch axis; cnnc keeps the batch")
            resolved = [i for i, d in enumerate(x.shape) if d == 1]
        else:
            if any(not -rank <= a < rank for a in axes):
                self.fail(f"axes {axes} are out of range for a {rank}-D input")
            resolved = sorted({a % rank for a in axes})
        if 0 in resolved:
            self.fail(f"axes {axes} squeeze the batch axis; cnnc keeps the batch")
        if any(x.shape[a] != 1 for a in resolved):
            self.fail(f"axes {axes} of {fmt(x.shape)} are not all of size 1")
        if len(resolved) == rank - 1:
            self.fail(f"squeezing {fmt(x.shape)} to 1-D is not supported; cnnc keeps [N, ...] tensors of rank 2 "
                      "or more")
        self._reshape_to(x, [d for i, d in enumerate(x.shape) if i > 0 and i not in resolved],
                         note=f"Squeeze axes {resolved}")

    def _channel_shuffle(self, x: Value, rest: list[int]) -> bool:
        """Reshape → Transpose → Reshape that permutes the channels of [N, C, H, W] (ShuffleNet)
        becomes one 1×1 conv whose weight is the permutation matrix (exact: one 1 per row)."""
        if len(x.shape) != 4:
            return False
        chain, out = [], self.node.output[0]
        for op_type in ("Transpose", "Reshape"):
            users = self.consumers.get(out, [])
            if len(users) != 1 or out in self.graph_outputs:
                return False
            node = self.nodes[users[0]]
            if node.op_type != op_type or node.domain not in ("", "ai.onnx") or node.input[0] != out:
                return False
            chain.append((users[0], node))
            out = node.output[0]
        (t_index, transpose), (r_index, reshape2) = chain
        perm = next((list(a.ints) for a in transpose.attribute if a.name == "perm"), None)
        if len(reshape2.input) < 2 or reshape2.input[1] not in self.consts:
            return False
        if any(a.name not in ("allowzero",) for a in reshape2.attribute) or \
                any(a.name != "perm" for a in transpose.attribute):
            return False
        _, c, h, w = x.shape
        middle = [x.shape[0], *rest]
        if perm is None:
            perm = list(range(len(middle)))[::-1]
        if sorted(perm) != list(range(len(middle))) or perm[0] != 0:
            return False
        moved = tuple(middle[p] for p in perm)
        allowzero = any(a.name == "allowzero" and a.i for a in reshape2.attribute)
        try:
            final = self._reshape_target(Value("", moved, ""), self.consts[reshape2.input[1]], allowzero)
        except _Fail:
            return False
        if final != [c, h, w]:
            return False
        middle[0] = 1
        index = np.arange(c * h * w).reshape(1, c, h, w)
        moved_index = np.transpose(index.reshape(middle), perm).reshape(1, c, h, w)
        source = moved_index[0, :, 0, 0] // (h * w)
        expected = source[:, None, None] * (h * w) + np.arange(h * w).reshape(h, w)
        if not np.array_equal(moved_index[0], expected) or sorted(source.tolist()) != list(range(c)):
            return False
        weight = np.zeros((c, c, 1, 1), np.float32)
        weight[np.arange(c), source, 0, 0] = 1.0
        self.done.update({t_index, r_index})
        self.node, self.node_index = transpose, t_index
        self.emit(Op.CONV, o.ConvAttrs(c, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, False), [x],
                  "conv", [str(c), "1x1"], [("bias", "false")], {"weight": weight},
                  out=reshape2.output[0], note="channel shuffle (Reshape, Transpose, Reshape) as a permutation")
        return True

    def _depthwise_pool(self, x: Value, rest: list[int]) -> bool:
        """Reshape [N, C, H, W] → [N, C/s, s, H, W], then ReduceMax or ReduceMean over axis 2
        (keepdims=0), is cnnc's depthwise pooling: the max or mean of groups of s channels."""
        if len(x.shape) != 4 or len(rest) != 4 or rest[2:] != list(x.shape[2:]) or rest[0] * rest[1] != x.shape[1]:
            return False
        out = self.node.output[0]
        users = self.consumers.get(out, [])
        if len(users) != 1 or out in self.graph_outputs:
            return False
        reduce = self.nodes[users[0]]
        if reduce.op_type not in ("ReduceMax", "ReduceMean") or reduce.domain not in ("", "ai.onnx"):
            return False
        attrs = {a.name: self.onnx.helper.get_attribute_value(a) for a in reduce.attribute}
        axes = attrs.get("axes")
        if len(reduce.input) > 1 and reduce.input[1]:
            if reduce.input[1] not in self.consts:
                return False
            axes = [int(v) for v in np.reshape(self.consts[reduce.input[1]], -1)]
        if axes is None or [int(v) % 5 for v in axes] != [2] or attrs.get("keepdims", 1) != 0 or \
                set(attrs) - {"axes", "keepdims", "noop_with_empty_axes"}:
            return False
        size, mode = rest[1], "max" if reduce.op_type == "ReduceMax" else "avg"
        self.done.add(users[0])
        self.node, self.node_index = reduce, users[0]
        self.emit(Op.DEPTHWISE_POOL, o.DepthwisePoolAttrs(size, mode), [x], f"depthwise_{mode}pool", [str(size)],
                  out=reduce.output[0], note="with the Reshape before it: pooling across groups of channels")
        return True

    def slice(self) -> None:
        """Slice with step 1: of the spatial axes of an image, crop; of one other axis, slice."""
        self.check_attrs({"starts", "ends", "axes"})
        x = self.data(0)
        rank = len(x.shape)
        if rank < 2:
            self.fail(f"its input is {fmt(x.shape)}; cnnc slices tensors with a batch axis and more")
        if self.opset < 10:
            starts, ends = self.attr("starts") or [], self.attr("ends") or []
            axes, steps = self.attr("axes"), None
        else:
            starts, ends = (np.reshape(self.const(i, what), -1).tolist() for i, what in ((1, "starts"), (2, "ends")))
            given = self.const(3, "axes", required=False)
            axes = None if given is None else np.reshape(given, -1).tolist()
            given = self.const(4, "steps", required=False)
            steps = None if given is None else np.reshape(given, -1).tolist()
        axes = list(range(len(starts))) if axes is None else [int(a) % rank for a in axes]
        if steps is not None and any(int(v) != 1 for v in steps):
            self.fail(f"steps {steps} are not supported (only 1)")
        if not len(starts) == len(ends) == len(axes):
            self.fail("starts, ends and axes differ in length")
        begin, stop = [0] * rank, list(x.shape)
        for axis, start, end in zip(axes, starts, ends):
            dim = x.shape[axis]
            if isinstance(dim, str):
                self.fail("slicing the batch axis is not supported")
            start, end = int(start), int(end)
            start = min(max(start + dim if start < 0 else start, 0), dim)
            end = min(max(end + dim if end < 0 else end, 0), dim)
            begin[axis], stop[axis] = start, end
        if begin[0] != 0:
            self.fail("slicing the batch axis is not supported")
        cut = [axis for axis in range(1, rank) if (begin[axis], stop[axis]) != (0, x.shape[axis])]
        if rank != 4 or 1 in cut:  # one axis (an image's channels, or any of another rank): slice
            if len(cut) > 1:
                self.fail("a Slice of the channels and of H or W at once is not supported" if rank == 4 else
                          f"a Slice of {len(cut)} axes at once is not supported of a {rank}-D tensor (one axis)")
            axis = cut[0] if cut else 1
            if stop[axis] <= begin[axis]:
                self.fail("the slice is empty")
            self.emit(Op.SLICE, o.SliceAttrs(axis, begin[axis], stop[axis]), [x], "slice",
                      [str(axis), str(begin[axis]), str(stop[axis])])
            return
        size = (stop[2] - begin[2], stop[3] - begin[3])  # an image's H and W: crop
        if min(size) < 1:
            self.fail("the slice is empty")
        keywords = [] if begin[2:] == [0, 0] else [("offset", _pair(begin[2:]))]
        self.emit(Op.CROP, o.CropAttrs((begin[2], begin[3]), size), [x], "crop", [f"({size[0]}, {size[1]})"], keywords)

    def transpose(self) -> None:
        self.check_attrs({"perm"})
        x = self.data(0)
        perm = self.attr("perm")
        if perm is not None and list(perm) == list(range(len(x.shape))):
            self.alias(x)
            return
        if perm is not None and list(perm) == [0, 2, 3, 1] and len(x.shape) == 4:
            self.alias(x)  # the same NCHW value, seen channels-last until the Transpose back
            self.channels_last.add(self.node.output[0])
            return
        self.fail("Transpose is supported only as the channel shuffle pattern Reshape → Transpose → Reshape "
                  "(that permutes the channels of an NCHW tensor), or to channels-last and back "
                  "(Transpose(0, 2, 3, 1) → channel-wise ops → Transpose(0, 3, 1, 2), as ConvNeXt's blocks)")

    def concat(self) -> None:
        self.check_attrs({"axis"})
        xs = [self.data(i) for i in range(len(self.node.input))]
        rank = len(xs[0].shape)
        axis = int(self.attr("axis", 1))
        if not -rank <= axis < rank:
            self.fail(f"axis {axis} is out of range for {rank}-D inputs")
        axis %= rank
        if len(xs) == 1:
            self.alias(xs[0])
            return
        keywords = [] if axis == 1 else [("axis", str(axis))]
        self.emit(Op.CONCAT, o.ConcatAttrs(axis), xs, "concat", keywords=keywords)

    def _affine(self, x: Value, c: np.ndarray, kind: str) -> None:
        """x + c, x · c or c − x ("RSub") with a constant that is one number per channel (or a
        scalar): a bn with mean 0, var 1, eps 0 (scale and shift exactly γ and β)."""
        rank = len(x.shape)
        if c.ndim > rank:
            self.fail(f"the constant {list(c.shape)} has more dimensions than {fmt(x.shape)}")
        full = (1,) * (rank - c.ndim) + tuple(c.shape)
        channels = x.shape[1] if rank >= 2 else None
        if rank not in (2, 4) or channels is None or not (
                all(d == 1 for i, d in enumerate(full) if i != 1) and full[1] in (1, channels)):
            self.fail(f"{kind} of {fmt(x.shape)} by a constant of shape {list(c.shape)} is supported only when the "
                      "constant is a scalar or one value per channel (axis 1) of a 2-D or 4-D tensor")
        values = np.broadcast_to(np.reshape(c, -1).astype(np.float32), (channels,)) if c.size == 1 else \
            np.reshape(c, channels).astype(np.float32)
        ones, zeros = np.ones(channels, np.float32), np.zeros(channels, np.float32)
        gamma, beta = {"Mul": (values, zeros), "Add": (ones, values), "RSub": (-ones, values)}[kind]
        what = "a constant per channel minus the tensor" if kind == "RSub" else f"{kind} by a constant per channel"
        self.emit(Op.BATCH_NORM, o.BatchNormAttrs(0.0), [x], "bn", [], [("eps", "0.0")],
                  {"gamma": gamma, "beta": beta, "mean": zeros, "var": ones},
                  note=f"{what}: gamma, beta, mean 0, var 1")

    def binary(self, op: Op, word: str) -> None:
        self.check_attrs(set())
        if len(self.node.input) != 2:
            self.fail(f"expected 2 inputs, got {len(self.node.input)}")
        constant = [self.is_const(i) for i in range(2)]
        if all(constant):
            self.fail("both inputs are constants; cnnc does not fold constant expressions")
        if any(constant):
            tensor = self.data(constant.index(False))
            self._affine(tensor, self.consts[self.node.input[constant.index(True)]], self.node.op_type)
            return
        a, b = self.data(0), self.data(1)
        if len(a.shape) != len(b.shape):
            self.fail(f"inputs {fmt(a.shape)} and {fmt(b.shape)} have different ranks; cnnc broadcasts only "
                      "tensors of equal rank")
        self.emit(op, o.NoAttrs(), [a, b], word)

    def sum(self) -> None:
        self.check_attrs(set())
        xs = [self.data(i) for i in range(len(self.node.input))]
        if len(xs) == 1:
            self.alias(xs[0])
            return
        value = xs[0]
        for i, other in enumerate(xs[1:], start=1):
            if len(value.shape) != len(other.shape):
                self.fail(f"inputs {fmt(value.shape)} and {fmt(other.shape)} have different ranks")
            last = i == len(xs) - 1
            value = self.emit(Op.ADD, o.NoAttrs(), [value, other], "add",
                              out=self.node.output[0] if last else f"{self.node.output[0]}_partial{i}",
                              note="" if last else f"part {i} of {len(xs) - 1}")

    def dropout(self) -> None:
        self.check_attrs({"ratio", "seed", "is_test", "consumed_inputs"})
        self.only_first_output()
        x = self.data(0)
        if self.opset >= 12:
            ratio = self.const(1, "ratio", required=False)
            rate = 0.5 if ratio is None else float(np.reshape(ratio, -1)[0])
            training = self.const(2, "training_mode", required=False)
            if training is not None and bool(np.reshape(training, -1)[0]):
                self.fail("training_mode=true (random dropout) is not supported; cnnc compiles for inference")
        else:
            rate = float(self.attr("ratio", 0.5))
        if not 0.0 <= rate < 1.0:
            self.fail(f"ratio {rate:g} is outside [0, 1)")
        self.emit(Op.DROPOUT, o.DropoutAttrs(rate), [x], "dropout", [] if rate == 0.5 else [fmt_float(rate)])

    # ---- resizing -----------------------------------------------------------------------------
    def _upsample(self, x: Value, scales: list[float], mode: str, transform: str, nearest: str) -> None:
        """Emit cnnc's upsample if ONNX's resize with these settings computes exactly the same."""
        self.need_rank(x, (4,))
        if len(scales) != 4:
            self.fail(f"expected 4 scales (N, C, H, W), got {len(scales)}")
        if scales[0] != 1 or scales[1] != 1:
            self.fail(f"scales {scales} resize the batch or channel axis; cnnc upsamples H and W only")
        factors = []
        for s in scales[2:]:
            if s < 1 or s != int(s):
                self.fail(f"scales {scales}: cnnc upsamples by integer factors ≥ 1 only (no downsampling or "
                          "fractional scales)")
            factors.append(int(s))
        if factors == [1, 1]:
            self.alias(x)
            return
        if mode == "nearest":
            for axis, s in zip((2, 3), factors):
                size = x.shape[axis]
                for i in range(size * s):
                    if _nearest_source(i, s, size, size * s, transform, nearest) != i // s:
                        self.fail(f"nearest resizing with coordinate_transformation_mode={transform!r} and "
                                  f"nearest_mode={nearest!r} does not repeat each pixel {s} times, as cnnc's "
                                  "nearest upsample does")
            word = "nearest"
        elif mode == "linear":
            if transform not in ("half_pixel", "pytorch_half_pixel", "half_pixel_symmetric") and factors != [1, 1]:
                self.fail(f"linear resizing with coordinate_transformation_mode={transform!r} differs from cnnc's "
                          "bilinear (half_pixel, PyTorch align_corners=False)")
            word = "bilinear"
        else:
            self.fail(f"mode={mode!r} is not supported (only nearest and linear)")
        keywords = [] if word == "nearest" else [("mode", "bilinear")]
        scale_text = _pair(factors)
        positional = [] if factors == [2, 2] and not keywords else [scale_text]
        self.emit(Op.UPSAMPLE, o.UpsampleAttrs((factors[0], factors[1]), word), [x], "upsample", positional, keywords)

    def upsample_op(self) -> None:
        self.check_attrs({"mode", "scales", "height_scale", "width_scale"})
        x = self.data(0)
        mode = self.attr("mode", "nearest")
        if self.attr("height_scale") is not None:
            scales = [1.0, 1.0, float(self.attr("height_scale")), float(self.attr("width_scale", 1.0))]
        elif self.opset < 9:
            scales = [float(v) for v in (self.attr("scales") or [])]
        else:
            scales = [float(v) for v in np.reshape(self.const(1, "scales"), -1)]
        if mode in ("linear", "bilinear"):
            self.need_rank(x, (4,))
            if scales[2:] != [1.0, 1.0]:
                self.fail("linear Upsample uses asymmetric coordinates, which differ from cnnc's bilinear "
                          "(half_pixel); export with Resize(mode=linear, coordinate_transformation_mode=half_pixel)")
        self._upsample(x, scales, "nearest" if mode == "nearest" else "linear", "asymmetric", "floor")

    def resize(self) -> None:
        self.check_attrs({"mode", "coordinate_transformation_mode", "nearest_mode", "cubic_coeff_a", "exclude_outside",
                          "extrapolation_value", "antialias", "axes", "keep_aspect_ratio_policy"})
        x = self.data(0)
        self.need_rank(x, (4,))
        mode = self.attr("mode", "nearest")
        if self.opset < 11:
            self._upsample(x, [float(v) for v in np.reshape(self.const(1, "scales"), -1)], mode, "asymmetric", "floor")
            return
        transform = self.attr("coordinate_transformation_mode", "half_pixel")
        nearest = self.attr("nearest_mode", "round_prefer_floor")
        if transform == "tf_crop_and_resize":
            self.fail("coordinate_transformation_mode='tf_crop_and_resize' is not supported")
        if self.attr("exclude_outside", 0) and mode == "cubic":
            self.fail("exclude_outside=1 is not supported")
        scales = self.const(2, "scales", required=False)
        sizes = self.const(3, "sizes", required=False)
        rank = len(x.shape)
        axes = [int(a) % rank for a in (self.attr("axes") or range(rank))]
        if scales is not None and scales.size:
            given = [float(v) for v in np.reshape(scales, -1)]
        elif sizes is not None and sizes.size:
            wanted = [int(v) for v in np.reshape(sizes, -1)]
            if len(wanted) != len(axes):
                self.fail(f"sizes {wanted} do not match axes {axes}")
            ratios = [Fraction(w, x.shape[a]) for w, a in zip(wanted, axes) if not isinstance(x.shape[a], str)]
            if len(ratios) != len(axes):
                self.fail("sizes for the batch axis cannot be checked against a symbolic batch")
            policy = self.attr("keep_aspect_ratio_policy", "stretch")
            if policy != "stretch":
                chosen = min(ratios) if policy == "not_larger" else max(ratios)
                ratios = [chosen] * len(axes)
            given = [float(r) if r.denominator == 1 else float("nan") for r in ratios]
            if any(r.denominator != 1 for r in ratios):
                self.fail(f"sizes {wanted} are not integer multiples of the input {fmt(x.shape)}")
        else:
            self.fail("neither scales nor sizes is given")
        if len(given) != len(axes):
            self.fail(f"{len(given)} scales for axes {axes}")
        full = [1.0] * rank
        for a, s in zip(axes, given):
            full[a] = s
        self._upsample(x, full, mode, transform, nearest)

    def pad(self) -> None:
        self.check_attrs({"mode", "pads", "value"})
        x = self.data(0)
        self.need_rank(x, (4,))
        mode = self.attr("mode", "constant")
        if mode not in ("constant", "reflect", "edge"):
            self.fail(f"mode={mode!r} is not supported (constant, reflect, edge)")
        if self.opset < 11:
            pads = [int(v) for v in (self.attr("pads") or [])]
            value = float(self.attr("value", 0.0))
            axes = list(range(4))
        else:
            pads = [int(v) for v in np.reshape(self.const(1, "pads"), -1)]
            constant = self.const(2, "constant_value", required=False)
            value = 0.0 if constant is None or constant.size == 0 else float(np.reshape(constant, -1)[0])
            given_axes = self.const(3, "axes", required=False)
            axes = list(range(4)) if given_axes is None else [int(a) % 4 for a in np.reshape(given_axes, -1)]
        if len(pads) != 2 * len(axes):
            self.fail(f"pads {pads} do not match {len(axes)} axes")
        begin, end = dict(zip(axes, pads[:len(axes)])), dict(zip(axes, pads[len(axes):]))
        if any(begin.get(a, 0) or end.get(a, 0) for a in (0, 1)):
            self.fail(f"pads {pads} pad the batch or channel axis; cnnc pads H and W only")
        spatial = (begin.get(2, 0), begin.get(3, 0), end.get(2, 0), end.get(3, 0))
        if any(p < 0 for p in spatial):
            self.fail(f"negative pads {pads} (cropping) are not supported")
        if mode != "constant":
            value = 0.0
        if not math.isfinite(value):
            self.fail(f"constant_value {value} cannot be written in a .cnn file")
        keywords = []
        if mode != "constant":
            keywords.append(("mode", mode))
        elif value != 0.0:
            keywords.append(("value", fmt_float(value)))
        self.emit(Op.PAD, o.PadAttrs(spatial, mode, float(np.float32(value))), [x],
                  "pad", [_pads(spatial)], keywords)

    def identity(self) -> None:
        self.check_attrs(set())
        self.alias(self.data(0))


def _round_nearest(x: Fraction, mode: str) -> int:
    floor = math.floor(x)
    if mode == "floor":
        return floor
    if mode == "ceil":
        return math.ceil(x)
    if x - floor == Fraction(1, 2):
        return floor if mode == "round_prefer_floor" else floor + 1
    return round(x)


def _nearest_source(i: int, scale: int, in_size: int, out_size: int, transform: str, mode: str) -> int | None:
    """The input index ONNX's nearest Resize reads for output index `i` (exact arithmetic)."""
    s = Fraction(scale)
    if transform in ("half_pixel", "half_pixel_symmetric"):
        x = (i + Fraction(1, 2)) / s - Fraction(1, 2)
    elif transform == "pytorch_half_pixel":
        x = (i + Fraction(1, 2)) / s - Fraction(1, 2) if out_size > 1 else Fraction(0)
    elif transform == "asymmetric":
        x = i / s
    elif transform == "align_corners":
        x = Fraction(i * (in_size - 1), out_size - 1) if out_size > 1 else Fraction(0)
    elif transform == "tf_half_pixel_for_nn":
        x = (i + Fraction(1, 2)) / s
    else:
        return None
    if mode not in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil"):
        return None
    return min(max(_round_nearest(x, mode), 0), in_size - 1)


# Elementwise ops a channels-last tensor passes through as it is (layout does not matter to them).
_LAYOUT_FREE = frozenset({"Relu", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "HardSwish", "Gelu", "Clip",
                          "Identity", "Dropout"})

HANDLERS: dict[str, Callable[[Importer], None]] = {
    "Conv": Importer.conv,
    "ConvTranspose": Importer.conv_transpose,
    "MaxPool": Importer.max_pool,
    "AveragePool": Importer.avg_pool,
    "GlobalAveragePool": lambda self: self.global_pool(Op.GLOBAL_AVG_POOL, "global_avg_pool"),
    "GlobalMaxPool": lambda self: self.global_pool(Op.GLOBAL_MAX_POOL, "global_max_pool"),
    "BatchNormalization": Importer.batch_norm,
    "LRN": Importer.lrn,
    "Relu": lambda self: self.activation(Op.RELU, "relu"),
    "Sigmoid": Importer.sigmoid,
    "HardSigmoid": Importer.hard_sigmoid,
    "HardSwish": lambda self: self.activation(Op.HARDSWISH, "hardswish"),
    "Gelu": Importer.gelu,
    "Div": Importer.div,
    "Tanh": lambda self: self.activation(Op.TANH, "tanh"),
    "LeakyRelu": Importer.leaky_relu,
    "Clip": Importer.clip,
    "Softmax": Importer.softmax,
    "Gemm": Importer.gemm,
    "MatMul": Importer.matmul,
    "Flatten": Importer.flatten,
    "Reshape": Importer.reshape,
    "Unsqueeze": Importer.unsqueeze,
    "Squeeze": Importer.squeeze,
    "Transpose": Importer.transpose,
    "Slice": Importer.slice,
    "Concat": Importer.concat,
    "Sub": Importer.sub,
    "ReduceMean": lambda self: self.reduce("mean"),
    "ReduceMax": lambda self: self.reduce("max"),
    "ReduceSum": lambda self: self.reduce("sum"),
    "InstanceNormalization": Importer.instance_norm,
    "LayerNormalization": Importer.layer_norm,
    "DepthToSpace": Importer.depth_to_space,
    "Add": lambda self: self.binary(Op.ADD, "add"),
    "Mul": lambda self: self.binary(Op.MUL, "mul"),
    "Sum": Importer.sum,
    "Dropout": Importer.dropout,
    "Upsample": Importer.upsample_op,
    "Resize": Importer.resize,
    "Pad": Importer.pad,
    "Identity": Importer.identity,
}
# Inputs that hold a layer's parameters (their names give the layer's name), and PyTorch's leaf names.
PARAM_INPUTS = {"Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "MatMul": (1,),
                "BatchNormalization": (1, 2, 3, 4)}
PARAM_LEAVES = frozenset({"weight", "bias", "running_mean", "running_var"})

def load_model(path_or_model: object) -> Any:
    """An `onnx.ModelProto` from a path, bytes or a ModelProto (read, never executed)."""
    onnx = require_onnx()

    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model
    if isinstance(path_or_model, (bytes, bytearray)):
        try:
            return onnx.load_from_string(bytes(path_or_model))
        except Exception as error:  # protobuf's DecodeError and friends
            raise CnncError(f"not a valid ONNX model ({type(error).__name__}: {error})", where="ONNX model") from None
    if isinstance(path_or_model, (str, os.PathLike)):
        path = os.fspath(path_or_model)
        if not os.path.isfile(path):
            raise CnncError("no such file", where=path)
        try:
            return onnx.load(path)
        except Exception as error:  # a truncated file, not protobuf, external data that is missing
            raise CnncError(f"not a valid ONNX model ({type(error).__name__}: {error})", where=path) from None
    raise CnncError(f"expected a path, bytes or an onnx.ModelProto, got {type(path_or_model).__name__}",
                    where="import_onnx")


class ImportedModel(tuple):
    """What `import_onnx` returns: the pair `(text, params)` (it unpacks as one), plus

    - `.text`, `.params`: the `.cnn` program and its parameters (float32 arrays by name);
    - `.compile(**kwargs)`: `cnnc.compile(text, params=params, **kwargs)`, a new network each call;
    - `.network`: a network compiled once with the defaults (-O2, NumPy), on first use;
    - `model(*inputs)`: `model.network(*inputs)`, the outputs as the network returns them.
    """

    def __new__(cls, text: str, params: dict[str, np.ndarray]) -> ImportedModel:
        return super().__new__(cls, (text, params))

    @property
    def text(self) -> str:
        return self[0]

    @property
    def params(self) -> dict[str, np.ndarray]:
        return self[1]

    def compile(self, **kwargs: Any) -> Any:
        """The program compiled with its parameters; keyword arguments go to `cnnc.compile`."""
        from .. import compile as compile_cnn

        if "params" in kwargs:
            raise TypeError("compile() takes the imported parameters; to use others, call cnnc.compile(model.text, "
                            "params=...)")
        return compile_cnn(self.text, params=self.params, **kwargs)

    @property
    def network(self) -> Any:
        """The program compiled once (with `compile()`'s defaults) and kept."""
        net = self.__dict__.get("_network")
        if net is None:
            net = self.__dict__["_network"] = self.compile()
        return net

    def __call__(self, *inputs: Any, **named: Any) -> Any:
        return self.network(*inputs, **named)

    def __reduce__(self) -> tuple[Any, tuple[str, dict[str, np.ndarray]]]:  # copy and pickle: the pair only
        return ImportedModel, (self.text, self.params)

    def __repr__(self) -> str:
        return (f"ImportedModel({self.text.count(chr(10))} lines of .cnn, {len(self.params)} parameters, "
                f"{sum(int(v.size) for v in self.params.values())} values)")


def import_onnx(path_or_model: object, *, input_shapes: dict | None = None) -> ImportedModel:
    """An ONNX model as `.cnn` program text and its parameters (float32 arrays by name), as an
    `ImportedModel`: it unpacks as `text, params`, and `.compile()` / `.network` run it.

    Constant subgraphs are folded first (`onnx_fold`); `input_shapes` ({input name: shape}) fixes
    inputs whose dimensions the model leaves dynamic. Raises CnncError for anything cnnc cannot
    represent exactly, naming the node and op type.
    """
    model = load_model(path_or_model)
    try:
        text, params = Importer(model, input_shapes).run()
    except RecursionError:
        raise CnncError("the model is nested too deeply", where="ONNX model") from None
    return ImportedModel(text, params)
