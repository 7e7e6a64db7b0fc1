"""ONNX import and export: per-op imports against onnxruntime, errors, hostile names, exported
example networks against onnxruntime, round trips, the command line, and a bounded subset of
ONNX's own backend node tests (scripts/onnx_conformance.py runs them all)."""
from __future__ import annotations

import builtins
import importlib.util
import io
import re
import sys
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from conftest import EXAMPLES, ROOT, randomize
from onnx import TensorProto, helper, numpy_helper

import cnnc
from cnnc.cli import main
from cnnc.errors import CnncError
from cnnc.interop.onnx_export import export_onnx
from cnnc.interop.onnx_import import import_onnx
from cnnc.interpreter import eval_graph
from cnnc.ir.ops import Op
from cnnc.kernels import numpy_kernels

RNG = np.random.default_rng(7)


def rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def model(nodes, inputs, outputs, inits=None, opset=17):
    """A one-graph model: `inputs` {name: shape}, `outputs` [names], `inits` {name: array}."""
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in (inits or {}).items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def ort_run(m, feeds):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def check(m, feeds, rtol=1e-4, atol=1e-5, optimize=2):
    """Import `m`, compile it, and compare every output with onnxruntime; returns the .cnn text."""
    text, params = import_onnx(m)
    net = cnnc.compile(text, params=params, optimize=optimize)
    ours = list(net.run(*feeds.values()).values())
    theirs = ort_run(m, feeds)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape, text
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=text)
    return text


def conv_model(x_shape, w_shape, bias=True, op="Conv", **attrs):
    inits = {"W": rand(*w_shape, scale=0.3)}
    if bias:
        inits["B"] = rand(w_shape[1] * attrs.get("group", 1) if op == "ConvTranspose" else w_shape[0])
    node = helper.make_node(op, ["x", "W"] + (["B"] if bias else []), ["y"], name="layer", **attrs)
    return model([node], {"x": x_shape}, ["y"], inits), {"x": rand(*x_shape)}


# ---- convolutions ----------------------------------------------------------------------------

@pytest.mark.parametrize("attrs", [
    dict(pads=[1, 2, 0, 1], strides=[2, 1]),
    dict(auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(auto_pad="SAME_LOWER", strides=[2, 2]),      # odd total padding: extra row/column at the top/left
    dict(auto_pad="SAME_LOWER"),  # (onnxruntime refuses SAME with dilations)
    dict(auto_pad="VALID", dilations=[2, 1]),
], ids=["pads", "same_upper", "same_lower", "same_lower_stride1", "valid"])
def test_conv(attrs):
    m, feeds = conv_model((2, 4, 9, 10), (6, 4, 4, 3), **attrs)
    text = check(m, feeds)
    if attrs.get("auto_pad") == "SAME_LOWER" and "strides" in attrs:
        assert "pad=(2, 1, 1, 0)" in text  # totals 3 and 1, the odd one at the start: explicit pads


def test_conv_same_with_dilation():
    """onnxruntime refuses SAME with dilations; compare with the explicit pads ONNX's rule gives:
    height span 7 → total 6 → (3, 3), width span 4 → total 3 → SAME_LOWER (2, 1)."""
    w = rand(3, 2, 4, 4, scale=0.3)
    same = model([helper.make_node("Conv", ["x", "W"], ["y"], name="c", auto_pad="SAME_LOWER", dilations=[2, 1])],
                 {"x": (1, 2, 9, 10)}, ["y"], {"W": w})
    explicit = model([helper.make_node("Conv", ["x", "W"], ["y"], name="c", pads=[3, 2, 3, 1], dilations=[2, 1])],
                     {"x": (1, 2, 9, 10)}, ["y"], {"W": w})
    text, params = import_onnx(same)
    assert "pad=(3, 2, 3, 1)" in text
    x = rand(1, 2, 9, 10)
    np.testing.assert_allclose(cnnc.compile(text, params=params)(x), ort_run(explicit, {"x": x})[0],
                               rtol=1e-4, atol=1e-5)


def test_conv_groups_and_depthwise():
    m, feeds = conv_model((1, 6, 8, 8), (9, 2, 3, 3), group=3, pads=[1, 1, 1, 1])
    assert "groups=3" in check(m, feeds)
    m, feeds = conv_model((1, 4, 8, 8), (8, 1, 3, 3), bias=False, group=4, strides=[2, 2])
    text = check(m, feeds)
    assert "depthwise_conv(3x3, stride=2, multiplier=2, bias=false) as layer" in text


@pytest.mark.parametrize("attrs", [
    dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),
    dict(strides=[2, 3], pads=[0, 1, 2, 0], output_padding=[1, 2]),
    dict(strides=[2, 2], group=2, dilations=[2, 1]),
    dict(strides=[2, 2], output_shape=[10, 11]),
    dict(strides=[2, 2], auto_pad="SAME_UPPER"),
], ids=["output_padding", "asymmetric", "groups_dilation", "output_shape", "same_upper"])
def test_conv_transpose(attrs):
    m, feeds = conv_model((2, 4, 5, 5), (4, 3, 3, 3), op="ConvTranspose", **attrs)
    text = check(m, feeds)
    if "output_padding" in attrs:
        assert "output_padding=" in text


# ---- pooling ---------------------------------------------------------------------------------

