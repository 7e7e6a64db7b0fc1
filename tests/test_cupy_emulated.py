"""The CuPy backend run on the CPU: the generated CuPy modules and kernels executed against an
emulated CuPy (tests/cupy_emulator.py) in which the actual CUDA kernel sources run as C++ (g++)
and cuBLAS's strided-batched GEMM is emulated on raw pointers. This checks, without a GPU,
every kernel's indexing and launch arguments, the GEMM layouts (leading dimensions, strides,
transposes, groups), the workspace chunking, the buffer plan and the host fallback, against the
NumPy backend. Streams, CUDA graphs, NVRTC and CuPy's own argument handling are tests/test_gpu.py's.

Every example runs at a reduced size where the network allows it; the slowest ones (VGG-16 at
224×224 and the deep ResNets: seconds each on one core) only with CNNC_EMULATE_ALL=1.
"""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from conftest import EXAMPLES, ROOT, example_networks, randomize
from kernel_cases import PROBES, anchor_sized_boxes, cases, check_detections, tolerance, with_probes

import cnnc
from cnnc.codegen.cupy import generate
from cnnc.kernels import numpy_kernels

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the emulator compiles the CUDA kernels with g++")

emulator = pytest.importorskip("cupy_emulator")


@pytest.fixture
def cp(monkeypatch):
    return emulator.install(monkeypatch)


def _close(got, want, rtol, atol_scale):
    got = np.asarray(got)
    assert got.shape == want.shape and got.dtype == np.float32
    scale = float(np.abs(want).max()) if want.size else 0.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol_scale * max(scale, 1e-6))


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.id)
def test_kernel_matches_numpy(case, cp):
    kernel = emulator.kernels_namespace([case.kernel], cp)[case.kernel]
    want = getattr(numpy_kernels, case.kernel)(*[None if a is None else a.copy() for a in case.args], **case.kwargs)

    def device(value):
        return cp.asarray(value) if isinstance(value, np.ndarray) else value

    args = [device(a) for a in case.args]
    kwargs = {k: device(v) for k, v in case.kwargs.items()}
    if case.workspace is not None:
        kwargs["workspace"] = cp.empty(case.workspace, dtype=np.float32)
    rtol, atol = tolerance(case)
    _close(kernel(*args, **kwargs), want, rtol, atol)
    if case.in_place:
        first = device(case.args[0])
        result = kernel(first, *args[1:], **kwargs, out=first)
        assert result is first
        _close(first, want, rtol, atol)


