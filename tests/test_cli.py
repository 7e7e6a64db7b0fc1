"""The `cnnc` command end to end: check, summary, compile, run (random, .npy and image inputs)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

import cnnc
from cnnc.runtime.gpu import gpu_available

TINY = ROOT / "tests" / "golden" / "tiny.cnn"


def cnnc_cli(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnc", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)


def test_check_reports_shapes():
    result = cnnc_cli("check", str(TINY))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout and "probs [N, 10]" in result.stdout


def test_summary_table_counts_params_and_macs():
    result = cnnc_cli("summary", str(TINY))
    assert result.returncode == 0, result.stderr
    # conv 1->4 3x3 (36 weights), bn (16), conv 4->4 (144), bn (16), dense 144->10 (1450)
    assert "Total params: 1,662" in result.stdout
    # MACs: 12*12*4*9 + 12*12*4*36 + 1440
    assert f"Total MACs (conv, dense; per example): {144 * 36 + 144 * 144 + 1440:,}" in result.stdout
    assert "unit2.conv1" in result.stdout and "[N, 4, 12, 12]" in result.stdout


def test_emit_ir_is_stable_text():
    result = cnnc_cli("compile", str(TINY), "--emit", "ir")
    assert result.returncode == 0, result.stderr
    assert "%unit1.conv1 = conv(%image) {filters=4, kernel=(3, 3)" in result.stdout
    assert "output probs = %softmax1" in result.stdout
    assert result.stdout == cnnc_cli("compile", str(TINY), "--emit", "ir").stdout


def test_run_random_input_prints_top5():
    result = cnnc_cli("run", str(TINY), "--batch", "2")
    assert result.returncode == 0, result.stderr
    assert "probs: shape [2, 10]" in result.stdout
    assert result.stdout.count("top-5: class") == 2


def test_run_npy_input_matches_api(tmp_path):
    x = np.random.default_rng(0).standard_normal((1, 12, 12)).astype(np.float32)  # no batch axis
    np.save(tmp_path / "x.npy", x)
    result = cnnc_cli("run", str(TINY), "--input", str(tmp_path / "x.npy"), "--save-output", str(tmp_path / "y.npz"))
    assert result.returncode == 0, result.stderr
    expected = cnnc.compile(TINY)(x[None])
    np.testing.assert_allclose(np.load(tmp_path / "y.npz")["probs"], expected, rtol=1e-6)


def test_run_image_input(tmp_path):
    image = pytest.importorskip("PIL.Image")
    pixels = (np.random.default_rng(0).uniform(0, 255, (40, 30, 3))).astype(np.uint8)
    image.fromarray(pixels).save(tmp_path / "photo.png")
    result = cnnc_cli("run", str(TINY), "--input", str(tmp_path / "photo.png"))
    assert result.returncode == 0, result.stderr
    assert "probs: shape [1, 10]" in result.stdout


def test_input_shape_override():
    result = cnnc_cli("check", str(ROOT / "tests" / "golden" / "tiny.cnn"), "--input-shape", "image=1x1x24x24")
    assert result.returncode == 0, result.stderr
    assert "probs [N, 10]" in result.stdout
    graph = cnnc.parse(TINY, input_shapes={"image": (1, 1, 24, 24)})
    assert graph.shape("fc") == ("N", 10) and graph.shape("maxpool1") == ("N", 4, 12, 12)


@pytest.mark.skipif(gpu_available(), reason="CuPy and a GPU are here: tests/test_gpu.py runs --gpu")
def test_gpu_flag_without_backend_is_one_clear_line():
    result = cnnc_cli("run", str(TINY), "--gpu")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "--gpu" in result.stderr


def test_params_roundtrip(tmp_path):
    net = cnnc.compile(TINY, seed=7)
    net.save_params(tmp_path / "p.npz")
    other = cnnc.compile(TINY, seed=8)
    assert not np.array_equal(other.params["fc.weight"], net.params["fc.weight"])
    other.load_params(tmp_path / "p.npz")
    for name in net.params:
        np.testing.assert_array_equal(other.params[name], net.params[name])
    result = cnnc_cli("run", str(TINY), "--params", str(tmp_path / "p.npz"))
    assert result.returncode == 0, result.stderr


def test_python_dash_m_and_console_script_agree():
    result = cnnc_cli("--version")
    assert result.returncode == 0 and cnnc.__version__ in result.stdout


def test_export_from_standard_input_needs_an_output_name(monkeypatch, capsys, tmp_path):
    import io

    monkeypatch.chdir(tmp_path)
    from cnnc.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("input x: [N, 3, 8, 8]\noutput y = x |> relu\n"))
    assert main(["export", "-"]) == 1
    assert "needs -o model.onnx" in capsys.readouterr().err
    assert not (tmp_path / "-.onnx").exists()
