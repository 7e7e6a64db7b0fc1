"""CPU benchmark: cnnc's generated NumPy code beside PyTorch (and ONNX Runtime when installed).

Same weights, same input, one process, threads set equally for every peer. Prints a table with
median (min–max) milliseconds, ratios, and cnnc's max abs difference from PyTorch.

    python benchmarks/bench_cpu.py --models resnet18 resnet50 vgg16 --batch 1 8 --threads 2
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def _timed(fn, repeat: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def _fmt(times: list[float] | None) -> str:
    if not times:
        return "—"
    return f"{statistics.median(times):.1f} ({min(times):.0f}–{max(times):.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50", "vgg16"])
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import numpy as np
    import torch
    from torch_models import build_torch_model, load_cnnc_weights_into_torch

    import cnnc

    torch.set_num_threads(args.threads)
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    rows = []
    for model in args.models:
        start = time.perf_counter()
        net = cnnc.compile(ROOT / "examples" / f"{model}.cnn")
        compile_ms = (time.perf_counter() - start) * 1000
        plain = cnnc.compile(ROOT / "examples" / f"{model}.cnn", optimize=0, params=net.params)
        torch_model = build_torch_model(model, net)
        load_cnnc_weights_into_torch(net, torch_model)
        torch_model.eval()
        session = None
        if ort is not None:
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            options.inter_op_num_threads = 1
            model_bytes = cnnc.export_onnx(net).SerializeToString()
            session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        for batch in args.batch:
            x = np.random.default_rng(0).standard_normal((batch, 3, *net.input_shapes["image"][2:]), np.float32)
            xt = torch.from_numpy(x)
            ours = _timed(lambda net=net, x=x: net(x), args.repeat, args.warmup)
            unoptimized = _timed(lambda net=plain, x=x: net(x), args.repeat, args.warmup)
            with torch.inference_mode():
                theirs = _timed(lambda m=torch_model, xt=xt: m(xt), args.repeat, args.warmup)
                reference = torch_model(xt).numpy()
            onnx = None
            if session is not None:
                feed = {session.get_inputs()[0].name: x}
                onnx = _timed(lambda s=session, f=feed: s.run(None, f), args.repeat, args.warmup)
            diff = float(np.abs(net(x) - reference).max())
            rows.append((model, batch, ours, unoptimized, theirs, onnx, diff, compile_ms))
    print(f"threads={args.threads}, median (min–max) of {args.repeat} runs after {args.warmup} warm-ups, ms")
    print("| model | batch | cnnc -O2 | cnnc -O0 | PyTorch eager | ONNX Runtime | cnnc / PyTorch | cnnc / ORT | "
          "max abs diff vs PyTorch | compile ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model, batch, ours, unoptimized, theirs, onnx, diff, compile_ms in rows:
        ratio = statistics.median(ours) / statistics.median(theirs)
        ort_ratio = f"{statistics.median(ours) / statistics.median(onnx):.2f}" if onnx else "—"
        print(f"| {model} | {batch} | {_fmt(ours)} | {_fmt(unoptimized)} | {_fmt(theirs)} | {_fmt(onnx)} | "
              f"{ratio:.2f} | {ort_ratio} | {diff:.2e} | {compile_ms:.0f} |")
    if ort is None:
        print("(onnxruntime not installed: its column is empty)")


if __name__ == "__main__":
    main()
