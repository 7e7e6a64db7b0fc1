"""CPU benchmark: cnnc's generated NumPy code beside PyTorch, ONNX Runtime and OpenVINO.

Same weights, same input, one process, threads set equally for every peer. Prints a header
(CPU, library versions, threads) and a table with median (min–max) milliseconds, the ratios,
cnnc's max abs difference from PyTorch (and the peers'), cnnc's peak memory in one call
(tracemalloc, which NumPy reports its buffers to; measured in a separate, untimed call) beside
the memory plan's held activations, and compile time. ONNX Runtime and OpenVINO run the model
`cnnc.export_onnx` writes; their columns are empty ("—") when they are not installed.

    pip install -e '.[bench]'
    python benchmarks/bench_cpu.py --models resnet18 resnet50 vgg16 mobilenet_v2 googlenet_torchvision \\
        --batch 1 8 --threads 2

`--with-O0` adds a cnnc -O0 column (doubles the run time); `--profile` prints, after the table,
the per-node-kind profile of benchmarks/profile_nodes.py for every model and batch.
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from profile_nodes import profile_net, report  # the sibling script, found by the path above

DEFAULT_MODELS = ["resnet18", "resnet50", "vgg16", "mobilenet_v2", "googlenet_torchvision"]
MIB = 2**20


@dataclass
class Row:
    model: str
    batch: int
    ours: list[float]
    unoptimized: list[float] | None
    torch: list[float]
    ort: list[float] | None
    openvino: list[float] | None
    diff: float
    peer_diffs: tuple[float | None, float | None]
    peak_mib: float
    planned_mib: float | None
    compile_ms: float


def _timed(fn: Callable[[], object], repeat: int, warmup: int) -> list[float]:
    """Milliseconds of `repeat` calls of `fn` after `warmup` untimed ones (the sibling scripts'
    A/B runs, which alternate forms of one engine themselves)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def _timed_rounds(engines: dict[str, Callable[[], object]], rounds: int, warmup: int, pause: float,
                  block: int = 3) -> dict[str, list[float]]:
    """Milliseconds of each engine's calls, timed in `rounds` rounds: in each round every engine,
    in an order that rotates from round to round, gets `pause` seconds, one untimed call and then
    `block` timed calls back to back (each engine is timed hot, as when it runs alone).

    A shared machine has slow spells lasting seconds (the same network 14.5 ms, then 19 ms a
    minute later); timing the engines one after another put a spell on one engine's column,
    while rounds spread it over all of them. The pause and the untimed call let the engine timed
    before park its worker threads first: GoogLeNet in cnnc took 15 ms alone, 30 ms right after
    an ONNX Runtime call and 28 ms after PyTorch's, whose threads spin on after a call; 16 ms
    with 0.05 s between them."""
    for fn in engines.values():
        for _ in range(warmup):
            fn()
    names = list(engines)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            time.sleep(pause)
            engines[name]()
            for _ in range(block):
                start = time.perf_counter()
                engines[name]()
                times[name].append((time.perf_counter() - start) * 1000)
    return times


def _fmt(times: list[float] | None) -> str:
    if not times:
        return "—"
    return f"{statistics.median(times):.1f} ({min(times):.0f}–{max(times):.0f})"


def _ratio(ours: list[float], theirs: list[float] | None) -> str:
    return f"{statistics.median(ours) / statistics.median(theirs):.2f}" if theirs else "—"


def _peak_mib(fn: Callable[[], object]) -> float:
    """Peak MiB traced by tracemalloc (Python objects and NumPy buffers) during one call of `fn`,
    above what was traced when it started; the result is counted, the caller's inputs are not."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del result
    return (peak - base) / MIB


def _planned_mib(net: Any, batch: int) -> float | None:
    """The memory plan's peak of held activations (float32, no kernel workspace) at `batch`, as
    `cnnc summary` reports it; None when the graph has no current plan (-O0)."""
    from cnnc.ir.cost import peak_with_plan
    from cnnc.passes.memory import current_plan

    plan = current_plan(net.graph)
    return None if plan is None else peak_with_plan(net.graph, plan) * batch / MIB


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas(np: Any) -> str:
    """The BLAS NumPy was built with, from `numpy.show_config(mode="dicts")` (NumPy ≥ 1.26)."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas['name']} {blas.get('version', '')}".strip()
    except Exception:  # older NumPy: no dict mode; the header only loses a detail
        return "BLAS unknown"


