"""Training-step benchmark: cnnc's generated training step beside PyTorch eager, same CPU, same net.

    python benchmarks/bench_train.py                       # LeNet-5 (batch 64), ResNet-18 at 64x64 (32)
    python benchmarks/bench_train.py --threads 2 --repeat 10

One step = forward in training mode, the loss (softmax cross-entropy), every gradient and an SGD
update with momentum, on a fixed random batch. cnnc runs `Trainer.step` (the generated
`train_step` plus its optimizer); PyTorch runs the twin nn.Module from tests/torch_models.py
with the same weights (`model.train()`, `F.cross_entropy`, `loss.backward()`,
`torch.optim.SGD.step()`), float32, with the same number of threads. Warm-up steps are not
timed; the table gives the median step time and images/s, and the ratio cnnc/PyTorch.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_cpu import _timed  # noqa: E402  (the sibling script, found by the path above)

MODELS = {"lenet5": ("lenet5.cnn", None, 64), "resnet18": ("resnet18.cnn", (3, 64, 64), 32)}


def _median_step(step, warmup: int, repeat: int) -> float:
    """Median seconds of `repeat` timed steps after `warmup` untimed ones (bench_cpu's timer)."""
    return statistics.median(_timed(step, repeat, warmup)) / 1000


def bench(name: str, warmup: int, repeat: int) -> tuple[int, float, float]:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch_models import LeNet5, ResNet18, torch_to_cnnc

    from cnnc.training.trainer import TrainConfig, Trainer

    file, shape, batch = MODELS[name]
    torch.manual_seed(0)
    model = (LeNet5() if name == "lenet5" else ResNet18()).train()
    input_name = "digit" if name == "lenet5" else "image"
    shape = shape or (1, 32, 32)
    trainer = Trainer(ROOT / "examples" / file, TrainConfig(lr=0.01, momentum=0.9),
                      params=torch_to_cnnc(model), input_shapes={input_name: (batch, *shape)})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    labels = rng.integers(0, 10, size=batch)
    cnnc_time = _median_step(lambda: trainer.step(x, labels), warmup, repeat)

    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    tx, ty = torch.from_numpy(x), torch.from_numpy(labels)

    def torch_step() -> None:
        optimizer.zero_grad()
        F.cross_entropy(model(tx), ty).backward()
        optimizer.step()

    return batch, cnnc_time, _median_step(torch_step, warmup, repeat)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, str(args.threads))
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    print(f"{cpu}; {args.threads} threads; numpy {np.__version__}, torch {torch.__version__}; "
          f"median of {args.repeat} steps after {args.warmup} warm-up steps")
    print(f"{'model':<22} {'batch':>5} {'cnnc ms':>9} {'torch ms':>9} {'cnnc img/s':>11} {'torch img/s':>12} "
          f"{'cnnc/torch':>10}")
    for name in args.models:
        batch, ours, theirs = bench(name, args.warmup, args.repeat)
        label = name if name == "lenet5" else f"{name} (64x64)"
        print(f"{label:<22} {batch:>5} {1e3 * ours:>9.1f} {1e3 * theirs:>9.1f} {batch / ours:>11.0f} "
              f"{batch / theirs:>12.0f} {ours / theirs:>10.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
