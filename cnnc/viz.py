"""`cnnc viz`: a picture of the network, as Graphviz DOT, SVG, PNG/PDF, or a self-contained HTML page.

    cnnc viz examples/resnet18.cnn -o resnet18.svg        # the source program's layers (-O0)
    cnnc viz examples/resnet18.cnn -O2 -o fused.html      # what runs, fused nodes showing what they absorbed

Each IR node is a box (name, op, its key attributes: `conv 3x3 /2`, `64 -> 128`), its output
shape labels the edges it leaves by, blocks are nested clusters named after the layer-name
prefix they share (`layer1` ⊃ `layer1.0`), and hovering a node shows its source lines. A fused
node lists what it absorbed (`+ bn + relu + add`), read from its attributes and derived
parameters. `depth=K` draws each block below depth K as one box with its totals, which keeps
ResNet-152 readable; the HTML page also folds and unfolds clusters with a click.

Layout is Graphviz's `dot` program, run as a subprocess on the DOT text this module writes
(the one Graphviz dependency: `apt install graphviz`, `brew install graphviz`, `conda install
graphviz`, or graphviz.org); DOT itself needs nothing. Text from the source file reaches the
DOT only through `_quote` (a quoted DOT string) and the HTML only through the SVG Graphviz
wrote and `html.escape`/`json.dumps`.
"""
from __future__ import annotations

import html
import json
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CnncError
from .ir.cost import node_cost
from .ir.fused import SHORT_NAMES, absorbed_ops
from .ir.graph import Graph
from .ir.ops import Op, attrs_dict
from .ir.shapes import fmt

FORMATS = {".dot": "dot", ".gv": "dot", ".svg": "svg", ".png": "png", ".pdf": "pdf", ".html": "html"}
GRAPHVIZ_HELP = ("Graphviz's `dot` program lays the picture out; install it (Debian/Ubuntu: apt install graphviz; "
                 "macOS: brew install graphviz; conda install graphviz; or https://graphviz.org/download/), "
                 "or write DOT text with -o net.dot, which needs nothing")
# fill colours by op family (Graphviz X11 names)
_COLOURS = {"conv": "lightblue", "dense": "lightskyblue", "pool": "palegreen", "norm": "khaki",
            "act": "mistyrose", "merge": "thistle", "input": "white", "other": "whitesmoke"}


class CnncVizError(CnncError):
    """A picture that cannot be made: no Graphviz, or an output format cnnc does not write."""


def output_format(path: str | Path) -> str:
    found = FORMATS.get(Path(path).suffix.lower())
    if found is None:
        raise CnncVizError(f"cnnc viz writes {', '.join(FORMATS)}; choose one of these suffixes", where=str(path))
    return found


def _quote(text: str) -> str:
    """A DOT double-quoted string: backslashes and quotes escaped, newlines as DOT's \\n."""
    text = "".join(c if c.isprintable() or c == "\n" else "?" for c in text)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _family(op: Op) -> str:
    name = op.value
    if name in ("conv", "conv_transpose", "winograd_conv"):
        return "conv"
    if name == "dense":
        return "dense"
    if "pool" in name:
        return "pool"
    if "norm" in name or name in ("channel_affine", "layer_scale", "lrn"):
        return "norm"
    if name in ("relu", "relu6", "leaky_relu", "sigmoid", "tanh", "hardswish", "hardsigmoid", "silu", "gelu",
                "gelu_tanh", "softmax", "clip", "prelu"):
        return "act"
    if name in ("add", "mul", "sub", "div", "concat"):
        return "merge"
    return "input" if op == Op.INPUT else "other"


def absorbed(graph: Graph, name: str) -> list[str]:
    """What fusion folded into the node, by short name (`bn`, `add`, `relu`): cnnc.ir.fused."""
    return [SHORT_NAMES.get(op, op) for op in absorbed_ops(graph, name)]


def describe_node(graph: Graph, name: str) -> str:
    """`conv 3x3 /2` and the like: the op with the attributes that tell layers apart."""
    node = graph.node(name)
    attrs = attrs_dict(node.attrs)
    words = ["conv 3x3 winograd" if node.op == Op.WINOGRAD_CONV else node.op.value]
    kernel, stride = attrs.get("kernel"), attrs.get("stride")
    if isinstance(kernel, tuple):
        words.append(f"{kernel[0]}x{kernel[1]}")
    if isinstance(stride, tuple) and stride != (1, 1):
        words.append(f"/{stride[0]}" if stride[0] == stride[1] else f"/{stride[0]}x{stride[1]}")
    groups = attrs.get("groups", 1)
    if isinstance(groups, int) and groups > 1:
        words.append(f"g{groups}")
    extra = absorbed(graph, name)
    return " ".join(words) + "".join(f" + {e}" for e in extra)


