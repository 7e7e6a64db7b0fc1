"""Language constructs: pipes, blocks, repetition, sequences, names, conditionals, imports."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import EXAMPLES

import cnnc
from cnnc.errors import CnncError


def nodes(text: str, **kw) -> dict[str, tuple]:
    graph = cnnc.parse(text, **kw)
    return {n: (str(graph.op(n)), graph.shape(n)) for n in graph.topo_order()}


def test_pipe_chain_and_call_forms_are_the_same_graph():
    a = nodes("input x: [N, 3, 8, 8]\noutput y = x |> conv(4, 3x3) |> relu")
    b = nodes("input x: [N, 3, 8, 8]\noutput y = relu(conv(x, 4, 3x3))")
    assert a == b == {"x": ("input", ("N", 3, 8, 8)), "conv1": ("conv", ("N", 4, 6, 6)),
                      "relu1": ("relu", ("N", 4, 6, 6))}


def test_chain_continues_across_lines_and_comments():
    graph = nodes("input x: [N, 3, 8, 8]  # the input\noutput y = x\n  |> conv(4, 3x3)  # a conv\n  |> relu\n")
    assert list(graph)[-1] == "relu1"


def test_block_with_implicit_input_defaults_and_shape_queries():
    text = """
input x: [N, 16, 8, 8]
block squeeze(ratio: int = 4) {
    s = x |> global_avg_pool |> dense(channels(x) / ratio) |> relu |> dense(channels(x)) |> sigmoid
    return x * s
}
output y = x |> squeeze |> squeeze(ratio=2) as second
"""
    graph = nodes(text)
    assert graph["squeeze1.dense1"] == ("dense", ("N", 4, 1, 1))
    assert graph["second.dense1"] == ("dense", ("N", 8, 1, 1))
    assert graph["second.mul1"] == ("mul", ("N", 16, 8, 8))


def test_explicit_tensor_parameters():
    text = """
input a: [N, 4, 8, 8]
input b: [N, 4, 16, 16]
block fuse(low: tensor, high: tensor, c: int) {
    return (low |> upsample(2)) + (high |> conv(c, 1x1))
}
output y = fuse(a, b, 4)
"""
    graph = nodes(text)
    assert graph["fuse1.add1"] == ("add", ("N", 4, 16, 16))


def test_repetition_and_sequences_number_children_like_sequential():
    text = """
input x: [N, 8, 8, 8]
block unit(c: int = 8) { return x |> conv(c, 3x3, pad=1) |> relu }
y = x |> unit * 2
z = y |> [unit(8), unit * 2, [conv(8, 1x1), bn] as down] as layer1
output out = z |> unit(8) * 3 as tail
"""
    names = set(nodes(text))
    assert {"unit1.0.conv1", "unit1.1.conv1", "layer1.0.conv1", "layer1.1.conv1", "layer1.2.conv1",
            "layer1.down.0", "layer1.down.1", "tail.0.conv1", "tail.2.relu1"} <= names


def test_auto_names_count_per_kind_and_skip_taken_names():
    graph = nodes("input x: [N, 3, 8, 8]\noutput y = x |> conv(4, 1x1) as conv2 |> conv(4, 1x1) |> conv(4, 1x1)")
    assert [n for n in graph if n.startswith("conv")] == ["conv2", "conv1", "conv3"]


def test_conditional_builds_only_the_chosen_branch():
    text = """
input x: [N, 8, 8, 8]
block maybe(c: int) { return x if channels(x) == c else x |> conv(c, 1x1) }
output y = x |> maybe(8) |> maybe(16)
"""
    graph = nodes(text)
    assert "maybe1.conv1" not in graph and graph["maybe2.conv1"] == ("conv", ("N", 16, 8, 8))


def test_arithmetic_and_builtins():
    text = """
input x: [N, 3, 32, 32]
width_mult = 0.5
c = int(64 * width_mult) + 2 ** 3 - 10 // 3 % 2
output y = x |> conv(max(c, 1), 3x3, stride=1 if height(x) < 16 else 2, pad=same) |> relu
"""
    assert nodes(text)["conv1"] == ("conv", ("N", 39, 16, 16))


def test_same_padding_is_same_upper():
    graph = cnnc.parse("input x: [N, 1, 9, 9]\noutput y = x |> conv(1, 4x4, stride=2, pad=same)")
    assert graph.attrs("conv1").pads == (1, 1, 2, 2)  # out 5: total (5-1)*2 + 4 - 9 = 3 → 1 before, 2 after
    graph = cnnc.parse("input x: [N, 1, 7, 7]\noutput y = x |> conv(1, 2x2, stride=2, pad=same)")
    assert graph.attrs("conv1").pads == (0, 0, 1, 1) and graph.shape("conv1") == ("N", 1, 4, 4)


def test_depthwise_separable_and_transpose_shapes():
    text = """