@pytest.mark.parametrize("attrs", [
    dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
    dict(kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_LOWER"),
    dict(kernel_shape=[3, 2], strides=[1, 2], dilations=[2, 2], pads=[2, 1, 2, 1]),
    dict(kernel_shape=[3, 3], pads=[2, 2, 2, 2]),  # wider than half the kernel: explicit padding
])
def test_max_pool(attrs):
    m = model([helper.make_node("MaxPool", ["x"], ["y"], name="pool", **attrs)], {"x": (2, 3, 9, 8)}, ["y"])
    check(m, {"x": rand(2, 3, 9, 8)})


@pytest.mark.parametrize("attrs", [
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=0),
    dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 0], ceil_mode=1, count_include_pad=0),
    dict(kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1),
    dict(kernel_shape=[2, 2], strides=[1, 1], auto_pad="SAME_UPPER"),
    dict(kernel_shape=[3, 3], pads=[2, 2, 2, 2], count_include_pad=1),
])
def test_avg_pool(attrs):
    m = model([helper.make_node("AveragePool", ["x"], ["y"], name="pool", **attrs)], {"x": (2, 3, 9, 8)}, ["y"])
    text = check(m, {"x": rand(2, 3, 9, 8)})
    if attrs.get("count_include_pad") == 0 and "pads" in attrs:
        assert "count_include_pad=false" in text


def test_global_pools_bn_lrn():
    nodes = [helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["n"], name="bn", epsilon=1e-3),
             helper.make_node("LRN", ["n"], ["l"], name="lrn", size=5, alpha=0.5, beta=0.75, bias=2.0),
             helper.make_node("GlobalAveragePool", ["l"], ["ga"], name="gap"),
             helper.make_node("GlobalMaxPool", ["l"], ["gm"], name="gmp")]
    inits = {"g": rand(6) + 1, "b": rand(6), "m": rand(6), "v": np.abs(rand(6)) + 0.5}
    text = check(model(nodes, {"x": (2, 6, 5, 5)}, ["l", "ga", "gm"], inits), {"x": rand(2, 6, 5, 5)})
    assert "bn(eps=0.001)" in text
    assert "lrn(size=5, alpha=0.1, beta=0.75, k=2.0)" in text  # ONNX's alpha 0.5 / size 5


# ---- activations, dense, shapes ---------------------------------------------------------------

def test_activations_and_clip():
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r"),
             helper.make_node("LeakyRelu", ["x"], ["b"], name="lr", alpha=0.2),
             helper.make_node("Sigmoid", ["x"], ["c"], name="s"),
             helper.make_node("Tanh", ["x"], ["d"], name="t"),
             helper.make_node("Clip", ["x", "zero", "six"], ["e"], name="clip6"),
             helper.make_node("Clip", ["x", "zero"], ["f"], name="clip0"),
             helper.make_node("Softmax", ["x"], ["g"], name="sm", axis=1),
             helper.make_node("Dropout", ["x", "ratio"], ["h"], name="drop")]
    inits = {"zero": np.array(0, np.float32), "six": np.array(6, np.float32), "ratio": np.array(0.3, np.float32)}
    m = model(nodes, {"x": (2, 4, 3, 3)}, list("abcdefgh"), inits)
    text = check(m, {"x": rand(2, 4, 3, 3, scale=5)})
    assert "e = x |> relu6 as clip6" in text and "f = x |> relu as clip0" in text
    assert "dropout(0.3)" in text and "leaky_relu(slope=0.2)" in text


def test_modern_activations():
    """HardSwish, HardSigmoid(1/6, 1/2) and both Gelu forms (opset 20) map to one op each;
    Sigmoid and HardSigmoid whose only reader is Mul(x, ·) become silu and hardswish."""
    nodes = [helper.make_node("HardSwish", ["x"], ["a"], name="hs"),
             helper.make_node("HardSigmoid", ["x"], ["b"], name="hsig", alpha=1 / 6),
             helper.make_node("Gelu", ["x"], ["c"], name="gelu"),
             helper.make_node("Gelu", ["x"], ["d"], name="gelu_t", approximate="tanh"),
             helper.make_node("Sigmoid", ["x"], ["s"], name="sig"),
             helper.make_node("Mul", ["s", "x"], ["e"], name="swish"),
             helper.make_node("HardSigmoid", ["x"], ["h"], name="gate", alpha=1 / 6, beta=0.5),
             helper.make_node("Mul", ["x", "h"], ["f"], name="hswish"),
             helper.make_node("Sigmoid", ["x"], ["g"], name="plain_sigmoid")]  # read by the output only
    m = model(nodes, {"x": (2, 4, 3, 3)}, list("abcdefg"), opset=20)
    m.ir_version = 9
    x = rand(2, 4, 3, 3, scale=4)
    x[0, 0, 0] = [-3.0, 3.0, 0.0]
    text = check(m, {"x": x}, rtol=1e-5, atol=1e-6)
    for line in ("a = x |> hardswish as hs", "b = x |> hardsigmoid as hsig", "c = x |> gelu as gelu",
                 "d = x |> gelu(approximate=tanh) as gelu_t", "e = x |> silu as swish", "f = x |> hardswish as hswish",
                 "g = x |> sigmoid as plain_sigmoid"):
        assert line in text, text


