"""Optimizers (SGD with momentum, Adam, AdamW) and learning-rate schedules, with PyTorch's formulas.

An optimizer updates float32 parameter arrays in place from their gradients and keeps its own
state (momentum buffers, moment estimates, the step count) as named arrays, so a checkpoint
saves it beside the weights and `--resume` continues exactly where a run stopped. The update
rules are torch.optim's (SGD's dampening-free momentum and Nesterov form; Adam's bias
correction; AdamW's decoupled weight decay), so one step here equals one step there
(tests/test_train_step.py checks it).

A schedule maps the step number (0-based, counted over the whole run) to a factor of the base
learning rate: `constant`, `step` (×gamma every `step_size` epochs), `cosine` (from 1 down to 0
over the run), each optionally after a linear warm-up from 0 over `warmup` steps.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .autodiff import CnncTrainError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")


@dataclass
class Optimizer:
    """One of OPTIMIZERS with its settings; `step` applies one update."""

    kind: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9  # SGD
    nesterov: bool = False  # SGD
    weight_decay: float = 0.0  # SGD and Adam: L2 added to the gradient; AdamW: decoupled
    betas: tuple[float, float] = (0.9, 0.999)  # Adam, AdamW
    eps: float = 1e-8  # Adam, AdamW

    def __post_init__(self) -> None:
        if self.kind not in OPTIMIZERS:
            raise CnncTrainError(f"unknown optimizer '{self.kind}' (known: {', '.join(OPTIMIZERS)})",
                                 where="--optimizer")
        for name in ("lr", "momentum", "weight_decay", "eps"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0) or (name == "lr" and value == 0):
                raise CnncTrainError(f"{name} must be a {'positive' if name == 'lr' else 'non-negative'} "
                                     f"finite number, not {value}", where=f"--{name.replace('_', '-')}")
        self.state: dict[str, np.ndarray] = {}
        self.steps = 0

    def step(self, params: dict[str, np.ndarray], grads: Mapping[str, np.ndarray], lr: float) -> None:
        """Update `params[name]` in place for every gradient in `grads`, at learning rate `lr`."""
        self.steps += 1
        for name, grad in grads.items():
            p = params[name]
            if self.kind == "sgd":
                self._sgd(name, p, grad, lr)
            else:
                self._adam(name, p, grad, lr)

    def _sgd(self, name: str, p: np.ndarray, grad: np.ndarray, lr: float) -> None:
        g = grad + self.weight_decay * p if self.weight_decay else grad
        if self.momentum:
            buf = self.state.get(f"{name}/momentum")
            if buf is None:  # torch.optim.SGD: the first buffer is the gradient itself
                buf = self.state[f"{name}/momentum"] = np.array(g, dtype=np.float32)
            else:
                buf *= self.momentum
                buf += g
            g = g + self.momentum * buf if self.nesterov else buf
        p -= np.float32(lr) * g

    def _adam(self, name: str, p: np.ndarray, grad: np.ndarray, lr: float) -> None:
        beta1, beta2 = self.betas
        if self.kind == "adamw" and self.weight_decay:
            p *= np.float32(1 - lr * self.weight_decay)
            g = grad
        else:
            g = grad + self.weight_decay * p if self.weight_decay else grad
        m = self.state.setdefault(f"{name}/exp_avg", np.zeros_like(p))
        v = self.state.setdefault(f"{name}/exp_avg_sq", np.zeros_like(p))
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * np.square(g)
        correction1 = 1 - beta1 ** self.steps
        correction2 = 1 - beta2 ** self.steps
        denominator = np.sqrt(v) / np.float32(math.sqrt(correction2)) + np.float32(self.eps)
        p -= np.float32(lr / correction1) * (m / denominator)

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The state as named arrays (for a checkpoint), the step count included."""
        return {**self.state, "steps": np.array(self.steps)}

    def load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.state = {k: np.array(v, dtype=np.float32) for k, v in arrays.items() if k != "steps"}
        self.steps = int(arrays.get("steps", 0))


@dataclass(frozen=True)
class Schedule:
    """The learning-rate factor at each step (see the module docstring)."""

    kind: str = "constant"
    total_steps: int = 1
    steps_per_epoch: int = 1
    warmup: int = 0  # steps of linear warm-up
    step_size: int = 1  # `step`: epochs between decays
    gamma: float = 0.1  # `step`: the decay factor

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise CnncTrainError(f"unknown schedule '{self.kind}' (known: {', '.join(SCHEDULES)})",
                                 where="--schedule")

    def factor(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.kind == "step":
            return float(self.gamma ** ((step // self.steps_per_epoch) // max(1, self.step_size)))
        if self.kind == "cosine":
            span = max(1, self.total_steps - self.warmup)
            return 0.5 * (1 + math.cos(math.pi * min(step - self.warmup, span) / span))
        return 1.0
