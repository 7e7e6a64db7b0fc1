"""GPU benchmark: cnnc's CuPy backend beside PyTorch eager with cuDNN, same GPU, same process.

ResNet-50 and VGG-16 (the examples and their PyTorch twins in tests/torch_models.py, with the same
weights), float32, batch 1 and 32. For each: cnnc eager launches, cnnc replaying a CUDA graph,
PyTorch eager (cuDNN, cudnn.benchmark on), PyTorch replaying a CUDA graph. TF32 is off for all
(torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False) unless --tf32.
A call is timed from a device-resident input to a device-resident output, synchronized: cnnc
with outputs="cupy" and a CuPy input, PyTorch with CUDA tensors. Prints a Markdown table of
median (min–max) milliseconds, the ratio to PyTorch eager, and each cnnc output's largest
difference from PyTorch's relative to PyTorch's largest value.

    python benchmarks/bench_gpu.py --models resnet50 vgg16 --batch 1 32 --repeat 20
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def _timed(fn, sync, repeat: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1000)
    return times


def _fmt(times) -> str:
    if not times:
        return "—"
    return f"{statistics.median(times):.2f} ({min(times):.2f}–{max(times):.2f})"


def _torch_graph(torch, model, x):
    """A CUDA-graph replay of `model(x)` with a static input (PyTorch's documented recipe)."""
    static = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        for _ in range(3):
            model(static)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode():
        output = model(static)

    def run():
        static.copy_(x)
        graph.replay()
        return output

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet50", "vgg16"])
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--tf32", action="store_true", help="TF32 for cnnc's GEMMs and PyTorch's convs/matmuls")
    args = parser.parse_args()

    import cupy as cp
    import numpy as np
    import torch
    from torch_models import build_torch_model, load_cnnc_weights_into_torch

    import cnnc
    from cnnc.runtime.gpu import device_name

    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    device = torch.device("cuda")

    def sync():
        cp.cuda.Device().synchronize()
        torch.cuda.synchronize()

    rows = []
    for model_name in args.models:
        net = cnnc.compile(ROOT / "examples" / f"{model_name}.cnn")
        torch_model = build_torch_model(model_name, net)
        load_cnnc_weights_into_torch(net, torch_model)
        torch_model = torch_model.eval().to(device)
        for batch in args.batch:
            x = np.random.default_rng(0).standard_normal((batch, 3, *net.input_shapes["image"][2:]), np.float32)
            xt = torch.from_numpy(x).to(device)
            xc = cp.asarray(x)
            with torch.inference_mode():
                reference = torch_model(xt).float().cpu().numpy()
            scale = float(np.abs(reference).max())
            row = {"model": model_name, "batch": batch}
            for label, graph in (("cnnc eager", False), ("cnnc graph", True)):
                net.to("gpu", cuda_graph=graph, tf32=args.tf32, outputs="cupy")
                first = net(xc)  # compiles kernels; with graph=True also captures
                row[label] = _timed(lambda n=net, xc=xc: n(xc), sync, args.repeat, args.warmup)
                row[f"{label} diff"] = float(np.abs(cp.asnumpy(first) - reference).max()) / scale
                row[f"{label} status"] = "; ".join(net._gpu.status.values())
            with torch.inference_mode():
                row["torch eager"] = _timed(lambda m=torch_model, xt=xt: m(xt), sync, args.repeat, args.warmup)
            try:
                replay = _torch_graph(torch, torch_model, xt)
                row["torch graph"] = _timed(replay, sync, args.repeat, args.warmup)
            except Exception as error:  # noqa: BLE001 - report, keep the other columns
                row["torch graph"] = None
                row["torch graph status"] = f"failed: {type(error).__name__}: {error}"
            net.to("cpu")
            rows.append(row)
            torch.cuda.empty_cache()
            cp.get_default_memory_pool().free_all_blocks()

    print(f"device: {device_name()}; cupy {cp.__version__}, torch {torch.__version__} "
          f"(cuDNN {torch.backends.cudnn.version()}); float32, TF32 {'on' if args.tf32 else 'off'}")
    print(f"median (min–max) of {args.repeat} calls after {args.warmup} warm-ups, ms, device-resident input and "
          "output, synchronized")
    print()
    print("| model | batch | cnnc eager | cnnc CUDA graph | PyTorch eager (cuDNN) | PyTorch CUDA graph | "
          "cnnc graph / PyTorch eager | cnnc max diff / max |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        ratio = statistics.median(row["cnnc graph"]) / statistics.median(row["torch eager"])
        print(f"| {row['model']} | {row['batch']} | {_fmt(row['cnnc eager'])} | {_fmt(row['cnnc graph'])} | "
              f"{_fmt(row['torch eager'])} | {_fmt(row['torch graph'])} | {ratio:.2f} | "
              f"{max(row['cnnc eager diff'], row['cnnc graph diff']):.1e} |")
    print()
    for row in rows:
        notes = [f"cnnc graph: {row['cnnc graph status']}"]
        if "torch graph status" in row:
            notes.append(f"torch graph: {row['torch graph status']}")
        print(f"{row['model']} batch {row['batch']}: " + "; ".join(notes))


if __name__ == "__main__":
    main()
