"""The CuPy backend, everything that needs no GPU: generated source for every example, the CUDA
sources (compiled with nvcc when it is installed) and their launch arguments, the buffer plan,
the workspace chunking, the host fallback, and the errors without CuPy or a GPU.

The numerics on a GPU are tests/test_gpu.py's (marked gpu; run by scripts/gpu_check.sh).
"""
from __future__ import annotations

import ast
import builtins
import dis
import inspect
import itertools
import os
import re
import shutil
import subprocess
import sys
import types

import cupy_emulator as emulator
import numpy as np
import pytest
from conftest import EXAMPLES, ROOT, example_networks

import cnnc
from cnnc.codegen import cupy as cupy_codegen
from cnnc.errors import CnncError
from cnnc.ir.ops import RECORDS, Op
from cnnc.kernels import cupy_kernels, numpy_kernels

TINY = ROOT / "tests" / "golden" / "tiny.cnn"
NETWORKS = example_networks()
KERNELS = sorted({info.kernel for info in RECORDS.values() if info.kernel})
VIEW_KERNELS = {"flatten", "reshape"}  # views of their input: no out=


def _graph(name: str, level: int = 2):
    return cnnc.build_graph(EXAMPLES / name if name != "tiny.cnn" else TINY, optimize=level)


def _fake_cupy() -> types.ModuleType:
    """Just enough of CuPy, backed by NumPy, to import a generated module and call allocate()."""
    fake = types.ModuleType("cupy")
    fake.float32 = np.float32
    fake.empty = lambda shape, dtype=np.float32: np.empty(shape, dtype=dtype)
    return fake


def _load_generated(source: str, monkeypatch) -> dict:
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy())
    namespace = {"__name__": "generated", "__file__": "generated.py"}
    exec(compile(source, "generated.py", "exec"), namespace)  # noqa: S102
    return namespace


def _unresolved_globals(source: str, namespace: dict) -> set[str]:
    """Global names some function of the module reads that neither it nor builtins define."""
    missing = set()

    def walk(code):
        for instruction in dis.get_instructions(code):
            if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME") and instruction.argval not in namespace \
                    and not hasattr(builtins, instruction.argval):
                missing.add(instruction.argval)
        for constant in code.co_consts:
            if isinstance(constant, types.CodeType):
                walk(constant)

    walk(compile(source, "generated.py", "exec"))
    return missing


# ---- generated source ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny.cnn", *NETWORKS])
def test_every_example_generates_deterministic_self_contained_source(name, monkeypatch):
    graph = _graph(name)
    source = cupy_codegen.generate(graph)
    assert source == cupy_codegen.generate(_graph(name)), "generation must be deterministic"
    namespace = _load_generated(source, monkeypatch)
    assert not _unresolved_globals(source, namespace)
    assert "cnnc" not in {line.split()[1].split(".")[0] for line in source.splitlines()
                          if line.startswith(("import ", "from "))}
    # one statement per IR node, each writing into its buffer, in place, or a view
    body = source.split("\ndef forward(")[1].split("\n\n\n")[0].splitlines()
    statements = [line for line in body if re.match(r"    \w+ = ", line) and "  # " in line]
    assert len(statements) == sum(1 for n in graph.nodes if graph.op(n) != Op.INPUT)
    assert all(line.endswith(("view", "in place", "on the host")) or re.search(r", slot \d+$", line)
               for line in statements)
    plan = cupy_codegen.plan_buffers(graph)
    assert namespace["SLOTS"] == plan.slots and namespace["COLUMNS"] == tuple(plan.columns.values())
    assert bool(namespace["CUDA_GRAPH_BLOCKERS"]) == any(graph.op(n) == Op.NMS for n in graph.nodes)


@pytest.mark.parametrize("name", ["alexnet.cnn", "googlenet_torchvision.cnn", "segmentation.cnn", "yolo_tiny.cnn"])
def test_unoptimized_graphs_generate_too(name, monkeypatch):
    """-O0 keeps batch norms, standalone activations, global pools and dropout."""
    source = cupy_codegen.generate(_graph(name, level=0))
    assert not _unresolved_globals(source, _load_generated(source, monkeypatch))


