"""Generated code: golden text, determinism, standalone use without cnnc, safe names."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
from conftest import ROOT, WITHOUT_CNNC, randomize

import cnnc
from cnnc.codegen.namespace import Namespace

GOLDEN = ROOT / "tests" / "golden"


def test_generated_source_matches_golden():
    net = cnnc.compile(GOLDEN / "tiny.cnn")
    golden = GOLDEN / "tiny.py"
    if os.environ.get("CNNC_UPDATE_GOLDEN"):
        golden.write_text(net.source)
    assert net.source == golden.read_text(), "regenerate with CNNC_UPDATE_GOLDEN=1 after reviewing the diff"


def test_generation_is_deterministic_across_processes():
    code = "import cnnc, sys; sys.stdout.write(cnnc.compile(sys.argv[1]).source)"
    runs = [subprocess.run([sys.executable, "-c", code, str(GOLDEN / "tiny.cnn")], capture_output=True,
                           text=True, check=True, cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": seed}).stdout
            for seed in ("1", "2")]
    assert runs[0] == runs[1]


def test_one_statement_per_node_with_source_lines():
    net = cnnc.compile(GOLDEN / "tiny.cnn")
    body = net.source.split("def forward(")[1].split("\n\n\n")[0]
    lines = body.splitlines()[2:-1]  # between the docstring and the return
    statements = [line for line in lines if " = " in line and "# tiny.cnn:" in line]
    non_input_nodes = [n for n in net.graph.nodes if str(net.graph.op(n)) != "input"]
    assert len(statements) == len(non_input_nodes)
    assert any("# tiny.cnn:5 unit1.conv1" in line for line in statements)
    # every other line is a long call's wrapped arguments, or plan_memory's bookkeeping: `del`
    # after a last use, marked as such
    wrapped = [line for line in lines if line.startswith("        ")]
    others = [line for line in lines if line not in statements and line not in wrapped]
    assert others and all(line.startswith("    del ") and line.endswith("  # last use") for line in others)
    assert wrapped and all(len(line) <= 120 for line in lines)


def test_generated_lines_fit_in_120_columns():
    """Long kernel calls wrap after the open parenthesis (the comment stays on the first line)."""
    source = cnnc.compile(ROOT / "examples" / "resnet50.cnn").source
    forward = source.split("def forward(")[1].split("\n\n\n")[0]
    assert max(len(line) for line in forward.splitlines()) <= 120


def test_compiled_module_runs_without_cnnc(tmp_path):
    """`cnnc compile -o` output imported in a subprocess whose path has no cnnc."""
    subprocess.run([sys.executable, "-m", "cnnc", "compile", str(GOLDEN / "tiny.cnn"), "-o",
                    str(tmp_path / "tiny_model.py"), "--seed", "3"], check=True, cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
    x = np.random.default_rng(0).standard_normal((2, 1, 12, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    # A machine with numpy alone: importing cnnc from anywhere (an installed copy included) fails.
    script = ("import sys, numpy as np\n" + WITHOUT_CNNC +
              "import tiny_model\n"
              "assert not any(m.split('.')[0] == 'cnnc' for m in sys.modules)\n"
              "out = tiny_model.forward(tiny_model.load_params(), np.load('x.npy'))\n"
              "np.save('y.npy', out['probs'])\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, '.'); exec({script!r})"],
                   check=True, cwd=tmp_path, env=env, capture_output=True)
    net = cnnc.compile(GOLDEN / "tiny.cnn", seed=3)
    ref = cnnc.eval_graph(net.source_graph, net.params, {"image": x})["probs"]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), ref, rtol=1e-5, atol=1e-6)


def test_generated_code_matches_interpreter_with_random_params():
    net = cnnc.compile(GOLDEN / "tiny.cnn")
    randomize(net, 5)
    x = np.random.default_rng(1).standard_normal((3, 1, 12, 12)).astype(np.float32)
    ref = cnnc.eval_graph(net.source_graph, net.params, {"image": x})["probs"]
    np.testing.assert_allclose(net(x), ref, rtol=1e-5, atol=1e-6)


def test_namespace_makes_safe_distinct_identifiers():
    ns = Namespace({"forward"})
    names = [ns.name(k) for k in ["layer1.0.conv1", "layer1_0.conv1", "forward", "print", "class",
                                  "0", "a-b; import os", "__import__"]]
    assert len(set(names)) == len(names)
    assert all(n.isidentifier() for n in names)
    assert "forward" not in names and "print" not in names and "class" not in names
    assert ns.name("layer1.0.conv1") == names[0]


def test_module_carries_only_the_activation_kernels_its_fused_nodes_name():
    """The NumPy epilogue runs an activation's own kernel by name; the module copies exactly the
    ones its fused convs use, and runs them (checked against the interpreter)."""
    text = """input x: [N, 3, 8, 8]
a = x |> conv(4, 3x3, pad=1) |> gelu
output y = a |> conv(4, 1x1) |> hardsigmoid
"""
    net = cnnc.compile(text)
    defined = {line.split("(")[0][4:] for line in net.source.splitlines() if line.startswith("def ")}
    assert {"gelu", "hardsigmoid"} <= defined
    assert not {"relu", "silu", "hardswish", "gelu_tanh", "sigmoid"} & defined
    assert "activation='gelu'" in net.source and "activation='hardsigmoid'" in net.source
    randomize(net, seed=3)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8), dtype=np.float32)
    want = cnnc.eval_graph(net.source_graph, net.params, {"x": x})["y"]
    np.testing.assert_allclose(net.run(x)["y"], want, rtol=1e-5, atol=1e-6)


def test_ir_text_labels_keyword_inputs_and_lists_each_source_line_once():
    from cnnc.ir.printer import print_graph

    text = print_graph(cnnc.compile(ROOT / "examples" / "resnet18.cnn").graph)
    fused = next(line for line in text.splitlines() if line.startswith("%layer1.0.conv2 "))
    assert "(%layer1.0.conv1, residual=%maxpool1)" in fused
    assert fused.endswith("# resnet_blocks.cnn:13, 16")  # the conv's line and the add's, once each