def test_gelu_silu_hardswish_exported_by_pytorch():
    """PyTorch's exports: before opset 20 an exact GELU is Div, Erf, Add, Mul, Mul (imported as
    gelu), the tanh GELU its decomposition (imported op by op, not fused); SiLU is Sigmoid and
    Mul; hardswish before opset 14 is Mul(x, HardSigmoid(x)); all agree with torch."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)

        def forward(self, x):
            x = self.conv(x)
            return torch.cat([F.gelu(x), F.gelu(x, approximate="tanh"), F.silu(x), F.hardswish(x),
                              F.hardsigmoid(x)], 1)

    torch.manual_seed(0)
    net, x = Net().eval(), torch.randn(2, 3, 6, 6) * 3
    with torch.no_grad():
        expected = net(x).numpy()
    for opset, words in ((13, ["|> gelu as Div", "silu", "hardswish as Mul"]), (17, ["|> gelu as Div", "silu"]),
                         (20, ["|> gelu as Gelu", "gelu(approximate=tanh)", "silu"])):
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (x,), buffer, dynamo=False, opset_version=opset, input_names=["image"])
        text, params = import_onnx(buffer.getvalue())
        assert all(word in text for word in (*words, "hardswish", "hardsigmoid")), (opset, text)
        for optimize in (0, 2):
            got = cnnc.compile(text, params=params, optimize=optimize)(x.numpy())
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-6, err_msg=f"opset {opset}")


def test_clip_and_softmax_before_opset_11_and_13():
    nodes = [helper.make_node("Clip", ["x"], ["c"], name="c", min=0.0, max=6.0),
             helper.make_node("Softmax", ["x"], ["s"], name="s", axis=1)]  # coerced 2-D: [N, 10]
    check(model(nodes, {"x": (3, 10)}, ["c", "s"], opset=6), {"x": rand(3, 10, scale=4)})


def test_gemm_and_matmul():
    w, b = rand(5, 8), rand(5)
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["g"], name="fc", transB=1, alpha=0.5, beta=2.0),
             helper.make_node("Gemm", ["x", "wt", "c"], ["h"], name="fc2"),
             helper.make_node("MatMul", ["x", "wt"], ["mm"], name="mm"),
             helper.make_node("Add", ["mm", "b"], ["d"], name="bias")]
    inits = {"w": w, "b": b, "wt": np.ascontiguousarray(w.T), "c": np.array(0.25, np.float32)}
    text = check(model(nodes, {"x": ("N", 8)}, ["g", "h", "d"], inits), {"x": rand(4, 8)})
    assert "d = x |> dense(5) as mm" in text  # MatMul + Add is one dense layer


def test_flatten_reshape_concat_add_mul_sum():
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flat"),
             helper.make_node("Reshape", ["x", "shape"], ["r"], name="rs"),
             helper.make_node("GlobalAveragePool", ["x"], ["p"], name="gap"),
             helper.make_node("Mul", ["x", "p"], ["m"], name="scale"),      # broadcast [N, C, 1, 1]
             helper.make_node("Add", ["m", "x"], ["a"], name="res"),
             helper.make_node("Sum", ["a", "m", "x"], ["s"], name="sum3"),
             helper.make_node("Concat", ["s", "a"], ["c"], name="cat", axis=1),
             helper.make_node("Mul", ["c", "k"], ["ck"], name="by_const"),  # a constant per channel
             helper.make_node("Add", ["half", "ck"], ["o"], name="plus_const")]  # a scalar constant
    inits = {"shape": np.array([0, 2, -1], np.int64), "k": rand(1, 8, 1, 1), "half": np.array(0.5, np.float32)}
    text = check(model(nodes, {"x": (2, 4, 3, 5)}, ["f", "r", "o"], inits), {"x": rand(2, 4, 3, 5)})
    assert "reshape([2, 30])" in text and "concat(a)" in text


def test_channel_shuffle():
    g, c = 3, 12
    nodes = [helper.make_node("Reshape", ["x", "s1"], ["r1"], name="shuffle_in"),
             helper.make_node("Transpose", ["r1"], ["t"], name="shuffle", perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["t", "s2"], ["y"], name="shuffle_out")]
    inits = {"s1": np.array([2, g, c // g, 4, 4], np.int64), "s2": np.array([2, -1, 4, 4], np.int64)}
    text = check(model(nodes, {"x": (2, c, 4, 4)}, ["y"], inits), {"x": rand(2, c, 4, 4)}, rtol=0, atol=0)
    assert "conv(12, 1x1, bias=false) as shuffle" in text


@pytest.mark.parametrize("case", ["nearest_half_pixel", "nearest_asymmetric", "linear", "sizes", "upsample9"])
def test_resize(case):
    scales = np.array([1, 1, 2, 3], np.float32)
    if case == "upsample9":
        node = helper.make_node("Upsample", ["x", "scales"], ["y"], name="up", mode="nearest")
        m = model([node], {"x": (1, 2, 3, 4)}, ["y"], {"scales": scales}, opset=9)
    else:
        attrs = {"nearest_half_pixel": dict(mode="nearest"),
                 "nearest_asymmetric": dict(mode="nearest", coordinate_transformation_mode="asymmetric",
                                            nearest_mode="floor"),
                 "linear": dict(mode="linear"),
                 "sizes": dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel")}[case]
        inputs = ["x", "", "", "sizes"] if case == "sizes" else ["x", "", "scales"]
        inits = {"sizes": np.array([1, 2, 6, 12], np.int64)} if case == "sizes" else {"scales": scales}
        m = model([helper.make_node("Resize", inputs, ["y"], name="up", **attrs)], {"x": (1, 2, 3, 4)}, ["y"], inits)
    text = check(m, {"x": rand(1, 2, 3, 4)})
    assert "upsample((2, 3)" in text


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad(mode):
    inputs = ["x", "pads"] + (["value"] if mode == "constant" else [])
    inits = {"pads": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64), "value": np.array(-1.5, np.float32)}
    m = model([helper.make_node("Pad", inputs, ["y"], name="pad", mode=mode)], {"x": (1, 2, 4, 5)}, ["y"], inits)
    check(m, {"x": rand(1, 2, 4, 5)})


def test_model_exported_by_pytorch():
    """PyTorch's exporter: BN folded into the conv, Clip from relu6, the channel shuffle as
    Reshape → Transpose → Reshape with its shapes in Constant nodes, Resize, Gemm; layers are
    named after the modules."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24)
            self.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
            self.dw = nn.Conv2d(24, 24, 3, 1, 1, groups=24)
            self.up = nn.ConvTranspose2d(24, 16, 4, 2, 1)
            self.avg = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            x = self.pool(torch.relu(self.bn1(self.conv1(x))))
            x = nn.functional.relu6(self.dw(x))
            n, c, h, w = x.shape
            x = x.view(n, 3, c // 3, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
            x = nn.functional.interpolate(self.avg(self.up(x)), scale_factor=2, mode="nearest")
            x = nn.functional.leaky_relu(x, 0.1)
            return torch.softmax(self.fc(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)), 1)

    torch.manual_seed(0)
    net = Net().eval()
    net.bn1.running_mean.uniform_(-0.2, 0.2)
    net.bn1.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 32, 32)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), buffer, dynamo=False, opset_version=17, input_names=["image"],
                          output_names=["probs"])
    text, params = import_onnx(buffer.getvalue())
    for layer in ("conv1", "pool", "dw", "up", "avg", "fc"):
        assert f" as {layer}  #" in text
    assert "conv(24, 1x1, bias=false) as Transpose  # Transpose '/Transpose'; channel shuffle" in text
    with torch.no_grad():
        expected = net(x).numpy()
    np.testing.assert_allclose(cnnc.compile(text, params=params)(x.numpy()), expected, rtol=1e-4, atol=1e-6)


