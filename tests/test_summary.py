"""The summary (cnnc/summary.py): nesting and block totals, columns, fused layers, JSON, widths,
and the plain renderer when rich is missing."""
from __future__ import annotations

import io
import json
import math
import sys

import pytest
from conftest import EXAMPLES, ROOT

import cnnc
from cnnc.summary import (
    COLUMNS,
    DEFAULT_COLUMNS,
    print_summary,
    summary_json,
    summary_rows,
    summary_table,
    summary_text,
)

TINY = ROOT / "tests" / "golden" / "tiny.cnn"
RESNET50_PARAMS = 25_557_032  # torchvision's count: the trained parameters
RESNET50_STATISTICS = 53_120  # batch norm running means and variances (2 per channel of 53 BNs)


@pytest.fixture(scope="module")
def resnet50():
    return cnnc.parse(EXAMPLES / "resnet50.cnn")


@pytest.fixture(scope="module")
def resnet50_o2():
    return cnnc.build_graph(EXAMPLES / "resnet50.cnn", optimize=2)


@pytest.fixture(scope="module")
def googlenet():
    return cnnc.parse(EXAMPLES / "googlenet_torchvision.cnn")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _table(text: str) -> list[str]:
    """The table's rows: the lines between the two rules (rich draws ─, the plain renderer -)."""
    lines = text.splitlines()
    rules = [i for i, line in enumerate(lines) if line and set(line) <= {"-", "\u2500"}]
    return lines[rules[0] + 1:rules[1]]


def test_resnet50_at_depth_1_is_a_handful_of_rows_with_block_totals(resnet50):
    rows = summary_rows(resnet50, depth=1)
    assert [r.name for r in rows] == ["image", "conv1", "bn1", "relu1", "maxpool1", "layer1", "layer2", "layer3",
                                      "layer4", "global_avg_pool1", "flatten1", "fc"]
    everything = {(r.kind, r.name): r for r in summary_rows(resnet50)}
    for row in rows:
        if row.kind == "block":
            layers = [r for (kind, name), r in everything.items()
                      if kind == "layer" and name.startswith(row.name + ".")]
            assert row.params == sum(r.params for r in layers)
            assert row.macs == sum(r.macs for r in layers)
            assert row.activation_bytes == sum(r.activation_bytes for r in layers)
            assert row.layers == len(layers)
            assert row.output_shape == layers[-1].output_shape  # the block's last layer
    layer4 = next(r for r in rows if r.name == "layer4")
    assert layer4.output_shape == ("N", 2048, 7, 7) and layer4.op == "3 blocks, 32 layers"
    assert layer4.inputs == ("layer3.5.relu3",)
    # the rows add up to the network's parameters: torchvision's 25,557,032 trained ones, plus
    # the running statistics, which cnnc's parameters hold too
    assert sum(r.trainable_params for r in rows) == RESNET50_PARAMS
    assert sum(r.params for r in rows) == RESNET50_PARAMS + RESNET50_STATISTICS
    net_params = sum(math.prod(s.shape) for s in resnet50.info.param_specs.values())
    assert sum(r.params for r in rows) == net_params

    text = summary_text(resnet50, depth=1, width=120)
    table = _table(text)
    assert len(table) == 12  # one line each: nothing needs wrapping at 120
    assert table[5].split()[:4] == ["layer1", "3", "blocks,", "32"]
    assert table[6].split()[-1] == "layer1"  # layer2 reads layer1 (folded: its last layer's block)
    assert "Total params: 25,610,152 (25.61 M)" in text
    assert "Trainable params: 25,557,032 (25.56 M)" in text
    assert "Non-trainable params: 53,120 (batch norm running mean, var)" in text
    assert "Total MACs (conv, dense; per example): 4,089,184,256 (4.09 G)" in text


def test_block_rows_total_what_they_hold_at_every_level(googlenet):
    rows = {(r.kind, r.name): r for r in summary_rows(googlenet)}
    blocks = [r for r in rows.values() if r.kind == "block"]
    assert blocks
    for block in blocks:
        children = [rows.get(("block", c)) or rows[("layer", c)] for c in block.children]
        assert all(c.parent == block.name and c.level == block.level + 1 for c in children)
        assert block.params == sum(c.params for c in children)
        assert block.macs == sum(c.macs for c in children)
        assert block.layers == sum(c.layers for c in children)


