"""fold_batch_norm and fold_constants: numerics against the un-optimized graph, and structure.

Every numeric check uses random parameters whose BN gammas include negatives and whose biases
are non-zero, so a sign error or a forgotten bias term shows.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from conftest import EXAMPLES, randomize

import cnnc
from cnnc.ir.graph import Graph, ParamSpec
from cnnc.ir.ops import ConvAttrs, NoAttrs, Op
from cnnc.passes.derived import materialize
from cnnc.passes.manager import optimize
from cnnc.passes.rewrite import add_input, bypass, set_attrs
from cnnc.runtime.params import random_params

BOTH = ["fold_batch_norm", "fold_constants"]


def ops(graph: Graph) -> Counter:
    return Counter(graph.op(n) for n in graph.nodes)


def assert_same_outputs(original: Graph, optimized: Graph, seed: int = 0, batch: int = 2) -> None:
    """The optimized graph, with derived parameters materialized, computes what the original does."""
    rng = np.random.default_rng(seed)
    values = random_params(original.info.param_specs, rng)
    inputs = {n: rng.standard_normal(tuple(batch if isinstance(d, str) else d for d in original.shape(n)))
              for n in original.info.inputs}
    want = cnnc.eval_graph(original, values, inputs)
    got = cnnc.eval_graph(optimized, materialize(optimized, values), inputs)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4 * np.abs(want[name]).max())


def fold(text: str, passes: list[str] = BOTH) -> tuple[Graph, Graph]:
    """(original, optimized) for a program; the manager's own numeric check runs too."""
    original = cnnc.parse(text)
    optimized = optimize(original, passes=passes, check_numerics=True)
    assert_same_outputs(original, optimized)
    return original, optimized


def assert_folded(original: Graph, optimized: Graph, layer: str, bn: str = "bn1") -> None:
    """`bn` disappeared into `layer`, whose weight and bias are now derived from the user's."""
    assert Op.BATCH_NORM not in ops(optimized) and Op.CHANNEL_AFFINE not in ops(optimized)
    assert bn not in optimized
    params = optimized.params_of(layer)
    assert params["weight"] == f"{layer}.weight~bn" and params["bias"] == f"{layer}.bias~bn"
    assert optimized.attrs(layer).bias
    assert optimized.info.derived[params["weight"]].inputs[0] == original.params_of(layer)["weight"]


@pytest.mark.parametrize("bias", ["true", "false"])
def test_conv_bn_folds_with_and_without_bias(bias: str) -> None:
    original, optimized = fold(f"""
input x: [N, 4, 8, 8]
output y = x |> conv(6, 3x3, pad=1, bias={bias}) as conv1 |> bn as bn1 |> relu
""")
    assert original.attrs("conv1").bias == (bias == "true")
    assert_folded(original, optimized, "conv1")
    derivation = optimized.info.derived["conv1.bias~bn"]
    assert ("conv1.bias" in derivation.inputs) == (bias == "true")


def test_grouped_conv_bn_folds() -> None:
    original, optimized = fold("""
input x: [N, 6, 8, 8]
output y = x |> conv(9, 3x3, pad=1, groups=3) as conv1 |> bn as bn1
""")
    assert_folded(original, optimized, "conv1")


def test_depthwise_conv_with_multiplier_bn_folds() -> None:
    original, optimized = fold("""
input x: [N, 4, 8, 8]
output y = x |> depthwise_conv(3x3, pad=1, multiplier=3) as conv1 |> bn as bn1
""")
    assert optimized.info.param_specs["conv1.weight~bn"].shape == (12, 1, 3, 3)
    assert_folded(original, optimized, "conv1")


def test_separable_conv_bn_folds_into_the_pointwise_conv() -> None:
    original, optimized = fold("""
input x: [N, 4, 8, 8]
output y = x |> separable_conv(8, 3x3, pad=1, multiplier=2, bias=false) as sep |> bn as bn1
""")
    assert_folded(original, optimized, "sep.pointwise")
    assert optimized.params_of("sep.depthwise") == {"weight": "sep.depthwise.weight"}


