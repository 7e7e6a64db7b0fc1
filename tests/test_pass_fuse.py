"""fuse_conv_bias_activation: activations and residual adds folded into conv/dense epilogues.

Every rewrite is checked twice: the pass manager's NumericChecker (random weights, every pass
compared with the un-optimized graph) and end to end, generated code at -O2 against the
reference interpreter on the un-optimized graph.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from conftest import EXAMPLES, forward_statements, randomize

import cnnc
from cnnc.ir.graph import Graph
from cnnc.ir.ops import Op
from cnnc.passes import fuse
from cnnc.passes.manager import optimize

PASS = "fuse_conv_bias_activation"


def fused(text: str, passes: tuple[str, ...] = (PASS,)) -> Graph:
    """The graph after `passes`, numerically checked against the original after each pass."""
    return optimize(cnnc.parse(text), passes=list(passes), check_numerics=True)


def end_to_end(text: str) -> cnnc.CompiledNetwork:
    """Compile at -O2 and check the generated code against the interpreter on the source IR."""
    net = cnnc.compile(text)
    randomize(net, seed=3)
    rng = np.random.default_rng(0)
    inputs = {n: rng.standard_normal(tuple(2 if isinstance(d, str) else d for d in shape)).astype(np.float32)
              for n, shape in net.input_shapes.items()}
    want = cnnc.eval_graph(net.source_graph, net.params.data, inputs)
    got = net.run(**inputs)
    for out, value in want.items():
        scale = max(float(np.abs(value).max()), 1e-6)
        assert float(np.abs(got[out] - value).max()) <= 1e-4 * scale, out
    return net


def histogram(graph: Graph) -> Counter:
    return Counter(str(graph.op(n)) for n in graph)


def lines(graph: Graph, name: str) -> set[int]:
    return {span.line for span in graph.spans(name)}


# ---- (a) activations ------------------------------------------------------------------------

@pytest.mark.parametrize("act, expected, slope", [
    ("relu", "relu", 0.0), ("relu6", "relu6", 0.0), ("leaky_relu(0.2)", "leaky_relu", 0.2),
    ("sigmoid", "sigmoid", 0.0), ("hardsigmoid", "hardsigmoid", 0.0), ("hardswish", "hardswish", 0.0),
    ("silu", "silu", 0.0), ("gelu", "gelu", 0.0), ("gelu(approximate=tanh)", "gelu_tanh", 0.0)])
def test_conv_activation_fuses(act: str, expected: str, slope: float) -> None:
    text = f"""input x: [N, 3, 8, 8]
output y = x |> conv(8, 3x3, pad=1) as c
    |> {act}
"""
    graph = fused(text)
    assert histogram(graph) == Counter({"input": 1, "conv": 1})
    assert graph.attrs("c").activation == expected
    assert graph.attrs("c").slope == pytest.approx(slope)
    assert graph.info.outputs["y"] == "c"
    assert lines(graph, "c") == {2, 3}  # the conv's line and the activation's
    net = end_to_end(text)
    assert f"activation={expected!r}" in net.source


def test_dense_relu_fuses() -> None:
    text = """input x: [N, 12]
output y = x |> dense(7) as fc |> relu
"""
    graph = fused(text)
    assert [graph.op(n) for n in graph.topo_order()] == [Op.INPUT, Op.DENSE]
    assert graph.attrs("fc").activation == "relu"
    end_to_end(text)


def test_conv_with_another_user_does_not_fuse() -> None:
    text = """input x: [N, 3, 8, 8]
y = x |> conv(8, 3x3, pad=1) as c
output a = y |> relu
output b = y |> maxpool(2x2)
"""
    graph = fused(text)
    assert histogram(graph)["relu"] == 1
    assert graph.attrs("c").activation == "none"
    end_to_end(text)


def test_conv_that_is_an_output_does_not_fuse() -> None:
    text = """input x: [N, 3, 8, 8]
output y = x |> conv(8, 3x3, pad=1) as c
output z = y |> relu
"""
    graph = fused(text)
    assert histogram(graph)["relu"] == 1
    assert graph.attrs("c").activation == "none"
    end_to_end(text)


def test_activation_after_activation_fuses_once() -> None:
    """Only the first activation joins the epilogue; sigmoid(relu(y)) keeps its sigmoid, also
    when the pass runs again."""
    graph = fused("""input x: [N, 3, 8, 8]