# ---- errors and hostile input ----------------------------------------------------------------

def one_node(op, name="n1", inputs=("x",), inits=None, shape=(1, 4, 6, 6), opset=17, **attrs):
    return model([helper.make_node(op, list(inputs), ["y"], name=name, **attrs)], {"x": shape}, ["y"], inits,
                 opset=opset)


@pytest.mark.parametrize("m, words", [
    (one_node("Softsign", name="act7"), ["'act7'", "Softsign", "unsupported op type"]),
    (one_node("HardSigmoid", name="hs"), ["'hs'", "HardSigmoid(alpha=0.2, beta=0.5)", "alpha = 1/6"]),
    (one_node("HardSigmoid", name="hs", alpha=1 / 6, beta=0.6), ["HardSigmoid(alpha=0.166667, beta=0.6)"]),
    (one_node("Gelu", name="g", opset=20, approximate="sigmoid"), ["'g'", "approximate='sigmoid'"]),
    (one_node("Div", name="d", inputs=("two", "x"), inits={"two": np.array(2, np.float32)}),
     ["'d'", "Div", "a constant divided by a tensor"]),
    (one_node("Clip", name="c", inputs=("x", "lo", "hi"), inits={"lo": np.array(2, np.float32),
                                                                 "hi": np.array(1, np.float32)}),
     ["'c'", "Clip", "Clip(2, 1) has min above max"]),
    (one_node("DepthToSpace", name="ds", blocksize=2), ["'ds'", "DepthToSpace", "mode DCR"]),
    (one_node("LRN", name="norm", size=4), ["'norm'", "LRN", "even LRN window"]),
    (one_node("Transpose", name="tr", perm=[0, 1, 3, 2]), ["'tr'", "Transpose", "channel shuffle"]),
    (one_node("Resize", name="rz", inputs=("x", "", "s"), inits={"s": np.array([1, 1, 2, 2], np.float32)},
              mode="cubic"), ["'rz'", "Resize", "mode='cubic'"]),
    (one_node("Resize", name="rz", inputs=("x", "", "s"), inits={"s": np.array([1, 1, 1.5, 1.5], np.float32)}),
     ["'rz'", "integer factors"]),
    (one_node("Flatten", name="fl", axis=2), ["'fl'", "Flatten", "batch dimension"]),
    (one_node("Conv", name="cv", inputs=("x", "x")), ["'cv'", "Conv", "must be a constant"]),
    (one_node("MaxPool", name="mp", kernel_shape=[2, 2], auto_pad="WEIRD"), ["'mp'", "auto_pad='WEIRD'"]),
    (one_node("AveragePool", name="ap", kernel_shape=[3, 3], dilations=[2, 2]), ["'ap'", "dilations"]),
    (one_node("Relu", name="r", foo=1), ["'r'", "attribute 'foo' is not supported"]),
    (one_node("Relu", name="", shape=(1, 4, "h", 6)), ["dynamic dimension", "input_shapes"]),
])
def test_refusals_name_node_and_op(m, words):
    with pytest.raises(CnncError) as caught:
        import_onnx(m)
    for word in words:
        assert word in str(caught.value)


def test_custom_domain_and_bad_files(tmp_path):
    node = helper.make_node("Foo", ["x"], ["y"], name="custom", domain="com.example")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 2, 3, 3))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    with pytest.raises(CnncError, match="'custom'.*custom domain"):
        import_onnx(m)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not a model at all\xff" * 10)
    with pytest.raises(CnncError, match="not a valid ONNX model"):
        import_onnx(bad)
    with pytest.raises(CnncError, match="no such file"):
        import_onnx(tmp_path / "missing.onnx")


