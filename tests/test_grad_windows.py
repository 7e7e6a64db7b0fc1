"""The window ops' backward kernels (cnnc/kernels/backward_windows.py) against PyTorch's autograd.

Every case runs in float64 with tight tolerances: the gradients are compared with torch's, the
kwargs are built from the op registry exactly as the forward kernel gets them (and the NumPy
forward kernel is called with them, so a wrong kwarg or shape shows), and the inputs are
read-only, so a kernel writing into dy or a saved array fails.
"""
from __future__ import annotations

import ast
import inspect

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from cnnc.codegen.kernel_source import kernel_sources
from cnnc.ir import ops as o
from cnnc.ir.ops import Op, infer_shape, kernel_kwargs, record
from cnnc.kernels import backward_windows as bw
from cnnc.kernels import numpy_kernels as nk

TIGHT = {"rtol": 1e-10, "atol": 1e-10}
LOOSE = {"rtol": 1e-4, "atol": 1e-4}  # float32 kernels against the float64 reference


def frozen(a):
    """A read-only copy: a kernel writing into its arguments raises."""
    if a is None:
        return None
    a = np.array(a)
    a.setflags(write=False)
    return a


def forward_kwargs(op: Op, attrs: object, in_shape: tuple) -> tuple[dict, tuple]:
    """The forward kernel's kwargs as the registry builds them (out_size for a sized op), and
    the output shape the shape rule gives."""
    kwargs = kernel_kwargs(op, attrs)
    out = tuple(infer_shape(op, attrs, [in_shape]))
    if record(op).sized:
        kwargs["out_size"] = (int(out[2]), int(out[3]))
    return kwargs, out


def torch_run(fn, arrays: list, seed: int = 7):
    """Run `fn` on tensors of `arrays` (None passed through), backprop a random dy: returns
    (y, dy, gradients of each array)."""
    tensors = [None if a is None else torch.tensor(a, requires_grad=True) for a in arrays]
    y = fn(*tensors)
    dy = np.random.default_rng(seed).standard_normal(tuple(y.shape))
    y.backward(torch.tensor(dy, dtype=y.dtype))
    return y.detach().numpy(), dy, [None if t is None else t.grad.numpy() for t in tensors]


def check(got, want, tol=TIGHT) -> None:
    assert len(got) == len(want)
    for g, t in zip(got, want):
        if t is None:
            assert g is None
        else:
            assert g is not None and g.shape == t.shape and g.dtype == t.dtype
            np.testing.assert_allclose(g, t, **tol)


def ints(rng, shape) -> np.ndarray:
    """Integer-valued float64 inputs from {0, 1, 2}: windows full of ties."""
    return rng.integers(0, 3, size=shape).astype(np.float64)


# ---- conv ---------------------------------------------------------------------------------------

# (C, H, W, O, kernel, stride, pads, dilation, groups, bias)
CONV_CASES = {
    "3x3": (3, 7, 6, 4, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, True),
    "stride2-same-asymmetric": (3, 8, 8, 5, (3, 3), (2, 2), (0, 0, 1, 1), (1, 1), 1, True),
    "stride2-unreached-rows": (2, 8, 9, 3, (3, 3), (2, 2), (0, 0, 0, 0), (1, 1), 1, False),
    "stride2-pads-1023": (2, 9, 8, 3, (3, 2), (2, 3), (1, 0, 2, 3), (1, 1), 1, True),
    "groups2": (4, 6, 7, 6, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2, True),
    "groups2-stride2-dilation2": (4, 9, 9, 4, (3, 3), (2, 2), (2, 1, 2, 1), (2, 2), 2, False),
    "depthwise": (4, 6, 6, 4, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 4, True),
    "depthwise-stride2-same": (3, 8, 7, 3, (3, 3), (2, 2), (0, 1, 1, 1), (1, 1), 3, False),
    "depthwise-multiplier2": (3, 7, 6, 6, (3, 3), (2, 1), (1, 1, 1, 1), (1, 1), 3, True),
    "depthwise-dilation2": (2, 7, 7, 4, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2), 2, True),
    "dilation2": (3, 9, 8, 2, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2), 1, True),
    "1x1": (5, 4, 3, 6, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, True),
    "1x1-stride2": (4, 5, 6, 3, (1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1, False),
    "1x1-groups2": (4, 3, 3, 2, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 2, True),
    "non-square": (2, 6, 7, 3, (2, 3), (1, 2), (0, 1, 1, 1), (1, 1), 1, True),
}


