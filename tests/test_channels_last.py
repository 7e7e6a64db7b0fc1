"""Channels-last values between 1x1 and depthwise convs (passes/layout.py): the kernels' layouts
against torch, what the pass marks and what it leaves, the IR check, and the CuPy code's NCHW."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import EXAMPLES, randomize

import cnnc
from cnnc.codegen import cupy as cupy_codegen
from cnnc.errors import CnncIRError
from cnnc.ir.verify import verify
from cnnc.kernels import numpy_kernels as fast
from cnnc.kernels import reference as ref
from cnnc.passes.layout import nchw_everywhere

torch = pytest.importorskip("torch")
F = torch.nn.functional
KERNELS = [pytest.param(fast, id="numpy"), pytest.param(ref, id="reference")]
LAYOUTS = [("nchw", "nhwc"), ("nhwc", "nchw"), ("nhwc", "nhwc")]
RNG = np.random.default_rng(7)


def rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("layouts", LAYOUTS, ids="-".join)
@pytest.mark.parametrize("case", [
    # n, c, h, w, o, k, stride, pads, dilation, depthwise, bias, activation
    (2, 5, 7, 9, 6, 1, (1, 1), (0, 0, 0, 0), (1, 1), False, True, "relu6"),
    (1, 3, 1, 1, 4, 1, (1, 1), (0, 0, 0, 0), (1, 1), False, False, "none"),
    (2, 6, 9, 8, 6, 3, (1, 1), (1, 1, 1, 1), (1, 1), True, True, "relu6"),
    (2, 5, 11, 10, 5, 3, (2, 2), (1, 1, 1, 1), (1, 1), True, False, "none"),
    (1, 4, 12, 13, 4, 5, (2, 1), (2, 1, 2, 3), (1, 2), True, True, "silu"),
    (1, 7, 6, 6, 7, 3, (2, 2), (0, 0, 1, 1), (1, 1), True, True, "hardswish"),   # SAME_UPPER stride 2
    # 3x3 and 5x5 outputs whose taps all lie inside take the compiled loop's unrolled form; the border,
    # and the all-border map of the second case (dilated, asymmetric pads), the general one
    (2, 40, 13, 12, 40, 3, (1, 2), (1, 1, 1, 1), (1, 1), True, True, "relu6"),
    (1, 9, 5, 4, 9, 3, (1, 1), (2, 0, 1, 2), (2, 2), True, False, "none"),
    (2, 24, 11, 12, 24, 5, (1, 1), (2, 2, 2, 2), (1, 1), True, True, "relu6"),  # the unrolled 5x5 form
    (1, 17, 14, 13, 17, 5, (2, 2), (1, 2, 2, 1), (1, 1), True, False, "none"),
])
def test_kernels_in_every_layout_match_torch(kernels, layouts, case, kernel_path):
    n, c, h, wd, o, k, stride, pads, dilation, depthwise, bias, activation = case
    groups = c if depthwise else 1
    x, w = rand(n, c, h, wd), rand(o, c // groups, k, k, scale=0.5)
    b = rand(o) if bias else None
    top, left, bottom, right = pads
    xt = F.pad(torch.from_numpy(x), (left, right, top, bottom))
    want = F.conv2d(xt, torch.from_numpy(w), None if b is None else torch.from_numpy(b), stride=stride,
                    dilation=dilation, groups=groups)
    want = {"none": lambda t: t, "relu6": F.relu6, "silu": F.silu, "hardswish": F.hardswish}[activation](want).numpy()
    layout_in, layout_out = layouts
    got = kernels.conv(nhwc(x) if layout_in == "nhwc" else x, w, b, stride=stride, pads=pads, dilation=dilation,
                       groups=groups, out_size=want.shape[2:], activation=activation, layout_in=layout_in,
                       layout_out=layout_out)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    expected = nhwc(want) if layout_out == "nhwc" else want
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("layouts", LAYOUTS, ids="-".join)
@pytest.mark.parametrize("activation", ["relu", "relu6", "none"])
def test_1x1_epilogue_in_every_layout(layouts, activation, kernel_path):
    """A channels-last 1x1 conv's bias, residual and activation (one compiled pass on the loops'
    path, NumPy's passes on the other) match PyTorch, and a NaN stays NaN."""
    layout_in, layout_out = layouts
    x, w, b = rand(2, 12, 5, 7), rand(20, 12, 1, 1, scale=0.5), rand(20)
    x[1, 3, 2, 4] = np.nan
    t = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b))
    residual = rand(*t.shape)
    act = {"relu": F.relu, "relu6": F.relu6, "none": lambda v: v}[activation]
    want = act(t + torch.from_numpy(residual)).numpy()
    got = fast.conv(nhwc(x) if layout_in == "nhwc" else x, w, b, stride=(1, 1), pads=(0, 0, 0, 0),
                    dilation=(1, 1), groups=1, out_size=(5, 7), activation=activation,
                    residual=nhwc(residual) if layout_out == "nhwc" else residual, layout_in=layout_in,
                    layout_out=layout_out)
    got = got.transpose(0, 3, 1, 2) if layout_out == "nhwc" else got
    assert np.isnan(want).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    finite = ~np.isnan(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5, atol=1e-5)


def test_other_convs_refuse_channels_last():
    with pytest.raises(ValueError, match="only 1x1 and depthwise"):
        fast.conv(rand(1, 4, 5, 5), rand(6, 4, 3, 3), None, stride=(1, 1), pads=(1, 1, 1, 1), dilation=(1, 1),
                  groups=1, out_size=(5, 5), layout_out="nhwc")


def _layouts(graph):
    return {n: (graph.attrs(n).layout_in, graph.attrs(n).layout_out) for n in graph.nodes
            if graph.op(n).value == "conv"}