@pytest.mark.parametrize("bias", ["true", "false"])
def test_grouped_strided_conv_transpose_bn_folds(bias: str) -> None:
    original, optimized = fold(f"""
input x: [N, 4, 5, 5]
output y = x |> conv_transpose(6, 3x3, stride=2, groups=2, bias={bias}) as up |> bn as bn1
""")
    assert optimized.info.param_specs["up.weight~bn"].shape == (4, 3, 3, 3)  # [in, out/groups, kh, kw]
    assert optimized.info.derived["up.weight~bn"].kwargs == (("groups", 2),)
    assert_folded(original, optimized, "up")


def test_dense_bn_folds_on_2d_values() -> None:
    original, optimized = fold("""
input x: [N, 3, 4, 4]
output y = x |> flatten |> dense(10) as fc |> bn as bn1 |> softmax
""")
    assert optimized.shape("fc") == ("N", 10)
    assert_folded(original, optimized, "fc")


def assert_affine(original: Graph, optimized: Graph, bn: str = "bn1") -> None:
    """`bn` became a channel_affine of the same name whose scale and shift derive from it."""
    assert Op.BATCH_NORM not in ops(optimized)
    assert optimized.op(bn) == Op.CHANNEL_AFFINE
    assert optimized.inputs_of(bn) == original.inputs_of(bn)
    scale = optimized.info.derived[optimized.params_of(bn)["scale"]]
    assert scale.rule == "bn_scale" and scale.inputs == (f"{bn}.gamma", f"{bn}.var")


def test_conv_with_another_user_is_not_folded() -> None:
    original, optimized = fold("""
input x: [N, 4, 8, 8]
c = x |> conv(6, 3x3, pad=1) as conv1
output y = (c |> bn as bn1) + (c |> relu)
""")
    assert_affine(original, optimized)
    assert optimized.params_of("conv1") == {"weight": "conv1.weight", "bias": "conv1.bias"}


def test_conv_that_is_an_output_is_not_folded() -> None:
    original, optimized = fold("""
input x: [N, 4, 8, 8]
output c = x |> conv(6, 3x3, pad=1) as conv1
output y = c |> bn as bn1
""")
    assert_affine(original, optimized)
    assert optimized.params_of("conv1")["weight"] == "conv1.weight"


@pytest.mark.parametrize("source", [
    "x |> bn as bn1",
    "x |> maxpool(2x2) |> bn as bn1",
    "x |> relu |> bn as bn1",
    "x |> flatten |> bn as bn1",
])
def test_bn_without_a_foldable_producer_becomes_channel_affine(source: str) -> None:
    original, optimized = fold(f"input x: [N, 4, 8, 8]\noutput y = {source}")
    assert_affine(original, optimized)
    assert optimized.spans("bn1") == original.spans("bn1")


def _fuse_by_hand(graph: Graph, residual: bool) -> None:
    """What conv/activation fusion does to `conv1 |> relu1` (or `conv1 + x`), done here by hand."""
    if residual:
        add_input(graph, "conv1", "x")
        graph.replace_uses("add1", "conv1")
        graph.remove_node("add1")
    else:
        set_attrs(graph, "conv1", ConvAttrs(**{**vars(graph.attrs("conv1")), "activation": "relu"}))
        bypass(graph, "relu1")


@pytest.mark.parametrize("residual", [False, True])
def test_conv_with_a_fused_epilogue_is_not_folded(residual: bool) -> None:
    body = "(x |> conv(4, 3x3, pad=1) as conv1) + x" if residual else "x |> conv(4, 3x3, pad=1) as conv1 |> relu"
    original = cnnc.parse(f"input x: [N, 4, 8, 8]\noutput y = {body} |> bn as bn1")
    _fuse_by_hand(original, residual)
    optimized = optimize(original, passes=BOTH, check_numerics=True)
    assert_same_outputs(original, optimized)
    assert_affine(original, optimized)
    assert optimized.params_of("conv1")["weight"] == "conv1.weight"


