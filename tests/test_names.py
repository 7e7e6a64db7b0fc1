"""The one numbering of made-up names (cnnc/names.py) and the generators that use it."""
from __future__ import annotations

import cnnc
from cnnc.codegen.namespace import Namespace
from cnnc.names import first_free, unique
from cnnc.passes.manager import optimize


def test_unique_is_base_then_base_2_base_3():
    assert unique("conv", set()) == "conv"
    assert unique("conv", {"conv"}) == "conv_2"
    assert unique("conv", {"conv", "conv_2", "conv_4"}) == "conv_3"
    assert unique("conv", {"conv_2"}) == "conv"  # a free base is kept even when a numbered one is taken


def test_first_free_takes_any_candidates():
    assert first_free((f"conv{n}" for n in range(1, 10)), {"conv1", "conv2"}) == "conv3"


def test_generators_follow_the_convention():
    assert Namespace().name("print") == "print_2"  # a builtin is taken
    graph = cnnc.parse("input image: [N, 3, 8, 8]\noutput y = image |> relu")
    assert graph.fresh_name("image") == "image_2" and graph.fresh_name("free") == "free"


def test_unnamed_layers_keep_their_pytorch_numbering():
    graph = cnnc.parse("input x: [N, 3, 8, 8]\noutput y = x |> conv(4, 3x3) |> relu |> conv(4, 3x3)")
    assert {"conv1", "conv2", "relu1"} <= set(graph.nodes)


def test_a_second_derivation_of_a_name_is_numbered():
    graph = cnnc.parse("input x: [N, 4, 8, 8]\n"
                       "output y = x |> conv(6, 3x3, pad=1, bias=false) as conv1 |> bn as bn1 |> bn as bn2")
    folded = optimize(graph, passes=["fold_batch_norm"])
    assert folded.params_of("conv1") == {"weight": "conv1.weight~bn_2", "bias": "conv1.bias~bn_2"}