def conv_case(case, rng, dtype=np.float64):
    c, h, w, out, kernel, stride, pads, dilation, groups, bias = case
    x = rng.standard_normal((2, c, h, w)).astype(dtype)
    wt = rng.standard_normal((out, c // groups, *kernel)).astype(dtype)
    b = rng.standard_normal(out).astype(dtype) if bias else None
    attrs = o.ConvAttrs(out, kernel, stride, pads, dilation, groups, bias)
    kwargs, shape = forward_kwargs(Op.CONV, attrs, x.shape)
    top, left, bottom, right = pads

    def reference(x, w, b):
        return F.conv2d(F.pad(x, (left, right, top, bottom)), w, b, stride, 0, dilation, groups)

    return x, wt, b, kwargs, shape, reference


@pytest.mark.parametrize("name", CONV_CASES)
def test_conv_backward(name, rng):
    x, w, b, kwargs, shape, reference = conv_case(CONV_CASES[name], rng)
    y, dy, want = torch_run(reference, [x, w, b])
    assert y.shape == shape
    np.testing.assert_allclose(nk.conv(x, w, b, **kwargs), y, **LOOSE)  # the same op, the same kwargs
    got = bw.conv_backward(frozen(dy), frozen(x), frozen(w), frozen(b), **kwargs)
    check(got, want)


@pytest.mark.parametrize("name", ["stride2-same-asymmetric", "groups2-stride2-dilation2", "depthwise-multiplier2"])
def test_conv_backward_float32(name, rng):
    x, w, b, kwargs, _, reference = conv_case(CONV_CASES[name], rng)
    _, dy, want = torch_run(reference, [x, w, b])
    f32 = [None if a is None else frozen(a.astype(np.float32)) for a in (dy, x, w, b)]
    got = bw.conv_backward(*f32, **kwargs)
    assert all(g is None or g.dtype == np.float32 for g in got)
    check(got, [None if t is None else t.astype(np.float32) for t in want], LOOSE)


@pytest.mark.parametrize("name", ["3x3", "depthwise-multiplier2"])
def test_conv_backward_without_input_gradient(name, rng):
    x, w, b, kwargs, _, reference = conv_case(CONV_CASES[name], rng)
    _, dy, want = torch_run(reference, [x, w, b])
    got = bw.conv_backward(frozen(dy), frozen(x), frozen(w), frozen(b), **kwargs, need_input=False)
    check(got, [None, *want[1:]])


def test_conv_backward_refuses_a_fused_activation(rng):
    x, w, b, kwargs, shape, _ = conv_case(CONV_CASES["3x3"], rng)
    with pytest.raises(ValueError, match="fused activation"):
        bw.conv_backward(np.ones(shape), x, w, b, **kwargs, activation="relu")


# ---- conv_transpose -----------------------------------------------------------------------------

# (C, H, W, O, kernel, stride, pads, output_padding, dilation, groups, bias)
CONV_TRANSPOSE_CASES = {
    "stride2": (3, 4, 5, 2, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), (1, 1), 1, True),
    "asymmetric": (2, 5, 4, 3, (3, 2), (2, 1), (0, 1, 1, 0), (1, 0), (1, 1), 1, True),
    "groups2": (4, 4, 4, 6, (3, 3), (2, 2), (1, 1, 1, 1), (0, 0), (1, 1), 2, False),
    "dilation2-output-padding": (2, 4, 5, 2, (3, 3), (1, 2), (2, 1, 1, 2), (1, 1), (2, 2), 1, True),
    "depthwise": (3, 5, 4, 3, (4, 4), (2, 2), (1, 1, 1, 1), (0, 0), (1, 1), 3, True),
    "1x1-stride2": (3, 3, 4, 4, (1, 1), (2, 2), (0, 0, 0, 0), (1, 1), (1, 1), 1, True),
    "no-pads": (2, 3, 3, 3, (2, 3), (1, 1), (0, 0, 0, 0), (0, 0), (1, 1), 1, False),
}


def conv_transpose_case(case, rng):
    c, h, w, out, kernel, stride, pads, output_padding, dilation, groups, bias = case
    x = rng.standard_normal((2, c, h, w))
    wt = rng.standard_normal((c, out // groups, *kernel))
    b = rng.standard_normal(out) if bias else None
    attrs = o.ConvTransposeAttrs(out, kernel, stride, pads, output_padding, dilation, groups, bias)
    kwargs, shape = forward_kwargs(Op.CONV_TRANSPOSE, attrs, x.shape)
    top, left, bottom, right = pads

    def reference(x, w, b):
        full = F.conv_transpose2d(x, w, b, stride, 0, output_padding, groups, dilation)
        return full[:, :, top:full.shape[2] - bottom, left:full.shape[3] - right]

    return x, wt, b, kwargs, shape, reference


@pytest.mark.parametrize("name", CONV_TRANSPOSE_CASES)
def test_conv_transpose_backward(name, rng):
    x, w, b, kwargs, shape, reference = conv_transpose_case(CONV_TRANSPOSE_CASES[name], rng)
    y, dy, want = torch_run(reference, [x, w, b])
    assert y.shape == shape
    np.testing.assert_allclose(nk.conv_transpose(x, w, b, **kwargs), y, **LOOSE)
    check(bw.conv_transpose_backward(frozen(dy), frozen(x), frozen(w), frozen(b), **kwargs), want)
    dropped = bw.conv_transpose_backward(frozen(dy), frozen(x), frozen(w), frozen(b), **kwargs, need_input=False)
    check(dropped, [None, *want[1:]])


def test_conv_transpose_backward_float32(rng):
    x, w, b, kwargs, _, reference = conv_transpose_case(CONV_TRANSPOSE_CASES["asymmetric"], rng)
    _, dy, want = torch_run(reference, [x, w, b])
    got = bw.conv_transpose_backward(*(frozen(a.astype(np.float32)) for a in (dy, x, w, b)), **kwargs)
    check(got, [t.astype(np.float32) for t in want], LOOSE)


# ---- dense --------------------------------------------------------------------------------------


@pytest.mark.parametrize("four_d", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_dense_backward(four_d, bias, rng):
    x = rng.standard_normal((3, 5, 1, 1) if four_d else (3, 5))
    w = rng.standard_normal((4, 5))
    b = rng.standard_normal(4) if bias else None
    kwargs, shape = forward_kwargs(Op.DENSE, o.DenseAttrs(4, bias), x.shape)

    def reference(x, w, b):
        y = F.linear(x.reshape(x.shape[0], -1), w, b)
        return y.reshape(y.shape[0], -1, 1, 1) if four_d else y

    y, dy, want = torch_run(reference, [x, w, b])
    assert y.shape == shape
    np.testing.assert_allclose(nk.dense(x, w, b, **kwargs), y, **LOOSE)
    check(bw.dense_backward(frozen(dy), frozen(x), frozen(w), frozen(b), **kwargs), want)
    check(bw.dense_backward(frozen(dy), frozen(x), frozen(w), frozen(b), **kwargs, need_input=False),
          [None, *want[1:]])
    f32 = bw.dense_backward(*(None if a is None else frozen(a.astype(np.float32)) for a in (dy, x, w, b)), **kwargs)
    check(f32, [None if t is None else t.astype(np.float32) for t in want], LOOSE)


# ---- max_pool -----------------------------------------------------------------------------------

# (C, H, W, kernel, stride, pads, dilation, ceil_mode)
MAX_POOL_CASES = {
    "2x2": (3, 6, 8, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1), False),
    "3x3-s2-pad1": (2, 7, 8, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), False),
    "3x3-s2-pad1-ceil": (2, 8, 8, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), True),
    "2x2-ceil": (2, 7, 5, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1), True),
    "3x3-s1-pad1": (2, 5, 6, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), False),
    "dilation2": (2, 8, 7, (3, 3), (1, 2), (1, 1, 1, 1), (2, 2), False),
    "same-asymmetric": (2, 8, 6, (3, 3), (2, 2), (0, 0, 1, 1), (1, 1), False),
    "non-square": (2, 7, 7, (2, 3), (2, 1), (1, 0, 1, 0), (1, 1), True),
}


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("name", MAX_POOL_CASES)
def test_max_pool_backward(name, ties, rng):
    c, h, w, kernel, stride, pads, dilation, ceil = MAX_POOL_CASES[name]
    x = ints(rng, (2, c, h, w)) if ties else rng.standard_normal((2, c, h, w))
    attrs = o.MaxPoolAttrs(kernel, stride, pads, dilation, ceil)
    kwargs, shape = forward_kwargs(Op.MAX_POOL, attrs, x.shape)
    top, left, bottom, right = pads

    def reference(x):
        if (top, left) == (bottom, right):
            return F.max_pool2d(x, kernel, stride, (top, left), dilation, ceil_mode=ceil)
        return F.max_pool2d(F.pad(x, (left, right, top, bottom), value=-np.inf), kernel, stride, 0, dilation)

    y, dy, want = torch_run(reference, [x])
    assert y.shape == shape
    np.testing.assert_allclose(nk.max_pool(x, **kwargs), y, **LOOSE)  # float32 when padded (its _pad_into)
    check(bw.max_pool_backward(frozen(dy), frozen(x), frozen(y), **kwargs), want)