def test_generation_is_deterministic_across_processes():
    code = ("import cnnc, sys; from cnnc.codegen.cupy import generate; "
            "sys.stdout.write(generate(cnnc.build_graph(sys.argv[1])))")
    runs = [subprocess.run([sys.executable, "-c", code, str(EXAMPLES / "googlenet.cnn")], capture_output=True,
                           text=True, check=True, cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": seed}).stdout
            for seed in ("1", "2")]
    assert runs[0] == runs[1]


def test_tiny_statements_buffers_and_workspace():
    source = cupy_codegen.generate(_graph("tiny.cnn"))
    assert "unit1_conv1 = conv(image, params['unit1.conv1.weight~bn'], params['unit1.conv1.bias~bn'], " \
           "stride=(1, 1), pads=(1, 1, 1, 1), dilation=(1, 1), groups=1, activation='relu', out_size=(12, 12), " \
           "out=out['unit1.conv1'], workspace=workspace)  # tiny.cnn:5 unit1.conv1: conv -> [N, 4, 12, 12], slot 0" \
           in source
    assert "unit2_add1 = add(unit2_conv1, unit1_conv1, out=unit2_conv1)" in source  # plan_memory's in-place add
    assert "flatten1 = flatten(maxpool1)  # tiny.cnn:10 flatten1: flatten -> [N, 144], view" in source
    assert "def forward(params, image, buffers=None):" in source
    # only the CUDA code the network's kernels launch is copied in
    assert "_CU_IM2COL = " in source and "_CU_MAX_POOL = " in source
    for unused in ("_EW_LRN", "_CU_COL2IM", "_CU_AVG_POOL", "_EW_YOLO_DECODE", "_host_nms"):
        assert unused not in source


def test_pointwise_and_depthwise_convs_need_no_workspace():
    graph = _graph("mobilenet_v2.cnn")
    plan = cupy_codegen.plan_buffers(graph)
    source = cupy_codegen.generate(graph)
    for name in graph.nodes:
        if graph.op(name) != Op.CONV:
            continue
        attrs = graph.attrs(name)
        channels = graph.shape(graph.inputs_of(name)[0])[1]
        w = graph.info.param_specs[graph.params_of(name)["weight"]].shape
        method = cupy_kernels.conv_method(channels, w, attrs.stride, attrs.pads, attrs.groups)
        line = next(line for line in source.splitlines() if f"out=out[{name!r}]" in line)
        assert (method == "im2col") == (name in plan.columns) == ("workspace=workspace" in line)
        if attrs.groups == channels and channels > 1:
            assert method == "depthwise"
        if attrs.kernel == (1, 1) and attrs.stride == (1, 1):
            assert method == "gemm"


def test_tf32_default_and_compile_command(tmp_path, monkeypatch):
    assert "TF32 = False" in cupy_codegen.generate(_graph("lenet5.cnn"))
    assert "TF32 = True" in cupy_codegen.generate(_graph("lenet5.cnn"), tf32=True)
    # `cnnc compile --target cupy` needs no CuPy: it only writes the module and its parameters
    result = subprocess.run([sys.executable, "-m", "cnnc", "compile", str(EXAMPLES / "lenet5.cnn"), "--target", "cupy",
                             "--tf32", "-o", str(tmp_path / "lenet_gpu.py")], capture_output=True, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "lenet_gpu.py").read_text()
    assert "import cupy as cp" in text and "TF32 = True" in text
    with np.load(tmp_path / "lenet_gpu.npz") as archive:
        namespace = _load_generated(text, monkeypatch)
        assert set(archive.files) == set(namespace["PARAMETERS"])


# ---- kernels: one per op, with the NumPy kernel's signature ------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)
def test_every_op_has_a_cupy_kernel_with_the_numpy_signature(kernel):
    ours = inspect.signature(getattr(cupy_kernels, kernel)).parameters
    theirs = inspect.signature(getattr(numpy_kernels, kernel)).parameters
    for name, parameter in theirs.items():
        assert name in ours, f"{kernel}: no parameter {name!r}"
        assert ours[name].kind == parameter.kind and ours[name].default == parameter.default, (kernel, name)
    if kernel not in VIEW_KERNELS:
        assert "out" in ours and ours["out"].default is None
    assert ("workspace" in ours) == (kernel in ("conv", "conv_transpose", "winograd_conv"))


# What each op's kernel launches (the CUDA sources and elementwise specs it must reach); the ops
# with none are CuPy array operations (copies, ufuncs, reductions) or the host fallback.
LAUNCHES = {
    "conv": {"_CU_IM2COL", "_CU_DEPTHWISE", "_gemm", "_epilogue_spec"},
    "conv_transpose": {"_CU_COL2IM", "_gemm"},
    "winograd_conv": {"_CU_WINOGRAD_INPUT", "_CU_WINOGRAD_OUTPUT", "_gemm"},
    "dense": {"_gemm", "_epilogue_spec"},
    "batch_norm": {"_EW_BATCH_NORM"}, "channel_affine": {"_EW_CHANNEL_AFFINE"}, "lrn": {"_EW_LRN"},
    "relu": {"_EW_RELU"}, "relu6": {"_EW_RELU6"}, "sigmoid": {"_EW_SIGMOID"}, "tanh": {"_EW_TANH"},
    "hardsigmoid": {"_EW_HARDSIGMOID"}, "hardswish": {"_EW_HARDSWISH"}, "silu": {"_EW_SILU"},
    "gelu": {"_EW_GELU"}, "gelu_tanh": {"_EW_GELU_TANH"},
    "leaky_relu": {"_EW_LEAKY_RELU"},
    "max_pool": {"_CU_MAX_POOL"}, "avg_pool": {"_CU_AVG_POOL"},
    "global_avg_pool": {"_CU_REDUCE_ROWS"}, "global_max_pool": {"_CU_REDUCE_ROWS"}, "reduce": {"_CU_REDUCE_ROWS"},
    "upsample": {"_EW_UPSAMPLE_NEAREST", "_EW_UPSAMPLE_BILINEAR"}, "pad": {"_EW_PAD"},
    "iou": {"_EW_BOX_IOU"}, "yolo_decode": {"_EW_YOLO_DECODE"}, "nms": {"_host_nms"},
    "instance_masks": {"_gemm", "_EW_INSTANCE_MASKS"},
    "softmax": set(), "depthwise_pool": set(), "add": set(), "mul": set(), "concat": set(), "crop": set(),
    "slice_axis": set(), "flatten": set(), "reshape": set(),
    "layer_norm": set(), "group_norm": set(), "layer_scale": set(), "clip": set(), "adaptive_pool": set(),
    "channel_shuffle": set(), "pixel_shuffle": set(), "sub": set(), "div": set(), "scalar_affine": set(),
    "prelu": set(), "permute": set(), "matmul": set(),
}


def test_launch_table_covers_every_kernel():
    assert set(LAUNCHES) == set(KERNELS)


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_sources_present_per_op(kernel):
    """Copying one op's kernel brings the CUDA code it launches (and the host NMS, renamed)."""
    text = "\n\n".join(cupy_codegen.kernel_sources([kernel]))
    compile(text, kernel, "exec")
    for name in LAUNCHES[kernel]:
        assert re.search(rf"^(def )?{name}\b", text, re.M), f"{kernel} lacks {name}"
    if kernel == "nms":
        assert "def _host_nms(" in text and "def _host_iou_matrix(" in text
        assert text.count("def nms(") == 1  # the CuPy wrapper; the NumPy kernel comes in renamed


def test_cuda_sources_are_self_contained():
    """NVRTC compiles them without headers; each RawKernel source defines the kernel it is launched as."""
    for name, source in {**emulator.cuda_sources(), "_CU_COMMON": cupy_kernels._CU_COMMON}.items():
        assert "#include" not in source, name
    for spec in emulator.elementwise_specs():
        assert "#include" not in spec[2] and "//" not in spec[2].strip().splitlines()[-1], spec[3]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_cuda_sources_compile_with_nvcc(tmp_path):
    """Every RawKernel source and every ElementwiseKernel operation (in a stand-in for CuPy's
    wrapper) compiles for sm_90 with warnings as errors: one PTX entry for each."""
    (tmp_path / "kernels.cu").write_text("template <typename T> struct cnnc_raw { T* p; __device__ T& operator[]"
                                         "(long long j) const { return p[j]; } };\n" + emulator.translation_unit())
    result = subprocess.run(["nvcc", "-ptx", "-arch=compute_90", "-Werror", "all-warnings", "-o",
                             str(tmp_path / "kernels.ptx"), str(tmp_path / "kernels.cu")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    entries = re.findall(r"\.entry (\w+)\(", (tmp_path / "kernels.ptx").read_text())
    assert len(entries) == len(emulator.cuda_sources()) + len(emulator.elementwise_specs())


def _launches():
    """Every RawKernel and ElementwiseKernel call in cupy_kernels: (function, kernel, spec or
    source, argument nodes)."""
    tree = ast.parse(inspect.getsource(cupy_kernels))
    found = []
    for function in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
        bound = {}  # local name -> _raw(...) call
        for node in ast.walk(function):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and \
                    getattr(node.value.func, "id", None) == "_raw":
                bound[node.targets[0].id] = node.value
        for node in ast.walk(function):
            if not isinstance(node, ast.Call):
                continue
            maker = node.func if isinstance(node.func, ast.Call) else bound.get(getattr(node.func, "id", None))
            if maker is None or getattr(maker.func, "id", None) not in ("_raw", "_elementwise"):
                continue
            if maker.func.id == "_raw":
                kernel, source = maker.args[0].value, getattr(cupy_kernels, maker.args[1].id)
                found.append((function.name, kernel, source, node.args[2].elts))
            elif getattr(maker.args[0], "id", "").startswith("_EW_"):  # fixed specs (not the epilogue's variants)
                spec = getattr(cupy_kernels, maker.args[0].id)
                found.append((function.name, spec[3], spec, node.args))
    return found


def test_every_launch_passes_the_declared_arguments_with_their_c_types():
    """Arity and scalar types of each launch against the kernel's declaration: np.int32 for int,
    np.float32 for float, np.float64 for double, an array for a pointer (a mismatch would only
    show on a GPU)."""
    launches = _launches()
    assert {k for _, k, _, _ in launches} >= {"cnnc_im2col", "cnnc_depthwise_conv", "cnnc_col2im", "cnnc_max_pool",
                                              "cnnc_avg_pool", "cnnc_reduce_rows", "cnnc_lrn", "cnnc_yolo_decode",
                                              "cnnc_instance_masks"}
    for function, kernel, declaration, args in launches:
        if isinstance(declaration, str):
            types_ = emulator.kernel_params(declaration, kernel)
        else:
            ins, outs = declaration[0], declaration[1]
            types_ = []
            for d in [*ins.split(","), *outs.split(",")]:
                words = d.split()
                array = words[0] == "raw" or words[-1] in emulator.ELEMENTWISE_ARRAYS or d in outs
                types_.append(emulator.C_TYPES[words[-2]] + ("*" if array else ""))
        assert len(args) == len(types_), f"{function} launches {kernel} with {len(args)} arguments, not {len(types_)}"
        for arg, ctype in zip(args, types_):
            scalar = isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute) and arg.func.attr in (
                "int32", "float32", "float64")
            if "*" in ctype:
                assert not scalar, f"{function} -> {kernel}: a scalar where a pointer is declared"
            else:
                numpy_type = {"int": "int32", "float": "float32", "double": "float64"}
                expected = numpy_type[ctype.replace("const", "").strip()]
                assert scalar and arg.func.attr == expected, f"{function} -> {kernel}: {ast.unparse(arg)} for {ctype}"


# ---- the buffer plan -----------------------------------------------------------------------


def _check_plan(graph, plan):
    order = list(plan.order)
    outputs = set(graph.info.outputs.values())
    memory = graph.info.memory_plan
    assert plan.in_place <= (memory.in_place if memory is not None and memory.matches(graph) else frozenset())
    for roots in plan.slots:  # a slot's roots take turns: each dies before the next is born
        for first, second in itertools.pairwise(roots):
            assert plan.death[first] < plan.birth[second], (first, second)
        assert all(r not in outputs or r == roots[-1] for r in roots)
    # Replay the statements: every value read is still in its slot, never overwritten.
    holder = {}
    for name in order:
        if graph.op(name) == Op.INPUT:
            continue
        for source in graph.inputs_of(name):
            root = plan.root[source]
            if root in plan.slot_of:
                assert holder[plan.slot_of[root]] == root, f"{name} reads {source} after its slot was reused"
        if plan.root[name] == name:
            holder[plan.slot_of[name]] = name
    for output in outputs:
        root = plan.root[output]
        assert graph.op(root) == Op.INPUT or holder[plan.slot_of[root]] == root


@pytest.mark.parametrize("name", ["tiny.cnn", *NETWORKS])
def test_buffer_plan_never_overwrites_a_live_value(name):
    for level in (0, 2):
        graph = _graph(name, level)
        _check_plan(graph, cupy_codegen.plan_buffers(graph))


def test_buffer_plan_reuses_memory():
    graph = _graph("resnet50.cnn")
    plan = cupy_codegen.plan_buffers(graph)
    planned, unplanned = plan.planned_bytes(1), plan.unplanned_bytes(1)
    assert len(plan.slots) == 3 and planned < 0.25 * unplanned  # 9.2 MiB instead of 43.2 MiB
    # the largest activation is 3.06 MiB ([64, 112, 112] and [256, 56, 56]): three of them
    assert planned == 3 * 64 * 112 * 112 * 4
    assert plan.planned_bytes(32) == 32 * planned


def test_allocate_views_slots_and_workspace(monkeypatch):
    graph = _graph("googlenet.cnn")
    plan = cupy_codegen.plan_buffers(graph)
    namespace = _load_generated(cupy_codegen.generate(graph), monkeypatch)
    for batch in (1, 3):
        out, workspace = namespace["allocate"](batch)
        assert set(out) == set(plan.slot_of)
        for name, array in out.items():
            assert array.shape == cupy_kernels.batch_shape(graph.shape(name), batch)
            assert array.dtype == np.float32 and array.flags.c_contiguous
        for roots in plan.slots:
            for a, b in itertools.combinations(roots, 2):
                assert np.shares_memory(out[a], out[b])  # the same slot
        first = [roots[0] for roots in plan.slots]
        for a, b in itertools.combinations(first, 2):
            assert not np.shares_memory(out[a], out[b])
        assert workspace.size == cupy_kernels.workspace_elements(plan.columns.values(), batch)
        assert workspace.size >= max(plan.columns.values())


# ---- chunking arithmetic ---------------------------------------------------------------------


def test_chunk_and_workspace_arithmetic():
    assert cupy_kernels.chunk_images(32, 100, 1000) == 10
    assert cupy_kernels.chunk_images(4, 100, 10_000) == 4  # the whole batch fits
    assert cupy_kernels.chunk_images(8, 5000, 1000) == 1  # one image is always allowed
    assert cupy_kernels.chunk_images(8, 0, 0) == 8
    assert cupy_kernels.workspace_elements([], 8) == 0
    assert cupy_kernels.workspace_elements([100, 250], 32, 4000) == 1000  # 10·100 or 4·250
    assert cupy_kernels.workspace_elements([5000], 8, 4000) == 5000
    assert cupy_kernels.batch_shape(("N", 3, 8, 8), 5) == (5, 3, 8, 8)


def test_vgg16_columns_are_chunked_at_batch_32():
    """VGG-16's largest workspace is block 1's second conv, a Winograd conv: 36·(64 + 64) tiles
    of 56·56 = 14.5 M elements (58 MB) per image, so at batch 32 under the 256 MiB default it runs
    in chunks of 4 images; the workspace is the largest chunk of any conv (block 2's first conv,
    36·(64 + 128)·28·28 per image, 12 images), within the limit."""
    graph = _graph("vgg16.cnn")
    plan = cupy_codegen.plan_buffers(graph)
    per_image = 36 * (64 + 64) * 56 * 56
    assert plan.columns["features.2"] == max(plan.columns.values()) == per_image
    assert plan.columns["features.0"] == 3 * 9 * 224 * 224  # 3 input channels: im2col, not Winograd
    capacity = cupy_kernels.WORKSPACE_LIMIT // 4
    assert cupy_kernels.chunk_images(32, per_image, capacity) == 4
    assert cupy_kernels.workspace_elements(plan.columns.values(), 32) == 12 * 36 * (64 + 128) * 28 * 28 <= capacity
    assert cupy_kernels.workspace_elements(plan.columns.values(), 1) == per_image
    # ResNet-50 at batch 32 fits whole: its largest columns are 64·9·56·56 per image
    columns = cupy_codegen.plan_buffers(_graph("resnet50.cnn")).columns.values()
    assert cupy_kernels.workspace_elements(columns, 32) == 32 * max(columns)


def test_conv_method_matches_the_numpy_dispatch():
    method = cupy_kernels.conv_method
    assert method(64, (64, 64, 1, 1), (1, 1), (0, 0, 0, 0), 1) == "gemm"
    assert method(64, (64, 32, 1, 1), (1, 1), (0, 0, 0, 0), 2) == "gemm"  # grouped 1x1
    assert method(64, (128, 64, 1, 1), (2, 2), (0, 0, 0, 0), 1) == "im2col"  # strided 1x1: im2col subsamples
    assert method(64, (64, 1, 3, 3), (1, 1), (1, 1, 1, 1), 64) == "depthwise"
    assert method(32, (64, 1, 3, 3), (2, 2), (1, 1, 1, 1), 32) == "depthwise"  # depth multiplier 2
    assert method(1, (8, 1, 3, 3), (1, 1), (0, 0, 0, 0), 1) == "im2col"  # one channel, one group
    assert cupy_kernels.conv_columns(("N", 3, 10, 10), (8, 3, 3, 3), (1, 1), (1, 1, 1, 1), 1, (10, 10)) == 27 * 100
    assert cupy_kernels.conv_transpose_columns(("N", 4, 5, 5), (4, 3, 2, 2), 2) == 2 * 3 * 4 * 25


# ---- the host fallback -------------------------------------------------------------------------


def test_host_nms_copy_equals_the_numpy_kernel(monkeypatch, rng):
    namespace = _load_generated(cupy_codegen.generate(_graph("yolo_tiny.cnn")), monkeypatch)
    boxes = rng.uniform(0, 50, (2, 40, 4)).astype(np.float32)
    boxes[..., 2:] += boxes[..., :2]
    scores = rng.uniform(0, 1, (2, 40, 3)).astype(np.float32)
    kwargs = {"iou_threshold": 0.4, "score_threshold": 0.3, "max_boxes": 20, "format": "corners"}
    np.testing.assert_array_equal(namespace["_host_nms"](boxes, scores, **kwargs),
                                  numpy_kernels.nms(boxes, scores, **kwargs))
    assert namespace["CUDA_GRAPH_BLOCKERS"] == ("nms1: nms runs on the host",)


def test_instance_segmentation_statements_and_host_nms_with_extras(monkeypatch, rng):
    """yolo_tiny_seg: yolo_decode passes extras= (only there: yolo_tiny's call has none), nms
    takes the coefficients as a third input on the host, instance_masks runs on the device."""
    source = cupy_codegen.generate(_graph("yolo_tiny_seg.cnn"))
    assert "classes=20, stride=(32, 32), extras=32, out=" in source
    assert "extras=" not in next(line for line in cupy_codegen.generate(_graph("yolo_tiny.cnn")).splitlines()
                                 if "= yolo_decode(" in line)
    assert re.search(r"nms1 = nms\(slice1, slice2, tanh1, iou_threshold=0\.45, .*, on the host$", source, re.M)
    assert re.search(r"instance_masks1 = instance_masks\(\w+, nms1, stride=\(4, 4\), out=out\['instance_masks1'\]\)"
                     r".*, slot \d+$", source, re.M)
    assert "_EW_INSTANCE_MASKS = " in source and "def _gemm(" in source
    namespace = _load_generated(source, monkeypatch)
    assert namespace["CUDA_GRAPH_BLOCKERS"] == ("nms1: nms runs on the host",)
    boxes = rng.uniform(0, 50, (2, 40, 4)).astype(np.float32)
    boxes[..., 2:] += boxes[..., :2]
    scores = rng.uniform(0, 1, (2, 40, 3)).astype(np.float32)
    extras = rng.standard_normal((2, 40, 5)).astype(np.float32)
    kwargs = {"iou_threshold": 0.4, "score_threshold": 0.7, "max_boxes": 50, "format": "corners"}  # some padding
    got = namespace["_host_nms"](boxes, scores, extras, **kwargs)
    np.testing.assert_array_equal(got, numpy_kernels.nms(boxes, scores, extras, **kwargs))
    assert got.shape == (2, 50, 11) and (got[..., 4] < 0).any()


# ---- errors without CuPy or a GPU ---------------------------------------------------------------


def test_no_cupy_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    with pytest.raises(CnncError, match=r"^target 'cupy': error: .*CuPy is not installed.*pip install cupy-cuda12x"):
        cnnc.compile(TINY, target="cupy")
    net = cnnc.compile(TINY)
    with pytest.raises(CnncError, match=r"^gpu: error: the GPU backend needs CuPy and an NVIDIA GPU"):
        net.to("gpu")
    assert net.device == "cpu" and net.source.startswith('"""Network compiled by cnnc')
    assert net(np.zeros((1, 1, 12, 12), np.float32)).shape == (1, 10)  # still runs on the CPU


def test_no_gpu_is_one_clear_error(monkeypatch):
    fake = _fake_cupy()

    def no_device():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_device))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(CnncError) as info:
        cnnc.compile(TINY).to("gpu")
    assert str(info.value) == ("gpu: error: the GPU backend needs CuPy and an NVIDIA GPU: CuPy finds no usable CUDA "
                               "GPU (cudaErrorNoDevice: no CUDA-capable device is detected)")
    fake.cuda.runtime.getDeviceCount = lambda: 0
    with pytest.raises(CnncError, match="finds no CUDA GPU"):
        cnnc.compile(TINY).to("cuda")


def test_to_arguments_are_checked():
    net = cnnc.compile(TINY)
    with pytest.raises(CnncError, match="unknown device 'tpu'"):
        net.to("tpu")
    with pytest.raises(CnncError, match="only apply on the GPU"):
        net.to("cpu", tf32=True)
    assert net.to("cpu") is net and net.device == "cpu"


_BLOCK_CUPY = ("import sys\n"
               "class Block:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] == 'cupy':\n"
               "            raise ImportError('No module named cupy')\n"
               "sys.meta_path.insert(0, Block())\n"
               "from cnnc.cli import main\n"
               "sys.exit(main(sys.argv[1:]))\n")


def test_run_gpu_without_cupy_prints_one_line_and_fails():
    result = subprocess.run([sys.executable, "-c", _BLOCK_CUPY, "run", str(TINY), "--gpu"], capture_output=True,
                            text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("--gpu: error: the GPU backend needs CuPy and an NVIDIA GPU: CuPy is not installed")
    flags = subprocess.run([sys.executable, "-c", _BLOCK_CUPY, "run", str(TINY), "--tf32"], capture_output=True,
                           text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert flags.returncode == 1 and flags.stderr == "--tf32: error: --tf32 applies to --gpu\n"