def test_workspace_smaller_than_one_image_is_an_error(cp):
    conv = emulator.kernels_namespace(["conv"], cp)["conv"]
    x, w = cp.asarray(np.zeros((2, 3, 8, 8), np.float32)), cp.asarray(np.zeros((4, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match="smaller than one image's columns"):
        conv(x, w, None, stride=(1, 1), pads=(1, 1, 1, 1), dilation=(1, 1), groups=1, out_size=(8, 8),
               workspace=cp.empty(100, dtype=np.float32))


def test_out_must_fit(cp):
    relu = emulator.kernels_namespace(["relu"], cp)["relu"]
    with pytest.raises(ValueError, match=r"out= must be a C-contiguous float32 array of shape \(2, 3\)"):
        relu(cp.asarray(np.zeros((2, 3), np.float32)), out=cp.empty((3, 2), dtype=np.float32))


QUICK = {  # example -> input shape (None: as declared, batch 2)
    "tiny.cnn": None, "lenet5.cnn": None, "classify_localize.cnn": (2, 3, 64, 64), "segmentation.cnn": (1, 3, 64, 64),
    "mobilenet_v2.cnn": (2, 3, 64, 64), "resnet18.cnn": (1, 3, 64, 64), "yolo_tiny.cnn": (1, 3, 128, 128),
    "yolo_tiny_seg.cnn": (1, 3, 128, 128),
    "shufflenet_v2_x1_0.cnn": (1, 3, 64, 64), "deep_plain.cnn": None, "deep_residual.cnn": None,
}
SLOW = {"alexnet.cnn": (1, 3, 227, 227), "se_resnet50.cnn": (1, 3, 32, 32), "googlenet.cnn": (1, 3, 224, 224),
        "googlenet_torchvision.cnn": (1, 3, 224, 224), "vgg16.cnn": None,
        "alexnet_torchvision.cnn": (1, 3, 224, 224), "xception.cnn": (1, 3, 96, 96), "resnet34.cnn": (1, 3, 64, 64),
        "resnet50.cnn": (1, 3, 64, 64), "resnet101.cnn": (1, 3, 64, 64), "resnet152.cnn": (1, 3, 64, 64),
        "mobilenet_v3_small.cnn": (1, 3, 64, 64), "mobilenet_v3_large.cnn": (1, 3, 64, 64),
        "convnext_tiny.cnn": (1, 3, 64, 64), "inception_v3.cnn": (1, 3, 299, 299),
        "squeezenet1_1.cnn": (1, 3, 64, 64), "mnasnet1_0.cnn": (1, 3, 64, 64),
        "efficientnet_b0.cnn": (1, 3, 64, 64), "densenet121.cnn": (1, 3, 64, 64)}


def _run_network(name, shape, cp, level=2):
    path = ROOT / "tests" / "golden" / name if name == "tiny.cnn" else EXAMPLES / name
    fixed = shape is not None and name not in ("alexnet.cnn", "alexnet_torchvision.cnn", "googlenet.cnn",
                                               "googlenet_torchvision.cnn")  # dense layers fix their size
    source = path
    if name in PROBES:  # NMS is discontinuous: compare its inputs, then NMS (and masks) on the same inputs
        source = with_probes(name, path.read_text(encoding="utf-8"))
    net = cnnc.compile(source, input_shapes={"image": shape} if fixed else None, optimize=level,
                       name=path.name)
    randomize(net, seed=len(name))
    if name == "yolo_tiny_seg.cnn":  # boxes larger than a prototype pixel, so that masks are not empty
        anchor_sized_boxes(net)
    rng = np.random.default_rng(7)
    inputs = {}
    for n in net.input_names:
        dims = list(shape) if shape is not None else [2, *net.graph.shape(n)[1:]]
        inputs[n] = rng.standard_normal(dims).astype(np.float32)
    want = net.run(**inputs)
    namespace = {"__name__": "generated"}
    exec(compile(generate(net.graph), name, "exec"), namespace)  # noqa: S102
    params = namespace["upload_params"](net.runtime_params())
    device_inputs = [cp.asarray(inputs[n]) for n in net.input_names]
    buffers = namespace["allocate"](device_inputs[0].shape[0])
    got = namespace["forward"](params, *device_inputs, buffers=buffers)
    _compare(net.graph, got, want)
    # the same buffers again, another input: nothing stale survives between calls
    again = {n: rng.standard_normal(x.shape).astype(np.float32) for n, x in inputs.items()}
    got = namespace["forward"](params, *[cp.asarray(again[n]) for n in net.input_names], buffers=buffers)
    _compare(net.graph, got, net.run(**again))


def _compare(graph, got, want):
    assert set(got) == set(want)
    checked = check_detections(graph, {k: np.asarray(v) for k, v in got.items()}, 1e-3, 1e-4)
    for key in set(want) - checked:
        _close(got[key], want[key], 1e-3, 1e-4)


@pytest.mark.parametrize("name", sorted(QUICK))
def test_network_matches_numpy_backend(name, cp):
    _run_network(name, QUICK[name], cp)


@pytest.mark.parametrize("name", ["segmentation.cnn", "yolo_tiny.cnn"])
def test_unoptimized_network_matches_numpy_backend(name, cp):
    """-O0: batch norms, standalone activations, global pools, dropout."""
    _run_network(name, QUICK[name], cp, level=0)


@pytest.mark.skipif(not os.environ.get("CNNC_EMULATE_ALL"), reason="seconds each on one core: CNNC_EMULATE_ALL=1")
@pytest.mark.parametrize("name", sorted(SLOW))
def test_every_other_example_matches_numpy_backend(name, cp):
    _run_network(name, SLOW[name], cp)


def test_every_example_is_emulated_somewhere():
    examples = set(example_networks())
    assert examples <= set(QUICK) | set(SLOW)


# ---- net.to("gpu") and the Runner, with emulated streams and graph capture ------------------------


def _pair(name: str, shape=None):
    """The same network (same parameters) twice: one for the CPU, one to move to the GPU."""
    nets = []
    for _ in range(2):
        net = cnnc.compile(EXAMPLES / name, input_shapes={"image": shape} if shape else None)
        randomize(net, seed=3)
        nets.append(net)
    return nets


def test_runner_replays_a_captured_graph(cp):
    cpu, gpu = _pair("resnet18.cnn", (2, 3, 32, 32))
    gpu.to("gpu")
    assert gpu.device == "gpu" and gpu.source.startswith('"""Network compiled by cnnc') and "import cupy" in gpu.source
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((2, 3, 32, 32)).astype(np.float32) for _ in range(3)]
    first = gpu(inputs[0])  # eager, then capture
    runner = gpu._gpu.runner
    assert runner.status == {((2, 3, 32, 32),): "cuda graph"}
    calls = []
    forward = runner.forward
    runner.forward = lambda *a, **k: calls.append(1) or forward(*a, **k)
    results = [first] + [gpu(x) for x in inputs[1:]] + [gpu(inputs[0])]
    assert not calls, "a replay must not run forward() again"
    for got, x in zip(results, [*inputs, inputs[0]]):
        assert isinstance(got, np.ndarray) and not isinstance(got, emulator.Array)
        _close(got, cpu(x), 1e-3, 1e-4)


def test_runner_parameter_updates_reach_the_graph(cp):
    cpu, gpu = _pair("lenet5.cnn")
    gpu.to("gpu")
    x = np.random.default_rng(1).standard_normal((3, 1, 32, 32)).astype(np.float32)
    gpu(x)
    gpu(x)
    for net in (cpu, gpu):
        net.params["out.bias"] = net.params["out.bias"] + 1.0
        net.params["c1.weight"] = net.params["c1.weight"] * 0.5
    _close(gpu(x), cpu(x), 1e-3, 1e-4)
    assert list(gpu._gpu.status.values()) == ["cuda graph"]


def test_runner_batch_sizes_cupy_inputs_and_outputs(cp):
    cpu, gpu = _pair("mobilenet_v2.cnn", ("N", 3, 32, 32))
    gpu.to("gpu", outputs="cupy")
    rng = np.random.default_rng(2)
    for batch in (1, 2, 1):
        x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
        got = gpu(cp.asarray(x))
        assert isinstance(got, emulator.Array)
        _close(got, cpu(x), 1e-3, 1e-4)
    assert gpu._gpu.status == {((1, 3, 32, 32),): "cuda graph", ((2, 3, 32, 32),): "cuda graph"}
    assert gpu.to("cpu") is gpu and gpu.device == "cpu" and "import cupy" not in gpu.source


def test_runner_falls_back_to_eager_when_capture_fails(cp, monkeypatch):
    def refuse(self, mode=None):
        raise RuntimeError("cudaErrorStreamCaptureUnsupported: operation not permitted when stream is capturing")

    monkeypatch.setattr(emulator.Stream, "begin_capture", refuse)
    cpu, gpu = _pair("lenet5.cnn")
    gpu.to("gpu")
    x = np.random.default_rng(3).standard_normal((2, 1, 32, 32)).astype(np.float32)
    for _ in range(2):
        _close(gpu(x), cpu(x), 1e-3, 1e-4)
    (status,) = gpu._gpu.status.values()
    assert status.startswith("eager (capture failed: RuntimeError: cudaErrorStreamCaptureUnsupported")


@pytest.mark.parametrize("name", ["yolo_tiny.cnn", "yolo_tiny_seg.cnn"])
def test_runner_keeps_networks_with_host_steps_eager(name, cp):
    source = (EXAMPLES / name).read_text(encoding="utf-8")
    gpu = cnnc.compile(source, input_shapes={"image": (1, 3, 64, 64)}, name=name).to("gpu")
    x = np.random.default_rng(4).standard_normal((1, 3, 64, 64)).astype(np.float32)
    gpu(x)
    gpu(x)
    assert list(gpu._gpu.status.values()) == ["eager (nms1: nms runs on the host)"]


def test_runner_without_cuda_graph(cp):
    cpu, gpu = _pair("lenet5.cnn")
    gpu.to("gpu", cuda_graph=False, tf32=True)
    x = np.random.default_rng(5).standard_normal((2, 1, 32, 32)).astype(np.float32)
    _close(gpu(x), cpu(x), 1e-3, 1e-4)  # the emulated GEMM has no TF32 rounding
    assert list(gpu._gpu.status.values()) == ["eager (cuda_graph=False)"]
    with pytest.raises(cnnc.CnncError, match="unknown option 'graphs'"):
        gpu.to("gpu", graphs=True)
