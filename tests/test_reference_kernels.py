"""The reference kernels (cnnc.kernels.reference) checked against PyTorch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from conftest import AWKWARD  # noqa: E402
from torch_models import MODERN_ACTIVATIONS as MODERN  # noqa: E402
from torch_models import check_activation_against_torch  # noqa: E402

from cnnc.kernels import reference as ref  # noqa: E402

ATOL = RTOL = 1e-4


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    """Standard-normal float32 test data, deterministic per (shape, seed)."""
    rng = np.random.default_rng(seed + 7919 * len(shape) + sum(shape))
    return rng.standard_normal(shape).astype(np.float32)


def t(a: np.ndarray | None):
    """numpy -> torch (None passes through)."""
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a))


def check(got: np.ndarray, want, atol: float = ATOL, rtol: float = RTOL) -> None:
    """``got`` is float32 and matches the torch tensor (or array) ``want``."""
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else np.asarray(want)
    assert got.dtype == np.float32
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=atol, rtol=rtol)


def torch_pad(x, pads):
    """Constant zero padding by (top, left, bottom, right) for torch."""
    top, left, bottom, right = pads
    return F.pad(x, (left, right, top, bottom))


def same_upper(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """ONNX SAME_UPPER (begin, end) padding for one axis (the extra pixel at the end)."""
    out = -(-size // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
    return total // 2, total - total // 2


# ---------------------------------------------------------------- conv

CONV_CASES = [
    # (N, C, H, W, O, k, stride, pads, dilation, groups, bias)
    (2, 3, 7, 9, 4, (3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1, True),
    (1, 3, 8, 8, 5, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, False),
    (1, 4, 9, 11, 6, (3, 2), (2, 2), (1, 0, 1, 0), (1, 1), 2, True),
    (2, 3, 11, 10, 4, (5, 5), (2, 3), (2, 1, 2, 1), (1, 1), 1, True),
    (1, 4, 13, 12, 4, (3, 3), (1, 2), (2, 2, 2, 2), (2, 2), 1, True),
    (1, 2, 12, 12, 3, (3, 3), (1, 1), (0, 0, 0, 0), (3, 2), 1, False),
    (1, 6, 8, 7, 6, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 6, True),   # depthwise
    (2, 4, 9, 9, 8, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 4, True),   # multiplier 2
    (1, 6, 10, 10, 9, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 3, True),  # grouped 1x1
    (1, 3, 7, 7, 2, (7, 7), (1, 1), (0, 0, 0, 0), (1, 1), 1, True),   # kernel == input
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_symmetric(case) -> None:
    n, c, h, wd, o, k, stride, pads, dilation, groups, bias = case
    x, w = rand(n, c, h, wd), rand(o, c // groups, *k, seed=1)
    b = rand(o, seed=2) if bias else None
    want = F.conv2d(t(x), t(w), t(b), stride=stride, padding=(pads[0], pads[1]),
                    dilation=dilation, groups=groups)
    got = ref.conv(x, w, b, stride=stride, pads=pads, dilation=dilation, groups=groups,
                     out_size=want.shape[2:])
    check(got, want)


@pytest.mark.parametrize("size", [(7, 7), (8, 9), (10, 11)])
@pytest.mark.parametrize("k,stride,dilation,groups", [
    ((3, 3), (2, 2), (1, 1), 1),
    ((2, 2), (2, 2), (1, 1), 1),
    ((5, 5), (2, 2), (1, 1), 1),
    ((3, 3), (2, 2), (1, 1), 4),   # depthwise, like MobileNet's strided layers
    ((3, 3), (1, 2), (2, 1), 2),
])
def test_conv2d_same_upper(size, k, stride, dilation, groups) -> None:
    h, wd = size
    (top, bottom), (left, right) = (same_upper(h, k[0], stride[0], dilation[0]),
                                    same_upper(wd, k[1], stride[1], dilation[1]))
    pads = (top, left, bottom, right)
    x, w, b = rand(2, 4, h, wd), rand(4, 4 // groups, *k, seed=1), rand(4, seed=2)
    want = F.conv2d(torch_pad(t(x), pads), t(w), t(b), stride=stride, dilation=dilation,
                    groups=groups)
    got = ref.conv(x, w, b, stride=stride, pads=pads, dilation=dilation, groups=groups,
                     out_size=want.shape[2:])
    check(got, want)
    assert got.shape[2:] == (-(-h // stride[0]), -(-wd // stride[1]))


# ---------------------------------------------------------------- conv_transpose

CONVT_CASES = [
    # (N, C, H, W, O, k, stride, padding, output_padding, dilation, groups, bias)
    (1, 3, 5, 5, 4, (3, 3), (1, 1), (0, 0), (0, 0), (1, 1), 1, True),
    (2, 3, 4, 5, 2, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), 1, True),
    (1, 4, 5, 4, 6, (4, 4), (2, 2), (1, 1), (0, 0), (1, 1), 2, False),
    (1, 2, 3, 4, 3, (3, 2), (3, 2), (0, 1), (2, 1), (1, 1), 1, True),
    (1, 2, 4, 4, 2, (3, 3), (2, 2), (2, 2), (0, 1), (2, 2), 1, True),
    (1, 4, 5, 5, 4, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), 4, True),   # depthwise
    (1, 4, 3, 5, 8, (2, 3), (2, 1), (0, 1), (1, 0), (1, 2), 2, True),
]


@pytest.mark.parametrize("case", CONVT_CASES)
def test_conv_transpose2d_symmetric(case) -> None:
    n, c, h, wd, o, k, stride, padding, out_pad, dilation, groups, bias = case
    x, w = rand(n, c, h, wd), rand(c, o // groups, *k, seed=1)
    b = rand(o, seed=2) if bias else None
    got = ref.conv_transpose(x, w, b, stride=stride, pads=padding + padding,
                               output_padding=out_pad, dilation=dilation, groups=groups)
    want = F.conv_transpose2d(t(x), t(w), t(b), stride=stride, padding=padding,
                              output_padding=out_pad, dilation=dilation, groups=groups)
    check(got, want)


@pytest.mark.parametrize("pads", [(0, 0, 1, 1), (1, 0, 0, 2), (2, 1, 0, 1), (1, 2, 2, 0)])
@pytest.mark.parametrize("stride,groups", [((2, 2), 1), ((3, 2), 2)])
def test_conv_transpose2d_asymmetric(pads, stride, groups) -> None:
    x, w, b = rand(2, 4, 5, 6), rand(4, 6 // groups, 4, 3, seed=1), rand(6, seed=2)
    got = ref.conv_transpose(x, w, b, stride=stride, pads=pads, output_padding=(0, 0),
                               dilation=(1, 1), groups=groups)
    full = F.conv_transpose2d(t(x), t(w), t(b), stride=stride, groups=groups)
    top, left, bottom, right = pads
    want = full[:, :, top : full.shape[2] - bottom, left : full.shape[3] - right]
    check(got, want)


def test_conv_transpose_is_adjoint_of_conv() -> None:
    """<conv(x), y> == <x, conv_transpose(y)> for the same weights and geometry."""
    kw = dict(stride=(2, 2), pads=(1, 0, 2, 1), dilation=(1, 2), groups=2)
    x, w = rand(1, 4, 9, 10), rand(6, 2, 3, 3, seed=1)
    size = F.conv2d(torch_pad(t(x), kw["pads"]), t(w), stride=2, dilation=(1, 2), groups=2).shape[2:]
    y = ref.conv(x, w, None, out_size=size, **kw)
    z = rand(*y.shape, seed=3)
    out_pad = tuple(xs - ts for xs, ts in zip(
        x.shape[2:], ref.conv_transpose(z, w, None, output_padding=(0, 0), **kw).shape[2:]))
    xt = ref.conv_transpose(z, w, None, output_padding=out_pad, **kw)
    assert xt.shape == x.shape
    np.testing.assert_allclose(np.vdot(y, z), np.vdot(x, xt), rtol=1e-4)


# ---------------------------------------------------------------- dense, batch_norm


@pytest.mark.parametrize("four_d", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_dense(four_d, bias) -> None:
    x, w = rand(3, 10), rand(7, 10, seed=1)
    b = rand(7, seed=2) if bias else None
    want = F.linear(t(x), t(w), t(b))
    if four_d:
        x, want = x.reshape(3, 10, 1, 1), want.reshape(3, 7, 1, 1)
    check(ref.dense(x, w, b), want)


@pytest.mark.parametrize("shape", [(2, 5), (2, 5, 4, 3)])
def test_batch_norm(shape) -> None:
    c = shape[1]
    x, gamma, beta, mean = rand(*shape), rand(c, seed=1), rand(c, seed=2), rand(c, seed=3)
    var = np.abs(rand(c, seed=4)) + 0.1
    got = ref.batch_norm(x, gamma, beta, mean, var, eps=1e-3)
    want = F.batch_norm(t(x), t(mean), t(var), t(gamma), t(beta), training=False, eps=1e-3)
    check(got, want)


# ---------------------------------------------------------------- activations, softmax


def test_activations() -> None:
    x = rand(2, 3, 4, 5) * 5
    x[0, 0, 0, :3] = [0.0, 6.0, -0.0]
    check(ref.relu(x), F.relu(t(x)))
    check(ref.relu6(x), F.relu6(t(x)))
    check(ref.hardsigmoid(x), F.hardsigmoid(t(x)))
    check(ref.sigmoid(x), torch.sigmoid(t(x)))
    check(ref.tanh(x), torch.tanh(t(x)))
    check(ref.leaky_relu(x, slope=0.1), F.leaky_relu(t(x), 0.1))
    for name, torch_op in MODERN.items():
        check(getattr(ref, name)(x), torch_op(t(x)))


@pytest.mark.parametrize("name", MODERN)
def test_modern_activations_on_awkward_inputs(name: str) -> None:
    """hardswish, silu and both GELUs on AWKWARD (conftest): ±3 and its neighbours, ±0, |x| up
    to 1e30. Tolerances: against PyTorch in float64 for |x| ≤ 5 (where PyTorch's own 1 + erf and
    1 + tanh do not yet cancel) to 1e-7 relative, i.e. the one float32 rounding of the result;
    against PyTorch's float32 result everywhere to 1e-6 absolute and relative (PyTorch's float32
    GELU tails are off by up to 5e-7 absolute); every zero signed as x."""
    x = AWKWARD
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        got = getattr(ref, name)(x)
    check_activation_against_torch(got, x, name, exact_rtol=1e-7, tol=1e-6)


def test_sigmoid_extremes_do_not_overflow() -> None:
    x = np.array([[-1000.0, -80.0, 0.0, 80.0, 1000.0]], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        got = ref.sigmoid(x)
    check(got, torch.sigmoid(t(x)))


@pytest.mark.parametrize("shape,axis", [((3, 10), 1), ((3, 10), 0), ((3, 10), -1),
                                        ((2, 5, 3, 4), 1), ((2, 5, 3, 4), 3),
                                        ((2, 5, 3, 4), -2)])
def test_softmax(shape, axis) -> None:
    x = rand(*shape) * 30  # large values: the max subtraction matters
    check(ref.softmax(x, axis=axis), F.softmax(t(x), dim=axis))


# ---------------------------------------------------------------- lrn


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("channels", [3, 7])
def test_lrn(size, channels) -> None:
    x = rand(2, channels, 3, 4) * 3
    alpha, beta, k = 1e-2, 0.75, 2.0
    got = ref.lrn(x, size=size, alpha=alpha, beta=beta, k=k)
    want = torch.nn.LocalResponseNorm(size, alpha=alpha * size, beta=beta, k=k)(t(x))
    check(got, want)


def test_lrn_window_at_channel_edges() -> None:
    """size 4: channel c sees c−2 .. c+1, clipped to [0, C)."""
    x = rand(1, 5, 2, 2)
    got = ref.lrn(x, size=4, alpha=0.5, beta=1.0, k=1.0)
    sq = x.astype(np.float64) ** 2
    for c in range(5):
        s = sq[:, max(0, c - 2) : min(5, c + 2)].sum(axis=1)
        np.testing.assert_allclose(got[:, c], x[:, c] / (1.0 + 0.5 * s), rtol=1e-5)


# ---------------------------------------------------------------- pooling

MAX_POOL_CASES = [
    # (H, W, kernel, stride, padding, dilation)
    (8, 8, (2, 2), (2, 2), (0, 0), (1, 1)),
    (7, 9, (3, 3), (2, 2), (1, 1), (1, 1)),
    (6, 6, (3, 3), (2, 2), (0, 0), (1, 1)),
    (10, 11, (3, 2), (3, 2), (1, 1), (1, 1)),
    (11, 10, (3, 3), (2, 1), (1, 0), (2, 2)),
    (9, 9, (2, 2), (3, 3), (1, 1), (3, 2)),
    (5, 5, (5, 5), (1, 1), (2, 2), (1, 1)),
    (13, 13, (3, 3), (2, 2), (0, 0), (1, 1)),
    (5, 5, (2, 2), (2, 2), (1, 1), (1, 1)),    # ceil_mode: last window would start in pad
    (8, 8, (3, 3), (2, 2), (1, 1), (1, 1)),    # ceil_mode: window overhangs the padding
]


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("case", MAX_POOL_CASES)
def test_max_pool2d(case, ceil_mode) -> None:
    h, wd, kernel, stride, padding, dilation = case
    x = rand(2, 3, h, wd)
    want = F.max_pool2d(t(x), kernel, stride, padding, dilation, ceil_mode=ceil_mode)
    # torch decides the output size (ceil_mode included); the kernel must fill exactly it
    got = ref.max_pool(x, kernel=kernel, stride=stride, pads=padding + padding,
                         dilation=dilation, out_size=want.shape[2:])
    check(got, want)


@pytest.mark.parametrize("size", [(7, 7), (8, 8), (9, 10)])
def test_max_pool2d_same_upper(size) -> None:
    """Asymmetric (top, left, bottom, right) padding == −∞ padding, then an unpadded pool."""
    h, wd = size
    (top, bottom), (left, right) = same_upper(h, 3, 2), same_upper(wd, 3, 2)
    x = rand(1, 2, h, wd)
    xp = F.pad(t(x), (left, right, top, bottom), value=-np.inf)
    want = F.max_pool2d(xp, 3, 2)
    got = ref.max_pool(x, kernel=(3, 3), stride=(2, 2), pads=(top, left, bottom, right),
                         dilation=(1, 1), out_size=want.shape[2:])
    check(got, want)


AVG_POOL_CASES = [
    # (H, W, kernel, stride, padding)
    (8, 8, (2, 2), (2, 2), (0, 0)),
    (7, 9, (3, 3), (2, 2), (1, 1)),
    (6, 6, (3, 3), (2, 2), (0, 0)),
    (10, 11, (3, 2), (3, 2), (1, 1)),
    (11, 10, (4, 3), (3, 1), (2, 1)),
    (5, 5, (5, 5), (1, 1), (2, 2)),
    (13, 12, (3, 3), (2, 2), (1, 1)),
    (7, 7, (3, 3), (1, 1), (1, 1)),
    (5, 5, (2, 2), (2, 2), (1, 1)),    # ceil_mode: last window would start in pad
    (8, 8, (3, 3), (2, 2), (1, 1)),    # ceil_mode: window overhangs the padding
]


@pytest.mark.parametrize("count_include_pad", [False, True])
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("case", AVG_POOL_CASES)
def test_avg_pool2d(case, ceil_mode, count_include_pad) -> None:
    h, wd, kernel, stride, padding = case
    x = rand(2, 3, h, wd)
    want = F.avg_pool2d(t(x), kernel, stride, padding, ceil_mode=ceil_mode,
                        count_include_pad=count_include_pad)
    got = ref.avg_pool(x, kernel=kernel, stride=stride, pads=padding + padding,
                         count_include_pad=count_include_pad, out_size=want.shape[2:])
    check(got, want)


def test_avg_pool2d_asymmetric_pads() -> None:
    """Asymmetric pads: include_pad divides by the window inside the padded extent."""
    x = rand(1, 2, 6, 7)
    pads = (0, 1, 1, 2)
    for include in (False, True):
        xp = torch_pad(t(x), pads)
        got = ref.avg_pool(x, kernel=(3, 3), stride=(2, 2), pads=pads, count_include_pad=include,
                             out_size=F.max_pool2d(xp, 3, 2).shape[2:])
        total = F.avg_pool2d(xp, 3, 2, divisor_override=1)
        if include:
            count = 9.0
        else:
            ones = torch_pad(torch.ones(1, 1, 6, 7), pads)
            count = F.avg_pool2d(ones, 3, 2, divisor_override=1)
        check(got, total / count)


def test_global_pools() -> None:
    x = rand(2, 5, 7, 6)
    check(ref.global_avg_pool(x), F.adaptive_avg_pool2d(t(x), 1))
    check(ref.global_max_pool(x), F.adaptive_max_pool2d(t(x), 1))


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("size", [1, 2, 3])
def test_depthwise_pool(size, mode) -> None:
    n, c, h, w = 2, 6, 3, 4
    x = rand(n, c, h, w)
    got = ref.depthwise_pool(x, size=size, mode=mode)
    want = np.zeros((n, c // size, h, w), dtype=np.float32)
    reduce = max if mode == "max" else (lambda vals: sum(vals) / len(vals))
    for b, q, i, j in itertools.product(range(n), range(c // size), range(h), range(w)):
        want[b, q, i, j] = reduce([float(x[b, q * size + r, i, j]) for r in range(size)])
    check(got, want)


def test_depthwise_pool_rejects_indivisible_channels() -> None:
    with pytest.raises(ValueError):
        ref.depthwise_pool(rand(1, 5, 2, 2), size=2, mode="max")


# ---------------------------------------------------------------- shape ops


def test_flatten_and_reshape() -> None:
    x = rand(2, 3, 4, 5)
    check(ref.flatten(x), torch.flatten(t(x), 1))
    check(ref.reshape(x, shape=(12, 5)), t(x).reshape(2, 12, 5))
    check(ref.reshape(x, shape=(-1,)), t(x).reshape(2, -1))


@pytest.mark.parametrize("shape_b", [(2, 3, 4, 5), (2, 3, 1, 1), (1, 3, 1, 1), (5,)])
def test_add_mul_broadcast(shape_b) -> None:
    a, b = rand(2, 3, 4, 5), rand(*shape_b, seed=1)
    check(ref.add(a, b), t(a) + t(b))
    check(ref.mul(a, b), t(a) * t(b))


@pytest.mark.parametrize("axis", [1, 2, 3, -1])
def test_concat(axis) -> None:
    xs = [rand(2, 3, 4, 5, seed=s) for s in range(3)]
    check(ref.concat(*xs, axis=axis), torch.cat([t(x) for x in xs], dim=axis))
    check(ref.concat(xs[0], axis=axis), t(xs[0]))


def test_concat_channels_of_different_sizes() -> None:
    xs = [rand(2, c, 3, 3, seed=c) for c in (1, 4, 2)]
    check(ref.concat(*xs, axis=1), torch.cat([t(x) for x in xs], dim=1))


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("scale", [(2, 2), (3, 3), (2, 3), (1, 2)])
@pytest.mark.parametrize("size", [(1, 1), (4, 5), (3, 2)])
def test_upsample(size, scale, mode) -> None:
    x = rand(2, 3, *size)
    got = ref.upsample(x, scale=scale, mode=mode)
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    want = F.interpolate(t(x), scale_factor=scale, mode=mode, **kwargs)
    check(got, want)


@pytest.mark.parametrize("pads", [(1, 1, 1, 1), (0, 2, 1, 0), (2, 0, 0, 3)])
@pytest.mark.parametrize("mode,torch_mode", [("constant", "constant"), ("reflect", "reflect"),
                                             ("edge", "replicate")])
def test_pad(pads, mode, torch_mode) -> None:
    x = rand(2, 3, 4, 5)
    top, left, bottom, right = pads
    got = ref.pad(x, pads=pads, mode=mode, value=1.5)
    value = {"value": 1.5} if mode == "constant" else {}
    want = F.pad(t(x), (left, right, top, bottom), mode=torch_mode, **value)
    check(got, want)


@pytest.mark.parametrize("offset,size", [((0, 0), (4, 5)), ((1, 2), (2, 3)), ((3, 0), (1, 5))])
def test_crop(offset, size) -> None:
    x = rand(2, 3, 4, 5)
    original = x.copy()
    got = ref.crop(x, offset=offset, size=size)
    (oy, ox), (h, w) = offset, size
    check(got, t(x)[:, :, oy : oy + h, ox : ox + w])
    got[...] = 0  # the result is a fresh array, not a view of x
    np.testing.assert_array_equal(x, original)


def test_outputs_are_float32_and_fresh() -> None:
    x = rand(1, 2, 3, 3)
    for y in (ref.relu(x), ref.flatten(x), ref.reshape(x, shape=(18,)), ref.concat(x, axis=1)):
        assert y.dtype == np.float32
        assert not np.shares_memory(x, y)


def test_every_ir_kernel_exists() -> None:
    from cnnc.ir.ops import RECORDS

    names = sorted({info.kernel for info in RECORDS.values() if info.kernel})
    assert [n for n in names if not callable(getattr(ref, n, None))] == []
