"""One optimizer step against PyTorch's: ResNet-18 with SGD, a small network with Adam and AdamW,
and the learning-rate schedules against torch.optim.lr_scheduler.

The torch side is an nn.Module twin (tests/torch_models.py) trained by torch.optim in float32,
as a PyTorch user would; cnnc's side is the generated training step and cnnc's optimizer. After
one step the weights and the batch-norm running statistics must agree to float32 accuracy
(stated per test; run with -s for the measured differences).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from torch_models import LeNet5, ResNet18, randomize_, torch_to_cnnc

from cnnc.training.optim import Optimizer, Schedule
from cnnc.training.trainer import TrainConfig, Trainer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def compare_models(trainer: Trainer, model, atol_ratio: float) -> float:
    """max over parameters of max |cnnc − torch| / max |torch|; asserts each ≤ atol_ratio."""
    after = torch_to_cnnc(model)
    worst = 0.0
    for name, want in after.items():
        got = trainer.params[name]
        scale = max(np.abs(want).max(), 1e-12)
        ratio = float(np.abs(got - want).max() / scale)
        worst = max(worst, ratio)
        assert ratio <= atol_ratio, f"{name}: {ratio:.2e}"
    return worst


@pytest.mark.slow
def test_resnet18_sgd_step_equals_torch():
    torch.manual_seed(0)
    model = randomize_(ResNet18(), seed=1).train()
    trainer = Trainer(EXAMPLES / "resnet18.cnn",
                      TrainConfig(lr=0.002, momentum=0.9, weight_decay=1e-4, nesterov=True),
                      params=torch_to_cnnc(model), input_shapes={"image": (8, 3, 64, 64)})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3, 64, 64)).astype(np.float32)
    labels = rng.integers(0, 1000, size=8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.002, momentum=0.9, weight_decay=1e-4, nesterov=True)
    worst = []
    for step in range(2):  # the second step uses the momentum buffers
        loss = trainer.step(x, labels)
        optimizer.zero_grad()
        expected = F.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(labels))
        expected.backward()
        optimizer.step()
        # The first loss is the same computation; the second follows weights that two float32
        # implementations updated (their gradients differ by ~1e-5 of their scale in this
        # network), through a loss that fell from 7 to 2 in one step.
        assert abs(loss - expected.item()) <= (1e-4 if step == 0 else 2e-3) * abs(expected.item()), \
            (step, loss, expected.item())
        worst.append(compare_models(trainer, model, 1e-3))
    print(f"ResNet-18 SGD step: worst parameter difference {worst[0]:.2e} of its scale after one step, "
          f"{worst[1]:.2e} after two")


@pytest.mark.parametrize("kind", ["adam", "adamw", "sgd"])
def test_lenet_optimizer_steps_equal_torch(kind):
    torch.manual_seed(0)
    model = LeNet5().train()  # torch's default initialization: the tanh units are not saturated
    params = torch_to_cnnc(model)
    trainer = Trainer(EXAMPLES / "lenet5.cnn", TrainConfig(optimizer=kind, lr=0.01, weight_decay=0.05,
                                                            momentum=0.9), params=params)
    # eps 1e-4, not 1e-8: Adam's first updates are lr·g/(|g| + eps), so a gradient below float32
    # rounding noise (a saturated tanh's) would move its weight by the noise's sign in either.
    trainer.optimizer.eps = 1e-4
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 1, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, size=8)
    torch_optimizer = {"adam": lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.05, eps=1e-4),
                       "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.05, eps=1e-4),
                       "sgd": lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, weight_decay=0.05)}[kind](
        model.parameters())
    for _ in range(3):
        trainer.step(x, labels)
        torch_optimizer.zero_grad()
        loss = F.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(labels))  # the twin returns logits
        loss.backward()
        torch_optimizer.step()
    worst = compare_models(trainer, model, 1e-4)
    print(f"LeNet-5, 3 {kind} steps: worst parameter difference {worst:.2e} of its scale")


def test_schedules_equal_torch():
    steps = 20
    for kind, make in [("cosine", lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, steps)),
                       ("step", lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5))]:
        schedule = Schedule(kind, total_steps=steps, steps_per_epoch=1, step_size=3, gamma=0.5)
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        scheduler = make(optimizer)
        for step in range(steps):
            assert schedule.factor(step) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-9, abs=1e-12), \
                (kind, step)
            optimizer.step()
            scheduler.step()
    warm = Schedule("constant", total_steps=10, warmup=4)
    assert [warm.factor(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_optimizer_state_round_trip():
    a = Optimizer("adam", lr=0.1)
    p = {"w": np.ones(3, np.float32)}
    a.step(p, {"w": np.array([1.0, -2.0, 3.0], np.float32)}, 0.1)
    b = Optimizer("adam", lr=0.1)
    b.load_state(a.state_arrays())
    q = {"w": p["w"].copy()}
    a.step(p, {"w": np.array([0.5, 0.5, 0.5], np.float32)}, 0.1)
    b.step(q, {"w": np.array([0.5, 0.5, 0.5], np.float32)}, 0.1)
    np.testing.assert_array_equal(p["w"], q["w"])