def test_depth_folds_deeper_blocks(resnet50):
    names = [r.name for r in summary_rows(resnet50, depth=2)]
    assert "layer1.0" in names and "layer1.0.conv1" not in names
    depth3 = {r.name: r for r in summary_rows(resnet50, depth=3)}
    assert depth3["layer1.0.downsample"].kind == "block" and "layer1.0.downsample.0" not in depth3
    assert depth3["layer1.0.conv1"].level == 2
    blocks = {".".join(n.split(".")[:k]) for n in resnet50 for k in range(1, n.count(".") + 1)}
    assert len(summary_rows(resnet50)) == len(resnet50) + len(blocks)  # depth None: every layer and block
    text = summary_text(resnet50, width=120)  # the default: every layer, indented by nesting
    assert "\n    layer1.0.conv1 " in text and "\n  layer1.0 " in text and "\nlayer1 " in text
    for depth in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="depth must be a positive integer or None"):
            summary_rows(resnet50, depth=depth)


def test_googlenet_branches_are_told_apart_by_their_inputs(googlenet):
    at2 = {r.name: r for r in summary_rows(googlenet, depth=2)}
    text = summary_text(googlenet, depth=2, columns=("layer", "connected_to"), width=200)
    lines = {line.split()[0]: line for line in _table(text)}
    for branch in ("branch1", "branch2", "branch3", "branch4"):  # each reads the stem's last pool
        assert at2[f"inception3a.{branch}"].inputs == ("maxpool2",)
        assert lines[f"inception3a.{branch}"].split()[1:] == ["maxpool2"]
    assert lines["inception3a.concat1"].split()[1:] == [
        "inception3a.branch1,", "inception3a.branch2,", "inception3a.branch3,", "inception3a.branch4"]
    assert lines["inception3b"].split()[1:] == ["inception3a.concat1"]
    at1 = _table(summary_text(googlenet, depth=1, columns=("connected_to",), width=200))
    assert next(line for line in at1 if line.startswith("inception3b ")).split() == ["inception3b", "inception3a"]
    full = {r.name: r for r in summary_rows(googlenet)}
    assert full["inception3a.concat1"].inputs == (
        "inception3a.branch1.relu1", "inception3a.branch2.1.relu1", "inception3a.branch3.1.relu1",
        "inception3a.branch4.1.relu1")
    assert full["inception3a.branch2.1.conv"].inputs == ("inception3a.branch2.0.relu1",)
    assert full["inception3a.branch4.0"].window.kernel == (3, 3)


def test_kernel_stride_receptive_field_and_memory_columns(resnet50):
    columns = ("op", "kernel", "stride", "receptive_field", "cumulative_stride", "activation_memory")
    lines = {line.split()[0]: line.split()[1:] for line in _table(summary_text(resnet50, columns=columns, width=200))}
    assert lines["conv1"] == ["conv", "7x7", "2", "7x7", "2", "3.21", "MB"]  # 64·112·112 floats
    assert lines["maxpool1"] == ["max_pool", "3x3", "2", "11x11", "4", "802.82", "kB"]
    assert lines["layer4.2.relu3"] == ["relu", "427x427", "32", "401.41", "kB"]  # 2048·7·7 floats
    assert lines["layer4.2.conv2"][:5] == ["conv", "3x3", "1", "427x427", "32"]
    assert lines["fc"] == ["dense", "all", "4.00", "kB"]  # the whole input; no stride
    assert lines["image"] == ["input", "1x1", "1", "602.11", "kB"]
    dilated = cnnc.parse("input image: [N, 3, 32, 32]\noutput y = image |> conv(4, 3x3, dilation=2) as d\n")
    assert _table(summary_text(dilated, columns=("kernel", "receptive_field"), width=80))[1].split() == \
        ["d", "3x3", "d2", "5x5"]


def test_columns_are_checked_and_the_layer_comes_first(resnet50):
    assert COLUMNS[0] == "layer" and set(DEFAULT_COLUMNS) <= set(COLUMNS)
    header = summary_text(resnet50, depth=1, columns=("params", "op"), width=120).splitlines()[1]
    assert header.split() == ["Layer", "Params", "Op"]
    with pytest.raises(ValueError, match="unknown summary column 'flops'; the columns are: layer, op, "):
        summary_text(resnet50, columns=("op", "flops"))
    with pytest.raises(TypeError):
        summary_text(resnet50, columns="op")


