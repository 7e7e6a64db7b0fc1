"""Receptive fields and cumulative strides (cnnc/ir/receptive.py) against values computed by hand."""
from __future__ import annotations

from fractions import Fraction

import pytest
from conftest import ROOT

import cnnc
from cnnc.ir.receptive import receptive_fields, window

EXAMPLES = ROOT / "examples"


def _fields(source):
    return receptive_fields(cnnc.parse(source))


def _size_jump(field):
    return field.size, field.jump


def test_resnet50_stages_and_its_final_7x7_map():
    # conv1 7x7/2: 7, jump 2; maxpool 3x3/2: 7 + 2·2 = 11, jump 4; each bottleneck adds its 3x3
    # (2·jump; the first of a stage at the old jump, then the stride): layer1 11 + 3·8 = 35;
    # layer2 35 + 8 + 3·16 = 91 (jump 8); layer3 91 + 16 + 5·32 = 267 (16);
    # layer4 267 + 32 + 2·64 = 427 (32), the known value for torchvision's ResNet-50.
    fields = _fields(EXAMPLES / "resnet50.cnn")
    expected = {"conv1": 7, "maxpool1": 11, "layer1.2.relu3": 35, "layer2.3.relu3": 91, "layer3.5.relu3": 267,
                "layer4.2.relu3": 427}
    jumps = {"conv1": 2, "maxpool1": 4, "layer1.2.relu3": 4, "layer2.3.relu3": 8, "layer3.5.relu3": 16,
             "layer4.2.relu3": 32}
    for name, size in expected.items():
        assert _size_jump(fields[name]) == ((size, size), (jumps[name], jumps[name])), name
    # the 1x1 stride-2 shortcut sees less than the main path: a merge takes the larger
    assert fields["layer2.0.downsample.0"].size == (35, 35)
    assert fields["layer2.0.add1"].size == (43, 43)
    # after global pooling every position is the whole 224x224 input
    for name in ("global_avg_pool1", "flatten1", "fc"):
        assert fields[name].whole and fields[name].size == (224, 224) and fields[name].jump is None


def test_fused_graph_has_the_same_fields():
    graph = cnnc.build_graph(EXAMPLES / "resnet50.cnn", optimize=2)
    fields = receptive_fields(graph)
    assert _size_jump(fields["layer4.2.conv3"]) == ((427, 427), (32, 32))  # conv+bn+add+relu
    assert _size_jump(fields["layer1.0.conv2"]) == ((19, 19), (4, 4))  # a winograd_conv: 3x3, stride 1
    assert window(graph, "layer1.0.conv2").kernel == (3, 3)


@pytest.mark.parametrize("depth", [1, 2, 5, 10])
def test_a_stack_of_3x3_convs_grows_by_two(depth):
    body = " |> ".join(["conv(4, 3x3, pad=1)"] * depth)
    fields = _fields(f"input image: [N, 1, 32, 32]\noutput y = image |> {body}\n")
    last = fields[f"conv{depth}"]
    assert _size_jump(last) == ((2 * depth + 1, 2 * depth + 1), (1, 1))


def test_dilation_stride_and_upsampling():
    fields = _fields("""input image: [N, 3, 64, 64]
x = image |> conv(8, 3x3, dilation=2) as a |> conv(8, 3x3, dilation=4) as b
          |> conv(8, 3x3, stride=2) as c |> conv(8, 3x3, dilation=2) as d
output u = x |> upsample(scale=2) as up |> conv(8, 3x3) as e
output v = x |> upsample(scale=2, mode=bilinear) as upb
output t = x |> conv_transpose(8, 3x3, stride=2) as t
output h = image |> conv(8, 3x3) as h1 |> upsample(scale=2) as h2
""")
    assert _size_jump(fields["a"]) == ((5, 5), (1, 1))  # 1 + (3 - 1)·2
    assert _size_jump(fields["b"]) == ((13, 13), (1, 1))  # 5 + (3 - 1)·4
    assert _size_jump(fields["c"]) == ((15, 15), (2, 2))  # 13 + 2, jump 2
    assert _size_jump(fields["d"]) == ((23, 23), (2, 2))  # 15 + (3 - 1)·2·2
    assert _size_jump(fields["up"]) == ((23, 23), (1, 1))  # nearest: each output reads one input
    assert _size_jump(fields["e"]) == ((25, 25), (1, 1))
    assert _size_jump(fields["upb"]) == ((25, 25), (1, 1))  # bilinear reads two: + one jump
    assert _size_jump(fields["t"]) == ((25, 25), (1, 1))  # 3x3/2 transposed: ceil(3/2) = 2 inputs
    assert fields["h2"].jump == (Fraction(1, 2), Fraction(1, 2))  # finer than the input's pixels


def test_unet_decoder_returns_to_stride_one():
    # encoder: 5, pool 6 (jump 2), 14, 16 (4), 32, 36 (8), 68, 76 (16), bottom 140; each decoder
    # stage: a 2x2/2 transposed conv (one input per output, jump halves), the skip (smaller), and
    # two 3x3 convs: 140 + 2·2·8 = 172, + 2·2·4 = 188, + 2·2·2 = 196, + 2·2·1 = 200
    fields = _fields(EXAMPLES / "segmentation.cnn")
    assert _size_jump(fields["classifier"]) == ((200, 200), (1, 1))
    assert isinstance(fields["classifier"].jump[0], Fraction)


def test_squeeze_and_excitation_makes_its_block_whole():
    fields = _fields("""input image: [N, 8, 16, 16]
x = image |> conv(8, 3x3, pad=1) as c
s = x |> global_avg_pool |> dense(4) |> relu |> dense(8) |> sigmoid as gate
output y = x * s
""")
    assert _size_jump(fields["c"]) == ((3, 3), (1, 1))
    assert fields["gate"].whole and fields["mul1"].whole and fields["mul1"].size == (16, 16)


def test_googlenet_inception_branches():
    # conv1 7x7/2: 7 (2); maxpool 3x3/2: 11 (4); conv2 1x1: 11; conv3 3x3: 19; maxpool 3x3/2: 27
    # (8); inception3a: 1x1 keeps 27, 1x1→3x3 43, torchvision's 1x1→3x3 (not 5x5) 43, pool 3x3/1
    # →1x1 43; the concat the largest, 43; inception3b: 43 + 2·8 = 59
    fields = _fields(EXAMPLES / "googlenet_torchvision.cnn")
    assert fields["maxpool2"].size == (27, 27) and fields["maxpool2"].jump == (8, 8)
    assert fields["inception3a.branch1.relu1"].size == (27, 27)
    assert fields["inception3a.branch2.1.relu1"].size == (43, 43)
    assert fields["inception3a.branch3.1.relu1"].size == (43, 43)
    assert fields["inception3a.branch4.1.relu1"].size == (43, 43)
    assert fields["inception3a.concat1"].size == (43, 43)
    assert fields["inception3b.concat1"].size == (59, 59)


def test_a_network_on_vectors_has_no_field():
    fields = _fields("input x: [N, 16]\noutput y = x |> dense(8) as fc |> relu\n")
    assert fields == {"x": None, "fc": None, "relu1": None}