def test_hostile_names(monkeypatch):
    """Names that are code, keywords, numbers or multi-line become distinct identifiers; the text
    holds them only in comments; parameters are named after the layers the program makes."""
    names = ["os.system('x')", "1bad", "class", "import", "conv", "a\nb = 1 #", "", "x", "conv "]
    nodes, previous = [], "input"
    for i, name in enumerate(names):
        out = name if i % 2 else f"t{i}"  # hostile tensor names too
        nodes.append(helper.make_node("Conv", [previous, f"w{i}"], [out], name=name, pads=[1, 1, 1, 1]))
        previous = out
    inits = {f"w{i}": rand(3, 3, 3, 3, scale=0.3) for i in range(len(names))}
    m = model(nodes, {"input": (1, 3, 6, 6)}, [previous], inits)

    def forbidden(*args, **kwargs):
        raise AssertionError("the importer must not evaluate anything")
    with monkeypatch.context() as patch:  # the importer never evaluates or executes anything
        patch.setattr(builtins, "eval", forbidden)
        patch.setattr(builtins, "exec", forbidden)
        text, params = import_onnx(m)
    code = [line.split("#", 1)[0] for line in text.splitlines()]
    assert not any("system(" in line or "'" in line or '"' in line for line in code), text
    layers = re.findall(r" as (\w+)", text)
    assert len(layers) == len(set(layers)) == len(names)
    assert sorted(params) == sorted(f"{layer}.weight" for layer in layers)
    assert all(layer not in ("class", "import", "conv", "input") for layer in layers)
    assert "os_system_x" in layers and "v_1bad" in layers
    text2 = check(m, {"input": rand(1, 3, 6, 6)})
    assert text2 == text


# ---- export -----------------------------------------------------------------------------------

# Networks ending in global pooling run at a reduced size to keep this file fast.
EXPORTED = [("lenet5", None), ("alexnet", None), ("resnet18", (1, 3, 64, 64)), ("googlenet", None),
            ("xception", (1, 3, 71, 71)), ("segmentation", (1, 3, 32, 32)),
            ("mobilenet_v3_small", (1, 3, 64, 64)), ("mobilenet_v3_large", (1, 3, 64, 64)),
            ("shufflenet_v2_x1_0", (1, 3, 64, 64)),
            ("squeezenet1_1", (1, 3, 64, 64)), ("mnasnet1_0", (1, 3, 64, 64)), ("efficientnet_b0", (1, 3, 64, 64)),
            ("densenet121", (1, 3, 64, 64)), ("convnext_tiny", (1, 3, 64, 64)), ("inception_v3", None)]


@pytest.mark.parametrize("example, shape", EXPORTED, ids=[e for e, _ in EXPORTED])
def test_export_matches_onnxruntime_and_round_trips(example, shape):
    """The exported model runs in onnxruntime and agrees with cnnc to 1e-4 of the output scale;
    importing it back gives a program that computes the same outputs."""
    net = cnnc.compile(EXAMPLES / f"{example}.cnn", optimize=0,
                       input_shapes={"image": shape} if shape else None)
    if example != "alexnet":  # alexnet's 61M parameters stay He-initialized (biases 0): faster
        randomize(net, seed=3)
    m = export_onnx(net)
    gelu = any(net.source_graph.op(n) in (Op.GELU, Op.GELU_TANH) for n in net.source_graph.nodes)
    assert m.opset_import[0].version == (20 if gelu else 17)  # ONNX's Gelu is an opset-20 op
    x = RNG.standard_normal((1, *net.graph.shape(net.input_names[0])[1:])).astype(np.float32)
    ours = net.run(x)
    # A softmax of random logits saturates to 0 and 1: compare the logits too (values are named
    # after their layers, so the softmax's input can be read from onnxruntime as an extra output).
    graph = net.source_graph
    logits = {f"logits of {o}": graph.inputs_of(n)[0] for o, n in graph.info.outputs.items()
              if graph.op(n) == Op.SOFTMAX}
    probe = graph.clone()
    probe.info.outputs = logits
    ours.update(eval_graph(probe, net.params, {net.input_names[0]: x}, kernels=numpy_kernels))
    with_logits = onnx.ModelProto()
    with_logits.CopyFrom(m)
    with_logits.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in logits.values())
    theirs = dict(zip([*net.output_names, *logits], ort_run(with_logits, {net.input_names[0]: x})))
    for name, value in ours.items():
        scale = float(np.abs(theirs[name]).max())
        assert np.abs(value - theirs[name]).max() <= 1e-4 * scale + 1e-6, name
    ours = {name: ours[name] for name in net.output_names}
    text, params = import_onnx(m)
    again = cnnc.compile(text, params=params, optimize=0).run(x)
    for (name, value), other in zip(ours.items(), again.values()):
        assert np.abs(value - other).max() <= 1e-5 * float(np.abs(value).max()) + 1e-6, name