def test_the_optimized_graph_shows_what_fused_layers_absorbed(resnet50_o2):
    rows = {r.name: r for r in summary_rows(resnet50_o2)}
    assert rows["conv1"].op == "conv+bn+relu" and rows["conv1"].ops == ("conv", "batch_norm", "relu")
    assert rows["layer1.0.conv2"].op == "winograd_conv+bn+relu"
    assert rows["layer1.0.conv3"].op == "conv+bn"
    assert rows["layer1.0.downsample.0"].op == "conv+bn+add+relu"  # the residual add, then its relu
    assert rows["layer1.0.downsample.0"].inputs == ("maxpool1", "layer1.0.conv3")  # the residual is slot 1
    assert rows["global_avg_pool1"].op == "reduce"  # lowered, nothing absorbed
    # without the source graph to ask, the node's parameters and attrs say the same
    bare = resnet50_o2.clone()
    bare.info.source_graph = None
    assert {r.name: r.op for r in summary_rows(bare)} == {r.name: r.op for r in summary_rows(resnet50_o2)}
    text = summary_text(resnet50_o2, width=120)
    assert text.splitlines()[0] == "resnet50.cnn: 58 layers after 10 optimization passes"
    assert "Total params: 36,036,712 (36.04 M) in the optimized layers, computed from the user's" in text
    assert "Trainable params: 25,557,032" in text


def test_json_round_trips_and_holds_every_field(resnet50):
    data = summary_json(resnet50)
    assert json.loads(json.dumps(data)) == data
    assert data["format"] == "cnnc.summary/1" and data["source"] == "resnet50.cnn" and data["passes"] == []
    assert data["inputs"] == {"image": {"shape": ["N", 3, 224, 224]}}
    layers = {(d["kind"], d["name"]): d for d in data["layers"]}
    conv1 = layers[("layer", "conv1")]
    assert conv1 == {"name": "conv1", "kind": "layer", "level": 0, "parent": None, "children": [], "op": "conv",
                     "ops": ["conv"], "output_shape": ["N", 64, 112, 112], "params": 9408, "trainable_params": 9408,
                     "macs": 118_013_952, "kernel": [7, 7], "stride": [2, 2], "dilation": [1, 1],
                     "inputs": ["image"], "receptive_field": [7, 7], "whole_input": False,
                     "cumulative_stride": [2, 2], "activation_bytes": 4 * 64 * 112 * 112, "layer_count": 1}
    block = layers[("block", "layer1.0")]
    assert block["parent"] == "layer1" and block["children"][:3] == ["layer1.0.conv1", "layer1.0.bn1",
                                                                      "layer1.0.relu1"]
    assert "layer1.0.downsample" in block["children"] and layers[("block", "layer1.0.downsample")]["level"] == 2
    for entry in data["layers"]:  # nesting both ways
        for child in entry["children"]:
            assert (layers.get(("block", child)) or layers[("layer", child)])["parent"] == entry["name"]
    assert layers[("layer", "fc")]["whole_input"] and layers[("layer", "fc")]["cumulative_stride"] is None
    totals = data["totals"]
    assert totals["params"] == totals["user_params"] == RESNET50_PARAMS + RESNET50_STATISTICS
    assert totals["trainable_params"] == RESNET50_PARAMS and totals["non_trainable_params"] == RESNET50_STATISTICS
    assert totals["layers"] == len(resnet50) and totals["macs"] == 4_089_184_256
    assert set(totals["peak_activation_bytes"]) == {"without_planning", "with_plan_memory"}
    top = summary_json(resnet50, depth=1)["layers"]
    assert len(top) == 12 and sum(d["params"] for d in top) == totals["params"]


def test_json_of_a_fractional_stride():
    graph = cnnc.parse("input image: [N, 3, 8, 8]\noutput y = image |> conv(4, 3x3) as c |> upsample(scale=2) as u\n")
    up = next(d for d in summary_json(graph)["layers"] if d["name"] == "u")
    assert up["cumulative_stride"] == [0.5, 0.5] and up["receptive_field"] == [3, 3]
    line = _table(summary_text(graph, columns=("cumulative_stride",), width=80))[-1]
    assert line.split() == ["u", "1/2"]


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("columns", [DEFAULT_COLUMNS, COLUMNS])
def test_every_line_fits_the_width(width, columns, resnet50, resnet50_o2, googlenet):
    for graph in (resnet50, resnet50_o2, googlenet):
        for depth in (None, 1, 3):
            text = summary_text(graph, depth=depth, columns=columns, width=width)
            assert max(len(line) for line in text.splitlines()) <= width
    # the footer wraps too
    narrow = summary_text(resnet50, depth=1, width=60)
    assert max(map(len, narrow.splitlines())) <= 60
    assert "\nPeak activation memory (batch 1): 150.24 MB without\n  planning, 7.23 MB with plan_memory" in narrow


