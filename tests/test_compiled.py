"""The `fast` extra's compiled loops (cnnc/kernels/compiled.py, numba_loops.py): the switch, the
transforms' sums against the Winograd matrices, and generated modules with and without cnnc.

The kernels' numerics on both paths are tested in tests/test_winograd.py (fixture `kernel_path`)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import WITHOUT_CNNC

import cnnc
from cnnc.ir.ops import Op
from cnnc.kernels import compiled, numpy_kernels

ROOT = Path(__file__).resolve().parents[1]
NET = "input x: [N, 32, 16, 16]\noutput y = x |> conv(32, 3x3, pad=1) as a |> relu |> conv(40, 3x3, pad=1) as b\n"
needs_numba = pytest.mark.skipif(compiled.loops() is None, reason="numba is not installed (the fast extra)")


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def test_cnnc_compiled_0_switches_the_loops_off():
    result = _run("from cnnc.kernels import compiled; print(compiled.loops() is None)", CNNC_COMPILED="0")
    assert result.stdout.strip() == "True", result.stderr


@needs_numba
def test_loops_are_on_where_numba_is_installed():
    result = _run("from cnnc.kernels import compiled; print(compiled.loops() is None)")
    assert result.stdout.strip() == "False", result.stderr


def test_importing_cnnc_does_not_import_numba():
    result = _run("import sys, cnnc; cnnc.compile('input x: [1, 3, 8, 8]\\noutput y = x |> relu'); "
                  "print('numba' in sys.modules)")
    assert result.stdout.strip() == "False", result.stderr


@needs_numba
@pytest.mark.parametrize("name,rows", [("_bt", 6), ("_at", 4)])
def test_the_transform_sums_are_the_winograd_matrices(name, rows):
    """Each written-out sum, applied to the unit vectors, gives a column of Bᵀ (or Aᵀ) of
    _winograd_f4x3, the matrices the derived weights and the NumPy path use."""
    loops = compiled.loops()
    bt, _, at = numpy_kernels._winograd_f4x3()
    function = getattr(loops, name).py_func
    got = np.array([function(*np.eye(6)[k]) for k in range(6)]).T
    np.testing.assert_array_equal(got, (bt if name == "_bt" else at)[:rows])


@needs_numba
@pytest.mark.parametrize("channels, size, batch, expected", [
    (128, 14, 1, True), (256, 7, 3, True), (256, 36, 1, False), (64, 14, 2, False)])
def test_small_maps_with_many_channels_transform_channels_last(channels, size, batch, expected, monkeypatch):
    """128 channels or more on a map of at most 64 tiles take the channels-last input transform,
    and its tiles are the NCHW loop's, bit for bit; other layers keep the NCHW loop."""
    loops = compiled.loops()
    rng = np.random.default_rng(channels + size)
    x = rng.standard_normal((batch, channels, size, size)).astype(np.float32)
    u = rng.standard_normal((36, 8, channels)).astype(np.float32)
    calls = []
    original = loops.winograd_input_channels_last
    monkeypatch.setattr(loops, "winograd_input_channels_last", lambda *a: calls.append(a) or original(*a))
    numpy_kernels.winograd_conv(x, u, None, pads=(1, 1, 1, 1), out_size=(size, size))
    assert bool(calls) == expected
    for band, rows, tw, v in calls:
        k = band.shape[0]
        want = np.empty((36, channels, k * rows * tw), np.float32)
        loops.winograd_input(x, 0, k, 0, rows, 1, 1, tw, want)
        np.testing.assert_array_equal(v.transpose(0, 2, 1), want)


def test_generated_module_runs_on_both_paths(tmp_path):
    """A saved module with Winograd convs: where cnnc (and numba) are installed it imports the
    compiled loops; where only numpy is, it runs its NumPy kernels. Both match the interpreter."""
    (tmp_path / "net.cnn").write_text(NET)
    subprocess.run([sys.executable, "-m", "cnnc", "compile", str(tmp_path / "net.cnn"), "-o",
                    str(tmp_path / "net_model.py"), "--seed", "3"], check=True, cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
    text = (tmp_path / "net_model.py").read_text()
    assert "from cnnc.kernels import compiled as _compiled" in text and "def winograd_conv(" in text
    x = np.random.default_rng(0).standard_normal((2, 32, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    run = ("import net_model\n"
           "print(net_model._compiled is not None and net_model._compiled.loops() is not None)\n"
           "np.save(sys.argv[1], net_model.forward(net_model.load_params(), np.load('x.npy'))['y'])\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    outputs = {}
    for label, prelude, path in (("numpy", WITHOUT_CNNC, ""), ("installed", "", str(ROOT))):
        script = "import sys, numpy as np\nsys.path.insert(0, '.')\n" + prelude + run
        result = subprocess.run([sys.executable, "-c", script, f"{label}.npy"], cwd=tmp_path, capture_output=True,
                                text=True, env={**env, "PYTHONPATH": path} if path else env)
        assert result.returncode == 0, result.stderr
        outputs[label] = result.stdout.strip()
    assert outputs["numpy"] == "False"
    assert outputs["installed"] == str(compiled.loops() is not None)
    net = cnnc.compile(tmp_path / "net.cnn", seed=3)
    assert net.graph.op("a") == net.graph.op("b") == Op.WINOGRAD_CONV
    ref = cnnc.eval_graph(net.source_graph, net.params, {"x": x})["y"]
    for label in ("numpy", "installed"):
        got = np.load(tmp_path / f"{label}.npy")
        assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