def test_export_depthwise_pool_crop_upsample_pad_relu6(tmp_path):
    source = """
input x: [N, 8, 10, 10]
a = x |> depthwise_maxpool(2) |> upsample(2, mode=bilinear) |> crop((16, 16), offset=(1, 2))
b = x |> depthwise_avgpool(4) |> pad((1, 2, 0, 1), mode=reflect) |> relu6 |> upsample((1, 2))
output y = concat(a |> maxpool(2x2, ceil_mode=true) |> crop((8, 8)), b |> crop((8, 8)))
output z = x |> lrn(3, alpha=0.01, beta=0.5, k=1) |> reshape([2, -1]) |> softmax(axis=2)
output w = x |> global_avg_pool |> dense(5) |> leaky_relu(0.1) |> dropout(0.2)
"""
    net = cnnc.compile(source, optimize=0)
    randomize(net, seed=5)
    path = tmp_path / "net.onnx"
    export_onnx(net, net.params, path)
    x = RNG.standard_normal((2, 8, 10, 10)).astype(np.float32)
    theirs = ort_run(onnx.load(path), {"x": x})
    for ours, other in zip(net.run(x).values(), theirs):
        np.testing.assert_allclose(ours, other, rtol=1e-4, atol=1e-5)
    text, params = import_onnx(path)  # crop: Slice; depthwise pooling: Reshape + ReduceMax/ReduceMean
    assert "depthwise_maxpool(2)" in text and "depthwise_avgpool(4)" in text and "crop((16, 16)" in text
    for ours, other in zip(net.run(x).values(), cnnc.compile(text, params=params).run(x).values()):
        np.testing.assert_allclose(ours, other, rtol=1e-5, atol=1e-6)


def test_export_modern_activations_round_trip():
    """hardswish → HardSwish, hardsigmoid → HardSigmoid(1/6, 1/2), silu → Sigmoid + Mul, gelu
    → Gelu (opset 20, so the model is opset 20 with IR version 9); onnxruntime agrees and the
    import reads back the same ops (silu from its Sigmoid + Mul)."""
    source = """
input x: [N, 4, 6, 6]
a = x |> conv(8, 3x3, pad=1) as c1 |> hardswish as hs |> conv(8, 1x1) as c2 |> silu as sw
output y = a * (a |> global_avg_pool |> conv(8, 1x1) as fc |> hardsigmoid as gate)
output z = a |> gelu as g |> conv(4, 1x1) as c3 |> gelu(approximate=tanh) as gt
"""
    net = cnnc.compile(source, optimize=0)
    randomize(net, seed=4)
    m = export_onnx(net)
    assert (m.opset_import[0].version, m.ir_version) == (20, 9)
    assert {"HardSwish", "HardSigmoid", "Sigmoid", "Gelu"} <= {n.op_type for n in m.graph.node}
    x = rand(2, 4, 6, 6, scale=2)
    ours = net.run(x)
    for value, other in zip(ours.values(), ort_run(m, {"x": x})):
        np.testing.assert_allclose(value, other, rtol=1e-5, atol=1e-5)
    text, params = import_onnx(m)
    for line in ("|> hardswish as hs", "|> silu as sw", "|> hardsigmoid as gate", "|> gelu as g",
                 "|> gelu(approximate=tanh) as gt"):
        assert line in text, text
    for optimize in (0, 2):
        again = cnnc.compile(text, params=params, optimize=optimize).run(x)
        for value, other in zip(ours.values(), again.values()):
            np.testing.assert_allclose(value, other, rtol=1e-5, atol=1e-6)


def test_export_instance_masks_as_a_local_function_runs_and_round_trips():
    """instance_masks → one `ai.cnnc.InstanceMasks` node defined by a model-local function of
    standard ops (Slice, MatMul, Sigmoid, comparisons, Where): ONNX Runtime runs the function and
    agrees, on boxes partly outside the grid, inverted ones and padding rows; the importer reads the
    op back whole. (Its detections come from nms, which has no ONNX export, so a network that
    feeds it the detections as an input is what can travel.)"""
    from test_detection import _detections

    source = """
input protos: [N, 4, 5, 7]
input detections: [N, 9, 10]
output masks = instance_masks(protos, detections, stride=(3, 2))
"""
    net = cnnc.compile(source)
    m = export_onnx(net)
    assert [(n.domain, n.op_type) for n in m.graph.node] == [("ai.cnnc", "InstanceMasks")]
    assert [f.name for f in m.functions] == ["InstanceMasks"]
    rng = np.random.default_rng(1)
    protos = np.maximum(rng.standard_normal((2, 4, 5, 7)), 0).astype(np.float32)
    detections = _detections(rng, 9, 4, (15, 14))
    ours = net.run(protos=protos, detections=detections)["masks"]
    (theirs,) = ort_run(m, {"protos": protos, "detections": detections})
    assert np.array_equal(ours == 0, theirs == 0) and 0.03 < (ours > 0).mean() < 0.9
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)
    text, params = import_onnx(m)
    assert "masks = protos |> instance_masks(detections, stride=(3, 2)) as instance_masks1" in text, text
    again = cnnc.compile(text, params=params).run(protos=protos, detections=detections)["masks"]
    np.testing.assert_array_equal(again, ours)
    m.graph.node[0].attribute[0].ints[:] = [3, 3]  # constants no longer of the stride: refused by name
    with pytest.raises(CnncError, match=r"InstanceMasks.*constant input 2 .* is not the one its attributes give"):
        import_onnx(m)


NMS_EXPORT_CASES = [  # format, classes, boxes, max_boxes, extras, quantized scores (ties)
    ("corners", 3, 40, 20, 0, False), ("center", 4, 30, 50, 3, True), ("corners", 2, 5, 30, 2, False),
    ("center", 1, 60, 10, 0, True),
]


