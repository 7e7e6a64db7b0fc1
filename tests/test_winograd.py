"""Winograd F(4x4, 3x3) convolution: the kernels, their error bound, the pass and the network.

The error bound (docs/kernels.md): against the exact (float64) direct convolution, every output
of the NumPy kernel is within 1e-5 · (|x| ⊛ |w|), the same convolution of absolute values: the
scale a float32 sum of those products is rounded against; 2e-5 on the NumPy path, whose
transforms are float32 GEMMs that round as the BLAS kernels sum (worst here: 6.7e-6 with
OpenBLAS's SkylakeX kernels, 1.2e-5 with its Haswell kernels), 1e-5 with the compiled loops,
which transform in float64 (6.3e-6 with either). Direct float32 convolution: 3e-7. The kernel
tests run both paths (tests/conftest.py's `kernel_path`): NumPy's, and the one with the `fast`
extra's compiled transforms (cnnc/kernels/numba_loops.py; skipped without numba).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cnnc
from cnnc.ir.ops import Op
from cnnc.kernels import numpy_kernels, reference
from cnnc.passes import winograd
from cnnc.passes.derived import RULES

BOUND = {"numpy": 2e-5, "compiled": 1e-5}  # per kernel path (module docstring)

CASES = [  # (batch, channels, filters, height, width, pads)
    (1, 1, 1, 1, 1, (1, 1, 1, 1)),
    (1, 3, 5, 4, 4, (0, 0, 0, 0)),
    (2, 6, 7, 9, 11, (1, 1, 1, 1)),
    (3, 17, 9, 13, 6, (2, 0, 1, 2)),
    (1, 40, 33, 7, 7, (1, 1, 1, 1)),
    (2, 5, 4, 30, 3, (0, 2, 2, 0)),
    (1, 2, 3, 90, 100, (1, 1, 1, 1)),  # several bands of tile rows per image
    (11, 3, 4, 30, 30, (1, 1, 1, 1)),  # several images per band (4 of 64 tiles), the last band 3
    (12, 2, 3, 28, 28, (1, 1, 1, 1)),  # whole tiles, bands of 5 images, the last 2
    (1, 128, 9, 14, 14, (1, 1, 1, 1)),  # 128 channels on a small map: compiled, channels-last input
    (3, 130, 5, 13, 10, (2, 0, 1, 2)),  # ... cropped tiles, asymmetric pads, three images a band
    (66, 128, 3, 5, 6, (1, 1, 1, 1)),  # ... bands of 64 images, the last 2
]


def _exact(x, w, pads):
    """The float64 direct convolution, its rounding scale |x| ⊛ |w|, and the output size."""
    out_size = (x.shape[2] + pads[0] + pads[2] - 2, x.shape[3] + pads[1] + pads[3] - 2)
    return _direct_f64(x, w, pads, out_size), _direct_f64(np.abs(x), np.abs(w), pads, out_size), out_size


def _direct_f64(x, w, pads, out_size):
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    ho, wo = out_size
    y = np.zeros((x.shape[0], w.shape[0], ho, wo))
    for u in range(3):
        for v in range(3):
            y += np.einsum("nchw,oc->nohw", xp[:, :, u:u + ho, v:v + wo], w[:, :, u, v].astype(np.float64))
    return y


def _layer(rng, n, c, o, h, w):
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    g = (rng.standard_normal((o, c, 3, 3)) * np.sqrt(2 / (9 * c))).astype(np.float32)
    return x, g


def _transformed(g: np.ndarray) -> np.ndarray:
    return RULES["winograd_weight"](g.astype(np.float64)).astype(np.float32)


@pytest.mark.parametrize("case", CASES, ids=[f"n{c[0]}c{c[1]}o{c[2]}_{c[3]}x{c[4]}_p{''.join(map(str, c[5]))}"
                                              for c in CASES])
def test_numpy_kernel_is_within_the_bound_of_exact_convolution(case, kernel_path):
    n, c, o, h, w, pads = case
    x, g = _layer(np.random.default_rng(sum(case[:5])), n, c, o, h, w)
    exact, scale, out_size = _exact(x, g, pads)
    got = numpy_kernels.winograd_conv(x, _transformed(g), None, pads=pads, out_size=out_size)
    assert got.shape == exact.shape and got.dtype == np.float32
    assert np.all(np.abs(got - exact) <= BOUND[kernel_path] * scale + 1e-30)


def test_the_bound_is_tight_enough_to_catch_a_wrong_transform(kernel_path):
    """A weight transformed for a slightly different filter breaks the bound: it can fail."""
    x, g = _layer(np.random.default_rng(0), 1, 8, 8, 12, 12)
    exact, scale, out_size = _exact(x, g, (1, 1, 1, 1))
    wrong = g.copy()
    wrong[0, 0, 1, 1] *= 1.001
    got = numpy_kernels.winograd_conv(x, _transformed(wrong), None, pads=(1, 1, 1, 1), out_size=out_size)
    assert not np.all(np.abs(got - exact) <= BOUND[kernel_path] * scale)


@pytest.mark.parametrize("activation", ["leaky_relu", "relu", "none"])
@pytest.mark.parametrize("with_residual", [True, False])
def test_epilogue_bias_residual_activation(activation, with_residual, kernel_path):
    rng = np.random.default_rng(5)
    x, g = _layer(rng, 2, 6, 7, 10, 9)
    b = rng.standard_normal(7).astype(np.float32)
    r = rng.standard_normal((2, 7, 10, 9)).astype(np.float32)[:, :, :, ::-1] if with_residual else None  # a view
    exact, scale, out_size = _exact(x, g, (1, 1, 1, 1))
    got = numpy_kernels.winograd_conv(x, _transformed(g), b, pads=(1, 1, 1, 1), out_size=out_size,
                                      activation=activation, slope=0.1, residual=r)
    want = exact + b[:, None, None] + (0 if r is None else r)
    if activation == "leaky_relu":
        want = np.where(want < 0, 0.1 * want, want)
    elif activation == "relu":
        want = np.maximum(want, 0)
    assert np.all(np.abs(got - want) <= BOUND[kernel_path] * scale + 1e-6)


def test_reference_kernel_recovers_the_direct_weight():
    x, g = _layer(np.random.default_rng(2), 2, 5, 4, 8, 7)
    out_size = (8, 7)
    got = reference.winograd_conv(x, _transformed(g), None, pads=(1, 1, 1, 1), out_size=out_size)
    want = reference.conv(x, g, None, stride=(1, 1), pads=(1, 1, 1, 1), dilation=(1, 1), groups=1, out_size=out_size)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


NET = """
input x: [N, 32, 16, 16]
output y = x
    |> conv(32, 3x3, pad=1) as a |> relu
    |> conv(48, 3x3, pad=1, bias=false) as b |> bn as norm |> relu
    |> conv(48, 3x3, stride=2, pad=1) as strided
    |> conv(48, 3x3, pad=1) as small
