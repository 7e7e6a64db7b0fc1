"""The CuPy backend on an NVIDIA GPU, against the NumPy backend (marked gpu; every test skips,
with the reason, where CuPy or a GPU is missing). Run them with scripts/gpu_check.sh.

Tolerances (the reference is the NumPy kernel or the NumPy-generated network, float32):
- kernels, TF32 off: rtol 1e-4 and atol 1e-5 × max|reference| (2e-4 / 2e-5 for LRN): the same
  float32 arithmetic summed in another order;
- kernels with GEMMs, TF32 on: atol 5e-3 × max|reference| (inputs rounded to a 10-bit mantissa);
- whole networks at their declared input size, TF32 off: rtol 1e-3, atol 1e-3 × max|reference|;
  TF32 on: atol 5e-2 × max|reference| (rounding compounds over 50-150 layers);
- CUDA-graph replay against eager launches: atol 1e-6 × max|reference| (the same kernels).
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import EXAMPLES, ROOT, example_networks, randomize
from kernel_cases import PROBES, anchor_sized_boxes, cases, check_detections, tolerance, with_probes

import cnnc
from cnnc.kernels import numpy_kernels
from cnnc.runtime.gpu import cupy_status

cp, REASON = cupy_status()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(cp is None, reason=f"needs CuPy and an NVIDIA GPU: {REASON}")]

NETWORKS = example_networks()
GEMM_KERNELS = ("conv", "conv_transpose", "dense", "instance_masks")


@pytest.fixture
def kernels():
    from cnnc.kernels import cupy_kernels

    cupy_kernels.set_tf32(False)
    yield cupy_kernels
    cupy_kernels.set_tf32(None)


def _device(value):
    return cp.asarray(value) if isinstance(value, np.ndarray) else value


def _host(value):
    return cp.asnumpy(value) if isinstance(value, cp.ndarray) else np.asarray(value)


def _close(got, want, rtol, atol_scale):
    got = _host(got)
    assert got.shape == want.shape and got.dtype == np.float32
    scale = float(np.abs(want).max()) if want.size else 0.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol_scale * max(scale, 1e-6))


def _call(kernels, case):
    args = [_device(a) for a in case.args]
    kwargs = {k: _device(v) for k, v in case.kwargs.items()}
    if case.workspace is not None:
        kwargs["workspace"] = cp.empty(case.workspace, dtype=cp.float32)
    return getattr(kernels, case.kernel)(*args, **kwargs)


def _want(case):
    return getattr(numpy_kernels, case.kernel)(*[None if a is None else a.copy() for a in case.args], **case.kwargs)


# ---- every op ----------------------------------------------------------------------------------


def test_cases_cover_every_op():
    from cnnc.ir.ops import RECORDS

    assert {c.kernel for c in cases()} == {info.kernel for info in RECORDS.values() if info.kernel}


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.id)
def test_kernel_matches_numpy(case, kernels):
    rtol, atol = tolerance(case)
    _close(_call(kernels, case), _want(case), rtol, atol)
    if case.in_place:
        first = _device(case.args[0])
        args = [first, *[_device(a) for a in case.args[1:]]]
        result = getattr(kernels, case.kernel)(*args, **{k: _device(v) for k, v in case.kwargs.items()}, out=first)
        assert result is first
        _close(first, _want(case), rtol, atol)


@pytest.mark.parametrize("case", [c for c in cases() if c.kernel in GEMM_KERNELS], ids=lambda c: c.id)
def test_gemm_kernels_with_tf32(case, kernels):
    kernels.set_tf32(True)
    _close(_call(kernels, case), _want(case), 0.0, 5e-3)


def test_tf32_changes_gemm_results(kernels):
    """On Ampere or newer, TF32 rounds the inputs: a large GEMM differs from the float32 one."""
    if int(cp.cuda.Device().compute_capability) < 80:
        pytest.skip("TF32 needs compute capability 8.0")
    rng = np.random.default_rng(0)
    x, w = cp.asarray(rng.standard_normal((64, 1024), np.float32)), cp.asarray(rng.standard_normal((512, 1024),
                                                                                                   np.float32))
    exact = cp.asnumpy(kernels.dense(x, w, None))
    kernels.set_tf32(True)
    fast = cp.asnumpy(kernels.dense(x, w, None))
    assert not np.array_equal(exact, fast)
    assert np.abs(fast - exact).max() < 5e-3 * np.abs(exact).max()


# ---- every example network -------------------------------------------------------------------


def _network(name: str, *, probes: bool = False):
    path = EXAMPLES / name  # extra outputs (the yolos' NMS inputs) need the text, which imports nothing
    source = with_probes(name, path.read_text(encoding="utf-8")) if probes else path
    net = cnnc.compile(source, name=name)
    randomize(net, seed=len(name))
    if name == "yolo_tiny_seg.cnn":  # boxes larger than a prototype pixel, so that masks are not empty
        anchor_sized_boxes(net)
    return net


def _inputs(net, batch: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal((batch, *net.graph.shape(n)[1:])).astype(np.float32) for n in net.input_names}


def _compare_outputs(graph, got: dict, want: dict, rtol: float, atol: float):
    assert set(got) == set(want)
    checked = check_detections(graph, got, rtol, atol)  # NMS is discontinuous: on the GPU's own NMS inputs
    for key in set(want) - checked:
        _close(got[key], want[key], rtol, atol)


@pytest.mark.parametrize("tf32", [False, True], ids=["fp32", "tf32"])
@pytest.mark.parametrize("name", NETWORKS)
def test_network_matches_numpy_backend(name, tf32):
    net = _network(name, probes=name in PROBES)
    inputs = _inputs(net, 2)
    want = net.run(**inputs)
    net.to("gpu", tf32=tf32, cuda_graph=False)
    _compare_outputs(net.graph, net.run(**inputs), want, 0.0 if tf32 else 1e-3, 5e-2 if tf32 else 1e-3)


# ---- the runner: CUDA graphs, parameters, inputs and outputs --------------------------------------


def test_cuda_graph_replay_equals_eager():
    net = _network("resnet18.cnn")
    eager = _network("resnet18.cnn").to("gpu", cuda_graph=False)
    net.to("gpu", cuda_graph=True)
    first, second = _inputs(net, 2, seed=1), _inputs(net, 2, seed=2)
    results = [net.run(**first), net.run(**second), net.run(**first)]  # eager + capture, replay, replay
    assert net._gpu.status == {((2, 3, 224, 224),): "cuda graph"}
    for got, inputs in zip(results, (first, second, first)):
        want = eager.run(**inputs)
        _close(got["logits"], want["logits"], 0.0, 1e-6)
    np.testing.assert_allclose(results[2]["logits"], net.to("cpu").run(**first)["logits"], rtol=1e-3,
                               atol=1e-3 * np.abs(results[2]["logits"]).max())


def test_new_parameters_reach_a_captured_graph():
    net = _network("lenet5.cnn").to("gpu")
    x = _inputs(net, 3)
    net.run(**x)
    net.run(**x)  # replayed
    net.params["out.bias"] = net.params["out.bias"] + 1.0  # copied into the same device arrays
    got = net.run(**x)
    assert next(iter(net._gpu.status.values())) == "cuda graph"
    want = net.to("cpu").run(**x)
    _close(got["probs"], want["probs"], 1e-3, 1e-4)


def test_each_batch_size_gets_its_buffers_and_graph():
    cpu = _network("mobilenet_v2.cnn")
    gpu = _network("mobilenet_v2.cnn").to("gpu")
    for batch in (1, 3, 1, 3):
        x = _inputs(cpu, batch, seed=batch)
        _close(gpu.run(**x)["logits"], cpu.run(**x)["logits"], 1e-3, 1e-3)
    assert gpu._gpu.status == {((1, 3, 224, 224),): "cuda graph", ((3, 3, 224, 224),): "cuda graph"}


@pytest.mark.parametrize("name", ["yolo_tiny.cnn", "yolo_tiny_seg.cnn"])
def test_host_nms_keeps_a_network_eager(name):
    net = _network(name).to("gpu")
    x = _inputs(net, 1)
    net.run(**x)
    net.run(**x)
    assert list(net._gpu.status.values()) == ["eager (nms1: nms runs on the host)"]


def test_cupy_inputs_and_outputs():
    net = _network("resnet18.cnn").to("gpu", outputs="cupy")
    x = _inputs(net, 2)
    got = net(cp.asarray(x["image"]))
    assert isinstance(got, cp.ndarray)
    _close(got, net.to("cpu")(x["image"]), 1e-3, 1e-3)


def test_small_workspace_chunks_the_batch():
    net = _network("vgg16.cnn")
    x = _inputs(net, 4)
    want = net.to("gpu", cuda_graph=False).run(**x)["probs"]
    got = net.to("gpu", cuda_graph=False, workspace_limit=64 << 20).run(**x)["probs"]  # 1 image per chunk early on
    _close(got, want, 1e-4, 1e-5)


def test_standalone_generated_module(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cnnc", "compile", str(EXAMPLES / "resnet18.cnn"), "--target",
                             "cupy", "--seed", "4", "-o", str(tmp_path / "r18_gpu.py")], capture_output=True,
                            text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    spec = importlib.util.spec_from_file_location("r18_gpu", tmp_path / "r18_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run = module.runner(module.load_params())
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    got = [run(x)["logits"], run(x)["logits"]]
    want = cnnc.compile(EXAMPLES / "resnet18.cnn", seed=4)(x)
    for value in got:
        _close(value, want, 1e-3, 1e-3)
    assert list(run.status.values()) == ["cuda graph"]


def test_cli_run_gpu():
    result = subprocess.run([sys.executable, "-m", "cnnc", "run", str(ROOT / "tests" / "golden" / "tiny.cnn"),
                             "--gpu", "--tf32"], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert "probs" in result.stdout
