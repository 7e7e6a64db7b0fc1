"""An interpreter of cnnc's IR written with torch operations: the independent oracle for training.

`torch_forward(graph, params, inputs)` evaluates a graph as `cnnc.eval_graph` does, but every op
is PyTorch's own function (F.conv2d, F.batch_norm in training mode, F.local_response_norm, …),
written from the op's definition in cnnc/kernels/reference.py, never from cnnc's gradient code.
Its parameters can require gradients, so torch's autograd gives the gradients of a whole
network; tests/test_train.py compares cnnc's generated training step with them.

Batch norm runs in training mode (batch statistics; running statistics updated with momentum
0.1, as torch does). Dropout multiplies by the mask that cnnc's own `dropout_train` draws from
an identically seeded generator (the forward order of dropout nodes is the same in both), so
the mask is shared and everything else is independent.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from cnnc.ir.graph import Graph
from cnnc.ir.ops import Op, kernel_call, record
from cnnc.kernels import backward


def _window_pads(h: int, w: int, kernel, stride, pads, dilation, out) -> tuple[int, int, int, int]:
    """The pads grown so every output window fits (a ceil_mode overhang), as the reference says."""
    top, left, bottom, right = pads
    need_h = (out[0] - 1) * stride[0] + dilation[0] * (kernel[0] - 1) + 1
    need_w = (out[1] - 1) * stride[1] + dilation[1] * (kernel[1] - 1) + 1
    return top, left, max(bottom, need_h - h - top), max(right, need_w - w - left)


def _pad(x: torch.Tensor, pads, value: float = 0.0) -> torch.Tensor:
    top, left, bottom, right = pads
    return F.pad(x, (left, right, top, bottom), value=value)


def _channel(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _max_pool(x, kernel, stride, pads, dilation, out_size):
    full = _window_pads(x.shape[2], x.shape[3], kernel, stride, pads, dilation, out_size)
    y = F.max_pool2d(_pad(x, full, -math.inf), kernel, stride, 0, dilation)
    return y[:, :, :out_size[0], :out_size[1]]


def _avg_pool(x, kernel, stride, pads, count_include_pad, out_size):
    full = _window_pads(x.shape[2], x.shape[3], kernel, stride, pads, (1, 1), out_size)
    total = F.avg_pool2d(_pad(x, full), kernel, stride, 0, divisor_override=1)[:, :, :out_size[0], :out_size[1]]
    top, left, bottom, right = pads
    if count_include_pad:  # the padded extent counts, a ceil_mode overhang does not
        mask = torch.ones((1, 1, x.shape[2] + top + bottom, x.shape[3] + left + right), dtype=x.dtype)
        mask = _pad(mask, (0, 0, full[2] - bottom, full[3] - right))
    else:
        mask = _pad(torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype), full)
    count = F.avg_pool2d(mask, kernel, stride, 0, divisor_override=1)[:, :, :out_size[0], :out_size[1]]
    return total / count


def _conv_transpose(x, w, b, stride, pads, output_padding, dilation, groups):
    y = F.conv_transpose2d(x, w, b, stride, 0, output_padding, groups, dilation)
    top, left, bottom, right = pads
    return y[:, :, top:y.shape[2] - bottom, left:y.shape[3] - right]


def _layer_norm(x, gamma, beta, eps):
    mu = x.mean(dim=1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * _channel(gamma, x.ndim) + _channel(beta, x.ndim)


def _reduce(x, mode, axes, keepdims):
    if mode == "mean":
        return x.mean(dim=tuple(axes), keepdim=keepdims)
    if mode == "sum":
        return x.sum(dim=tuple(axes), keepdim=keepdims)
    return x.amax(dim=tuple(axes), keepdim=keepdims)


def _apply(op: Op, args: list, p: list, k: dict, x_shape):
    x = args[0] if args else None
    if op == Op.CONV:
        return F.conv2d(_pad(x, k["pads"]), p[0], p[1], k["stride"], 0, k["dilation"], k["groups"])
    if op == Op.CONV_TRANSPOSE:
        return _conv_transpose(x, p[0], p[1], k["stride"], k["pads"], k["output_padding"], k["dilation"], k["groups"])
    if op == Op.DENSE:
        y = F.linear(x.reshape(x.shape[0], -1), p[0], p[1])
        return y.reshape(*y.shape, 1, 1) if x.ndim == 4 else y
    simple = {Op.RELU: F.relu, Op.RELU6: lambda v: F.hardtanh(v, 0.0, 6.0), Op.SIGMOID: torch.sigmoid,
              Op.TANH: torch.tanh, Op.HARDSIGMOID: F.hardsigmoid, Op.HARDSWISH: F.hardswish, Op.SILU: F.silu,
              Op.GELU: F.gelu, Op.GELU_TANH: lambda v: F.gelu(v, approximate="tanh"),
              Op.FLATTEN: lambda v: v.reshape(v.shape[0], -1),
              Op.GLOBAL_AVG_POOL: lambda v: v.mean(dim=(2, 3), keepdim=True),
              Op.GLOBAL_MAX_POOL: lambda v: v.amax(dim=(2, 3), keepdim=True)}
    if op in simple:
        return simple[op](x)
    if op == Op.LEAKY_RELU:
        return F.leaky_relu(x, k["slope"])
    if op == Op.CLIP:
        return torch.clamp(x, k["min"], k["max"])
    if op == Op.PRELU:
        return torch.where(x >= 0, x, x * _channel(p[0], x.ndim))
    if op == Op.SOFTMAX:
        return torch.softmax(x, dim=k["axis"])
    if op == Op.LRN:  # torch divides alpha by size; cnnc's (AlexNet's) does not
        return F.local_response_norm(x, k["size"], k["alpha"] * k["size"], k["beta"], k["k"])
    if op == Op.LAYER_NORM:
        return _layer_norm(x, p[0], p[1], k["eps"])
    if op == Op.GROUP_NORM:
        return F.group_norm(x, k["groups"], p[0], p[1], k["eps"])
    if op == Op.LAYER_SCALE:
        return x * _channel(p[0], x.ndim)
    if op == Op.MAX_POOL:
        return _max_pool(x, k["kernel"], k["stride"], k["pads"], k["dilation"], k["out_size"])
    if op == Op.AVG_POOL:
        return _avg_pool(x, k["kernel"], k["stride"], k["pads"], k["count_include_pad"], k["out_size"])
    if op == Op.ADAPTIVE_POOL:
        pool = F.adaptive_max_pool2d if k["mode"] == "max" else F.adaptive_avg_pool2d
        return pool(x, k["size"])
    if op == Op.RESHAPE:
        return x.reshape(x.shape[0], *k["shape"])
    if op in (Op.ADD, Op.SUB, Op.MUL, Op.DIV):
        return {Op.ADD: torch.add, Op.SUB: torch.sub, Op.MUL: torch.mul, Op.DIV: torch.div}[op](args[0], args[1])
    if op == Op.SCALAR_AFFINE:
        return x * k["scale"] + k["shift"]
    if op == Op.CONCAT:
        return torch.cat(args, dim=k["axis"])
    if op == Op.UPSAMPLE:
        mode = k["mode"]
        return F.interpolate(x, scale_factor=tuple(float(s) for s in k["scale"]), mode=mode,
                             **({"align_corners": False} if mode == "bilinear" else {}))
    if op == Op.PAD:
        top, left, bottom, right = k["pads"]
        mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}[k["mode"]]
        extra = {"value": k.get("value", 0.0)} if mode == "constant" else {}
        return F.pad(x, (left, right, top, bottom), mode=mode, **extra)
    if op == Op.CROP:
        (oy, ox), (h, w) = k["offset"], k["size"]
        return x[:, :, oy:oy + h, ox:ox + w]
    if op == Op.SLICE:
        index = [slice(None)] * x.ndim
        index[k["axis"]] = slice(k["start"], k["stop"])
        return x[tuple(index)]
    if op == Op.CHANNEL_SHUFFLE:
        n, c = x.shape[:2]
        g = k["groups"]
        return x.reshape(n, g, c // g, *x.shape[2:]).transpose(1, 2).reshape(x.shape)
    if op == Op.PIXEL_SHUFFLE:
        return F.pixel_shuffle(x, k["factor"])
    if op == Op.PERMUTE:
        return x.permute(*k["order"])
    if op == Op.MATMUL:
        return torch.matmul(args[0], args[1])
    if op == Op.REDUCE:
        return _reduce(x, k["mode"], k["axes"], k["keepdims"])
    raise NotImplementedError(f"torch_graph: no torch form for op {op}")


def torch_forward(graph: Graph, params: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor],
                  rng: np.random.Generator, nodes: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Every node's value (name → tensor) in training mode; `params` are updated in place where
    training changes them (BN running statistics). `nodes`: evaluate only these, in order."""
    values: dict[str, torch.Tensor] = {}
    for name in nodes if nodes is not None else graph.topo_order():
        node = graph.node(name)
        op = node.op
        args = [values[i] for i in graph.inputs_of(name)]
        if op == Op.INPUT:
            values[name] = inputs[name]
            continue
        _, kwargs = kernel_call(op, node.attrs, [], dict(node.params), str, node.shape)
        roles = record(op).roles
        p = [params[node.params[r]] if r in node.params else None for r in roles]
        if op == Op.BATCH_NORM:
            values[name] = F.batch_norm(args[0], p[2], p[3], p[0], p[1], training=True, momentum=0.1,
                                        eps=kwargs["eps"])
        elif op == Op.DROPOUT:
            x = args[0]
            # dropout_train on ones returns the scaled keep-mask itself
            scaled, _ = backward.dropout_train(np.ones(tuple(x.shape), np.float32), rate=node.attrs.rate, rng=rng,
                                               mode=node.attrs.mode)
            values[name] = x * torch.from_numpy(np.asarray(scaled, np.float64)).to(x.dtype)
        else:
            values[name] = _apply(op, args, p, kwargs, None)
    return values
