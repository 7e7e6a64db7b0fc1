"""The normalization, reshuffling and pooling ops of modern networks, against PyTorch.

layer_norm (ConvNeXt's LayerNorm2d), group_norm / instance_norm, layer_scale, clip,
adaptive_avgpool / adaptive_maxpool, channel_shuffle, pixel_shuffle: each kernel (reference and
NumPy; the CuPy ones run on the emulator through tests/kernel_cases.py) against torch on awkward
shapes and epsilons, then a whole network using all of them at -O0 and -O2 against its torch twin.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cnnc
from cnnc.errors import CnncError
from cnnc.ir.ops import Op
from cnnc.kernels import numpy_kernels, reference

KERNELS = [numpy_kernels, reference]
IDS = ["numpy", "reference"]


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def _close(got: np.ndarray, want: torch.Tensor, rtol: float = 2e-5) -> None:
    want_np = want.numpy()
    assert got.shape == want_np.shape and got.dtype == np.float32
    assert np.abs(got - want_np).max() <= rtol * max(1.0, np.abs(want_np).max())


def _rand(rng: np.random.Generator, *shape: int, scale: float = 1.0, offset: float = 0.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale + offset).astype(np.float32)


@pytest.mark.parametrize("k", KERNELS, ids=IDS)
@pytest.mark.parametrize("shape,eps", [((2, 7, 5, 3), 1e-6), ((3, 9), 1e-5), ((1, 1, 4, 4), 1e-3), ((2, 5, 11), 1e-6)])
def test_layer_norm_over_channels(k, shape, eps):
    rng = np.random.default_rng(0)
    x = _rand(rng, *shape, scale=3, offset=5)  # an offset: the mean must be removed accurately
    c = shape[1]
    gamma, beta = _rand(rng, c), _rand(rng, c)
    moved = _t(x).movedim(1, -1)  # channels last, where nn.LayerNorm(C) normalizes
    want = F.layer_norm(moved, (c,), _t(gamma), _t(beta), eps).movedim(-1, 1)
    _close(k.layer_norm(x, gamma, beta, eps=eps), want)


@pytest.mark.parametrize("k", KERNELS, ids=IDS)
@pytest.mark.parametrize("shape,groups,eps", [((2, 6, 5, 7), 1, 1e-5), ((2, 6, 5, 7), 3, 1e-3),
                                              ((2, 6, 5, 7), 6, 1e-5), ((3, 8, 11), 4, 1e-5), ((1, 4, 1, 1), 2, 1e-5)])
def test_group_norm(k, shape, groups, eps):
    rng = np.random.default_rng(1)
    x = _rand(rng, *shape, scale=2, offset=-3)
    c = shape[1]
    gamma, beta = _rand(rng, c), _rand(rng, c)
    want = F.group_norm(_t(x), groups, _t(gamma), _t(beta), eps)
    _close(k.group_norm(x, gamma, beta, groups=groups, eps=eps), want)


@pytest.mark.parametrize("k", KERNELS, ids=IDS)
def test_layer_scale_and_clip(k):
    rng = np.random.default_rng(2)
    x = _rand(rng, 2, 5, 3, 4, scale=4)
    s = _rand(rng, 5)
    _close(k.layer_scale(x, s), _t(x) * _t(s).reshape(1, -1, 1, 1))
    _close(k.layer_scale(x[:, :, 0, 0].copy(), s), _t(x[:, :, 0, 0]) * _t(s))
    _close(k.clip(x, min=-1.5, max=2.25), torch.clamp(_t(x), -1.5, 2.25))


@pytest.mark.parametrize("k", KERNELS, ids=IDS)
@pytest.mark.parametrize("size", [(1, 1), (3, 2), (7, 7), (10, 13), (5, 20)])
@pytest.mark.parametrize("mode", ["avg", "max"])
def test_adaptive_pools(k, size, mode):
    x = _rand(np.random.default_rng(3), 2, 3, 10, 13)
    pool = F.adaptive_avg_pool2d if mode == "avg" else F.adaptive_max_pool2d
    _close(k.adaptive_pool(x, size=size, mode=mode), pool(_t(x), size))


@pytest.mark.parametrize("k", KERNELS, ids=IDS)
@pytest.mark.parametrize("groups", [1, 2, 3, 6])
def test_channel_shuffle(k, groups):
    x = _rand(np.random.default_rng(4), 2, 6, 3, 5)
    want = torch.nn.ChannelShuffle(groups)(_t(x))
    _close(k.channel_shuffle(x, groups=groups), want, rtol=0)


@pytest.mark.parametrize("k", KERNELS, ids=IDS)
@pytest.mark.parametrize("factor,channels", [(1, 3), (2, 8), (3, 18)])
def test_pixel_shuffle(k, factor, channels):
    x = _rand(np.random.default_rng(5), 2, channels, 4, 3)
    _close(k.pixel_shuffle(x, factor=factor), F.pixel_shuffle(_t(x), factor), rtol=0)


NET = """
input x: [N, 12, 10, 10]
y = x |> conv(16, 3x3, pad=1) as c1 |> layer_norm(eps=1e-6) as ln |> gelu
    |> group_norm(4) as gn |> relu |> instance_norm as inorm
    |> layer_scale as ls |> clip(-2, 3) |> channel_shuffle(4)
