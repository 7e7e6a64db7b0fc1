"""The backward kernels, training-mode forward kernels and losses of cnnc/kernels/backward.py
against PyTorch's autograd, in float64 with tight tolerances.

Each backward kernel gets random inputs (plus the kinks of the piecewise activations, where
PyTorch's choice of one-sided derivative is the reference), a random upstream gradient dy, and
the saved values its `Grad` rule names; every array it receives is read-only, so a kernel that
writes into dy or a saved value fails. Also checked: the dtype is kept (float32 in, float32
out), and the module stays copyable into generated code (numpy and math only, no name shared
with numpy_kernels).
"""
from __future__ import annotations

import ast
import inspect
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F

from cnnc.codegen.kernel_source import kernel_sources
from cnnc.kernels import backward as bk
from cnnc.kernels import numpy_kernels


def _frozen(a) -> np.ndarray:
    """A read-only float64 copy: a kernel writing into it raises."""
    out = np.array(a, dtype=np.float64)
    out.flags.writeable = False
    return out


def _t(a: np.ndarray, grad: bool = True) -> torch.Tensor:
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def _np(t) -> np.ndarray:
    return t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def _close(got, want, rtol: float = 1e-10) -> None:
    """Equal to `rtol` of the reference's largest magnitude (at least 1), with shape and dtype."""
    want = _np(want)
    assert isinstance(got, np.ndarray), type(got)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == np.float64, got.dtype
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    err = float(np.abs(got - want).max()) if want.size else 0.0
    assert err <= rtol * scale, f"max error {err:.3g} (scale {scale:.3g})"


