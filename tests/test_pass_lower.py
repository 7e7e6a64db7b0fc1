"""lower_pooling: global pools and whole-input avg pools to reduce, depthwise pools to reshape +
reduce, constant-divisor avg pools to depthwise convs (only when that form is switched on)."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import cnnc
from cnnc.passes import lower
from cnnc.passes.derived import materialize
from cnnc.passes.manager import optimize


def _ops(graph) -> Counter:
    return Counter(str(graph.op(n)) for n in graph)


def _lowered(text: str):
    """The source graph and the graph after lower_pooling alone, outputs checked numerically."""
    graph = cnnc.parse(text)
    return graph, optimize(graph, passes=["lower_pooling"], check_numerics=True)


def _pool_net(call: str, size: int) -> str:
    return f"input image: [N, 6, {size}, {size}]\noutput y = image |> {call} as pool\n"


def test_global_pools_become_reduce():
    graph, lowered = _lowered("input image: [N, 5, 7, 6]\n"
                              "output a = image |> global_avg_pool as gap\n"
                              "output b = image |> global_max_pool as gmp\n")
    assert _ops(lowered) == Counter(input=1, reduce=2)
    assert lowered.attrs("gap") == cnnc.ir.ops.ReduceAttrs("mean", (2, 3), True)
    assert lowered.attrs("gmp") == cnnc.ir.ops.ReduceAttrs("max", (2, 3), True)
    assert lowered.spans("gap") == graph.spans("gap")


def test_whole_input_avg_pool_becomes_a_mean():
    _, lowered = _lowered(_pool_net("avgpool(9x9, count_include_pad=false)", 9))
    assert lowered.op("pool") == "reduce" and lowered.attrs("pool").axes == (2, 3)
    assert lowered.shape("pool") == ("N", 6, 1, 1)


def test_whole_input_avg_pool_stays_in_a_fully_convolutional_graph():
    graph = cnnc.parse(_pool_net("avgpool(9x9)", 9))
    graph.info.fully_convolutional = True  # as dense_to_conv leaves it: the window will slide at other sizes
    assert optimize(graph, passes=["lower_pooling"]).op("pool") == "avg_pool"


# (avgpool call, input size, divisor constant?) — PyTorch's divisor rules
AVG_POOLS = [
    ("avgpool(3x3, stride=1, pad=1)", 9, True),                                  # padding counted
    ("avgpool(3x3, stride=1, pad=1, count_include_pad=false)", 9, False),        # border windows smaller
    ("avgpool(3x3, stride=2, count_include_pad=false)", 9, True),                # no padding at all
    ("avgpool(2x2, ceil_mode=true)", 8, True),                                   # ceil without overhang
    ("avgpool(2x2, ceil_mode=true)", 9, False),                                  # last window overhangs
    ("avgpool(3x3, stride=2, pad=1, ceil_mode=true)", 8, False),                 # overhang past the pad
    ("avgpool(3x3, stride=2, pad=1, ceil_mode=true, count_include_pad=false)", 9, False),
]


@pytest.mark.parametrize("call, size, constant", AVG_POOLS)
def test_avg_pool_becomes_depthwise_conv_only_with_a_constant_divisor(monkeypatch, call, size, constant):
    monkeypatch.setattr(lower, "AVG_POOL_AS_CONV", True)
    _, lowered = _lowered(_pool_net(call, size))
    assert lowered.op("pool") == ("conv" if constant else "avg_pool")
    if constant:
        attrs = lowered.attrs("pool")
        assert attrs.groups == 6 and not attrs.bias and lowered.info.user_params == {}
        weight = lowered.params_of("pool")["weight"]
        kh, kw = attrs.kernel
        np.testing.assert_allclose(materialize(lowered, {})[weight], np.full((6, 1, kh, kw), 1 / (kh * kw)))


@pytest.mark.parametrize("call, size, constant", AVG_POOLS)
def test_avg_pool_stays_by_default_because_the_conv_form_is_slower(call, size, constant):
    _, lowered = _lowered(_pool_net(call, size))
    assert lowered.op("pool") == "avg_pool"


@pytest.mark.parametrize("mode, reduce_mode", [("max", "max"), ("avg", "mean")])
def test_depthwise_pool_becomes_reshape_then_reduce(mode, reduce_mode):
    graph, lowered = _lowered(f"input image: [N, 12, 5, 4]\noutput y = image |> depthwise_{mode}pool(3) as dp\n")
    assert _ops(lowered) == Counter(input=1, reshape=1, reduce=1)
    (reshape,) = lowered.inputs_of("dp")
    assert reshape == "dp.reshape" and lowered.shape(reshape) == ("N", 4, 3, 5, 4)
    assert lowered.attrs("dp") == cnnc.ir.ops.ReduceAttrs(reduce_mode, (2,), False)
    assert lowered.spans(reshape) == graph.spans("dp") == lowered.spans("dp")


def test_max_pool_is_left_alone():
    graph, lowered = _lowered(_pool_net("maxpool(3x3, stride=2, pad=1, ceil_mode=true)", 8))
    assert _ops(lowered) == _ops(graph)


NET = """
input image: [N, 3, 16, 16]
x = image |> conv(12, 3x3, pad=1) |> relu
a = x |> avgpool(3x3, stride=1, pad=1) |> avgpool(2x2, ceil_mode=true)
b = x |> avgpool(3x3, stride=2, pad=1, count_include_pad=false) |> depthwise_maxpool(3)
output scores = a |> conv(8, 1x1) |> avgpool(8x8) |> flatten |> dense(5)
output pooled = b |> depthwise_avgpool(2) |> global_max_pool
output mean = x |> global_avg_pool
"""


@pytest.mark.parametrize("as_conv", [False, True])
def test_generated_code_matches_the_interpreter(monkeypatch, as_conv, rng):
    monkeypatch.setattr(lower, "AVG_POOL_AS_CONV", as_conv)
    net = cnnc.compile(NET, verify=True)
    ops = _ops(net.graph)
    assert "depthwise_pool" not in ops and "global_avg_pool" not in ops and "global_max_pool" not in ops
    assert ops["avg_pool"] == (1 if as_conv else 3)  # the count_include_pad=false pool always stays
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    got = net.run(x)
    want = cnnc.eval_graph(net.source_graph, net.params.data, {"image": x})
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5)