output up = y |> pixel_shuffle(2)
output pooled = y |> adaptive_avgpool((3, 4)) |> flatten |> dense(5) as fc
output peak = y |> adaptive_maxpool(4)
"""


def _twin(p: dict[str, torch.Tensor], x: torch.Tensor) -> dict[str, torch.Tensor]:
    t = F.conv2d(x, p["c1.weight"], p["c1.bias"], padding=1)
    t = F.layer_norm(t.movedim(1, -1), (16,), p["ln.gamma"], p["ln.beta"], 1e-6).movedim(-1, 1)
    t = F.relu(F.group_norm(F.gelu(t), 4, p["gn.gamma"], p["gn.beta"], 1e-5))
    t = F.group_norm(t, 16, p["inorm.gamma"], p["inorm.beta"], 1e-5)
    t = torch.clamp(t * p["ls.scale"].reshape(1, -1, 1, 1), -2, 3)
    y = torch.nn.ChannelShuffle(4)(t)
    pooled = torch.flatten(F.adaptive_avg_pool2d(y, (3, 4)), 1) @ p["fc.weight"].T + p["fc.bias"]
    return {"up": F.pixel_shuffle(y, 2), "pooled": pooled, "peak": F.adaptive_max_pool2d(y, 4)}


@pytest.mark.parametrize("level", [0, 2])
def test_a_network_of_the_new_ops_matches_pytorch(level):
    net = cnnc.compile(NET, optimize=level)
    rng = np.random.default_rng(6)
    for name, value in net.params.items():
        offset = 1.0 if name.endswith((".gamma", ".scale")) else 0.0
        net.params[name] = _rand(rng, *value.shape, scale=0.5, offset=offset)
    x = _rand(rng, 3, 12, 10, 10)
    want = _twin({k: _t(v) for k, v in net.params.items()}, _t(x))
    got = net.run(x=x)
    for name, value in want.items():
        _close(got[name], value, rtol=1e-4)
    assert net.graph.op("inorm") == Op.GROUP_NORM and net.graph.attrs("inorm").groups == 16


@pytest.mark.parametrize("text,message", [
    ("group_norm(5)", "groups=5 must divide the channels (12)"),
    ("clip(3, -2)", "min (3.0) must not exceed max (-2.0)"),
    ("pixel_shuffle(2)", "multiple of factor² (4)"),  # 12 channels: fine; see the 10-channel case below
    ("channel_shuffle(5)", "groups=5 must divide the channels (12)"),
])
def test_bad_arguments_name_the_line(text, message):
    source = f"input x: [1, 12, 6, 6]\noutput y = x |> {text}\n"
    if text.startswith("pixel_shuffle"):
        source = source.replace("12", "10")
        message = message.replace("(12)", "(10)")
    with pytest.raises(CnncError) as caught:
        cnnc.compile(source)
    assert message in str(caught.value) and ":2:" in str(caught.value)


ARITHMETIC = """
input x: [N, 4, 5, 5]
a = x |> conv(4, 3x3, pad=1) as c
hs = a * (a + 3 |> relu6) / 6
output y = (hs - x) / (x * x + 1) - 0.5 * a + -x + (2 - a)
"""


@pytest.mark.parametrize("level", [0, 2])
def test_tensor_and_number_arithmetic(level):
    net = cnnc.compile(ARITHMETIC, optimize=level)
    rng = np.random.default_rng(7)
    x = _rand(rng, 2, 4, 5, 5)
    p = {k: _t(v) for k, v in net.params.items()}
    xt = _t(x)
    a = F.conv2d(xt, p["c.weight"], p["c.bias"], padding=1)
    hs = F.hardswish(a)
    want = (hs - xt) / (xt * xt + 1) - 0.5 * a - xt + (2 - a)
    _close(net(x), want, rtol=1e-5)


@pytest.mark.parametrize("expression,message", [
    ("2 / x", "a number cannot be divided by a tensor"),
    ("x / 0", "division of a tensor by zero"),
    ("x ** 2", "'**' cannot combine"),
    ("x + 1e39", "too large to combine with a tensor"),
    ("x / 1e-39", "too large to combine with a tensor"),  # its reciprocal, the scale, is
    ("x * true", "'*' cannot combine"),
])
def test_arithmetic_errors_name_the_line(expression, message):
    with pytest.raises(CnncError) as caught:
        cnnc.compile(f"input x: [1, 2, 3, 3]\noutput y = {expression}\n")
    assert message in str(caught.value) and ":2:" in str(caught.value)


EXPORTED = """
input x: [N, 12, 8, 8]
a = x |> conv(16, 3x3, pad=1) as c1 |> layer_norm(eps=1e-6) as ln |> group_norm(4) as gn
    |> instance_norm as inorm |> layer_scale as ls |> clip(-2, 3) |> channel_shuffle(4)