@pytest.mark.parametrize("case", NMS_EXPORT_CASES, ids=lambda c: "-".join(map(str, c)))
def test_export_nms_runs_in_onnxruntime_and_round_trips(case):
    """nms → an `ai.cnnc.Nms…` node whose function is ONNX NonMaxSuppression per class, then TopK
    across classes: ONNX Runtime keeps the same rows in the same order (ties included: equal
    scores by box, then class), with the same carried columns and padding, also when the boxes
    and classes are fewer than max_boxes; imported back it is nms again. (Boxes with positive
    sizes: ONNX Runtime swaps inverted corners where cnnc counts the box empty.)"""
    format, classes, count, max_boxes, extras, quantized = case
    rng = np.random.default_rng(count)
    xy, wh = rng.uniform(0, 100, (2, count, 2)), rng.uniform(5, 40, (2, count, 2))
    boxes = np.concatenate([xy, wh if format == "center" else xy + wh], -1).astype(np.float32)
    scores = rng.uniform(0, 1, (2, count, classes))
    scores = (np.round(scores * 20) / 20 if quantized else scores).astype(np.float32)
    carried = rng.standard_normal((2, count, extras)).astype(np.float32)
    source = f"""
input boxes: [N, {count}, 4]
input scores: [N, {count}, {classes}]
{f"input extras: [N, {count}, {extras}]" if extras else ""}
output detections = nms(boxes, scores, {"extras, " if extras else ""}iou_threshold=0.45, score_threshold=0.3,
                        max_boxes={max_boxes}, format={format})
"""
    net = cnnc.compile(source)
    feeds = {"boxes": boxes, "scores": scores, **({"extras": carried} if extras else {})}
    ours = net.run(**feeds)["detections"]
    m = export_onnx(net)
    assert [n.domain for n in m.graph.node] == ["ai.cnnc"]
    (theirs,) = ort_run(m, feeds)
    np.testing.assert_array_equal(ours[..., 4:6], theirs[..., 4:6])  # the same rows, scores and classes
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-5)  # corners from centres in float32 there
    assert (ours[..., 4] >= 0).sum() > 2 and ((ours[..., 4] < 0).any() or count * classes > max_boxes)
    text, params = import_onnx(m)
    assert f"iou_threshold=0.45, score_threshold=0.3, max_boxes={max_boxes}, format={format}" in text, text
    np.testing.assert_array_equal(cnnc.compile(text, params=params).run(**feeds)["detections"], ours)


@pytest.mark.parametrize("anchors, classes, extras, size", [
    (((10, 14), (23, 27), (37, 58)), 4, 0, (3, 5)), (((1.5, 2.0),), 1, 3, (4, 2)),
    (((81, 82), (135, 169)), 2, 5, (1, 1)),
])
def test_export_yolo_decode_runs_in_onnxruntime_and_round_trips(anchors, classes, extras, size):
    count = len(anchors) if isinstance(anchors[0], tuple) else 1
    fields = 5 + classes + extras
    anchor_text = repr(anchors[0] if count == 1 else anchors)
    source = f"""
input x: [N, {count * fields}, {size[0]}, {size[1]}]
output y = x |> yolo_decode({anchor_text}, {classes}, (8, 16), extras={extras})
"""
    net = cnnc.compile(source)
    x = rand(2, count * fields, *size, scale=2)
    ours = net.run(x=x)["y"]
    m = export_onnx(net)
    (theirs,) = ort_run(m, {"x": x})
    np.testing.assert_allclose(ours, theirs, rtol=2e-6, atol=2e-6 * np.abs(ours).max())
    text, params = import_onnx(m)
    np.testing.assert_array_equal(cnnc.compile(text, params=params).run(x=x)["y"], ours)


@pytest.mark.parametrize("example", ["yolo_tiny.cnn", "yolo_tiny_seg.cnn"])
def test_detection_examples_export_run_in_onnxruntime_and_import_back(example):
    """The YOLO examples whole: ONNX Runtime gives the same candidates (float32 rounding), the
    same detections (NMS decides alike: same rows, classes and order) and masks; the model
    imported back computes exactly what the original does at -O2."""
    text = (EXAMPLES / example).read_text(encoding="utf-8") + "\noutput candidates\n"
    net = cnnc.compile(text, name=example, input_shapes={"image": (2, 3, 160, 160)})
    randomize(net, seed=3)
    for head in ("yolo1.conv1.weight", "yolo2.conv1.weight"):  # trained-like logits: no saturation
        net.params[head] = net.params[head] * 0.05
    x = np.random.default_rng(0).uniform(0, 1, (2, 3, 160, 160)).astype(np.float32)
    ours = net.run(image=x)
    m = export_onnx(net)
    theirs = dict(zip(net.output_names, ort_run(m, {"image": x})))
    for name, value in ours.items():
        scale = float(np.abs(value).max())
        np.testing.assert_allclose(theirs[name], value, rtol=0, atol=2e-6 * scale, err_msg=name)
    np.testing.assert_array_equal(theirs["detections"][..., 5], ours["detections"][..., 5])
    assert (ours["detections"][..., 4] >= 0).sum() > 10
    imported = import_onnx(m)
    again = imported.compile(optimize=2).run(image=x)
    for name, value in ours.items():
        np.testing.assert_array_equal(again[name], value, err_msg=name)


def test_export_refuses_bad_params():
    net = cnnc.compile(EXAMPLES / "lenet5.cnn")
    with pytest.raises(CnncError, match="missing parameter"):
        export_onnx(net, {"c1.weight": np.zeros((6, 1, 5, 5), np.float32)})


# ---- command line ----------------------------------------------------------------------------

