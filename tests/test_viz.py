"""`cnnc viz`: the DOT it writes, Graphviz's SVG, and the HTML page rendered in a real headless
browser (Chromium), which must show the network's layers and fold its blocks.

The Graphviz and browser tests need `dot` and `chromium` (Debian: apt install graphviz chromium;
.ci/run installs them where it can) and skip without them; the DOT tests need nothing.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import cnnc
from cnnc.cli import main
from cnnc.viz import _quote, absorbed, describe_node, to_dot

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot (apt install graphviz)")
CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


def test_dot_has_clusters_shapes_tooltips_and_inputs():
    graph = cnnc.parse(EXAMPLES / "resnet18.cnn")
    dot, members = to_dot(graph)
    assert 'id="cluster:layer1"; label="layer1"' in dot and 'label="layer1.0"' in dot
    assert 'id="node:layer1.0.conv1"' in dot
    assert re.search(r'-> n\d+ \[label=" \[N, 64, 56, 56\]"\]', dot)  # shapes on edges
    assert 'tooltip="layer1.0.conv1: conv 3x3 -> [N, 64, 56, 56]\\n36,864 params' in dot
    assert "resnet_blocks.cnn:12  y = x |> conv(c, 3x3" in dot  # the source line on hover
    assert len(members) == 4 + 8 + 3  # layer1..4, their 8 blocks, 3 downsample sequences
    assert dot.count("shape=ellipse") == 1 and "→ output logits" in dot


def test_fused_nodes_show_what_they_absorbed():
    graph = cnnc.build_graph(EXAMPLES / "resnet18.cnn", optimize=2)
    assert absorbed(graph, "layer1.0.conv2") == ["bn", "add", "relu"]
    assert describe_node(graph, "conv1") == "conv 7x7 /2 + bn + relu"
    assert describe_node(graph, "layer1.0.conv1") == "conv 3x3 winograd + bn + relu"


def test_depth_folds_blocks_into_boxes():
    graph = cnnc.parse(EXAMPLES / "resnet152.cnn")
    full, _ = to_dot(graph)
    folded, _ = to_dot(graph, depth=1)
    assert full.count("[id=\"node:") > 500
    assert folded.count('[id="block:') == 3 + 8 + 36 + 3 and folded.count('[id="node:') < 10
    assert 'label="layer3.35\\n10 layers, 1,120,256 params"' in folded  # BN statistics included


def test_quoting_keeps_source_text_inside_its_string():
    assert _quote('a "b" \\ c\nd') == '"a \\"b\\" \\\\ c\\nd"'
    assert _quote("x\x00y") == '"x?y"'


def test_dot_needs_no_graphviz(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert main(["viz", str(EXAMPLES / "lenet5.cnn"), "-o", str(tmp_path / "net.dot")]) == 0
    assert (tmp_path / "net.dot").read_text().startswith("digraph cnnc {")
    assert main(["viz", str(EXAMPLES / "lenet5.cnn"), "-o", str(tmp_path / "net.svg")]) == 1
    error = capsys.readouterr().err
    assert "no Graphviz" in error and "apt install graphviz" in error and "-o net.dot" in error
    assert not (tmp_path / "net.svg").exists()
    assert main(["viz", str(EXAMPLES / "lenet5.cnn"), "-o", str(tmp_path / "net.jpg")]) == 1
    assert "cnnc viz writes .dot, .gv, .svg, .png, .pdf, .html" in capsys.readouterr().err


@needs_dot
def test_svg_from_graphviz(tmp_path, capsys):
    out = tmp_path / "r18.svg"
    assert main(["viz", str(EXAMPLES / "resnet18.cnn"), "-O2", "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    svg = out.read_text()
    assert svg.lstrip().startswith(("<?xml", "<!DOCTYPE", "<svg"))
    assert 'id="node:layer4.1.conv2"' in svg and "conv 3x3 winograd + bn + add + relu" in svg
    assert 'xlink:title="layer4.1.conv2' in svg  # the hover text


@needs_dot
@pytest.mark.skipif(CHROMIUM is None, reason="needs a headless browser (apt install chromium)")
def test_html_page_renders_in_a_browser_and_folds(tmp_path):
    page = tmp_path / "googlenet.html"
    assert main(["viz", str(EXAMPLES / "googlenet_torchvision.cnn"), "-o", str(page)]) == 0

    def dom(fragment: str = "") -> str:
        done = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                               "--dump-dom", page.as_uri() + fragment], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    shown = dom()
    nodes = re.findall(r'<g id="node:([^"]+)" class="node', shown)
    graph = cnnc.parse(EXAMPLES / "googlenet_torchvision.cnn")
    assert sorted(nodes) == sorted(graph.nodes)  # every layer drawn, under its own name
    assert 'id="cluster:inception4a.branch2"' in shown
    folded = dom("#folded")  # the page's script folds every block at load
    hidden = re.findall(r'<g id="node:[^"]+" class="node hidden"', folded)
    assert len(hidden) > 0.9 * len(nodes) and "layers folded)" in folded
    screenshot = tmp_path / "page.png"
    subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    f"--screenshot={screenshot}", "--window-size=1200,900", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    from PIL import Image

    with Image.open(screenshot) as image:
        colours = image.convert("RGB").getcolors(1 << 20)
    assert colours is not None and len(colours) > 20  # a drawing, not a blank page