b = (a - (x |> conv(16, 1x1) as c2)) / (a * a + 1) * 0.5 - 1
output up = b |> pixel_shuffle(2)
output pooled = b |> adaptive_avgpool(4) |> adaptive_maxpool(1) |> flatten |> dense(6) as fc |> layer_norm as ln2
"""


def test_the_new_ops_export_to_onnx_and_match_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    net = cnnc.compile(EXPORTED)
    rng = np.random.default_rng(8)
    for name, value in net.params.items():
        offset = 1.0 if name.endswith((".gamma", ".scale")) else 0.0
        net.params[name] = _rand(rng, *value.shape, scale=0.5, offset=offset)
    model = cnnc.export_onnx(net)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = _rand(rng, 2, 12, 8, 8)
    got = net.run(x=x)
    for name, want in zip([o.name for o in session.get_outputs()], session.run(None, {"x": x})):
        assert np.abs(got[name] - want).max() <= 1e-4 * max(1.0, np.abs(want).max()), name


def test_adaptive_pooling_with_unequal_bins_is_refused_by_export():
    net = cnnc.compile("input x: [1, 3, 10, 10]\noutput y = x |> adaptive_avgpool(3)\n")
    with pytest.raises(CnncError, match="bins of different sizes"):
        cnnc.export_onnx(net)


def test_the_exported_network_imports_back_and_matches():
    net = cnnc.compile(EXPORTED)
    rng = np.random.default_rng(9)
    for name, value in net.params.items():
        offset = 1.0 if name.endswith((".gamma", ".scale")) else 0.0
        net.params[name] = _rand(rng, *value.shape, scale=0.5, offset=offset)
    imported = cnnc.import_onnx(cnnc.export_onnx(net).SerializeToString())
    text, params = imported
    assert "layer_norm" in text and "instance_norm" in text and "pixel_shuffle" in text and "clip(" in text
    back = cnnc.compile(text, params=params)
    x = _rand(rng, 2, 12, 8, 8)
    want, got = net.run(x=x), back.run(x=x)
    for name in want:
        assert np.abs(got[name] - want[name]).max() <= 1e-4 * max(1.0, np.abs(want[name]).max()), name


@pytest.mark.parametrize("k", KERNELS, ids=IDS)
def test_prelu_permute_matmul_reduce(k):
    rng = np.random.default_rng(10)
    x = _rand(rng, 2, 5, 3, 4, scale=2)
    slope = _rand(rng, 5)
    _close(k.prelu(x, slope), F.prelu(_t(x), _t(slope)))
    _close(k.prelu(x[:, :, 0, 0].copy(), slope), F.prelu(_t(x[:, :, 0, 0]), _t(slope)))
    _close(k.permute(x, order=(0, 2, 3, 1)), _t(x).permute(0, 2, 3, 1), rtol=0)
    a, b = _rand(rng, 2, 3, 4, 5), _rand(rng, 2, 1, 5, 6)
    _close(k.matmul(a, b), _t(a) @ _t(b))
    for mode, fn in (("mean", torch.mean), ("sum", torch.sum), ("max", torch.amax)):
        _close(k.reduce(x, mode=mode, axes=(2, -1), keepdims=False), fn(_t(x), dim=(2, 3)))
        _close(k.reduce(x, mode=mode, axes=(1,), keepdims=True), fn(_t(x), dim=1, keepdim=True))


CHANNELS_LAST = """
input x: [N, 8, 5, 5]
t = x |> prelu as act |> permute((0, 2, 3, 1))                   # [N, 5, 5, 8]
attn = t |> matmul(t |> permute((0, 1, 3, 2)))                   # [N, 5, 5, 5]
output pooled = attn |> reduce_mean((2, 3), keepdims=false)      # [N, 5]
output peak = x |> reduce_max(1) |> reduce_sum(-1, keepdims=false)  # [N, 1, 5]
"""


@pytest.mark.parametrize("level", [0, 2])
def test_channels_last_attention_pattern_matches_pytorch(level):
    net = cnnc.compile(CHANNELS_LAST, optimize=level)
    assert np.all(net.params["act.slope"] == 0.25)  # PyTorch's PReLU initial slope
    rng = np.random.default_rng(11)
    net.params["act.slope"] = _rand(rng, 8)
    x = _rand(rng, 2, 8, 5, 5)
    xt = _t(x)
    t = F.prelu(xt, _t(net.params["act.slope"])).permute(0, 2, 3, 1)
    got = net.run(x=x)
    _close(got["pooled"], (t @ t.permute(0, 1, 3, 2)).mean(dim=(2, 3)))
    _close(got["peak"], xt.amax(dim=1, keepdim=True).sum(dim=-1))


def test_the_batch_axis_cannot_be_permuted_or_reduced():
    with pytest.raises(CnncError, match="the batch axis must stay first"):
        cnnc.compile("input x: [1, 2, 3, 3]\noutput y = x |> permute((1, 0, 2, 3))\n")
    with pytest.raises(CnncError, match="batch axis cannot be reduced"):
        cnnc.compile("input x: [1, 2, 3, 3]\noutput y = x |> reduce_sum(0)\n")


def test_prelu_permute_matmul_reduce_export_to_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    net = cnnc.compile(CHANNELS_LAST)
    rng = np.random.default_rng(12)
    net.params["act.slope"] = _rand(rng, 8)
    session = ort.InferenceSession(cnnc.export_onnx(net).SerializeToString(), providers=["CPUExecutionProvider"])
    x = _rand(rng, 2, 8, 5, 5)
    got = net.run(x=x)
    for name, want in zip([o.name for o in session.get_outputs()], session.run(None, {"x": x})):
        assert np.abs(got[name] - want).max() <= 1e-5 * max(1.0, np.abs(want).max()), name


@pytest.mark.parametrize("op_type,opset,keepdims", [("ReduceMean", 17, 0), ("ReduceMax", 17, 1), ("ReduceSum", 13, 0),
                                                    ("ReduceMean", 18, 1)])
def test_onnx_reductions_import(op_type, opset, keepdims):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    axes_as_input = op_type == "ReduceSum" or opset >= 18
    inits = [numpy_helper.from_array(np.array([2, 3], np.int64), "axes")] if axes_as_input else []
    node = helper.make_node(op_type, ["x", "axes"] if axes_as_input else ["x"], ["y"], keepdims=keepdims,
                            **({} if axes_as_input else {"axes": [2, 3]}))
    shape = [1, 4, 1, 1] if keepdims else [1, 4]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    x = _rand(np.random.default_rng(13), 1, 4, 5, 6)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    text, params = cnnc.import_onnx(model)
    assert f"reduce_{op_type[6:].lower()}" in text
    got = cnnc.compile(text, params=params)(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