input x: [N, 8, 9, 9]
a = x |> depthwise_conv(3x3, pad=1, multiplier=2)
b = a |> separable_conv(32, 3x3, stride=2, pad=same, bias=false)
output y = b |> conv_transpose(4, 3x3, stride=2, pad=1, output_padding=1)
"""
    graph = cnnc.parse(text)
    assert graph.attrs("depthwise_conv1").groups == 8 and graph.shape("depthwise_conv1") == ("N", 16, 9, 9)
    assert graph.shape("separable_conv1.depthwise") == ("N", 16, 5, 5)
    assert graph.shape("separable_conv1.pointwise") == ("N", 32, 5, 5)
    assert graph.shape("conv_transpose1") == ("N", 4, 10, 10)
    assert set(graph.info.param_specs) >= {"separable_conv1.depthwise.weight", "separable_conv1.pointwise.weight",
                                          "conv_transpose1.weight", "conv_transpose1.bias"}
    assert graph.info.param_specs["conv_transpose1.weight"].shape == (32, 4, 3, 3)


def test_several_outputs_return_a_dict():
    net = cnnc.compile("""
input x: [N, 3, 8, 8]
f = x |> conv(4, 3x3) |> relu |> global_avg_pool |> flatten
output scores = f |> dense(5) |> softmax
output box = f |> dense(4) |> sigmoid
""")
    out = net(np.ones((2, 3, 8, 8), np.float32))
    assert set(out) == {"scores", "box"} and out["scores"].shape == (2, 5) and out["box"].shape == (2, 4)
    np.testing.assert_allclose(out["scores"].sum(axis=1), 1, rtol=1e-5)


def test_output_of_an_existing_name_and_keyword_input():
    net = cnnc.compile("input image: [N, 2, 4, 4]\ny = image |> relu\noutput y")
    x = np.arange(64, dtype=np.float32).reshape(2, 2, 4, 4) - 30
    np.testing.assert_array_equal(net(image=x), np.maximum(x, 0))


def test_imports_are_relative_to_the_importing_file(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "blocks.cnn").write_text(
        'import "more.cnn"\nblock twice(c: int) { return x |> unit(c) |> unit(c) }\n')
    (tmp_path / "lib" / "more.cnn").write_text("width = 6\nblock unit(c: int) { return x |> conv(c, 1x1) |> relu }\n")
    (tmp_path / "net.cnn").write_text('import "lib/blocks.cnn"\ninput x: [N, 3, 4, 4]\noutput y = x |> twice(width)\n')
    graph = cnnc.parse(tmp_path / "net.cnn")
    assert graph.shape("twice1.unit2.conv1") == ("N", 6, 4, 4)
    assert graph.spans("twice1.unit1.conv1")[0].file.name == "more.cnn"


def test_symbolic_batch_runs_any_batch_and_fixed_batch_is_checked():
    net = cnnc.compile("input x: [N, 1, 4, 4]\noutput y = x |> relu")
    assert net(np.ones((5, 1, 4, 4))).shape == (5, 1, 4, 4)
    fixed = cnnc.compile("input x: [2, 1, 4, 4]\noutput y = x |> relu")
    with pytest.raises(CnncError, match="expects"):
        fixed(np.ones((3, 1, 4, 4)))


def test_parse_accepts_path_and_text_equally(tmp_path):
    text = "input x: [N, 1, 4, 4]\noutput y = x |> relu\n"
    (tmp_path / "n.cnn").write_text(text)
    assert nodes(str(tmp_path / "n.cnn")) == nodes(text)


def test_recursion_is_bounded_with_a_clear_error():
    text = "input x: [N, 1, 4, 4]\nblock f() { return x |> f }\noutput y = x |> f"
    with pytest.raises(CnncError, match="too deep"):
        cnnc.parse(text)


def test_params_are_reproducible_per_seed_and_name():
    a = cnnc.compile("input x: [N, 3, 8, 8]\noutput y = x |> conv(4, 3x3) as c1 |> conv(4, 3x3) as c2", seed=1)
    b = cnnc.compile("input x: [N, 3, 8, 8]\noutput y = x |> conv(3, 1x1) as c0 |> conv(4, 3x3) as c1 |> relu", seed=1)
    c = cnnc.compile("input x: [N, 3, 8, 8]\noutput y = x |> conv(4, 3x3) as c1 |> conv(4, 3x3) as c2", seed=2)
    assert np.array_equal(a.params["c1.weight"], b.params["c1.weight"])  # order-independent
    assert not np.array_equal(a.params["c1.weight"], c.params["c1.weight"])
    w = a.params["c1.weight"]
    assert abs(float(w.std()) - np.sqrt(2 / 27)) < 0.1  # He init: std sqrt(2 / fan_in)
    assert not a.params["c1.bias"].any()


def test_very_long_chains_compile():
    """Parsing and elaboration do not recurse per stage (imported ONNX graphs can be long)."""
    net = cnnc.compile("input x: [N, 1, 2, 2]\noutput y = x" + " |> relu" * 3000)
    assert len(net.graph) == 3001
    assert net(-np.ones((1, 1, 2, 2))).max() == 0


def test_bare_words_pass_through_block_parameters_and_defaults_see_earlier_parameters():
    text = """
