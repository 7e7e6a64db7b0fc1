"""Kernels that optimization passes produce: fused conv/dense epilogues, channel_affine, reduce.

Both kernel modules are checked against PyTorch; the NumPy kernels' conv epilogues on both of
their paths (tests/conftest.py's `kernel_path`: NumPy alone, and the compiled loops).
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from cnnc.kernels import numpy_kernels, reference  # noqa: E402

KERNELS = [reference, numpy_kernels]
ACTIVATIONS = {
    "none": lambda t: t, "relu": F.relu, "relu6": F.relu6, "sigmoid": torch.sigmoid,
    "leaky_relu": lambda t: F.leaky_relu(t, 0.1), "hardsigmoid": F.hardsigmoid, "hardswish": F.hardswish,
    "silu": F.silu, "gelu": F.gelu, "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
}


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("kernels", KERNELS, ids=["reference", "numpy"])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("shape, kernel, stride, groups", [
    ((2, 8, 9, 9), 3, 1, 1), ((1, 8, 10, 10), 1, 1, 1), ((1, 8, 11, 11), 3, 2, 8), ((2, 6, 7, 7), 3, 1, 2),
    ((2, 16, 130, 131), 3, 1, 1),  # 19 MB of im2col columns: image by image, each with its epilogue
])
@pytest.mark.parametrize("with_residual", [False, True])
def test_conv_epilogue_matches_torch(kernels, activation, shape, kernel, stride, groups, with_residual,
                                    kernel_path):
    x = rand(*shape)
    w = rand(8, shape[1] // groups, kernel, kernel, seed=1)
    b = rand(8, seed=2)
    pad = kernel // 2
    t = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride, pad, 1, groups)
    residual = rand(*t.shape, seed=3) if with_residual else None
    if residual is not None:
        t = t + torch.from_numpy(residual)
    expected = ACTIVATIONS[activation](t).numpy()
    got = kernels.conv(x, w, b, stride=(stride, stride), pads=(pad,) * 4, dilation=(1, 1), groups=groups,
                         out_size=t.shape[2:], activation=activation, slope=0.1, residual=residual)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    if residual is not None:  # the residual input is read, never written
        np.testing.assert_array_equal(residual, rand(*t.shape, seed=3))


@pytest.mark.parametrize("activation", ["relu", "relu6"])
@pytest.mark.parametrize("kernel,groups", [(1, 1), (3, 1), (3, 8)])
def test_conv_epilogue_keeps_nan(activation, kernel, groups, kernel_path):
    """A NaN input stays NaN through the fused activation (np.maximum's rule, and torch's)."""
    x = rand(1, 8, 6, 6)
    x[0, 3, 2, 2] = np.nan
    w, b = rand(8, 8 // groups, kernel, kernel, seed=1), rand(8, seed=2)
    pad = kernel // 2
    t = ACTIVATIONS[activation](F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), 1, pad,
                                         1, groups)).numpy()
    got = numpy_kernels.conv(x, w, b, stride=(1, 1), pads=(pad,) * 4, dilation=(1, 1), groups=groups,
                             out_size=t.shape[2:], activation=activation)
    assert np.isnan(t).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(t))


@pytest.mark.parametrize("kernels", KERNELS, ids=["reference", "numpy"])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_dense_epilogue_matches_torch(kernels, activation):
    x, w, b = rand(3, 20), rand(7, 20, seed=1), rand(7, seed=2)
    expected = ACTIVATIONS[activation](F.linear(*map(torch.from_numpy, (x, w, b)))).numpy()
    np.testing.assert_allclose(kernels.dense(x, w, b, activation=activation, slope=0.1), expected,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernels", KERNELS, ids=["reference", "numpy"])
@pytest.mark.parametrize("shape", [(2, 5, 4, 3), (3, 5)])
def test_channel_affine(kernels, shape):
    x, scale, shift = rand(*shape), rand(5, seed=1), rand(5, seed=2)
    view = (1, 5) + (1,) * (len(shape) - 2)
    expected = x * scale.reshape(view) + shift.reshape(view)
    np.testing.assert_allclose(kernels.channel_affine(x, scale, shift), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kernels", KERNELS, ids=["reference", "numpy"])
@pytest.mark.parametrize("mode", ["mean", "max"])
@pytest.mark.parametrize("axes, keepdims", [((2, 3), True), ((2,), False), ((1, 3), False)])
def test_reduce(kernels, mode, axes, keepdims):
    x = rand(2, 3, 4, 5)
    t = torch.from_numpy(x)
    expected = t.mean(dim=axes, keepdim=keepdims) if mode == "mean" else t.amax(dim=axes, keepdim=keepdims)
    np.testing.assert_allclose(kernels.reduce(x, mode=mode, axes=axes, keepdims=keepdims), expected.numpy(),
                               rtol=1e-6, atol=1e-6)