def test_cli_export_then_import(tmp_path, capsys):
    onnx_path, program = tmp_path / "l5.onnx", tmp_path / "l5.cnn"
    assert main(["export", str(EXAMPLES / "lenet5.cnn"), "-o", str(onnx_path), "--seed", "3"]) == 0
    assert main(["import", str(onnx_path), "-o", str(program)]) == 0
    assert "wrote" in capsys.readouterr().out
    net = cnnc.compile(program)
    net.load_params(tmp_path / "l5.npz")
    reference = cnnc.compile(EXAMPLES / "lenet5.cnn", seed=3)
    x = RNG.standard_normal((2, 1, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(net(x), reference(x), rtol=1e-5, atol=1e-7)
    assert main(["import", str(tmp_path / "missing.onnx")]) == 1
    assert "no such file" in capsys.readouterr().err


# ---- ONNX's backend node tests (a bounded subset; all: scripts/onnx_conformance.py) ----------

# The in-scope cases of these ops that cnnc refuses, each for a documented reason (docs/onnx.md).
KNOWN_REFUSALS = {"test_averagepool_2d_pads": "count_include_pad=1 without ceil_mode",
                  "test_averagepool_2d_dilations": "dilations",
                  "test_batchnorm_example_training_mode": "only the first output",
                  "test_batchnorm_epsilon_training_mode": "only the first output",
                  "test_gemm_default_matrix_bias": "varies along the batch",
                  "test_gemm_transposeA": "transA=1", "test_gemm_all_attributes": "transA=1"}


def test_onnx_backend_node_tests_subset():
    spec = importlib.util.spec_from_file_location("onnx_conformance", ROOT / "scripts" / "onnx_conformance.py")
    conformance = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("onnx_conformance", conformance)  # dataclasses look their module up
    spec.loader.exec_module(conformance)
    ops = ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "LRN", "BatchNormalization", "Gemm",
           "GlobalAveragePool", "Upsample")
    results, _ = conformance.run(ops)
    passed = [r for r in results if r.status == "pass"]
    failed = {r.name: r.reason for r in results if r.status == "fail"}
    assert set(failed) == set(KNOWN_REFUSALS), failed
    for name, reason in failed.items():
        assert reason.startswith("refused:") and KNOWN_REFUSALS[name] in reason, (name, reason)
    assert len(passed) >= 52  # with onnx 1.23.2: 52 pass (docs/onnx.md)


@pytest.mark.parametrize("constant", [np.float32(3.0), rand(1, 4, 1, 1)], ids=["scalar", "per_channel"])
def test_constant_minus_tensor_imports(constant):
    """c − x (PyTorch's `1 - torch.sigmoid(x)`, `rsub`) imports as −1·x + c and matches onnxruntime;
    c / x, the reciprocal, still has no cnnc equivalent and says so."""
    m = model([helper.make_node("Sub", ["c", "x"], ["y"])], {"x": (2, 4, 3, 3)}, ["y"], {"c": constant})
    text = check(m, {"x": rand(2, 4, 3, 3)})
    assert "bn" in text
    m = model([helper.make_node("Div", ["c", "x"], ["y"])], {"x": (2, 4, 3, 3)}, ["y"], {"c": constant})
    with pytest.raises(CnncError, match="a constant divided by a tensor has no cnnc equivalent"):
        import_onnx(m)


@pytest.mark.slow
@pytest.mark.parametrize("opset", [13, 17])
def test_convnext_exported_by_pytorch_imports(opset):
    """torchvision's ConvNeXt-T (the twin) as torch.onnx.export writes it: blocks channels-last
    (Transpose, LayerNormalization — written out before opset 17 —, MatMul, GELU, MatMul, Transpose),
    imported as NCHW layer_norm and 1x1 convs, matching onnxruntime."""
    torch = pytest.importorskip("torch")
    import io
    import warnings

    from torch_models import TorchvisionConvNeXtTiny, randomize_

    model = randomize_(TorchvisionConvNeXtTiny(), seed=1)
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64), np.float32)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(x),), buffer, opset_version=opset, dynamo=False,
                          input_names=["image"], output_names=["logits"])
    m = onnx.load_from_string(buffer.getvalue())
    want = ort_run(m, {"image": x})[0]
    text, params = import_onnx(m)
    assert "layer_norm" in text and "gelu" in text and "1x1" in text  # the channels-last ops, as NCHW ones
    got = cnnc.compile(text, params=params)(x)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_channels_last_values_are_followed_or_refused_clearly():
    to_nhwc = helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1])
    flat = helper.make_node("Flatten", ["t"], ["y"], axis=1)
    with pytest.raises(CnncError, match="Flatten reads a channels-last tensor"):
        import_onnx(model([to_nhwc, flat], {"x": (1, 4, 3, 3)}, ["y"]))
    with pytest.raises(CnncError, match="'t'.*is channels-last"):
        import_onnx(model([to_nhwc], {"x": (1, 4, 3, 3)}, ["t"]))
    w = rand(4, 6)
    nodes = [to_nhwc, helper.make_node("MatMul", ["t", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"]), helper.make_node("Mul", ["r", "s"], ["q"]),
             helper.make_node("Transpose", ["q"], ["y"], perm=[0, 3, 1, 2])]
    m = model(nodes, {"x": (2, 4, 3, 5)}, ["y"], {"w": w, "b": rand(6), "s": rand(6)})
    text = check(m, {"x": rand(2, 4, 3, 5)})
    assert "conv(6, 1x1)" in text and "relu" in text