def test_negative_gamma_before_relu() -> None:
    """A negative BN scale flips the sign before relu; folding must flip the weights with it."""
    original, optimized = fold("""
input x: [N, 4, 8, 8]
output y = x |> conv(6, 3x3, pad=1) as conv1 |> bn as bn1 |> relu
""")
    assert_folded(original, optimized, "conv1")
    rng = np.random.default_rng(3)
    values = random_params(original.info.param_specs, rng)
    values["bn1.gamma"] = np.array([-1.5, -0.5, -0.1, 0.2, 1.0, -2.0], np.float32)
    x = {"x": rng.standard_normal((2, 4, 8, 8))}
    want = cnnc.eval_graph(original, values, x)["y"]
    got = cnnc.eval_graph(optimized, materialize(optimized, values), x)["y"]
    assert (want[:, 0] > 0).any() and (want[:, 0] == 0).any()  # the flipped channel is not dead
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_bn_after_bn_merges_into_one_affine() -> None:
    text = "input x: [N, 4, 8, 8]\noutput y = x |> maxpool(2x2) |> bn as bn1 |> bn as bn2 |> relu |> bn as bn3"
    _, after_bn = fold(text, passes=["fold_batch_norm"])
    assert ops(after_bn)[Op.CHANNEL_AFFINE] == 3
    original, optimized = fold(text)
    assert ops(optimized)[Op.CHANNEL_AFFINE] == 2  # bn1·bn2 merge; relu keeps bn3 apart
    assert "bn2" not in optimized and optimized.inputs_of("relu1") == ["bn1"]
    assert set(original.spans("bn2")) <= set(optimized.spans("bn1"))


def test_affine_read_elsewhere_is_not_merged() -> None:
    original, optimized = fold("""
input x: [N, 4, 8, 8]
a = x |> maxpool(2x2) |> bn as bn1
output y = (a |> bn as bn2) + a
""")
    assert ops(optimized)[Op.CHANNEL_AFFINE] == 2
    assert optimized.inputs_of("bn2") == ["bn1"] and optimized.inputs_of("add1") == ["bn2", "bn1"]


def test_bn_after_bn_after_conv_folds_both() -> None:
    original, optimized = fold("""
input x: [N, 4, 8, 8]
output y = x |> conv(6, 3x3, pad=1, bias=false) as conv1 |> bn as bn1 |> bn as bn2
""")
    assert ops(optimized)[Op.BATCH_NORM] == ops(optimized)[Op.CHANNEL_AFFINE] == 0
    assert "bn1" not in optimized and "bn2" not in optimized
    derived = optimized.info.derived
    weight = optimized.params_of("conv1")["weight"]  # scaled by bn2 after being scaled by bn1
    assert derived[derived[weight].inputs[0]].inputs == ("conv1.weight", "bn1.scale~bn")


def _with_channel_affine(text: str) -> Graph:
    """The program's graph with `bn1` replaced by a user-parameter channel_affine."""
    graph = cnnc.parse(text)
    channels = graph.shape("bn1")[1]
    for role in ("gamma", "beta", "mean", "var"):
        del graph.info.param_specs[f"bn1.{role}"]
    graph.info.param_specs.update({"bn1.scale": ParamSpec((channels,), "ones"),
                                  "bn1.shift": ParamSpec((channels,), "zeros")})
    graph.replace("bn1", op=Op.CHANNEL_AFFINE, attrs=NoAttrs(), params={"scale": "bn1.scale", "shift": "bn1.shift"})
    return graph


@pytest.mark.parametrize("layer", ["conv(6, 3x3, pad=1, bias=false)", "conv_transpose(6, 2x2, stride=2, groups=2)"])
def test_fold_constants_folds_channel_affine_into_a_layer(layer: str) -> None:
    original = _with_channel_affine(f"input x: [N, 4, 8, 8]\noutput y = x |> {layer} as conv1 |> bn as bn1")
    optimized = optimize(original, passes=["fold_constants"], check_numerics=True)
    assert_same_outputs(original, optimized)
    assert ops(optimized)[Op.CHANNEL_AFFINE] == 0 and "bn1" not in optimized
    assert optimized.info.derived["conv1.bias~bn"].inputs[-2:] == ("bn1.scale", "bn1.shift")