def _vjp(fn, arrays: list[np.ndarray], dy: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """PyTorch's forward value of `fn` and the gradients of ⟨fn(arrays), dy⟩ for each array."""
    ts = [_t(a) for a in arrays]
    y = fn(*ts)
    y.backward(torch.tensor(np.asarray(dy, dtype=np.float64)))
    return _np(y), [np.zeros(a.shape) if t.grad is None else t.grad.numpy() for a, t in zip(arrays, ts)]


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---- activations ---------------------------------------------------------------------------------

# The kinks of every piecewise activation below, where the one-sided choice matters.
_KINKS = [0.0, -0.0, 6.0, -3.0, 3.0, 2.9999999999999996, -2.9999999999999996, -1.5, 2.25, 1e-300, -1e-300,
          40.0, -40.0, 12.0, -12.0, 1e4, -1e4]

# op → (kwargs, what its rule saves, the PyTorch function)
ACTIVATIONS = {
    "relu": ({}, "output", F.relu),
    "leaky_relu": ({"slope": 0.1}, "inputs", lambda x: F.leaky_relu(x, 0.1)),
    "relu6": ({}, "inputs", F.relu6),
    "sigmoid": ({}, "output", torch.sigmoid),
    "tanh": ({}, "output", torch.tanh),
    "hardsigmoid": ({}, "inputs", F.hardsigmoid),
    "hardswish": ({}, "inputs", F.hardswish),
    "silu": ({}, "inputs", F.silu),
    "gelu": ({}, "inputs", F.gelu),
    "gelu_tanh": ({}, "inputs", lambda x: F.gelu(x, approximate="tanh")),
    "clip": ({"min": -1.5, "max": 2.25}, "inputs", lambda x: torch.clamp(x, -1.5, 2.25)),
}


def _activation_input(seed: int = 0) -> np.ndarray:
    x = np.concatenate([_rng(seed).standard_normal(2 * 3 * 4 * 5 - len(_KINKS)) * 3, _KINKS])
    return x.reshape(2, 3, 4, 5)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_backward(name):
    kwargs, saves, fn = ACTIVATIONS[name]
    x = _frozen(_activation_input())
    dy = _frozen(_rng(1).standard_normal(x.shape))
    y, (want,) = _vjp(fn, [x], dy)
    saved = _frozen(y) if saves == "output" else x
    (dx,) = getattr(bk, f"{name}_backward")(dy, saved, **kwargs)
    # PyTorch's hardsigmoid gradient multiplies by 1.0f/6.0f, a float32 constant, even in float64
    _close(dx, want, rtol=1e-7 if name == "hardsigmoid" else 1e-10)
    if name == "hardsigmoid":
        np.testing.assert_array_equal(dx == 0, want == 0)
    if name == "relu6":  # its test 0 < v < 6 reads the output as well as the input
        _close(bk.relu6_backward(dy, _frozen(y))[0], want)


@pytest.mark.parametrize("slope", [0.0, 0.2, -0.3, 1.5])
def test_leaky_relu_any_slope(slope):
    x = _frozen(_activation_input(2))
    dy = _frozen(_rng(3).standard_normal(x.shape))
    _, (want,) = _vjp(lambda t: F.leaky_relu(t, slope), [x], dy)
    _close(bk.leaky_relu_backward(dy, x, slope=slope)[0], want)


def test_normal_cdf_is_float64_accurate_in_the_tails():
    # The GELU gradient needs Φ to float64 accuracy; math.erfc is the scalar oracle, relative
    # error checked down to Φ(−37) ≈ 6e-300 (there e^(−x²/2) is as accurate as x² is: 1e-13).
    x = np.concatenate([np.linspace(-37, 9, 4001), [-1.0, 1.0, -1.4142135623730951, 1.4142135623730951, 0.0]])
    got = bk._grad_normal_cdf(x)
    want = np.array([0.5 * math.erfc(-v / math.sqrt(2)) for v in x])
    assert np.all(np.abs(got - want) <= 1e-12 * want)
    assert np.all(np.abs(got - want)[x > -6] <= 1e-15)
    assert bk._grad_normal_cdf(np.array([-1e300, 1e300, -np.inf, np.inf])).tolist() == [0.0, 1.0, 0.0, 1.0]


def test_normal_cdf_in_float32():
    x = np.concatenate([np.linspace(-13, 6, 2001), [-0.0, 0.0]]).astype(np.float32)
    got = bk._grad_normal_cdf(x)
    assert got.dtype == np.float32
    want = np.array([0.5 * math.erfc(-float(v) / math.sqrt(2)) for v in x])
    err = np.abs(got - want) / want
    assert err[x > -2].max() <= 6e-7  # float32's relative accuracy (the tail error grows with x²)
    assert err.max() <= 3e-5  # in the far tail, e^(−x²/2) is as accurate as float32's x² (Φ(−13) ≈ 6e-39)


def test_gelu_gradients_far_out_are_the_limits():
    x = np.array([-1e30, -1e10, -200.0, 200.0, 1e10, 1e30], dtype=np.float32)
    dy = np.ones_like(x)
    for kernel in (bk.gelu_backward, bk.gelu_tanh_backward, bk.silu_backward):
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            (dx,) = kernel(dy, x)
        assert dx.dtype == np.float32
        np.testing.assert_array_equal(dx, [0, 0, 0, 1, 1, 1], err_msg=kernel.__name__)


def test_prelu_backward():
    rng = _rng(4)
    x = rng.standard_normal((3, 4, 5, 2))
    x[0, :, 0, 0] = 0.0  # PyTorch's split at 0: the slope's side
    x = _frozen(x)
    slope = _frozen(rng.standard_normal(4))
    dy = _frozen(rng.standard_normal(x.shape))
    _, (want_dx, want_ds) = _vjp(F.prelu, [x, slope], dy)
    dx, ds = bk.prelu_backward(dy, x, slope)
    _close(dx, want_dx)
    _close(ds, want_ds)
    x2, dy2 = _frozen(rng.standard_normal((6, 4))), _frozen(rng.standard_normal((6, 4)))  # [N, C] too
    _, wants = _vjp(F.prelu, [x2, slope], dy2)
    for got, want in zip(bk.prelu_backward(dy2, x2, slope), wants):
        _close(got, want)


@pytest.mark.parametrize("shape,axis", [((4, 7), 1), ((4, 7), -1), ((2, 3, 4, 5), 1), ((2, 3, 4, 5), 2),
                                        ((2, 3, 4, 5), -1)])
def test_softmax_backward(shape, axis):
    rng = _rng(5)
    x, dy = _frozen(rng.standard_normal(shape) * 3), _frozen(rng.standard_normal(shape))
    y, (want,) = _vjp(lambda t: torch.softmax(t, axis), [x], dy)
    _close(bk.softmax_backward(dy, _frozen(y), axis=axis)[0], want)


# ---- normalization -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape,eps", [((2, 7, 5, 3), 1e-6), ((3, 9), 1e-5), ((2, 5, 11), 1e-3), ((1, 1, 2, 2), 1e-5)])
def test_layer_norm_backward(shape, eps):
    rng = _rng(6)
    c = shape[1]
    x = _frozen(rng.standard_normal(shape) * 3 + 5)
    gamma, beta = _frozen(rng.standard_normal(c)), _frozen(rng.standard_normal(c))
    dy = _frozen(rng.standard_normal(shape))

    def reference(t, g, b):  # nn.LayerNorm(C) with the channels moved last
        return F.layer_norm(t.movedim(1, -1), (c,), g, b, eps).movedim(-1, 1)

    y, wants = _vjp(reference, [x, gamma, beta], dy)
    _close(numpy_kernels.layer_norm(x, gamma, beta, eps=eps).astype(np.float64), y, rtol=1e-5)  # the same op
    for got, want in zip(bk.layer_norm_backward(dy, x, gamma, beta, eps=eps), wants):
        _close(got, want)


@pytest.mark.parametrize("shape,groups,eps", [((2, 6, 5, 7), 1, 1e-5), ((2, 6, 5, 7), 3, 1e-3),
                                              ((2, 6, 5, 7), 6, 1e-5), ((3, 8, 11), 4, 1e-5), ((2, 4, 1, 3), 2, 1e-5)])
def test_group_norm_backward(shape, groups, eps):
    rng = _rng(7)
    c = shape[1]
    x = _frozen(rng.standard_normal(shape) * 2 - 3)
    gamma, beta = _frozen(rng.standard_normal(c)), _frozen(rng.standard_normal(c))
    dy = _frozen(rng.standard_normal(shape))
    _, wants = _vjp(lambda t, g, b: F.group_norm(t, groups, g, b, eps), [x, gamma, beta], dy)
    got = bk.group_norm_backward(dy, x, gamma, beta, groups=groups, eps=eps)
    for g, want in zip(got, wants):
        _close(g, want)
    if groups == c:  # instance norm is group norm with one channel per group
        _, wants = _vjp(lambda t, g, b: F.instance_norm(t, weight=g, bias=b, eps=eps), [x, gamma, beta], dy)
        for g, want in zip(got, wants):
            _close(g, want)


@pytest.mark.parametrize("shape", [(2, 5, 3, 4), (3, 5)])
def test_layer_scale_and_channel_affine_backward(shape):
    rng = _rng(8)
    c = shape[1]
    view = (1, c) + (1,) * (len(shape) - 2)
    x, dy = _frozen(rng.standard_normal(shape)), _frozen(rng.standard_normal(shape))
    scale, shift = _frozen(rng.standard_normal(c)), _frozen(rng.standard_normal(c))
    _, wants = _vjp(lambda t, s: t * s.reshape(view), [x, scale], dy)
    for got, want in zip(bk.layer_scale_backward(dy, x, scale), wants):
        _close(got, want)
    _, wants = _vjp(lambda t, s, b: t * s.reshape(view) + b.reshape(view), [x, scale, shift], dy)
    for got, want in zip(bk.channel_affine_backward(dy, x, scale, shift), wants):
        _close(got, want)


@pytest.mark.parametrize("shape,momentum", [((4, 3, 5, 6), 0.1), ((8, 5), 0.3), ((2, 4, 1, 1), 0.1)])
def test_batch_norm_train_and_backward(shape, momentum):
    rng = _rng(9)
    c, eps = shape[1], 1e-5
    x = _frozen(rng.standard_normal(shape) * 2 + 1)
    gamma, beta = _frozen(rng.standard_normal(c)), _frozen(rng.standard_normal(c))
    mean, var = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
    dy = _frozen(rng.standard_normal(shape))
    torch_mean, torch_var = torch.tensor(mean), torch.tensor(var)
    y_want, (dx_want, dg_want, db_want) = _vjp(
        lambda t, g, b: F.batch_norm(t, torch_mean, torch_var, g, b, training=True, momentum=momentum, eps=eps),
        [x, gamma, beta], dy)

    y, context = bk.batch_norm_train(x, gamma, beta, mean, var, eps=eps, momentum=momentum)
    _close(y, y_want)
    _close(mean, torch_mean)  # the running statistics, updated in place as PyTorch's
    _close(var, torch_var)
    for a in context:
        a.flags.writeable = False
    dx, dg, db, dmean, dvar = bk.batch_norm_backward(dy, context, gamma, beta, _frozen(mean), _frozen(var), eps=eps)
    _close(dx, dx_want)
    _close(dg, dg_want)
    _close(db, db_want)
    assert dmean is None and dvar is None


def test_batch_norm_train_default_momentum_and_single_value_refused():
    rng = _rng(10)
    x = rng.standard_normal((5, 3))
    mean, var = np.zeros(3), np.ones(3)
    bk.batch_norm_train(x, np.ones(3), np.zeros(3), mean, var, eps=1e-5)
    np.testing.assert_allclose(mean, 0.1 * x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(var, 0.9 + 0.1 * x.var(axis=0, ddof=1), rtol=1e-12)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bk.batch_norm_train(np.ones((1, 3, 1, 1)), np.ones(3), np.zeros(3), np.zeros(3), np.ones(3), eps=1e-5)


# ---- dropout -----------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_statistics_and_mask(rate):
    x = _frozen(np.full((200, 500), 2.0))
    y, context = bk.dropout_train(x, rate=rate, rng=np.random.default_rng(11))
    mask, scale = context
    assert y.dtype == np.float64 and mask.dtype == bool and mask.shape == x.shape and scale == 1 / (1 - rate)
    dropped = float(np.mean(y == 0))
    assert abs(dropped - rate) < 0.01
    assert abs(float(y.mean()) - 2.0) < 0.03  # inverted dropout: the expectation is kept
    np.testing.assert_allclose(y[mask], 2.0 / (1 - rate), rtol=1e-15)
    assert np.all(y[~mask] == 0)
    dy = _frozen(_rng(12).standard_normal(x.shape))
    (dx,) = bk.dropout_backward(dy, context, rate=rate)
    np.testing.assert_allclose(dx, np.where(mask, dy / (1 - rate), 0.0), rtol=1e-15)
    # the context alone suffices: the training step passes dropout's backward no kwargs
    np.testing.assert_array_equal(bk.dropout_backward(dy, context)[0], dx)
    # the same seed draws the same mask; another seed does not
    again, (mask2, _) = bk.dropout_train(x, rate=rate, rng=np.random.default_rng(11))
    np.testing.assert_array_equal(mask2, mask)
    np.testing.assert_array_equal(again, y)
    _, (other, _) = bk.dropout_train(x, rate=rate, rng=np.random.default_rng(13))
    assert not np.array_equal(other, mask)


def test_dropout_rate_zero_is_the_identity():
    x = _frozen(_rng(14).standard_normal((3, 4)))
    y, context = bk.dropout_train(x, rate=0.0, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(y, x)
    dy = _frozen(_rng(15).standard_normal((3, 4)))
    np.testing.assert_array_equal(bk.dropout_backward(dy, context, rate=0.0)[0], dy)


def test_dropout_float32_mask_matches_torch_semantics():
    # PyTorch's dropout in training mode on the same kept set gives the same values and gradient.
    x = _frozen(_rng(16).standard_normal((6, 7)))
    y, context = bk.dropout_train(x, rate=0.25, rng=np.random.default_rng(17))
    mask = context[0]
    dy = _frozen(_rng(18).standard_normal(x.shape))
    keep = torch.from_numpy(mask.astype(np.float64))
    want_y, (want_dx,) = _vjp(lambda t: t * keep / 0.75, [x], dy)
    _close(y, want_y)
    _close(bk.dropout_backward(dy, context)[0], want_dx)


# ---- elementwise arithmetic --------------------------------------------------------------------

BROADCASTS = [
    ((2, 3, 4, 5), (2, 3, 4, 5)),
    ((2, 3, 4, 5), (2, 3, 1, 1)),  # squeeze-excitation's gate
    ((2, 3, 1, 1), (2, 3, 4, 5)),
    ((2, 1, 4, 5), (2, 3, 1, 5)),
    ((2, 3, 4, 5), (2, 1, 1, 1)),
    ((2, 6), (2, 1)),
    ((3, 4, 5), (3, 4, 1)),
]
_TORCH_BINARY = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}


@pytest.mark.parametrize("op", list(_TORCH_BINARY))
@pytest.mark.parametrize("shapes", BROADCASTS, ids=str)
def test_binary_backward_with_broadcasting(op, shapes):
    rng = _rng(19)
    a_shape, b_shape = shapes
    a = _frozen(rng.standard_normal(a_shape))
    b = rng.standard_normal(b_shape)
    if op == "div":
        b = np.where(b < 0, b - 0.5, b + 0.5)  # away from 0
    b = _frozen(b)
    dy = _frozen(rng.standard_normal(np.broadcast_shapes(a_shape, b_shape)))
    _, wants = _vjp(_TORCH_BINARY[op], [a, b], dy)
    kernel = getattr(bk, f"{op}_backward")
    if op in ("add", "sub"):
        got = kernel(dy, in_shapes=[a_shape[1:], b_shape[1:]])
    else:
        got = kernel(dy, a, b)
    assert len(got) == 2
    for g, want in zip(got, wants):
        _close(g, want)


def test_binary_backward_batch_broadcast_from_saved_inputs():
    # mul and div read their inputs' shapes off the saved inputs, so a [1, C, 1, 1] operand works
    rng = _rng(20)
    a, b = _frozen(rng.standard_normal((3, 4, 2, 2))), _frozen(rng.uniform(0.5, 2, (1, 4, 1, 1)))
    dy = _frozen(rng.standard_normal((3, 4, 2, 2)))
    for op in ("mul", "div"):
        _, wants = _vjp(_TORCH_BINARY[op], [a, b], dy)
        for g, want in zip(getattr(bk, f"{op}_backward")(dy, a, b), wants):
            _close(g, want)


def test_add_shares_dy_without_broadcasting():
    dy = _frozen(_rng(21).standard_normal((2, 3)))
    da, db = bk.add_backward(dy, in_shapes=[(3,), (3,)])
    assert da is dy and db is dy  # no copy: the Grad contract lets a gradient be shared


@pytest.mark.parametrize("scale,shift", [(0.5, 3.0), (1.0, 3.0), (-1.0, 0.0), (0.0, 2.0)])
def test_scalar_affine_backward(scale, shift):
    rng = _rng(22)
    x, dy = _frozen(rng.standard_normal((2, 3, 4))), _frozen(rng.standard_normal((2, 3, 4)))
    _, (want,) = _vjp(lambda t: t * scale + shift, [x], dy)
    _close(bk.scalar_affine_backward(dy, scale=scale, shift=shift)[0], want)


@pytest.mark.parametrize("a_shape,b_shape", [((2, 3, 4, 5), (2, 3, 5, 6)), ((2, 1, 4, 5), (2, 3, 5, 6)),
                                             ((2, 3, 4, 5), (1, 3, 5, 2)), ((2, 4, 5), (2, 5, 3))], ids=str)
def test_matmul_backward(a_shape, b_shape):
    rng = _rng(23)
    a, b = _frozen(rng.standard_normal(a_shape)), _frozen(rng.standard_normal(b_shape))
    y = numpy_kernels.matmul(a, b)
    dy = _frozen(rng.standard_normal(y.shape))
    y_want, wants = _vjp(torch.matmul, [a, b], dy)
    _close(y.astype(np.float64), y_want, rtol=1e-5)
    for g, want in zip(bk.matmul_backward(dy, a, b), wants):
        _close(g, want)


@pytest.mark.parametrize("mode", ["mean", "max", "sum"])
@pytest.mark.parametrize("axes", [(1,), (2, 3), (-1,), (1, 3), (3, 1, 2)], ids=str)
@pytest.mark.parametrize("keepdims", [True, False])
def test_reduce_backward(mode, axes, keepdims):
    rng = _rng(24)
    x = _frozen(rng.standard_normal((2, 3, 4, 5)))

    def reference(t):
        if mode == "max":
            return torch.amax(t, dim=axes, keepdim=keepdims)
        return (torch.mean if mode == "mean" else torch.sum)(t, dim=axes, keepdim=keepdims)

    y = numpy_kernels.reduce(x, mode=mode, axes=axes, keepdims=keepdims)
    dy = _frozen(rng.standard_normal(y.shape))
    y_want, (want,) = _vjp(reference, [x], dy)
    _close(y.astype(np.float64), y_want, rtol=1e-5)
    (dx,) = bk.reduce_backward(dy, x, _frozen(y), mode=mode, axes=axes, keepdims=keepdims)
    _close(dx, want)
    _close(bk.reduce_backward(dy, x, mode=mode, axes=axes, keepdims=keepdims)[0], want)  # max recomputed
    assert dx.flags.writeable and dx.flags.c_contiguous


def test_reduce_max_splits_ties_as_amax():
    x = np.array([[[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]], [[5.0, 0.0, 5.0], [-1.0, 4.0, 0.0]]])
    x = _frozen(x)
    dy = _frozen(_rng(25).standard_normal((2, 2)))
    _, (want,) = _vjp(lambda t: torch.amax(t, dim=-1), [x], dy)
    _close(bk.reduce_backward(dy, x, _frozen(x.max(axis=2)), mode="max", axes=(2,), keepdims=False)[0], want)


# ---- shape ops ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shapes,axis", [([(2, 3, 4, 5), (2, 2, 4, 5), (2, 1, 4, 5)], 1),
                                         ([(2, 3, 4, 5), (2, 3, 1, 5)], 2), ([(2, 3, 4, 5), (2, 3, 4, 2)], -1),
                                         ([(4, 3), (4, 7)], 1), ([(2, 3, 4, 5)], 1)], ids=str)