def _header(np: Any, torch: Any, ort: Any, ov: Any, threads: int) -> str:
    def version(module: Any) -> str:
        return module.__version__.split("-")[0] if module is not None else "not installed"

    from cnnc.kernels import compiled
    from cnnc.runtime.bench import blas_note

    loops = compiled.loops()
    fast = f"compiled loops: numba {loops.numba.__version__}" if loops is not None else "compiled loops: off"
    return (f"CPU: {_cpu_model()} ({os.cpu_count()} logical CPUs); "
            f"numpy {np.__version__} ({_blas(np)}{blas_note()}); {fast}; "
            f"torch {torch.__version__}; onnxruntime {version(ort)}; openvino {version(ov)}; threads={threads}")


def _inference(torch: Any, model: Any, x: Any) -> Any:
    with torch.inference_mode():
        return model(x)


def _torch_twin(name: str, net: Any) -> Any:
    """The PyTorch twin of examples/<name>.cnn with cnnc's weights: tests/torch_models.py's
    build_torch_model, else its torchvision-named twins (mobilenet_v2, googlenet_torchvision, ...)."""
    from torch_models import TORCHVISION_TWINS, build_torch_model, load_cnnc_weights_into_torch

    try:
        model = build_torch_model(name, net)
    except KeyError:
        if name not in TORCHVISION_TWINS:
            raise SystemExit(f"no PyTorch twin for {name!r} in tests/torch_models.py") from None
        model = TORCHVISION_TWINS[name][0]()
    load_cnnc_weights_into_torch(net, model)
    return model.eval()