def test_mobilenet_v2_blocks_are_channels_last_inside_and_match():
    net = cnnc.compile(EXAMPLES / "mobilenet_v2.cnn", input_shapes={"image": (2, 3, 64, 64)})
    layouts = _layouts(net.graph)
    assert layouts["features.0.0"] == ("nchw", "nchw")  # the stem: a 3x3 dense conv
    assert layouts["features.1.conv.0.0"] == ("nchw", "nhwc")  # depthwise after the stem: transposes in
    assert layouts["features.1.conv.1"] == ("nhwc", "nchw")  # its 1x1 projection
    assert layouts["features.2.conv.0.0"] == ("nchw", "nhwc")  # expand
    assert layouts["features.2.conv.1.0"] == ("nhwc", "nhwc")  # depthwise
    assert layouts["features.2.conv.2"] == ("nhwc", "nchw")  # project (NCHW: the block's output)
    assert sum(v == ("nhwc", "nhwc") for v in layouts.values()) == 16  # every block's depthwise but the first
    net0 = cnnc.compile(EXAMPLES / "mobilenet_v2.cnn", input_shapes={"image": (2, 3, 64, 64)}, optimize=0)
    randomize(net0, seed=2)
    net.params.update_from(dict(net0.params.data), "params")
    x = rand(2, 3, 64, 64)
    want = net0(x)
    got = net(x)
    assert float(np.abs(got - want).max()) <= 1e-4 * float(np.abs(want).max())
    interpreted = cnnc.eval_graph(net.graph, net.runtime_params(), {"image": x})  # the reference kernels
    np.testing.assert_allclose(list(interpreted.values())[0], want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("body, marked", [
    # expand → depthwise → project: both values channels-last
    ("a = x |> conv(16, 1x1) as e |> relu |> depthwise_conv(3x3, pad=1) as d |> conv(8, 1x1) as p\noutput y = a",
     {"e": ("nchw", "nhwc"), "d": ("nhwc", "nhwc"), "p": ("nhwc", "nchw")}),
    # the expanded value is also an output: it stays NCHW, the rest still pairs
    ("e1 = x |> conv(16, 1x1) as e\noutput y = e1 |> depthwise_conv(3x3, pad=1) as d |> conv(8, 1x1) as p\n"
     "output z = e1", {"e": ("nchw", "nchw"), "d": ("nchw", "nhwc"), "p": ("nhwc", "nchw")}),
    # two readers of the depthwise result: NCHW
    ("d1 = x |> depthwise_conv(3x3, pad=1) as d\noutput y = d1 |> conv(8, 1x1) as p\noutput z = d1 |> relu",
     {"d": ("nchw", "nchw"), "p": ("nchw", "nchw")}),
    # a padded or strided 1x1 is no plain GEMM; a dense 3x3 is not depthwise
    ("output y = x |> conv(8, 1x1, stride=2) as s |> depthwise_conv(3x3, pad=1) as d |> conv(8, 3x3, pad=1) as c",
     {"s": ("nchw", "nchw"), "d": ("nchw", "nchw"), "c": ("nchw", "nchw")}),
    # a depthwise conv whose result gets a residual: the project conv with the residual still reads NHWC
    ("d1 = x |> depthwise_conv(3x3, pad=1) as d |> conv(8, 1x1) as p\noutput y = d1 + x",
     {"d": ("nchw", "nhwc"), "p": ("nhwc", "nchw")}),
    # multiplier 2: not marked
    ("output y = x |> depthwise_conv(3x3, pad=1, multiplier=2) as d |> conv(8, 1x1) as p",
     {"d": ("nchw", "nchw"), "p": ("nchw", "nchw")}),
])
def test_what_the_pass_marks(body, marked):
    source = "input x: [N, 8, 9, 9]\n" + body + "\n"
    net = cnnc.compile(source)
    layouts = _layouts(net.graph)
    assert {name: layouts[name] for name in marked} == marked
    net0 = cnnc.compile(source, optimize=0)
    randomize(net0, seed=1)
    net.params.update_from(dict(net0.params.data), "params")
    x = rand(2, 8, 9, 9)
    want, got = net0.run(x), net.run(x)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5 * np.abs(want[name]).max())


def test_verify_refuses_a_channels_last_value_read_as_nchw():
    net = cnnc.compile("input x: [N, 8, 9, 9]\noutput y = x |> conv(8, 1x1) as e |> depthwise_conv(3x3, pad=1) as d\n")
    graph = net.graph.clone()
    verify(graph)
    graph.replace("d", attrs=replace(graph.attrs("d"), layout_in="nchw"))
    with pytest.raises(CnncIRError, match="channels-last result must be one conv's channels-last data input"):
        verify(graph)
    graph = net.graph.clone()
    graph.replace("e", attrs=replace(graph.attrs("e"), layout_out="nchw"))
    with pytest.raises(CnncIRError, match="reads its input channels-last, but it is not made channels-last"):
        verify(graph)


def test_cupy_code_is_nchw_everywhere():
    graph = cnnc.compile(EXAMPLES / "mobilenet_v2.cnn", input_shapes={"image": (1, 3, 64, 64)}).graph
    assert any(v != ("nchw", "nchw") for v in _layouts(graph).values())
    assert all(v == ("nchw", "nchw") for v in _layouts(nchw_everywhere(graph)).values())
    assert all(v != ("nchw", "nchw") for v in _layouts(graph).values() if v[0] == "nhwc")  # the original kept
    text = cupy_codegen.generate(graph)
    assert "layout_in=" not in text and "layout_out=" not in text  # no call passes a layout