input x: [N, 3, 9, 9]
block cbr(c: int, pad: str = "same", mid: int = c * 2, mode = bilinear) {
    return x |> conv(mid, 3x3, pad=pad) |> conv(c, 1x1) |> upsample(2, mode=mode)
}
output y = x |> cbr(4, pad=valid) |> cbr(4)
"""
    graph = nodes(text)
    assert graph["cbr1.conv1"] == ("conv", ("N", 8, 7, 7))
    assert graph["cbr2.conv1"] == ("conv", ("N", 8, 14, 14))
    assert cnnc.parse(text).attrs("cbr1.upsample1").mode == "bilinear"


def test_whole_number_float_repeat_counts():
    assert len(nodes("input x: [N, 1, 2, 2]\noutput y = x |> relu * (4 / 2)")) == 3


def test_an_inline_block_names_its_layers_in_the_callers_scope():
    text = """
input image: [N, 3, 16, 16]
inline block stem(c: int) { return x |> conv(c, 3x3, pad=1, bias=false) |> bn |> relu }
block denselayer() { return concat(x, x |> conv(4, 3x3, pad=1) as conv1) }
inline block layers(n: int) { return x if n == 0 else x |> layers(n - 1) |> denselayer }
y = image |> stem(8) |> layers(2) as denseblock1 |> stem(8) as named
output out = y |> stem(8) |> [layers(1)] as seq
"""
    graph = cnnc.parse(text)
    names = [n for n in graph.topo_order() if graph.op(n).value in ("conv", "batch_norm")]
    assert names == ["conv1", "bn1", "denseblock1.denselayer1.conv1", "denseblock1.denselayer2.conv1",
                     "named.conv1", "named.bn1", "conv2", "bn2", "seq.0.denselayer1.conv1"]


def test_inline_recursion_is_still_bounded():
    text = """
input image: [N, 3, 8, 8]
inline block forever(n: int) { return x |> forever(n + 1) }
output y = image |> forever(0)
"""
    with pytest.raises(cnnc.CnncError, match="nested too deep"):
        cnnc.parse(text)


def test_as_names_calls_and_tensor_operations_outside_pipes():
    text = """
input a: [N, 4, 8, 8]
b = a |> conv(4, 3x3, pad=1) as c
m = concat(a, b) as merged
output y = relu(m) as act
output z = ((a + b) as total - (a * 0.5) as half + (-a) as negated) as mix
"""
    graph = cnnc.parse(text)
    ops = {n: graph.op(n).value for n in graph.topo_order()}
    assert {k: ops[k] for k in ("merged", "act", "total", "half", "negated", "mix")} == {
        "merged": "concat", "act": "relu", "total": "add", "half": "scalar_affine", "negated": "scalar_affine",
        "mix": "add"}
    with pytest.raises(CnncError, match="`as` names a layer") as caught:
        cnnc.parse("input a: [1, 2, 3, 3]\nk = (1 + 2) as three\noutput y = a\n")
    assert ":2:" in str(caught.value)


def test_outputs_declare_their_class_names(tmp_path):
    head = "input x: [N, 3, 8, 8]\noutput logits = x |> global_avg_pool |> flatten |> "
    graph = cnnc.parse(head + "dense(20) labels voc\n")
    voc = graph.info.labels["logits"]
    assert voc[:3] == ("aeroplane", "bicycle", "bird") and len(voc) == 20
    (tmp_path / "names.txt").write_text("cat\ndog\nfish\n", encoding="utf-8")
    program = tmp_path / "net.cnn"
    program.write_text(head.replace("logits", "y") + 'dense(3) labels "names.txt"\n', encoding="utf-8")
    net = cnnc.compile(program)
    assert net.graph.info.labels["y"] == ("cat", "dog", "fish")  # survives the passes
    assert len(cnnc.compile(EXAMPLES / "resnet18.cnn").graph.info.labels["logits"]) == 1000


@pytest.mark.parametrize("clause,message", [
    ("dense(21) labels voc", "its shape [N, 21] has 21 classes along axis 1, but its labels name 20"),
    ("dense(20) labels pascal", "unknown label set 'pascal'"),
    ('dense(20) labels "missing.txt"', "cannot read the label file"),
])
def test_bad_labels_name_the_line(clause, message):
    with pytest.raises(CnncError) as caught:
        cnnc.parse(f"input x: [N, 3, 8, 8]\noutput y = x |> global_avg_pool |> flatten |> {clause}\n")
    assert message in str(caught.value) and ":2:" in str(caught.value)