def _openvino_request(ov: Any, core: Any, model_bytes: bytes, shape: tuple[int, ...], threads: int) -> Any:
    """An infer request for the exported ONNX model, its input reshaped to `shape`, compiled for
    the CPU with `threads` threads, f32 precision (no bf16/f16 down-conversion) and the latency hint."""
    model = core.read_model(model_bytes)
    model.reshape({model.inputs[0].get_any_name(): ov.PartialShape(list(shape))})
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    return core.compile_model(model, "CPU", config).create_infer_request()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="examples/<model>.cnn names")
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5, help="rounds; each times every engine 3 times")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--pause", type=float, default=0.1,
                        help="seconds before each engine's turn in a round (_timed_rounds)")
    parser.add_argument("--with-O0", dest="with_o0", action="store_true", help="also time cnnc -O0 (twice the time)")
    parser.add_argument("--profile", action="store_true", help="per-node-kind profile of each model and batch")
    parser.add_argument("--profile-top", type=int, default=0, help="slowest nodes listed with --profile")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy loads BLAS

    import numpy as np
    import torch

    import cnnc

    torch.set_num_threads(args.threads)
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    try:
        import openvino as ov
    except ImportError:
        ov = None
    core = ov.Core() if ov is not None else None
    print(_header(np, torch, ort, ov, args.threads), flush=True)

    rows: list[Row] = []
    profiles: list[str] = []
    for model in args.models:
        path = ROOT / "examples" / f"{model}.cnn"
        start = time.perf_counter()
        net = cnnc.compile(path)
        compile_ms = (time.perf_counter() - start) * 1000
        net.runtime_params()  # folded BN etc. are derived on first use: untimed, like the peers' set-up
        plain = cnnc.compile(path, optimize=0, params=net.params) if args.with_o0 else None
        if plain is not None:
            plain.runtime_params()
        torch_model = _torch_twin(model, net)
        model_bytes = cnnc.export_onnx(net).SerializeToString() if ort is not None or ov is not None else b""
        session = None
        if ort is not None:
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        for batch in args.batch:
            x = np.random.default_rng(0).standard_normal((batch, *net.input_shapes[net.input_names[0]][1:]), np.float32)
            xt = torch.from_numpy(x)
            with torch.inference_mode():
                reference = torch_model(xt).numpy()
            engines: dict[str, Callable[[], object]] = {"ours": lambda net=net, x=x: net(x)}
            if plain is not None:
                engines["unoptimized"] = lambda net=plain, x=x: net(x)
            engines["torch"] = lambda m=torch_model, xt=xt: _inference(torch, m, xt)
            ort_diff = ov_diff = None
            if session is not None:
                feed = {session.get_inputs()[0].name: x}
                engines["ort"] = lambda s=session, f=feed: s.run(None, f)
                ort_diff = float(np.abs(session.run(None, feed)[0] - reference).max())
            request = None
            if core is not None:
                request = _openvino_request(ov, core, model_bytes, x.shape, args.threads)
                engines["openvino"] = lambda r=request, x=x: r.infer({0: x})
                ov_diff = float(np.abs(request.infer({0: x})[0] - reference).max())
            times = _timed_rounds(engines, args.repeat, args.warmup, args.pause)
            del request, engines
            ours, unoptimized, theirs = times["ours"], times.get("unoptimized"), times["torch"]
            onnx, vino = times.get("ort"), times.get("openvino")
            diff = float(np.abs(net(x) - reference).max())
            peak = _peak_mib(lambda net=net, x=x: net(x))
            rows.append(Row(model, batch, ours, unoptimized, theirs, onnx, vino, diff, (ort_diff, ov_diff), peak,
                            _planned_mib(net, batch), compile_ms))
            if args.profile:
                title = f"{model}, batch {batch}, -O2, {args.threads} threads"
                profiles.append(report(profile_net(net, batch, args.repeat, seed=0), title, args.repeat,
                                       args.profile_top))
        del session, torch_model, net, plain

    print(f"median (min–max) of {3 * args.repeat} runs after {args.warmup} warm-ups, ms: {args.repeat} rounds, "
          f"each engine timed 3 times a round after a {args.pause:g} s pause and an untimed call; fp32; "
          f"peak = tracemalloc in one untimed cnnc call, planned = memory plan's held activations")
    o0 = ["cnnc -O0"] if args.with_o0 else []
    columns = ["model", "batch", "cnnc -O2", *o0, "PyTorch eager", "ONNX Runtime", "OpenVINO", "cnnc / PyTorch",
               "cnnc / ORT", "cnnc / OpenVINO", "max abs diff vs PyTorch", "ORT / OpenVINO diff",
               "cnnc peak MiB", "planned MiB", "compile ms"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))

    def sci(value: float | None) -> str:
        return "—" if value is None else f"{value:.1e}"

    for row in rows:
        planned = "—" if row.planned_mib is None else f"{row.planned_mib:.1f}"
        cells = [row.model, str(row.batch), _fmt(row.ours), *([_fmt(row.unoptimized)] if args.with_o0 else []),
                 _fmt(row.torch), _fmt(row.ort), _fmt(row.openvino), _ratio(row.ours, row.torch),
                 _ratio(row.ours, row.ort), _ratio(row.ours, row.openvino), f"{row.diff:.2e}",
                 f"{sci(row.peer_diffs[0])} / {sci(row.peer_diffs[1])}", f"{row.peak_mib:.1f}", planned,
                 f"{row.compile_ms:.0f}"]
        print("| " + " | ".join(cells) + " |")
    if ort is None:
        print("(onnxruntime not installed: its column is empty)")
    if ov is None:
        print("(openvino not installed: its column is empty)")
    for text in profiles:
        print()
        print(text)


if __name__ == "__main__":
    main()
