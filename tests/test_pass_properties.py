"""Property-based tests of the optimization passes: random valid networks, every pipeline exact.

The strategy `programs()` writes random small .cnn programs — chains and DAGs of convolutions
(kernels 1-3, strides 1-2, every padding form, dilation, groups, depthwise, bias on/off),
depthwise/separable/transposed convolutions, batch norms, activations, pools (ceil_mode,
count_include_pad, padding, dilation), global and depthwise pools, residual adds, broadcast
multiplications (SE-style [N, C, 1, 1] and spatial [N, 1, H, W] gates), concatenations of
branches, dropout, upsample, pad, crop, identity reshapes, lrn, softmax, flatten + dense heads
and 2-D chains (a 2-D input now and then, reshapes back to [N, F, 1, 1]), and several outputs
(intermediate values, inputs, the same value twice). It tracks every value's shape, so
each program is valid by construction (checked: the compiler's output shapes must equal the
tracked ones), and keeps tensors tiny (batch 1-2, channels ≤ 8, spatial ≤ 12).

For each program, with random parameters (BN statistics included: γ of either sign, σ² > 0):

- the -O2 network (generated code with its memory plan) and the interpreter on the optimized
  graph both equal the interpreter on the -O0 graph, within 1e-4 of each output's scale;
- `optimize(graph, check_numerics=True)` raises nothing (every pass checked after it runs);
- the same for every single pass (`passes=[name]`, with the ops that pass rewrites drawn more
  often), for random sets of disabled passes at -O0/-O1/-O2, for `passes=` subsets in any order,
  and for lower_pooling's optional avg-pool-as-depthwise-conv rewrite;
- the generated code leaves its inputs alone and gives the same result when called again;
- every NumPy kernel returns a view of an input, or a read-only array, only where the alias model
  that plan_memory relies on (cnnc.ir.liveness) says it may.

The examples are derandomized, so a run is deterministic. A failing example is printed as its
program text (hypothesis `note`), ready to paste into a regression test.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import cnnc
from cnnc.ir.liveness import aliased_inputs, read_only
from cnnc.ir.ops import Op, kernel_call, record
from cnnc.kernels import numpy_kernels
from cnnc.passes import lower, winograd
from cnnc.passes.derived import materialize
from cnnc.passes.manager import optimize, pass_order

MAX_C = 8  # channels (and dense units)
MAX_HW = 12  # height and width
MAX_FEATURES = 96  # flatten only tensors this small
RTOL, ATOL = 1e-4, 1e-6
PASS_ORDER = pass_order()  # every registered pass, in pipeline order

SETTINGS = dict(deadline=None, derandomize=True, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


# ---- shape arithmetic (mirrors cnnc/ir/shapes.py and the language reference) ---------------------

def _window_out(size: int, kernel: int, stride: int, pad: int, dilation: int = 1, ceil: bool = False) -> int:
    """Output length of a sliding window, 0 when the kernel does not fit the padded input."""
    span = dilation * (kernel - 1) + 1
    if size + pad < span:
        return 0
    room = size + pad - span
    return (-(-room // stride) if ceil else room // stride) + 1


def _pool_out(size: int, kernel: int, stride: int, begin: int, end: int, dilation: int, ceil: bool) -> int:
    out = _window_out(size, kernel, stride, begin + end, dilation, ceil)
    if out and ceil and (out - 1) * stride >= size + begin:
        out -= 1  # PyTorch: the last window starts inside the input or the leading padding
    return out


def _sees_input(size: int, kernel: int, stride: int, begin: int, out: int, dilation: int) -> bool:
    """Whether every window has a tap on a real pixel (not padding). The pad ≤ kernel/2 rule
    ensures it without dilation, not with: maxpool(2, pad=1, dilation=2) of a 1x1 map is −∞."""
    return all(any(0 <= i * stride - begin + u * dilation < size for u in range(kernel)) for i in range(out))


def _same_pads(size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
               dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """SAME_UPPER: (top, left, bottom, right)."""
    begin, end = [], []
    for n, k, s, d in zip(size, kernel, stride, dilation):
        total = max((-(-n // s) - 1) * s + d * (k - 1) + 1 - n, 0)
        begin.append(total // 2)
        end.append(total - total // 2)
    return (begin[0], begin[1], end[0], end[1])


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


# ---- the program generator -------------------------------------------------------------------------

class Program:
    """A .cnn program being written: statements, and the values defined so far with their shapes.

    A shape leaves out the batch: (C, H, W) for a 4-D value, (F,) for a 2-D one.
    """

    def __init__(self, draw):
        self.draw = draw
        self.lines: list[str] = []
        self.values: list[tuple[str, tuple[int, ...]]] = []
        self.inputs: list[str] = []
        self.outputs: dict[str, tuple[str, tuple[int, ...]]] = {}
        self.count = 0

    # -- drawing helpers --
    def integer(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, max(low, high)))

    def flag(self) -> bool:
        return self.draw(st.booleans())

    def choice(self, items):
        return self.draw(st.sampled_from(list(items)))

    def pair_text(self, a: int, b: int) -> str:
        """A pair in one of the language's spellings."""
        if a == b:
            return self.choice([str(a), f"{a}x{a}", f"({a}, {a})"])
        return self.choice([f"{a}x{b}", f"({a}, {b})"])

    def pair(self, low: int, high: int) -> tuple[int, int]:
        a = self.integer(low, high)
        return (a, a) if self.flag() else (a, self.integer(low, high))

    def define(self, expr: str, shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
        self.count += 1
        name = f"v{self.count}"
        self.lines.append(f"{name} = {expr}")
        self.values.append((name, shape))
        return name, shape

    def pick(self) -> tuple[str, tuple[int, ...]]:
        """A value to build on: the latest (a chain; what examples shrink to) or any earlier (a DAG)."""
        back = self.integer(0, len(self.values) - 1) if self.flag() else 0
        return self.values[len(self.values) - 1 - back]

    def text(self) -> str:
        outputs = [f"output {name} = {value}" for name, (value, _) in self.outputs.items()]
        return "\n".join(self.lines + outputs) + "\n"

    # -- spatial windows --
    def padding(self, size: tuple[int, int], kernel, stride, dilation, limit: int | None = None,
                same: bool = True) -> tuple[str | None, tuple[int, int, int, int]]:
        """A `pad=` argument (None: left at its default) and the (top, left, bottom, right) it means."""
        top = 2 if limit is None else limit
        form = self.choice(["default", "valid", "int", "pair", "tuple"] + (["same"] if same else []))
        if form == "default":
            return None, (0, 0, 0, 0)
        if form == "valid":
            return "valid", (0, 0, 0, 0)
        if form == "same":
            return "same", _same_pads(size, kernel, stride, dilation)
        if form == "int":
            p = self.integer(0, top)
            return str(p), (p, p, p, p)
        if form == "pair":
            ph, pw = self.integer(0, top), self.integer(0, top)
            return f"({ph}, {pw})", (ph, pw, ph, pw)
        pads = tuple(self.integer(0, top) for _ in range(4))
        return "(" + ", ".join(map(str, pads)) + ")", pads

    def conv_window(self, h: int, w: int, dilated: bool = True) -> tuple[list[str], tuple[int, int]]:
        """kernel/stride/pad/dilation arguments of a conv over h×w, and the output size."""
        kernel = self.pair(1, 3)
        stride = self.pair(1, 2)
        dilation = self.pair(1, 2) if dilated and self.flag() else (1, 1)
        pad_text, pads = self.padding((h, w), kernel, stride, dilation)
        out = (_window_out(h, kernel[0], stride[0], pads[0] + pads[2], dilation[0]),
               _window_out(w, kernel[1], stride[1], pads[1] + pads[3], dilation[1]))
        if not (1 <= out[0] <= MAX_HW and 1 <= out[1] <= MAX_HW):
            pad_text, pads = "same", _same_pads((h, w), kernel, stride, dilation)  # always fits
            out = (-(-h // stride[0]), -(-w // stride[1]))
        args = [self.pair_text(*kernel)]
        if stride != (1, 1) or self.flag():
            args.append(f"stride={self.pair_text(*stride)}")
        if pad_text is not None:
            args.append(f"pad={pad_text}")
        if dilation != (1, 1):
            args.append(f"dilation={self.pair_text(*dilation)}")
        return args, out

    def bias(self) -> list[str]:
        return [self.choice(["bias=false", "bias=true"])] if self.flag() else []

    # -- 4-D ops: each takes a value (name, (C, H, W)) and returns (expression, shape) --
    def conv(self, x, c, h, w):
        if self.flag() and c * 2 <= MAX_C:  # depthwise-like: groups = C, filters = C·m
            groups = c
            filters = c * self.integer(1, MAX_C // c)
        else:
            filters = self.integer(1, MAX_C)
            groups = self.choice(_divisors(math.gcd(c, filters)))
        window, (ho, wo) = self.conv_window(h, w)
        args = [str(filters), *window] + ([f"groups={groups}"] if groups != 1 or self.flag() else []) + self.bias()
        return f"{x} |> conv({', '.join(args)})", (filters, ho, wo)

    def depthwise_conv(self, x, c, h, w):
        multiplier = self.integer(1, MAX_C // c)
        window, (ho, wo) = self.conv_window(h, w)
        extra = [f"multiplier={multiplier}"] if multiplier != 1 else []
        return f"{x} |> depthwise_conv({', '.join(window + extra + self.bias())})", (c * multiplier, ho, wo)

    def separable_conv(self, x, c, h, w):
        multiplier = self.integer(1, MAX_C // c)
        filters = self.integer(1, MAX_C)
        window, (ho, wo) = self.conv_window(h, w)
        extra = [f"multiplier={multiplier}"] if multiplier != 1 else []
        return (f"{x} |> separable_conv({', '.join([str(filters), *window, *extra, *self.bias()])})",
                (filters, ho, wo))

    def conv_transpose(self, x, c, h, w):
        filters = self.integer(1, MAX_C)
        groups = self.choice(_divisors(math.gcd(c, filters)))
        kernel, stride = self.pair(1, 3), self.pair(1, 2)
        dilation = self.pair(1, 2) if self.flag() else (1, 1)
        out_pad = tuple(self.integer(0, max(s, d) - 1) for s, d in zip(stride, dilation))
        pad_text, pads = self.padding((h, w), kernel, stride, dilation, same=False)

        def size(n, axis):
            return ((n - 1) * stride[axis] - pads[axis] - pads[axis + 2]
                    + dilation[axis] * (kernel[axis] - 1) + out_pad[axis] + 1)
        if not (1 <= size(h, 0) <= MAX_HW and 1 <= size(w, 1) <= MAX_HW):
            # the smallest configuration: stride 1, no padding, a 1- or 2-tap kernel
            stride, dilation, out_pad, pad_text, pads = (1, 1), (1, 1), (0, 0), None, (0, 0, 0, 0)
            kernel = tuple(2 if n < MAX_HW else 1 for n in (h, w))
        args = [str(filters), self.pair_text(*kernel)]
        if stride != (1, 1):
            args.append(f"stride={self.pair_text(*stride)}")
        if pad_text is not None:
            args.append(f"pad={pad_text}")
        if out_pad != (0, 0):
            args.append(f"output_padding={self.pair_text(*out_pad)}")
        if dilation != (1, 1):
            args.append(f"dilation={self.pair_text(*dilation)}")
        if groups != 1:
            args.append(f"groups={groups}")
        args += self.bias()
        return f"{x} |> conv_transpose({', '.join(args)})", (filters, size(h, 0), size(w, 1))

    def maxpool(self, x, c, h, w):
        return self._pool(x, c, h, w, "maxpool")

    def avgpool(self, x, c, h, w):
        return self._pool(x, c, h, w, "avgpool")

    def _pool(self, x, c, h, w, op):
        kernel = (h, w) if h <= 4 and w <= 4 and self.flag() else self.pair(1, 3)  # a window over everything
        stride = self.pair(1, 2) if self.flag() else None
        step = stride or kernel
        dilation = self.pair(1, 2) if op == "maxpool" and self.flag() else (1, 1)
        pad_text, pads = self.padding((h, w), kernel, step, dilation, limit=min(kernel) // 2)
        if any(p > k // 2 for p, k in zip(pads, kernel + kernel)):  # `same` may pad more: refused
            pad_text, pads = None, (0, 0, 0, 0)
        ceil = self.flag()
        out = (_pool_out(h, kernel[0], step[0], pads[0], pads[2], dilation[0], ceil),
               _pool_out(w, kernel[1], step[1], pads[1], pads[3], dilation[1], ceil))
        if not (1 <= out[0] <= MAX_HW and 1 <= out[1] <= MAX_HW) or not (
                _sees_input(h, kernel[0], step[0], pads[0], out[0], dilation[0])
                and _sees_input(w, kernel[1], step[1], pads[1], out[1], dilation[1])):
            return f"{x} |> {op}(1)", (c, h, w)  # a 1x1 pool: the identity
        args = [self.pair_text(*kernel)]
        if stride is not None:
            args.append(f"stride={self.pair_text(*stride)}")
        if pad_text is not None:
            args.append(f"pad={pad_text}")
        if dilation != (1, 1):
            args.append(f"dilation={self.pair_text(*dilation)}")
        if ceil or self.flag():
            args.append(f"ceil_mode={'true' if ceil else 'false'}")
        if op == "avgpool" and self.flag():
            args.append(f"count_include_pad={self.choice(['true', 'false'])}")
        return f"{x} |> {op}({', '.join(args)})", (c, *out)

    def global_pool(self, x, c, h, w):
        return f"{x} |> {self.choice(['global_avg_pool', 'global_max_pool'])}", (c, 1, 1)

    def depthwise_pool(self, x, c, h, w):
        size = self.choice(_divisors(c))
        return f"{x} |> {self.choice(['depthwise_maxpool', 'depthwise_avgpool'])}({size})", (c // size, h, w)

    def upsample(self, x, c, h, w):
        scale = (self.integer(1, MAX_HW // h), self.integer(1, MAX_HW // w))
        args = [self.pair_text(*scale)] if scale != (2, 2) or self.flag() else []
        if self.flag():
            args.append(f"mode={self.choice(['nearest', 'bilinear'])}")
        return f"{x} |> upsample({', '.join(args)})", (c, h * scale[0], w * scale[1])

    def pad(self, x, c, h, w):
        mode = self.choice(["constant", "reflect", "edge"])
        high_h, high_w = min(2, (MAX_HW - h) // 2), min(2, (MAX_HW - w) // 2)
        if mode == "reflect":
            high_h, high_w = min(high_h, h - 1), min(high_w, w - 1)
        pads = (self.integer(0, high_h), self.integer(0, high_w), self.integer(0, high_h), self.integer(0, high_w))
        text = self.choice([f"({pads[0]}, {pads[1]}, {pads[2]}, {pads[3]})"]
                           + ([str(pads[0])] if len(set(pads)) == 1 else [])
                           + ([f"({pads[0]}, {pads[1]})"] if pads[:2] == pads[2:] else []))
        args = [text] + ([f"mode={mode}"] if mode != "constant" or self.flag() else [])
        if mode == "constant" and self.flag():
            args.append(f"value={self.choice(['0', '1.5', '-2'])}")
        return f"{x} |> pad({', '.join(args)})", (c, h + pads[0] + pads[2], w + pads[1] + pads[3])

    def crop(self, x, c, h, w):
        size = (self.integer(1, h), self.integer(1, w))
        offset = (self.integer(0, h - size[0]), self.integer(0, w - size[1]))
        extra = f", offset={self.pair_text(*offset)}" if offset != (0, 0) or self.flag() else ""
        return f"{x} |> crop({self.pair_text(*size)}{extra})", (c, *size)

    def identity_reshape(self, x, c, h, w):
        return f"{x} |> reshape(({c}, {h}, -1))", (c, h, w)

    def flatten_dense(self, x, c, h, w):
        if c * h * w > MAX_FEATURES:
            x = f"{x} |> global_avg_pool"
            h = w = 1
        if h == w == 1 and self.flag():  # dense reads [N, C, 1, 1] directly
            units = self.integer(1, MAX_C)
            return f"{x} |> dense({', '.join([str(units), *self.bias()])})", (units, 1, 1)
        head = f"{x} |> flatten"
        if self.flag():
            head += " |> dropout"
        units = self.integer(1, MAX_C)
        return f"{head} |> dense({', '.join([str(units), *self.bias()])})", (units,)

    def residual_branch(self, x, c, h, w) -> str:
        """A shape-preserving branch off x: conv/depthwise conv (pad=same) with bn or an activation."""
        k = self.integer(1, 3)
        dilation = f", dilation={self.integer(1, 2)}" if self.flag() else ""
        if self.flag():
            branch = f"{x} |> conv({c}, {k}x{k}, pad=same{dilation}, groups={self.choice(_divisors(c))})"
        else:
            branch = f"{x} |> depthwise_conv({k}, pad=same{dilation})"
        return branch + self.choice(["", " |> bn", " |> relu", " |> bn |> relu"])

    def add(self, x, c, h, w):
        same = [name for name, shape in self.values if shape == (c, h, w)]
        kind = self.choice(["branch", "pool", "bias"])
        if kind == "pool":
            other = self.choice(same)  # x itself included: add(x, x)
        elif kind == "bias":  # broadcast [N, C, 1, 1] (or [N, 1, H, W]) against [N, C, H, W]
            other = self.choice([f"({x} |> global_avg_pool)", f"({x} |> conv(1, 1x1))"])
        else:
            other = f"({self.residual_branch(x, c, h, w)})"
        a, b = (x, other) if self.flag() else (other, x)
        return f"{a} + {b}" + self.choice(["", " |> relu"]), (c, h, w)

    def mul(self, x, c, h, w):
        kind = self.choice(["se", "spatial", "pool"])
        if kind == "se":
            r = self.integer(1, MAX_C)
            gate = f"({x} |> global_avg_pool |> dense({r}) |> relu |> dense({c}) |> sigmoid)"
        elif kind == "spatial":
            gate = f"({x} |> conv(1, 1x1) |> sigmoid)"
        else:
            gate = self.choice([name for name, shape in self.values if shape == (c, h, w)])
        a, b = (x, gate) if self.flag() else (gate, x)
        return f"{a} * {b}", (c, h, w)

    def concat(self, x, c, h, w):
        parts = [x]
        total = c
        for _ in range(self.integer(1, 2)):
            fits = [(name, shape[0]) for name, shape in self.values
                    if len(shape) == 3 and shape[1:] == (h, w) and total + shape[0] <= MAX_C]
            if fits and self.flag():
                name, channels = self.choice(fits)  # x itself included: concat(x, x)
                parts.append(name)
            elif total < MAX_C:
                channels = self.integer(1, MAX_C - total)
                parts.append(f"({x} |> conv({channels}, {self.integer(1, 3)}, pad=same))")
            else:
                break
            total += channels
        if len(parts) == 1 and self.flag():
            return f"concat({x})", (c, h, w)  # a single input: the identity
        if len(parts) == 1:
            if 2 * h <= MAX_HW:  # along the height: concat(x, x, axis=2)
                return f"concat({x}, {x}, axis={self.choice(['2', '-2'])})", (c, 2 * h, w)
            return f"concat({x})", (c, h, w)
        order = self.draw(st.permutations(parts))
        return f"concat({', '.join(order)})", (total, h, w)

    def unary(self, x, c, h, w):
        stage = self.choice(["softmax", "lrn(3)", "softmax(axis=-1)"]) if self.integer(0, 9) == 0 else \
            self.unary_stage()
        return f"{x} |> {stage}", (c, h, w)

    def flatten(self, x, c, h, w):
        if c * h * w > MAX_FEATURES:
            return f"{x} |> global_max_pool |> flatten", (c,)
        return f"{x} |> flatten", (c * h * w,)

    def unary_stage(self) -> str:
        return self.choice(["relu", "bn", "relu6", "leaky_relu", "leaky_relu(0.2)", "sigmoid", "tanh", "hardsigmoid",
                            "hardswish", "silu", "gelu", "gelu(approximate=tanh)", "dropout", "dropout(0.1)",
                            "bn(eps=1e-3)"])

    OPS_4D = ("unary", "conv", "add", "maxpool", "avgpool", "mul", "concat", "depthwise_conv",
              "separable_conv", "conv_transpose", "global_pool", "depthwise_pool", "upsample", "pad",
              "crop", "identity_reshape", "flatten_dense", "flatten")

    # -- 2-D ops: a value (name, (F,)) --
    def op_2d(self, x, f):
        kind = self.choice(["unary", "dense", "add", "mul", "concat", "softmax", "reshape", "gate"])
        if kind == "unary":
            return f"{x} |> {self.unary_stage()}", (f,)
        if kind == "dense":
            units = self.integer(1, MAX_C)
            return f"{x} |> dense({', '.join([str(units), *self.bias()])})", (units,)
        if kind in ("add", "mul"):
            same = [name for name, shape in self.values if shape == (f,)]
            other = self.choice(same) if self.flag() else f"({x} |> dense({f}))"
            a, b = (x, other) if self.flag() else (other, x)
            return f"{a} {'+' if kind == 'add' else '*'} {b}", (f,)
        if kind == "concat":
            fits = [(name, shape[0]) for name, shape in self.values if len(shape) == 1]
            name, g = self.choice(fits)
            return f"concat({x}, {name}, axis={self.choice(['1', '-1'])})", (f + g,)
        if kind == "reshape" and f <= MAX_C:  # back to 4-D: [N, F, 1, 1]
            return f"{x} |> reshape(({f}, 1, 1))", (f, 1, 1)
        if kind == "gate":  # [N, F] * [N, 1]
            gate = f"({x} |> dense(1) |> sigmoid)"
            return (f"{x} * {gate}" if self.flag() else f"{gate} * {x}"), (f,)
        return f"{x} |> softmax" + self.choice(["", "(axis=-1)"]), (f,)


@st.composite
def programs(draw, max_ops: int = 10, focus: tuple[str, ...] = ()) -> Program:
    """A random valid program; ops named in `focus` are drawn about as often as all others together."""
    p = Program(draw)
    batch = draw(st.sampled_from(["N", "1", "2"]))
    first = (p.integer(1, 4), p.integer(3, 10), p.integer(3, 10))
    shapes = [first] + ([first if p.flag() else (p.integer(1, 4), first[1], first[2])] if p.flag() else [])
    for index, shape in enumerate(shapes):
        name = "x" if index == 0 else f"x{index + 1}"
        p.lines.append(f"input {name}: [{batch}, {', '.join(map(str, shape))}]")
        p.values.append((name, shape))
        p.inputs.append(name)
    if p.integer(0, 5) == 0:  # a 2-D input too (dense_to_conv must leave what meets it 2-D)
        features = p.integer(1, MAX_C)
        p.lines.append(f"input z: [{batch}, {features}]")
        p.values.append(("z", (features,)))
        p.inputs.append("z")
    for _ in range(p.integer(1, max_ops)):
        x, shape = p.pick()
        if len(shape) == 3:
            op = p.choice(focus) if focus and not p.flag() else p.choice(Program.OPS_4D)
            expr, out = getattr(p, op)(x, *shape)
        else:
            expr, out = p.op_2d(x, *shape)
        if p.flag():  # the patterns the folding and fusing passes look for: conv |> bn |> relu, …
            expr += p.choice([" |> bn", " |> relu", " |> bn |> relu", " |> bn |> bn", " |> sigmoid",
                              " |> leaky_relu(0.1)", " |> relu6 |> bn", " |> bn |> dropout |> relu"])
        p.define(expr, out)
    p.outputs["out"] = p.values[-1]
    for index in range(p.integer(0, 2)):  # more outputs: intermediates, inputs, the same value again
        p.outputs[f"out{index + 2}"] = p.values[len(p.values) - 1 - p.integer(0, len(p.values) - 1)]
    return p


# ---- checks ----------------------------------------------------------------------------------------

def random_params(specs, seed: int) -> dict[str, np.ndarray]:
    """Every parameter random: BN γ of either sign, σ² in [0.3, 2], non-zero β, μ and biases."""
    rng = np.random.default_rng(seed)
    values = {}
    for name, spec in specs.items():
        shape = tuple(spec.shape)
        if name.endswith(".var"):
            values[name] = rng.uniform(0.3, 2.0, shape)
        elif name.endswith(".gamma"):
            values[name] = rng.uniform(0.3, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
        elif name.endswith((".beta", ".mean", ".bias")):
            values[name] = rng.normal(0, 0.5, shape)
        else:
            fan_in = int(np.prod(shape[1:])) or 1
            values[name] = rng.normal(0, np.sqrt(2.0 / fan_in), shape)
    return {name: value.astype(np.float32) for name, value in values.items()}


def random_inputs(graph, seed: int, batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    return {n: rng.standard_normal(tuple(batch if isinstance(d, str) else d for d in graph.shape(n)))
            .astype(np.float32) for n in graph.info.inputs}


def assert_close(got: dict[str, np.ndarray], want: dict[str, np.ndarray], what: str) -> None:
    assert set(got) == set(want), what
    for out, value in want.items():
        result = np.asarray(got[out])
        if result.shape == value.shape + (1, 1):  # dense_to_conv: [N, O] became [N, O, 1, 1]
            result = result.reshape(value.shape)
        assert result.shape == value.shape, f"{what}: output '{out}' has shape {result.shape}, not {value.shape}"
        assert np.isfinite(value).all(), f"generator: the reference output '{out}' is not finite"
        assert np.isfinite(result).all(), f"{what}: output '{out}' is not finite"
        scale = float(np.abs(value).max()) if value.size else 0.0
        diff = float(np.abs(result.astype(np.float64) - value).max()) if value.size else 0.0
        assert diff <= RTOL * scale + ATOL, f"{what}: output '{out}' differs by {diff:.3g} (scale {scale:.3g})"


def check(program: Program, seed: int, batch: int, **options) -> cnnc.CompiledNetwork:
    """Compile with `options`, check the tracked shapes, and compare the generated code and the
    interpreter on the optimized graph with the interpreter on the -O0 graph."""
    text = program.text()
    note(text)
    net = cnnc.compile(text, **options)
    source = net.source_graph
    for out, (_, shape) in program.outputs.items():  # the generator's shapes are the compiler's
        declared = source.shape(source.info.outputs[out])
        assert tuple(declared[1:]) == shape, f"generator: '{out}' is {declared}, tracked {shape}"
    params = random_params(net.params.specs, seed)
    net.params.update_from(params, "test")
    inputs = random_inputs(source, seed, batch)
    copies = {n: v.copy() for n, v in inputs.items()}
    want = cnnc.eval_graph(source, params, inputs)
    assert_close(cnnc.eval_graph(net.graph, materialize(net.graph, params), inputs), want,
                 f"interpreter on the optimized graph ({options})")
    got = net.run(**inputs)
    assert_close(got, want, f"generated code ({options})")
    for n, v in inputs.items():
        assert np.array_equal(v, copies[n]), f"the generated code wrote into input '{n}'"
    again = net.run(**inputs)  # nothing left over from the first call
    for out in got:
        assert np.array_equal(again[out], got[out]), f"a second call changed output '{out}'"
    return net


SEEDS = st.integers(0, 2**16)
BATCHES = st.sampled_from([1, 2])


@settings(max_examples=800, **SETTINGS)
@given(programs(), SEEDS, BATCHES)
def test_O2_matches_O0(program: Program, seed: int, batch: int) -> None:
    net = check(program, seed, batch)
    optimize(net.source_graph, check_numerics=True, seed=seed)


# The ops each pass rewrites (or, for plan_memory, the ones whose buffers it shares), drawn more often
# when that pass runs alone.
FOCUS = {
    "eliminate_identity": ("unary", "pad", "crop", "upsample", "identity_reshape", "maxpool", "avgpool", "concat"),
    "dense_to_conv": ("flatten_dense", "flatten", "global_pool"),
    "fold_batch_norm": ("conv", "depthwise_conv", "conv_transpose", "flatten_dense", "unary"),
    "fold_constants": ("unary", "conv", "conv_transpose"),
    "lower_pooling": ("avgpool", "global_pool", "depthwise_pool"),
    "fuse_conv_bias_activation": ("conv", "add", "unary", "flatten_dense"),
    "eliminate_common_subexpressions": ("unary", "global_pool", "add", "mul", "concat"),
    "eliminate_dead_code": (),
    "winograd": ("conv",),
    "channels_last": ("conv", "depthwise_conv", "unary"),
    "plan_memory": ("unary", "add", "mul", "flatten", "crop", "upsample", "identity_reshape"),
}


@pytest.mark.parametrize("name", PASS_ORDER)
@settings(max_examples=60, **SETTINGS)
@given(data=st.data(), seed=SEEDS, batch=BATCHES)
def test_single_pass(name: str, data: st.DataObject, seed: int, batch: int) -> None:
    program = data.draw(programs(max_ops=8, focus=FOCUS[name]), label="program")
    # the programs' layers are small: winograd's size thresholds (a speed choice) would skip them all
    small = mock.patch.multiple(winograd, MIN_CHANNELS=1, MIN_SIZE=1) if name == "winograd" else nullcontext()
    with small:
        net = check(program, seed, batch, passes=[name])
        assert net.graph.info.passes_run == [name]
        optimize(net.source_graph, passes=[name], check_numerics=True, seed=seed)


@settings(max_examples=250, **SETTINGS)
@given(program=programs(max_ops=8), seed=SEEDS, batch=BATCHES, level=st.sampled_from([2, 1, 0]),
       disabled=st.lists(st.sampled_from(PASS_ORDER), unique=True, max_size=len(PASS_ORDER)))
def test_disabled_passes(program: Program, seed: int, batch: int, level: int, disabled: list[str]) -> None:
    net = check(program, seed, batch, optimize=level, disable_passes=tuple(disabled))
    assert not set(net.graph.info.passes_run) & set(disabled)
    optimize(net.source_graph, level=level, disable=tuple(disabled), check_numerics=True, seed=seed)


@settings(max_examples=200, **SETTINGS)
@given(program=programs(max_ops=8), seed=SEEDS, batch=BATCHES,
       chosen=st.lists(st.sampled_from(PASS_ORDER), unique=True, min_size=1, max_size=len(PASS_ORDER)))
def test_pass_subsets_in_any_order(program: Program, seed: int, batch: int, chosen: list[str]) -> None:
    """`passes=` in any order runs them in the pipeline's order (dense_to_conv included: [N, O] outputs may
    become [N, O, 1, 1])."""
    net = check(program, seed, batch, passes=chosen)
    assert net.graph.info.passes_run == [n for n in PASS_ORDER if n in chosen]
    optimize(net.source_graph, passes=chosen, check_numerics=True, seed=seed)


@settings(max_examples=100, **SETTINGS)
@given(program=programs(max_ops=8, focus=("avgpool",)), seed=SEEDS, batch=BATCHES)
def test_avg_pool_as_depthwise_conv(program: Program, seed: int, batch: int) -> None:
    """lower_pooling's optional rewrite (off by default: slower on NumPy) is exact too."""
    with mock.patch.object(lower, "AVG_POOL_AS_CONV", True):
        check(program, seed, batch, passes=["lower_pooling"])
        net = check(program, seed, batch)
        optimize(net.source_graph, check_numerics=True, seed=seed)


@settings(max_examples=200, **SETTINGS)
@given(program=programs(), seed=SEEDS, batch=BATCHES)
def test_kernels_alias_only_where_the_memory_plan_expects(program: Program, seed: int, batch: int) -> None:
    """plan_memory's premise, on every node of the -O2 graph: a NumPy kernel's result shares memory
    with an input only where `aliased_inputs` says so, and is read-only only where `read_only` does."""
    note(program.text())
    graph = cnnc.build_graph(program.text())
    params = materialize(graph, random_params(graph.info.user_params, seed))
    arrays = random_inputs(graph, seed, batch)
    for name in graph.topo_order():
        op, inputs = graph.op(name), graph.inputs_of(name)
        if op == Op.INPUT:
            continue
        args = [arrays[i] for i in inputs]
        if record(op).kernel is None:
            arrays[name] = args[0]
        else:
            positional, keywords = kernel_call(op, graph.attrs(name), args, graph.params_of(name),
                                               params.__getitem__, graph.shape(name))
            arrays[name] = getattr(numpy_kernels, record(op).kernel)(*positional, **keywords)
        shared = {i for i in inputs if np.shares_memory(arrays[name], arrays[i])}
        assert shared <= set(aliased_inputs(graph, name)), f"{name} ({op}) is a view of {shared}"
        assert arrays[name].flags.writeable or read_only(graph, name), f"{name} ({op}) is read-only"


# ---- bugs found by the properties above ----------------------------------------------------------

def test_nearest_upsample_of_a_size_1_axis_then_an_in_place_op() -> None:
    """Found by test_O2_matches_O0: a nearest upsample that only grows axes of size 1 was a read-only
    broadcast view, which the memory plan took for a fresh array and ran the relu in place on
    (ValueError: output array is read-only)."""
    net = cnnc.compile("""input x: [N, 2, 4, 4]
output y = x |> global_avg_pool |> upsample(2) |> relu
""")
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)
    want = cnnc.eval_graph(net.source_graph, net.params.data, {"x": x})["y"]
    np.testing.assert_allclose(net(x), want, rtol=1e-6)