def _source_lines(graph: Graph, name: str) -> str:
    """The node's source lines, each once: `resnet18.cnn:9  |> [basic(64), basic(64)] as layer1`."""
    seen, lines = set(), []
    for span in graph.spans(name):
        key = (span.file.name, span.line)
        if key not in seen:
            seen.add(key)
            lines.append(f"{span.file.name}:{span.line}  {span.file.line(span.line).strip()}")
    return "\n".join(lines) or "generated by a pass"


@dataclass
class _Cluster:
    name: str
    children: dict[str, _Cluster] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)


def _prefixes(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def to_dot(graph: Graph, depth: int | None = None, title: str | None = None) -> tuple[str, dict[str, list[str]]]:
    """The DOT text, and each cluster's member node ids (for the HTML page's folding).

    `depth`: blocks nested deeper than this are drawn as one box each (their totals inside).
    """
    ids = {name: f"n{i}" for i, name in enumerate(graph.topo_order())}
    shown: dict[str, str] = {}  # IR node → the box that shows it (itself, or its folded block)
    folded: dict[str, list[str]] = defaultdict(list)
    for name in ids:
        prefixes = _prefixes(name)
        if depth is not None and len(prefixes) > depth:
            block = prefixes[depth]
            shown[name] = f"block:{block}"
            folded[block].append(name)
        else:
            shown[name] = name
    root = _Cluster("")
    for name in ids:
        target = shown[name]
        if target.startswith("block:") and name != folded[target[6:]][0]:
            continue
        box = target[6:] if target.startswith("block:") else name
        cluster = root
        for prefix in _prefixes(box):  # a folded block sits in the clusters above it
            cluster = cluster.children.setdefault(prefix, _Cluster(prefix))
        cluster.nodes.append(target)
    lines = [
        "digraph cnnc {",
        f"  graph [rankdir=TB, fontname=Helvetica, fontsize=11, nodesep=0.25, ranksep=0.3, "
        f"label={_quote(title or graph.info.source_name)}, labelloc=t];",
        "  node [shape=box, style=\"rounded,filled\", fontname=Helvetica, fontsize=10, height=0.3];",
        "  edge [fontname=Helvetica, fontsize=8, color=gray40, fontcolor=gray30, arrowsize=0.6];",
    ]
    box_ids: dict[str, str] = {}
    for target in dict.fromkeys(shown.values()):
        box_ids[target] = ids[target] if target in ids else f"b{len(box_ids)}"
    members: dict[str, list[str]] = {}

    def node_line(target: str, indent: str) -> str:
        if target.startswith("block:"):
            block = target[6:]
            inside = folded[block]
            params = sum(node_cost(graph, n).params for n in inside)
            label = f"{block}\n{len(inside)} layers, {params:,} params"
            tip = "\n".join(dict.fromkeys(_source_lines(graph, n) for n in inside))
            return (f"{indent}{box_ids[target]} [id={_quote('block:' + block)}, label={_quote(label)}, "
                    f"tooltip={_quote(tip)}, shape=box3d, fillcolor=gainsboro];")
        op = graph.op(target)
        short = target.rsplit(".", 1)[-1]
        label = f"{short}\n{describe_node(graph, target)}"
        if op == Op.INPUT:
            label = f"{target}\n{fmt(graph.shape(target))}"
        outputs = [o for o, n in graph.info.outputs.items() if n == target]
        if outputs:
            label += "\n→ output " + ", ".join(outputs)
        cost = node_cost(graph, target)
        tip = f"{target}: {describe_node(graph, target)} -> {fmt(graph.shape(target))}"
        if cost.params:
            tip += f"\n{cost.params:,} params, {cost.macs:,} MACs"
        tip += "\n" + _source_lines(graph, target)
        shape = "ellipse" if op == Op.INPUT else ("doubleoctagon" if outputs else "box")
        return (f"{indent}{box_ids[target]} [id={_quote('node:' + target)}, label={_quote(label)}, "
                f"tooltip={_quote(tip)}, shape={shape}, fillcolor={_COLOURS[_family(op)]}];")

    def emit(cluster: _Cluster, indent: str) -> list[str]:
        out = []
        for child in cluster.children.values():
            cid = f"cluster_{len(members)}"
            members[cid] = []
            out.append(f"{indent}subgraph {cid} {{")
            out.append(f"{indent}  id={_quote('cluster:' + child.name)}; label={_quote(child.name)}; "
                       "style=\"rounded,dashed\"; color=gray60; fontcolor=gray25;")
            out += emit(child, indent + "  ")
            members[cid] = [box_ids[t] for t in _boxes_in(child)]
            out.append(f"{indent}}}")
        out += [node_line(t, indent) for t in cluster.nodes]
        return out

    lines += emit(root, "  ")
    drawn = set()
    for name in ids:
        for source in graph.inputs_of(name):
            a, b = box_ids[shown[source]], box_ids[shown[name]]
            if a == b or (a, b) in drawn:
                continue
            drawn.add((a, b))
            lines.append(f"  {a} -> {b} [label={_quote(' ' + fmt(graph.shape(source)))}];")
    lines.append("}")
    return "\n".join(lines) + "\n", members


def _boxes_in(cluster: _Cluster) -> list[str]:
    found = list(cluster.nodes)
    for child in cluster.children.values():
        found += _boxes_in(child)
    return found


def render(dot: str, format: str) -> bytes:  # noqa: A002 - Graphviz's word
    """Lay the DOT out with Graphviz's `dot` into `format` (svg, png, pdf)."""
    program = shutil.which("dot")
    if program is None:
        raise CnncVizError(f"no Graphviz: {GRAPHVIZ_HELP}", where="cnnc viz")
    try:
        done = subprocess.run([program, f"-T{format}"], input=dot.encode(), capture_output=True, timeout=300,
                              check=False)
    except subprocess.TimeoutExpired:
        raise CnncVizError("Graphviz took more than 5 minutes to lay the network out; try --depth 1 or 2",
                           where="cnnc viz") from None
    if done.returncode != 0:
        raise CnncVizError(f"Graphviz failed: {done.stderr.decode(errors='replace').strip()[:500]}",
                           where="cnnc viz")
    return done.stdout


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: Helvetica, Arial, sans-serif; margin: 1em; }}
#help {{ color: #555; font-size: 13px; }}
g.cluster > text {{ cursor: pointer; }}
g.cluster.folded > path, g.cluster.folded > polygon {{ fill: #e8e8e8; }}
.hidden {{ display: none; }}
</style></head>
<body>
<h3>{title}</h3>
<p id="help">Hover a layer for its source lines and costs; click a block's name to fold or unfold it.</p>
<div id="graph">{svg}</div>
<script>
const members = {members};
const nodes = {{}};
document.querySelectorAll("g.node").forEach(g => {{ nodes[g.querySelector("title").textContent] = g; }});
const edges = [...document.querySelectorAll("g.edge")].map(g => {{
  const [a, b] = g.querySelector("title").textContent.split("->");
  return {{g, a, b}};
}});
document.querySelectorAll("g.cluster").forEach(cluster => {{
  const id = cluster.querySelector("title").textContent;
  const label = cluster.querySelector("text");
  if (!label || !members[id]) return;
  const inside = new Set(members[id]);
  label.addEventListener("click", () => {{
    const fold = !cluster.classList.contains("folded");
    cluster.classList.toggle("folded", fold);
    inside.forEach(n => nodes[n] && nodes[n].classList.toggle("hidden", fold));
    edges.forEach(e => {{ if (inside.has(e.a) && inside.has(e.b)) e.g.classList.toggle("hidden", fold); }});
    label.textContent = fold ? label.textContent + " (" + inside.size + " layers folded)"
                             : label.textContent.replace(/ \\(\\d+ layers folded\\)$/, "");
  }});
}});
if (location.hash === "#folded") {{  // every block folded at load (the tests' headless browser uses it)
  document.querySelectorAll("g.cluster > text").forEach(t => t.dispatchEvent(new Event("click")));
}}
</script>
</body></html>
"""


def html_page(svg: str, members: dict[str, list[str]], title: str) -> str:
    """A self-contained page: the SVG inline, a little CSS and script to fold clusters."""
    start = svg.find("<svg")
    return _PAGE.format(title=html.escape(title), svg=svg[start:] if start >= 0 else svg,
                        members=json.dumps(members).replace("</", "<\\/"))


def write(graph: Graph, path: str | Path, depth: int | None = None, title: str | None = None) -> str:
    """Write the picture in the format `path`'s suffix names; returns the format."""
    from .runtime.files import atomic_write

    chosen = output_format(path)
    dot, members = to_dot(graph, depth, title)
    if chosen == "dot":
        data = dot.encode()
    elif chosen == "html":
        data = html_page(render(dot, "svg").decode(), members, title or graph.info.source_name).encode()
    else:
        data = render(dot, chosen)
    with atomic_write(path, "wb") as handle:
        handle.write(data)
    return chosen