def test_long_cells_wrap_at_separators(googlenet):
    lines = _table(summary_text(googlenet, depth=2, columns=("layer", "op", "output_shape", "connected_to"),
                                width=80))
    assert all(len(line) <= 80 for line in lines)
    concat = next(i for i, line in enumerate(lines) if line.startswith("  inception3a.concat1  concat "))
    assert lines[concat].split()[-1] == "inception3a.branch1,"  # broken after the commas, names whole
    assert [line.split() for line in lines[concat + 1:concat + 4]] == [
        ["inception3a.branch2,"], ["inception3a.branch3,"], ["inception3a.branch4"]]
    branch2 = next(i for i, line in enumerate(lines) if line.startswith("  inception3a.branch2 "))
    assert lines[branch2].split()[1:3] == ["2", "blocks,"] and lines[branch2 + 1].split() == ["6", "layers"]
    narrow = _table(summary_text(googlenet, depth=2, columns=("layer", "op", "output_shape", "connected_to"),
                                 width=60))
    at = next(i for i, line in enumerate(narrow) if line.startswith("  inception3a  3 layers "))
    assert narrow[at + 1] == "    .branch1"  # a long name goes on at a dot, indented
    shapes = [line[line.index("[N,"):].split("]")[0] + "]" for line in lines if "[N," in line]
    assert len(shapes) == len(summary_rows(googlenet, depth=2))  # every shape whole, on its row's first line


def test_plain_renderer_when_rich_is_missing(monkeypatch, resnet50):
    with_rich = summary_text(resnet50, depth=2, columns=COLUMNS, width=100)
    for module in [m for m in sys.modules if m == "rich" or m.startswith("rich.")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "rich", None)  # `import rich...` raises ImportError
    plain = summary_text(resnet50, depth=2, columns=COLUMNS, width=100)
    assert "\u2500" not in plain and plain == with_rich.replace("\u2500", "-")  # the same rows, ASCII rules
    assert max(map(len, plain.splitlines())) <= 100
    for out in (io.StringIO(), _Terminal()):  # a terminal too: plain text, no escape codes
        print_summary(resnet50, depth=1, width=90, file=out)
        assert out.getvalue() == summary_text(resnet50, depth=1, width=90) + "\n"


def test_colour_only_on_a_terminal(monkeypatch):
    pytest.importorskip("rich")
    graph = cnnc.parse(TINY)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    piped = io.StringIO()
    print_summary(graph, width=100, file=piped)
    assert "\x1b" not in piped.getvalue() and piped.getvalue() == summary_text(graph, width=100) + "\n"
    terminal = _Terminal()
    print_summary(graph, width=100, file=terminal)
    assert "\x1b[1m" in terminal.getvalue()  # bold header and block rows
    assert "\x1b" not in summary_text(graph, width=100)  # a returned string never has escapes
    monkeypatch.setenv("NO_COLOR", "1")
    terminal = _Terminal()
    print_summary(graph, width=100, file=terminal)
    assert "\x1b[3" not in terminal.getvalue() and "\x1b[9" not in terminal.getvalue()  # no colours


def test_summary_table_and_the_network_method():
    net = cnnc.compile(TINY)
    text = summary_table(net.source_graph, width=100)
    assert text == net.summary(width=100)
    assert "Total params: 1,662" in text and "unit2.conv1" in text and "[N, 4, 12, 12]" in text
    assert "conv+bn+relu" in net.summary(width=100, optimized=True)
    assert net.summary(depth=1, width=100).count("\n") < text.count("\n")


def test_cli_summary_depth_columns_and_json(capsys):
    from cnnc.cli import main

    examples = EXAMPLES
    assert main(["summary", str(examples / "resnet50.cnn"), "--depth", "1"]) == 0
    text = capsys.readouterr().out
    assert "layer3            6 blocks, 62 layers" in text and "layer3.0" not in text
    assert main(["summary", str(examples / "googlenet.cnn"), "--columns", "layer,kernel,receptive_field"]) == 0
    header = capsys.readouterr().out.splitlines()[1]
    assert header.split() == ["Layer", "Kernel", "Receptive", "field"] or "Receptive field" in header
    assert main(["summary", str(examples / "lenet5.cnn"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format"] == "cnnc.summary/1" and any(row["name"] == "c1" for row in data["layers"])
    with pytest.raises(SystemExit) as leaving:
        main(["summary", str(examples / "lenet5.cnn"), "--columns", "layr"])
    assert leaving.value.code == 2 and "unknown column 'layr'" in capsys.readouterr().err
