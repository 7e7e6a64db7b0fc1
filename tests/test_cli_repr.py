"""What `print(net)` and `print(net.params)` show, and what a mistyped parameter name says."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import EXAMPLES, ROOT

import cnnc
from cnnc.errors import CnncParamError
from cnnc.runtime.network import REPR_ROWS

TINY = ROOT / "tests" / "golden" / "tiny.cnn"


def test_network_repr_is_a_table_of_layers():
    net = cnnc.compile(TINY)
    lines = repr(net).splitlines()
    assert lines[0].startswith("CompiledNetwork 'tiny.cnn': 12 layers, 1,662 parameters; optimized by ")
    assert lines[0].endswith("nodes; on the cpu")
    assert lines[1] == "  input  image: [N, 1, 12, 12]"
    assert lines[2].split() == ["unit1", "3", "layers:", "conv,", "batch_norm,", "relu", "[N,", "4,", "12,", "12]",
                                "52"]
    assert lines[-2].split() == ["softmax1", "softmax", "[N,", "10]"]
    assert lines[-1] == "  output probs: [N, 10] (from softmax1)"
    fc = next(line for line in lines if line.split()[0] == "fc")
    assert fc.split() == ["fc", "dense", "[N,", "10]", "1,450"]
    assert str(net) == repr(net)


def test_a_deep_network_folds_blocks_into_a_dozen_lines():
    net = cnnc.compile(EXAMPLES / "resnet152.cnn", optimize=0)
    lines = repr(net).splitlines()
    assert len(lines) < 20
    layer3 = next(line for line in lines if line.split()[0] == "layer3")
    assert layer3.split()[1:5] == ["36", "blocks,", "362", "layers"]
    total = sum(int(line.split()[-1].replace(",", "")) for line in lines[2:-1] if not line.endswith("]"))
    assert total == sum(v.size for v in net.params.values())  # the rows' parameters add up
    assert "summary()" not in repr(net)


def test_many_top_level_layers_are_cut_in_the_middle():
    body = "".join(f"x = x |> conv(2, 1x1) as c{i}\n" for i in range(50))
    net = cnnc.compile(f"input image: [N, 2, 4, 4]\nx = image\n{body}output y = x\n")
    lines = repr(net).splitlines()
    assert len(lines) == 2 + REPR_ROWS + 1 + 1
    assert lines[2].split()[0] == "c0" and lines[-2].split()[0] == "c49"
    hidden = 50 - REPR_ROWS
    assert f"  ... {hidden} more (net.summary() lists every layer)" in lines
    assert "c25 " in net.summary() and "Total params: 300" in net.summary()


def test_param_store_repr_counts_and_names():
    net = cnnc.compile(EXAMPLES / "resnet18.cnn")
    lines = repr(net.params).splitlines()
    count = len(net.params)
    values = sum(v.size for v in net.params.values())
    assert lines[0] == f"ParamStore: {count} parameters, {values:,} values ({4 * values / 2**20:.1f} MiB float32)"
    assert lines[1].split() == ["conv1.weight", "[64,", "3,", "7,", "7]"]
    assert f"  ... {count - 10} more (list(params) names them all)" in lines
    assert lines[-1].split() == ["fc.bias", "[1000]"]
    small = repr(cnnc.compile(TINY).params).splitlines()
    assert len(small) == 1 + len(cnnc.compile(TINY).params) and "more" not in repr(cnnc.compile(TINY).params)


@pytest.mark.parametrize("key, hint", [
    ("fc.wieght", "; did you mean 'fc.weight'?"),
    ("unit1.bn1.weight", "; did you mean 'unit1.bn1.gamma'? (batch norm's parameters are gamma, beta, mean, var)"),
    ("unit1.bn1.running_var", "; did you mean 'unit1.bn1.var'? (batch norm's parameters are gamma, beta, mean, var)"),
    ("fc.w", "; layer 'fc' has weight, bias"),
    ("unit1.conv2.weight", "; did you mean 'unit1.conv1.weight'?"),
    ("nope", ""),
])
def test_a_mistyped_name_suggests_the_near_ones(key, hint):
    net = cnnc.compile(TINY)
    with pytest.raises(KeyError) as caught:
        net.params[key]
    assert isinstance(caught.value, CnncParamError) and caught.value.key == key
    assert str(caught.value) == f"{key}: error: the network has no parameter '{key}'{hint}"
    with pytest.raises(CnncParamError) as assigned:  # assignment says the same
        net.params[key] = np.zeros(3)
    assert str(assigned.value) == str(caught.value)


def test_the_store_is_still_a_mapping():
    params = cnnc.compile(TINY).params
    assert "fc.weight" in params and "fc.wieght" not in params and ["x"] not in params
    assert params.get("fc.wieght") is None and params.get("fc.bias") is not None
    with pytest.raises(KeyError):
        params[["x"]]  # type: ignore[index]


def test_a_mistyped_layer_name_suggests_the_near_one():
    import cnnc
    from cnnc.ir.graph import UnknownLayerError

    net = cnnc.compile(EXAMPLES / "resnet18.cnn")
    with pytest.raises(KeyError) as error:
        net.graph.node("layer1.0.conv")
    assert isinstance(error.value, UnknownLayerError) and isinstance(error.value, cnnc.CnncError)
    assert str(error.value) == "graph: error: the network has no layer 'layer1.0.conv'; did you mean 'layer1.0.conv2'?"
    assert net.graph.shape("fc") == ("N", 1000)