output y = x |> conv(8, 3x3, pad=1) as c |> relu |> sigmoid
""")
    assert graph.attrs("c").activation == "relu"
    assert histogram(graph)["sigmoid"] == 1
    assert not fuse.fuse_conv_bias_activation(graph)
    assert histogram(graph)["sigmoid"] == 1


# ---- (b) residual adds -----------------------------------------------------------------------

IDENTITY = """input x: [N, 16, 8, 8]
y = x |> conv(16, 3x3, pad=1) as c1 |> relu |> conv(16, 3x3, pad=1) as c2
output out = relu(y + x)
"""

CONV_SHORTCUT = """input x: [N, 8, 8, 8]
y = x |> conv(16, 3x3, pad=1) as c1 |> relu |> conv(16, 3x3, pad=1) as c2
short = x |> conv(16, 1x1) as proj
output out = relu(y + short)
"""

PROJECTION = """input x: [N, 8, 8, 8]
y = x |> conv(16, 3x3, stride=2, pad=1, bias=false) as c1 |> bn |> relu
      |> conv(16, 3x3, pad=1, bias=false) as c2 |> bn
short = x |> [conv(16, 1x1, stride=2, bias=false) as proj, bn]
output out = relu(y + short)
"""


def test_identity_residual_fuses_add_and_relu() -> None:
    graph = fused(IDENTITY)
    assert histogram(graph) == Counter({"input": 1, "conv": 2})
    assert graph.inputs_of("c2") == ["c1", "x"]  # slot 1: the residual
    assert graph.attrs("c2").activation == "relu"
    assert graph.attrs("c1").activation == "relu"
    assert lines(graph, "c2") == {2, 3}  # the conv's line and the add's and relu's
    assert len(graph.spans("c2")) == 3
    net = end_to_end(IDENTITY)
    statement = forward_statements(net.source)["c2"]
    assert "conv(" in statement and "residual=" in statement
    assert "activation='relu'" in statement


def test_conv_shortcut_fuses_into_the_later_conv() -> None:
    graph = fused(CONV_SHORTCUT)
    assert histogram(graph) == Counter({"input": 1, "conv": 3})
    # both add inputs are eligible convs; the later one in topological order takes the other
    assert graph.inputs_of("proj") == ["x", "c2"]
    assert graph.attrs("proj").activation == "relu"
    assert graph.attrs("c2").activation == "none"
    end_to_end(CONV_SHORTCUT)


def test_projection_shortcut_with_batch_norm() -> None:
    graph = fused(PROJECTION, passes=("fold_batch_norm", PASS))
    assert histogram(graph) == Counter({"input": 1, "conv": 3})
    assert sum(len(graph.inputs_of(n)) == 2 for n in graph if graph.op(n) == Op.CONV) == 1
    net = end_to_end(PROJECTION)
    assert any("residual=" in line and "activation='relu'" in line for line in net.source.splitlines())


@pytest.mark.parametrize("expression", ["a + b", "b + a"])
def test_two_eligible_convs_pick_the_later(expression: str) -> None:
    text = f"""input x: [N, 4, 6, 6]
a = x |> conv(8, 3x3, pad=1) as ca
b = x |> conv(8, 1x1) as cb
output out = {expression}
"""
    graph = fused(text)
    assert histogram(graph) == Counter({"input": 1, "conv": 2})
    assert graph.inputs_of("cb") == ["x", "ca"]
    assert graph.info.outputs["out"] == "cb"
    end_to_end(text)


def test_activated_conv_does_not_take_a_residual() -> None:
    """relu(conv) + x is not relu(conv + x): a conv whose epilogue already holds an activation
    keeps the add separate."""
    text = """input x: [N, 8, 6, 6]
output out = (x |> conv(8, 3x3, pad=1) as c |> relu) + x
"""
    graph = fused(text)
    assert graph.attrs("c").activation == "relu"
    assert graph.inputs_of("c") == ["x"]
    assert histogram(graph)["add"] == 1
    end_to_end(text)


@pytest.mark.parametrize("text", [
    """input x: [N, 8, 6, 6]
y = x |> conv(8, 3x3, pad=1) as c
output a = y + x
output b = y |> maxpool(2x2)
""",
    """input x: [N, 8, 6, 6]
output y = x |> conv(8, 3x3, pad=1) as c
output a = y + x
""",
])
def test_conv_read_elsewhere_does_not_take_a_residual(text: str) -> None:
    graph = fused(text)
    assert graph.inputs_of("c") == ["x"]
    assert histogram(graph)["add"] == 1
    end_to_end(text)


def test_add_of_a_value_with_itself_does_not_fuse() -> None:
    text = """input x: [N, 4, 6, 6]