def test_concat_backward(shapes, axis):
    rng = _rng(26)
    xs = [_frozen(rng.standard_normal(s)) for s in shapes]
    y = numpy_kernels.concat(*xs, axis=axis)
    dy = _frozen(rng.standard_normal(y.shape))
    _, wants = _vjp(lambda *ts: torch.cat(ts, dim=axis), xs, dy)
    got = bk.concat_backward(dy, axis=axis, in_shapes=[s[1:] for s in shapes])
    assert len(got) == len(shapes)
    for g, want in zip(got, wants):
        _close(g, want)


def test_flatten_and_reshape_backward():
    rng = _rng(27)
    x = _frozen(rng.standard_normal((2, 3, 4, 5)))
    dy = _frozen(rng.standard_normal((2, 60)))
    _, (want,) = _vjp(lambda t: t.flatten(1), [x], dy)
    _close(bk.flatten_backward(dy, in_shapes=[(3, 4, 5)])[0], want)
    dy = _frozen(rng.standard_normal((2, 12, 5)))
    _, (want,) = _vjp(lambda t: t.reshape(2, -1, 5), [x], dy)
    _close(bk.reshape_backward(dy, shape=(-1, 5), in_shapes=[(3, 4, 5)])[0], want)


def _torch_channel_shuffle(t: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = t.shape
    return t.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


@pytest.mark.parametrize("groups", [1, 2, 3, 6])
def test_channel_shuffle_backward(groups):
    rng = _rng(28)
    x, dy = _frozen(rng.standard_normal((2, 6, 3, 4))), _frozen(rng.standard_normal((2, 6, 3, 4)))
    y_want, (want,) = _vjp(lambda t: _torch_channel_shuffle(t, groups), [x], dy)
    _close(numpy_kernels.channel_shuffle(x, groups=groups).astype(np.float64), y_want, rtol=1e-6)  # the same op
    _close(bk.channel_shuffle_backward(dy, groups=groups)[0], want)


@pytest.mark.parametrize("factor", [1, 2, 3])
def test_pixel_shuffle_backward(factor):
    rng = _rng(29)
    x = _frozen(rng.standard_normal((2, 2 * factor * factor, 3, 4)))
    y_want = F.pixel_shuffle(_t(x, grad=False), factor)
    _close(numpy_kernels.pixel_shuffle(x, factor=factor).astype(np.float64), y_want, rtol=1e-6)
    dy = _frozen(rng.standard_normal(y_want.shape))
    _, (want,) = _vjp(lambda t: F.pixel_shuffle(t, factor), [x], dy)
    _close(bk.pixel_shuffle_backward(dy, factor=factor)[0], want)


@pytest.mark.parametrize("order", [(0, 2, 3, 1), (0, 3, 1, 2), (0, 1, 3, 2), (0, 1, 2, 3)], ids=str)
def test_permute_backward(order):
    rng = _rng(30)
    x = _frozen(rng.standard_normal((2, 3, 4, 5)))
    dy = _frozen(rng.standard_normal(tuple(x.shape[i] for i in order)))
    _, (want,) = _vjp(lambda t: t.permute(order), [x], dy)
    (dx,) = bk.permute_backward(dy, order=order)
    _close(dx, want)
    assert dx.flags.c_contiguous


# ---- losses ------------------------------------------------------------------------------------


def _torch_loss(fn, pred: np.ndarray) -> tuple[float, np.ndarray]:
    p = _t(pred)
    loss = fn(p)
    loss.backward()
    return float(loss.detach()), p.grad.numpy()


def _check_loss(got: tuple, want: tuple[float, np.ndarray], pred: np.ndarray) -> None:
    loss, grad = got
    assert isinstance(loss, float) and math.isfinite(loss)
    assert abs(loss - want[0]) <= 1e-10 * max(1.0, abs(want[0])), (loss, want[0])
    assert grad.shape == pred.shape
    _close(grad, want[1])


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy(smoothing):
    rng = _rng(31)
    logits = _frozen(rng.standard_normal((6, 5)) * 3)
    labels = rng.integers(0, 5, 6)
    want = _torch_loss(lambda p: F.cross_entropy(p, torch.from_numpy(labels), label_smoothing=smoothing), logits)
    got = bk.cross_entropy(logits, labels, label_smoothing=smoothing)
    _check_loss(got, want, logits)
    # a convolutional head, [N, C, 1, 1] with one label per image: the same loss, the gradient reshaped
    head = _frozen(logits.reshape(6, 5, 1, 1))
    loss, grad = bk.cross_entropy(head, labels, label_smoothing=smoothing)
    assert abs(loss - got[0]) <= 1e-14 and grad.shape == (6, 5, 1, 1)
    _close(grad.reshape(6, 5), got[1], rtol=1e-15)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_segmentation(smoothing):
    rng = _rng(32)
    logits = _frozen(rng.standard_normal((2, 4, 3, 5)) * 2)
    labels = rng.integers(0, 4, (2, 3, 5))
    want = _torch_loss(lambda p: F.cross_entropy(p, torch.from_numpy(labels), label_smoothing=smoothing), logits)
    _check_loss(bk.cross_entropy(logits, labels, label_smoothing=smoothing), want, logits)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_extreme_logits(smoothing):
    logits = _frozen([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [-1e4, 1e4, 1e4], [0.0, 0.0, 1e4]])
    labels = np.array([1, 0, 2, 0])
    want = _torch_loss(lambda p: F.cross_entropy(p, torch.from_numpy(labels), label_smoothing=smoothing), logits)
    got = bk.cross_entropy(logits, labels, label_smoothing=smoothing)
    assert np.all(np.isfinite(got[1]))
    _check_loss(got, want, logits)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # float32 too: no overflow, no nan
        loss32, grad32 = bk.cross_entropy(logits.astype(np.float32), labels, label_smoothing=smoothing)
    assert grad32.dtype == np.float32 and math.isfinite(loss32) and np.all(np.isfinite(grad32))


def test_cross_entropy_refuses_bad_labels():
    logits = np.zeros((2, 3))
    with pytest.raises(ValueError, match="lie in"):
        bk.cross_entropy(logits, np.array([0, 3]))
    with pytest.raises(ValueError, match="do not fit"):
        bk.cross_entropy(logits, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="integer"):
        bk.cross_entropy(logits, np.array([0.5, 1.0]))
    loss, _ = bk.cross_entropy(logits, np.array([0.0, 2.0]))  # integral floats are class indices
    assert abs(loss - math.log(3)) < 1e-15


def test_binary_cross_entropy():
    rng = _rng(33)
    logits = rng.standard_normal((4, 6)) * 3
    logits[0, :4] = [1e4, -1e4, 800.0, -800.0]  # stable far out
    logits = _frozen(logits)
    for targets in (rng.integers(0, 2, (4, 6)).astype(np.float64), rng.uniform(0, 1, (4, 6))):
        want = _torch_loss(lambda p, t=targets: F.binary_cross_entropy_with_logits(p, torch.from_numpy(t)), logits)
        _check_loss(bk.binary_cross_entropy(logits, _frozen(targets)), want, logits)
    col = _frozen(logits[:, :1])
    targets = rng.integers(0, 2, 4).astype(np.float64)  # [N] targets of an [N, 1] output
    want = _torch_loss(lambda p: F.binary_cross_entropy_with_logits(p, torch.from_numpy(targets[:, None])), col)
    _check_loss(bk.binary_cross_entropy(col, targets), want, col)


@pytest.mark.parametrize("name,options,reference", [
    ("mse", {}, lambda p, t: F.mse_loss(p, t)),
    ("l1", {}, lambda p, t: F.l1_loss(p, t)),
    ("smooth_l1", {}, lambda p, t: F.smooth_l1_loss(p, t)),
    ("smooth_l1", {"beta": 0.5}, lambda p, t: F.smooth_l1_loss(p, t, beta=0.5)),
    ("smooth_l1", {"beta": 0.0}, lambda p, t: F.smooth_l1_loss(p, t, beta=0.0)),
])
def test_regression_losses(name, options, reference):
    rng = _rng(34)
    pred = rng.standard_normal((3, 4, 5)) * 2
    target = rng.standard_normal((3, 4, 5)) * 2
    target[0, 0, :3] = pred[0, 0, :3]  # equal values: sign(0) = 0, as PyTorch
    target[0, 1, 0] = pred[0, 1, 0] - options.get("beta", 1.0)  # exactly at |d| = β
    pred, target = _frozen(pred), _frozen(target)
    want = _torch_loss(lambda p: reference(p, torch.tensor(target)), pred)
    _check_loss(getattr(bk, name)(pred, target, **options), want, pred)


# ---- every kernel: dtype kept, nothing written, copyable into generated code ---------------------


def _calls(dtype) -> dict[str, tuple]:
    """One small call of every kernel in the module: name → (args, kwargs)."""
    rng = _rng(35)

    def r(*shape, positive=False):
        a = rng.standard_normal(shape)
        return (np.abs(a) + 0.5 if positive else a).astype(dtype)

    x4, dy4, c = r(2, 4, 3, 3), r(2, 4, 3, 3), r(4)
    calls: dict[str, tuple] = {f"{name}_backward": ((dy4, x4), kwargs) for name, (kwargs, _, _) in ACTIVATIONS.items()}
    calls.update({
        "prelu_backward": ((dy4, x4, c), {}),
        "softmax_backward": ((dy4, x4), {"axis": 1}),
        "layer_norm_backward": ((dy4, x4, c, c), {"eps": 1e-5}),
        "group_norm_backward": ((dy4, x4, c, c), {"groups": 2, "eps": 1e-5}),
        "batch_norm_train": ((x4, c, c, r(4), r(4, positive=True)), {"eps": 1e-5}),
        "batch_norm_backward": ((dy4, (x4, r(1, 4, 1, 1, positive=True)), c, c, c, c), {"eps": 1e-5}),
        "layer_scale_backward": ((dy4, x4, c), {}),
        "channel_affine_backward": ((dy4, x4, c, c), {}),
        "dropout_train": ((x4,), {"rate": 0.5, "rng": np.random.default_rng(0)}),
        "dropout_backward": ((dy4, (x4 > 0, 2.0)), {}),
        "add_backward": ((dy4,), {"in_shapes": [(4, 3, 3), (4, 1, 1)]}),
        "sub_backward": ((dy4,), {"in_shapes": [(4, 1, 3), (4, 3, 3)]}),
        "mul_backward": ((dy4, x4, r(2, 4, 1, 1)), {}),
        "div_backward": ((dy4, x4, r(2, 4, 1, 1, positive=True)), {}),
        "scalar_affine_backward": ((dy4,), {"scale": 0.5, "shift": 1.0}),
        "matmul_backward": ((dy4, x4, r(2, 4, 3, 3)), {}),
        "reduce_backward": ((r(2, 4, 1, 1), x4, x4.max(axis=(2, 3), keepdims=True)),
                            {"mode": "max", "axes": (2, 3), "keepdims": True}),
        "flatten_backward": ((r(2, 36),), {"in_shapes": [(4, 3, 3)]}),
        "reshape_backward": ((r(2, 12, 3),), {"shape": (12, 3), "in_shapes": [(4, 3, 3)]}),
        "concat_backward": ((dy4,), {"axis": 1, "in_shapes": [(1, 3, 3), (3, 3, 3)]}),
        "channel_shuffle_backward": ((dy4,), {"groups": 2}),
        "pixel_shuffle_backward": ((dy4,), {"factor": 3}),
        "permute_backward": ((dy4,), {"order": (0, 2, 3, 1)}),
        "cross_entropy": ((x4, rng.integers(0, 4, (2, 3, 3))), {"label_smoothing": 0.1}),
        "binary_cross_entropy": ((x4, r(2, 4, 3, 3) > 0), {}),
        "mse": ((x4, r(2, 4, 3, 3)), {}),
        "l1": ((x4, r(2, 4, 3, 3)), {}),
        "smooth_l1": ((x4, r(2, 4, 3, 3)), {"beta": 0.5}),
    })
    for name in ("reduce_backward",):
        calls[name + "_mean"] = ((r(2, 4), x4), {"mode": "mean", "axes": (2, 3), "keepdims": False})
    return calls


def _public() -> list[str]:
    return [n for n, f in inspect.getmembers(bk, inspect.isfunction)
            if not n.startswith("_") and f.__module__ == bk.__name__]


def test_every_kernel_is_exercised():
    assert set(_public()) <= {n.removesuffix("_mean") for n in _calls(np.float64)}


def _arrays(result):
    if isinstance(result, np.ndarray):
        yield result
    elif isinstance(result, tuple):
        for r in result:
            yield from _arrays(r)


def _run_all(dtype) -> dict[str, list[np.ndarray]]:
    results = {}
    for name, (args, kwargs) in _calls(dtype).items():
        kernel = getattr(bk, name.removesuffix("_mean"))
        if name != "batch_norm_train":  # it updates its running statistics in place, by design
            for a in args:
                for arr in _arrays(a):
                    arr.flags.writeable = False
        result = kernel(*args, **kwargs)
        if name in ("cross_entropy", "binary_cross_entropy", "mse", "l1", "smooth_l1"):
            assert isinstance(result[0], float), name
        results[name] = [a for a in _arrays(result) if a.dtype != bool]
        assert results[name], name
        for out in results[name]:
            assert out.dtype == dtype, (name, out.dtype)
    return results


def test_kernels_keep_the_dtype_and_write_nothing():
    # float32 in, float32 out (no silent float64 temporaries leaking into the result), and the
    # float32 results are the float64 ones to float32 accuracy (the GELU's Φ, the losses' sums).
    singles, doubles = _run_all(np.float32), _run_all(np.float64)
    for name, outs in singles.items():
        for single, double in zip(outs, doubles[name]):
            scale = max(1.0, float(np.abs(double).max()))
            assert float(np.abs(single - double).max()) <= 1e-5 * scale, name


def test_module_is_self_contained():
    tree = ast.parse(inspect.getsource(bk))
    imports = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            imports |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imports.add(node.module)
        else:  # the docstring and functions only: no module state for the copied functions to miss
            assert isinstance(node, ast.FunctionDef) or (isinstance(node, ast.Expr) and node is tree.body[0]), \
                ast.dump(node)[:80]
    assert imports == {"math", "numpy"}
    shared = {n for n, _ in inspect.getmembers(bk, inspect.isfunction)} & \
        {n for n, _ in inspect.getmembers(numpy_kernels, inspect.isfunction)}
    assert not shared  # a training module copies both modules' functions side by side
    try:
        from cnnc.kernels import backward_windows
    except ImportError:
        return
    shared = {n for n, f in inspect.getmembers(bk, inspect.isfunction) if f.__module__ == bk.__name__} & \
        {n for n, f in inspect.getmembers(backward_windows, inspect.isfunction)
         if f.__module__ == backward_windows.__name__}
    assert not shared


def test_copied_kernels_run_alone():
    # What cnnc/codegen/train.py does: copy the used functions (and their helpers) out of the
    # module's source into a namespace holding only math and np, then call them there.
    names = ["gelu_backward", "cross_entropy", "batch_norm_train", "reduce_backward", "concat_backward"]
    namespace: dict = {"math": math, "np": np}
    exec("\n\n".join(kernel_sources(bk, names)), namespace)  # noqa: S102
    rng = _rng(36)
    x, dy = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    np.testing.assert_array_equal(namespace["gelu_backward"](dy, x)[0], bk.gelu_backward(dy, x)[0])
    labels = rng.integers(0, 3, (2, 4))
    assert namespace["cross_entropy"](x, labels)[0] == bk.cross_entropy(x, labels)[0]
    y, _ = namespace["batch_norm_train"](x, np.ones(3), np.zeros(3), np.zeros(3), np.ones(3), eps=1e-5)
    np.testing.assert_array_equal(y, bk.batch_norm_train(x, np.ones(3), np.zeros(3), np.zeros(3), np.ones(3),
                                                         eps=1e-5)[0])