def test_max_pool_backward_tie_goes_to_the_first_position():
    x = np.array([[[[1.0, 3.0, 3.0], [3.0, 0.0, 3.0], [1.0, 1.0, 1.0]]]])
    kwargs = {"kernel": (3, 3), "stride": (1, 1), "pads": (0, 0, 0, 0), "dilation": (1, 1), "out_size": (1, 1)}
    (dx,) = bw.max_pool_backward(np.ones((1, 1, 1, 1)), x, np.full((1, 1, 1, 1), 3.0), **kwargs)
    assert dx.tolist() == [[[[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]]


# ---- avg_pool -----------------------------------------------------------------------------------

# (C, H, W, kernel, stride, pads, ceil_mode)
AVG_POOL_CASES = {
    "2x2": (2, 6, 8, (2, 2), (2, 2), (0, 0, 0, 0), False),
    "3x3-s2-pad1": (2, 7, 8, (3, 3), (2, 2), (1, 1, 1, 1), False),
    "3x3-s2-pad1-ceil": (2, 8, 8, (3, 3), (2, 2), (1, 1, 1, 1), True),
    "2x2-ceil": (2, 7, 5, (2, 2), (2, 2), (0, 0, 0, 0), True),
    "3x3-s1-pad1": (2, 5, 6, (3, 3), (1, 1), (1, 1, 1, 1), False),
    "non-square": (2, 7, 6, (3, 2), (2, 1), (1, 1, 1, 1), True),
    "same-asymmetric": (2, 8, 6, (3, 3), (2, 2), (0, 0, 1, 1), False),
}


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("name", AVG_POOL_CASES)
def test_avg_pool_backward(name, count_include_pad, rng):
    c, h, w, kernel, stride, pads, ceil = AVG_POOL_CASES[name]
    x = rng.standard_normal((2, c, h, w))
    attrs = o.AvgPoolAttrs(kernel, stride, pads, ceil, count_include_pad)
    kwargs, shape = forward_kwargs(Op.AVG_POOL, attrs, x.shape)
    top, left, bottom, right = pads

    def reference(x):
        if (top, left) == (bottom, right):
            return F.avg_pool2d(x, kernel, stride, (top, left), ceil, count_include_pad)
        padded = F.pad(x, (left, right, top, bottom))
        if count_include_pad:
            return F.avg_pool2d(padded, kernel, stride)
        counts = F.avg_pool2d(F.pad(torch.ones_like(x), (left, right, top, bottom)), kernel, stride,
                              divisor_override=1)
        return F.avg_pool2d(padded, kernel, stride, divisor_override=1) / counts

    y, dy, want = torch_run(reference, [x])
    assert y.shape == shape
    np.testing.assert_allclose(nk.avg_pool(x, **kwargs), y, **LOOSE)
    check(bw.avg_pool_backward(frozen(dy), **kwargs, in_shapes=[x.shape[1:]]), want)


# ---- global and adaptive pools ------------------------------------------------------------------


def test_global_avg_pool_backward(rng):
    x = rng.standard_normal((2, 3, 5, 4))
    y, dy, want = torch_run(lambda x: x.mean(dim=(2, 3), keepdim=True), [x])
    assert nk.global_avg_pool(x).shape == y.shape
    (dx,) = bw.global_avg_pool_backward(frozen(dy), in_shapes=[x.shape[1:]])
    check((dx,), want)
    dx += 1.0  # a fresh writable array, not a broadcast view


@pytest.mark.parametrize("ties", [False, True])
def test_global_max_pool_backward(ties, rng):
    x = ints(rng, (3, 4, 3, 5)) if ties else rng.standard_normal((3, 4, 3, 5))
    y, dy, want = torch_run(lambda x: F.adaptive_max_pool2d(x, 1), [x])
    # max_pool2d over the whole image places ties the same way (torch.amax would split them)
    _, _, whole = torch_run(lambda x: F.max_pool2d(x, (3, 5)), [x])
    np.testing.assert_array_equal(whole[0], want[0])
    np.testing.assert_array_equal(nk.global_max_pool(x), y)
    check(bw.global_max_pool_backward(frozen(dy), frozen(x), frozen(y)), want)


# (H, W, size)
ADAPTIVE_CASES = {
    "overlapping": (7, 5, (3, 2)),
    "divisible": (6, 6, (3, 2)),
    "overlapping-4": (6, 7, (4, 4)),
    "to-1x1": (5, 7, (1, 1)),
    "identity": (4, 4, (4, 4)),
    "growing": (3, 5, (6, 7)),
}


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("name", ADAPTIVE_CASES)
def test_adaptive_pool_backward(name, mode, ties, rng):
    if ties and mode == "avg":
        pytest.skip("ties do not matter to a mean")
    h, w, size = ADAPTIVE_CASES[name]
    x = ints(rng, (2, 3, h, w)) if ties else rng.standard_normal((2, 3, h, w))
    kwargs, shape = forward_kwargs(Op.ADAPTIVE_POOL, o.AdaptivePoolAttrs(size, mode), x.shape)
    torch_pool = F.adaptive_max_pool2d if mode == "max" else F.adaptive_avg_pool2d
    y, dy, want = torch_run(lambda x: torch_pool(x, size), [x])
    assert y.shape == shape
    np.testing.assert_allclose(nk.adaptive_pool(x, **kwargs), y, **LOOSE)
    check(bw.adaptive_pool_backward(frozen(dy), frozen(x), frozen(y), **kwargs), want)


# ---- lrn ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "alpha", "beta", "k"),
                         [(5, 1e-2, 0.75, 2.0), (4, 3e-2, 0.75, 1.0), (3, 0.1, 0.5, 1.5), (1, 0.2, 1.0, 1.0),
                          (9, 1e-2, 0.75, 2.0)])
def test_lrn_backward(size, alpha, beta, k, rng):
    x = 2.0 * rng.standard_normal((2, 7, 3, 4))
    attrs = o.LrnAttrs(size, alpha, beta, k)
    kwargs, shape = forward_kwargs(Op.LRN, attrs, x.shape)
    # cnnc's α is not divided by the window size; PyTorch's is
    y, dy, want = torch_run(lambda x: F.local_response_norm(x, size, alpha * size, beta, k), [x])
    assert y.shape == shape
    np.testing.assert_allclose(nk.lrn(x, **kwargs), y, **LOOSE)
    check(bw.lrn_backward(frozen(dy), frozen(x), frozen(y), **kwargs), want)


# ---- upsample, pad, crop, slice -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize(("h", "w", "scale"), [(4, 5, (2, 2)), (3, 4, (3, 2)), (3, 3, (1, 1)), (1, 3, (2, 3))])
def test_upsample_backward(mode, h, w, scale, rng):
    x = rng.standard_normal((2, 3, h, w))
    kwargs, shape = forward_kwargs(Op.UPSAMPLE, o.UpsampleAttrs(scale, mode), x.shape)
    extra = {} if mode == "nearest" else {"align_corners": False}
    y, dy, want = torch_run(lambda x: F.interpolate(x, scale_factor=scale, mode=mode, **extra), [x])
    assert y.shape == shape
    np.testing.assert_allclose(nk.upsample(x, **kwargs), y, **LOOSE)
    check(bw.upsample_backward(frozen(dy), **kwargs, in_shapes=[x.shape[1:]]), want)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize(("h", "w", "pads"), [(4, 5, (1, 2, 0, 3)), (4, 5, (3, 0, 2, 4)), (3, 3, (0, 0, 0, 0)),
                                              (5, 2, (2, 1, 4, 1)), (1, 4, (2, 1, 1, 0))])
def test_pad_backward(mode, h, w, pads, rng):
    top, left, bottom, right = pads
    if mode == "reflect" and (max(top, bottom) >= h or max(left, right) >= w):
        pytest.skip("reflect padding must be smaller than the input")
    x = rng.standard_normal((2, 3, h, w))
    kwargs, shape = forward_kwargs(Op.PAD, o.PadAttrs(pads, mode, 0.5), x.shape)
    torch_mode = {"edge": "replicate"}.get(mode, mode)
    extra = {"value": 0.5} if mode == "constant" else {}
    y, dy, want = torch_run(lambda x: F.pad(x, (left, right, top, bottom), mode=torch_mode, **extra), [x])
    assert y.shape == shape
    np.testing.assert_allclose(nk.pad(x, **kwargs), y, **LOOSE)
    check(bw.pad_backward(frozen(dy), **kwargs, in_shapes=[x.shape[1:]]), want)


@pytest.mark.parametrize(("offset", "size"), [((0, 0), (3, 4)), ((1, 2), (2, 3)), ((0, 0), (4, 5))])
def test_crop_backward(offset, size, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    kwargs, shape = forward_kwargs(Op.CROP, o.CropAttrs(offset, size), x.shape)
    (oy, ox), (h, w) = offset, size
    y, dy, want = torch_run(lambda x: x[:, :, oy:oy + h, ox:ox + w], [x])
    assert y.shape == shape == nk.crop(x, **kwargs).shape
    check(bw.crop_backward(frozen(dy), **kwargs, in_shapes=[x.shape[1:]]), want)


@pytest.mark.parametrize(("shape", "axis", "start", "stop"),
                         [((2, 5, 3, 4), 1, 1, 4), ((2, 5, 3, 4), 2, 0, 2), ((2, 5, 3, 4), -1, -3, -1),
                          ((2, 5, 3, 4), 3, 1, 4), ((3, 7), 1, 2, -2), ((3, 7), -1, -7, 7)])
def test_slice_axis_backward(shape, axis, start, stop, rng):
    x = rng.standard_normal(shape)
    kwargs, out = forward_kwargs(Op.SLICE, o.SliceAttrs(axis, start, stop), x.shape)
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop)
    y, dy, want = torch_run(lambda x: x[tuple(index)], [x])
    assert y.shape == out == nk.slice_axis(x, **kwargs).shape
    check(bw.slice_axis_backward(frozen(dy), **kwargs, in_shapes=[x.shape[1:]]), want)


# ---- the module's contract ----------------------------------------------------------------------

# op → (backward kernel, saves, in_shapes, need_input): the gradient rules these kernels implement
RULES = {
    Op.CONV: ("conv_backward", ("inputs",), False, True),
    Op.CONV_TRANSPOSE: ("conv_transpose_backward", ("inputs",), False, True),
    Op.DENSE: ("dense_backward", ("inputs",), False, True),
    Op.MAX_POOL: ("max_pool_backward", ("inputs", "output"), False, False),
    Op.AVG_POOL: ("avg_pool_backward", (), True, False),
    Op.GLOBAL_AVG_POOL: ("global_avg_pool_backward", (), True, False),
    Op.GLOBAL_MAX_POOL: ("global_max_pool_backward", ("inputs", "output"), False, False),
    Op.ADAPTIVE_POOL: ("adaptive_pool_backward", ("inputs", "output"), False, False),
    Op.LRN: ("lrn_backward", ("inputs", "output"), False, False),
    Op.UPSAMPLE: ("upsample_backward", (), True, False),
    Op.PAD: ("pad_backward", (), True, False),
    Op.CROP: ("crop_backward", (), True, False),
    Op.SLICE: ("slice_axis_backward", (), True, False),
}


@pytest.mark.parametrize("op", RULES, ids=str)
def test_backward_signature_matches_the_forward(op):
    """The backward takes the data the rule saves, the parameters, and exactly the forward's
    kwargs (plus in_shapes / need_input); a record's rule, once set, agrees."""
    name, saves, in_shapes, need_input = RULES[op]
    info = record(op)
    assert name == f"{info.kernel}_backward"
    params = inspect.signature(getattr(bw, name)).parameters.values()
    positional = [p.name for p in params if p.kind == p.POSITIONAL_OR_KEYWORD]
    keywords = {p.name for p in params if p.kind == p.KEYWORD_ONLY}
    assert len(positional) == 1 + ("inputs" in saves) + ("output" in saves) + len(info.roles)
    forward = {p.name for p in inspect.signature(getattr(nk, info.kernel)).parameters.values()
               if p.kind == p.KEYWORD_ONLY} - set(info.keyword_inputs)
    passed = set(info.kwargs) | ({"out_size"} if info.sized else set())
    extra = ({"in_shapes"} if in_shapes else set()) | ({"need_input"} if need_input else set())
    assert passed | extra <= keywords <= forward | extra
    grad = getattr(info, "grad", None)
    if grad is not None and grad.kernel == name:
        assert (grad.saves, grad.in_shapes, grad.need_input) == (saves, in_shapes, need_input)


def test_module_is_self_contained(rng):
    """Generated code copies a kernel and the top-level helpers it names; numpy is all it needs."""
    tree = ast.parse(inspect.getsource(bw))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert imported <= {"numpy", "math"}
    # from-imports only of the forward kernels' helpers, which the generated module copies too
    assert all(node.module == "numpy_kernels" and node.level == 1
               for node in ast.walk(tree) if isinstance(node, ast.ImportFrom))
    names = [rule[0] for rule in RULES.values()]
    namespace: dict = {"np": np, "math": __import__("math")}
    exec("\n\n".join(kernel_sources((nk, bw), names)), namespace)  # noqa: S102 (our own module's source)
    x, w, b, kwargs, shape, reference = conv_case(CONV_CASES["stride2-same-asymmetric"], rng)
    _, dy, want = torch_run(reference, [x, w, b])
    check(namespace["conv_backward"](dy, x, w, b, **kwargs), want)
    x = rng.standard_normal((1, 2, 5, 5))
    kwargs, _ = forward_kwargs(Op.ADAPTIVE_POOL, o.AdaptivePoolAttrs((3, 3), "max"), x.shape)
    y, dy, want = torch_run(lambda x: F.adaptive_max_pool2d(x, (3, 3)), [x])
    check(namespace["adaptive_pool_backward"](dy, x, y, **kwargs), want)