y = x |> conv(8, 3x3, pad=1) as c
output out = relu(y + y)
"""
    graph = fused(text)
    assert histogram(graph)["add"] == 1
    assert graph.inputs_of("c") == ["x"]
    end_to_end(text)


@pytest.mark.parametrize("text", [
    # the conv's output is the big operand, the residual is broadcast from [N, C, 1, 1]
    """input x: [N, 8, 6, 6]
s = x |> global_avg_pool
output out = relu((x |> conv(8, 3x3, pad=1) as c) + s)
""",
    # the conv's output [N, C, 1, 1] is broadcast over the other operand
    """input x: [N, 8, 6, 6]
s = x |> global_avg_pool |> conv(8, 1x1) as c
output out = relu(x + s)
""",
    # SE-style scaling: a product, never a residual
    """input x: [N, 8, 6, 6]
y = x |> conv(8, 3x3, pad=1) as c
s = y |> global_avg_pool |> conv(8, 1x1) as fc |> sigmoid
output out = relu(y * s + x)
""",
])
def test_broadcasting_add_does_not_fuse(text: str) -> None:
    graph = fused(text)
    assert histogram(graph)["add"] == 1
    assert len(graph.inputs_of("c")) == 1
    end_to_end(text)


def test_residual_that_depends_on_the_conv_does_not_fuse() -> None:
    text = """input x: [N, 8, 6, 6]
y = x |> conv(8, 3x3, pad=1) as c
output out = y + (y |> relu)
"""
    graph = fused(text)
    assert histogram(graph)["add"] == 1
    assert graph.inputs_of("c") == ["x"]
    end_to_end(text)


def test_cycle_guard_rejects_a_residual_computed_from_the_conv(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ancestor check on its own: with the sole-user rule switched off, r = relu(conv)
    would make the graph cyclic, and the guard must refuse it."""
    graph = cnnc.parse("""input x: [N, 8, 6, 6]
y = x |> conv(8, 3x3, pad=1) as c
output out = y + (y |> relu)
""")
    add = next(n for n in graph if graph.op(n) == Op.ADD)
    relu = next(n for n in graph if graph.op(n) == Op.RELU)
    monkeypatch.setattr(fuse, "sole_user", lambda g, name: add)
    position = {n: i for i, n in enumerate(graph.topo_order())}
    assert not fuse._residual_candidate(graph, add, "c", relu, position)
    assert fuse._residual_candidate(graph, add, "c", "x", position)  # the same guard passes an independent r


def test_conv_with_a_fused_residual_is_not_fused_twice() -> None:
    """(y + a) + b: the second add cannot become a second residual of the same conv."""
    text = """input x: [N, 8, 6, 6]
a = x |> relu as ra
b = x |> sigmoid as sb
output out = ((x |> conv(8, 3x3, pad=1) as c) + a) + b
"""
    graph = fused(text)
    assert graph.inputs_of("c") == ["x", "ra"]
    assert histogram(graph)["add"] == 1
    end_to_end(text)


# ---- a real network --------------------------------------------------------------------------

def test_resnet50_has_no_standalone_relu_or_add() -> None:
    net0 = cnnc.compile(EXAMPLES / "resnet50.cnn", input_shapes={"image": (1, 3, 64, 64)}, optimize=0)
    net2 = cnnc.compile(EXAMPLES / "resnet50.cnn", input_shapes={"image": (1, 3, 64, 64)}, optimize=2)
    before, after = histogram(net0.graph), histogram(net2.graph)
    assert before["relu"] == 49 and before["add"] == 16
    assert after["relu"] == 0 and after["add"] == 0
    assert after["conv"] + after["winograd_conv"] == before["conv"] == 53
    randomize(net0, seed=5)
    net2.params.update_from(net0.params.data, "params")
    image = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    want, got = net0(image), net2(image)
    assert float(np.abs(got - want).max()) <= 1e-4 * float(np.abs(want).max())
    # every fused conv keeps the spans of the bn, relu and add it absorbed
    spans = [s for n in net2.graph for s in net2.graph.spans(n)]
    for name in net0.graph:
        assert set(net0.graph.spans(name)) <= set(spans), name
    residual = [n for n in net2.graph if net2.graph.op(n) == Op.CONV and len(net2.graph.inputs_of(n)) == 2]
    assert len(residual) == 16
    assert all(net2.graph.attrs(n).activation == "relu" for n in residual)