"""


def test_14x14_outputs_qualify_with_256_channels_only():
    net = cnnc.compile("input x: [N, 256, 14, 14]\noutput y = x |> conv(256, 3x3, pad=1) as wide "
                       "|> conv(128, 3x3, pad=1) as narrow\n")
    assert net.graph.op("wide") == Op.WINOGRAD_CONV
    assert net.graph.op("narrow") == Op.CONV  # 128 filters: im2col is faster at 14x14 (docs/kernels.md)


def test_the_pass_rewrites_exactly_the_eligible_convs():
    net = cnnc.compile(NET)
    ops = {n: net.graph.op(n) for n in net.graph.nodes}
    winograd_nodes = sorted(n for n, op in ops.items() if op == Op.WINOGRAD_CONV)
    assert winograd_nodes == ["a", "b"]  # stride 2 stays conv; `small` has an 8x8 output (< MIN_SIZE)
    assert ops["strided"] == ops["small"] == Op.CONV
    assert net.graph.attrs("b").activation == "relu"  # the epilogue survives the rewrite
    assert "b.weight~winograd" in net.graph.params_of("b")["weight"]


@pytest.mark.parametrize("text,reason", [
    ("conv(32, 3x3, pad=1, groups=2)", "groups"),
    ("conv(32, 3x3, pad=2, dilation=2)", "dilation"),
    ("conv(32, 5x5, pad=2)", "kernel"),
    ("conv(8, 3x3, pad=1)", "channels"),
])
def test_ineligible_convs_stay_direct(text, reason):
    net = cnnc.compile(f"input x: [1, 32, 16, 16]\noutput y = x |> {text}")
    assert [net.graph.op(n) for n in net.graph.nodes if net.graph.op(n) in (Op.CONV, Op.WINOGRAD_CONV)] == [Op.CONV]
    assert winograd.MIN_CHANNELS > 8  # the channels case relies on it


def test_network_matches_pytorch_and_follows_new_weights():
    net = cnnc.compile(NET)
    rng = np.random.default_rng(7)
    for name, value in net.params.items():
        if name.endswith(".var"):
            net.params[name] = rng.uniform(0.5, 2.0, value.shape).astype(np.float32)
        else:
            net.params[name] = (rng.standard_normal(value.shape) * 0.2).astype(np.float32)
    p = {k: torch.from_numpy(np.array(v)) for k, v in net.params.items()}
    x = rng.standard_normal((3, 32, 16, 16)).astype(np.float32)

    def twin(t):
        t = F.relu(F.conv2d(t, p["a.weight"], p["a.bias"], padding=1))
        t = F.conv2d(t, p["b.weight"], None, padding=1)
        t = F.relu(F.batch_norm(t, p["norm.mean"], p["norm.var"], p["norm.gamma"], p["norm.beta"], eps=1e-5))
        t = F.conv2d(t, p["strided.weight"], p["strided.bias"], stride=2, padding=1)
        return F.conv2d(t, p["small.weight"], p["small.bias"], padding=1)

    want = twin(torch.from_numpy(x)).numpy()
    got = net(x)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    net.params["a.weight"] = net.params["a.weight"] * 2  # the derived Winograd weight follows
    p["a.weight"] = p["a.weight"] * 2
    want = twin(torch.from_numpy(x)).numpy()
    assert np.abs(net(x) - want).max() <= 1e-4 * np.abs(want).max()