def test_params_keep_user_names_and_refold_after_assignment() -> None:
    text = """
input x: [N, 3, 8, 8]
output y = x |> conv(8, 3x3, pad=1, bias=false) as conv1 |> bn as bn1 |> relu
    |> conv(4, 1x1) as conv2 |> bn as bn2 |> global_avg_pool |> flatten |> dense(5) as fc |> bn as bn3
"""
    net = cnnc.compile(text, optimize=2)
    assert Op.BATCH_NORM not in ops(net.graph)
    assert set(net.params) == set(net.source_graph.info.param_specs)
    assert {"conv1.weight", "bn1.gamma", "bn1.beta", "bn1.mean", "bn1.var", "fc.weight"} <= set(net.params)
    assert not any("~" in name for name in net.params)
    randomize(net)
    x = np.random.default_rng(5).standard_normal((2, 3, 8, 8)).astype(np.float32)
    before = net(x)
    np.testing.assert_allclose(before, cnnc.eval_graph(net.source_graph, dict(net.params), {"x": x})["y"],
                               rtol=1e-4, atol=1e-5)
    net.params["bn1.gamma"] = np.linspace(-1.5, 1.5, 8)
    net.params["bn3.mean"] = np.full(5, 0.25)
    after = net(x)
    want = cnnc.eval_graph(net.source_graph, dict(net.params), {"x": x})["y"]
    assert not np.allclose(after, before)
    np.testing.assert_allclose(after, want, rtol=1e-4, atol=1e-5)


def test_resnet50_has_no_batch_norm_left() -> None:
    original = cnnc.parse(EXAMPLES / "resnet50.cnn", input_shapes={"image": (1, 3, 64, 64)})
    assert ops(original)[Op.BATCH_NORM] == 53
    optimized = optimize(original, passes=["fold_batch_norm"])
    assert ops(optimized)[Op.BATCH_NORM] == 0 and ops(optimized)[Op.CHANNEL_AFFINE] == 0
    assert ops(optimized)[Op.CONV] == ops(original)[Op.CONV]
    assert_same_outputs(original, optimized, batch=1)  # batch 1: the interpreter is slow on ResNet


def test_fused_conv_keeps_the_bn_span() -> None:
    original, optimized = fold("""
input x: [N, 4, 8, 8]
c = x |> conv(6, 3x3, pad=1) as conv1
output y = c
    |> bn as bn1
""")
    bn_spans = original.spans("bn1")
    assert bn_spans and {s.line for s in bn_spans} == {5}
    assert set(bn_spans) <= set(optimized.spans("conv1"))
    assert 3 in {s.line for s in optimized.spans("conv1")}


def test_folding_in_float32_is_the_float64_product_rounded():
    """materialize multiplies weights by their BN scales in float32 (_FLOAT32_EXACT): one correctly
    rounded product, so bit for bit what the float64 product rounded to float32 gives."""
    from cnnc.passes.derived import RULES

    net = cnnc.compile(EXAMPLES / "resnet18.cnn", input_shapes={"image": (1, 3, 32, 32)})
    values = random_params(net.params.specs, np.random.default_rng(3))
    values.update({n: np.random.default_rng(4).standard_normal(s.shape).astype(np.float32)
                   for n, s in net.params.specs.items() if n not in values})
    got = materialize(net.graph, values)
    cache = dict(values)
    for name, d in net.graph.info.derived.items():  # the same derivations, every one in float64
        args = [np.asarray(cache[i], dtype=np.float64) for i in d.inputs]
        cache[name] = np.ascontiguousarray(RULES[d.rule](*args, **dict(d.kwargs)), dtype=np.float32)
    scaled = [n for n, d in net.graph.info.derived.items() if d.rule == "scale_out_channels"]
    assert len(scaled) >= 20
    for name in net.graph.info.param_specs:
        np.testing.assert_array_equal(got[name], cache[name], err_msg=name)
