"""The training loop: epochs of generated training steps, validation, checkpoints, resume.

`train(source, data, config)` parses the `.cnn` program, differentiates it (autodiff.py),
generates and loads the training step (codegen/train.py), and runs `config.epochs` epochs of
seeded, shuffled, augmented batches through it, the optimizer updating its own float32 copy of
the parameters. After each epoch the inference network (compiled at -O2, its folded parameters
recomputed from the new weights) is evaluated on the validation data, and a checkpoint is
written atomically: the weights, the optimizer's state, the epoch and the history.

Reproducible and resumable. Batch order comes from a generator seeded by (seed, epoch); each
batch's augmentation and dropout from one seeded by (seed, epoch, step). So the same seed gives
the same run, and a checkpoint written mid-epoch (Ctrl-C) resumes at the step where it stopped,
as if never interrupted. A loss that becomes NaN or infinite stops the run with an error naming
the epoch and step; the checkpoint on disk is then the last good one, since checkpoints are
only ever replaced whole (runtime/files.py).
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..runtime.loader import load_module
from .autodiff import CnncTrainError, LossTerm, TrainingStep, differentiate, frozen_params
from .data import Augment, Dataset, batch_count, batches
from .optim import Optimizer, Schedule

CHECKPOINT_FORMAT = 1


@dataclass
class TrainConfig:
    """Every setting of a run (the CLI's `cnnc train` options, with the same defaults)."""

    epochs: int = 10
    batch: int = 64
    lr: float = 0.01
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup: float = 0.0  # epochs of linear warm-up
    step_size: int = 1  # `step` schedule: epochs between decays
    gamma: float = 0.1  # `step` schedule: the decay
    val_split: float = 0.1  # held out of the training data when no validation data is given
    seed: int = 0
    augment: Augment = field(default_factory=Augment)
    freeze: tuple[str, ...] = ()
    losses: tuple[str, ...] = ()  # `[output=]kind[:weight]`; default: cross_entropy on the one output
    label_smoothing: float = 0.0

    def check(self) -> None:
        if self.epochs < 1:
            raise CnncTrainError(f"--epochs must be at least 1, not {self.epochs}", where="--epochs")
        if not 0 <= self.label_smoothing < 1:
            raise CnncTrainError(f"--label-smoothing must be in [0, 1), not {self.label_smoothing}",
                                 where="--label-smoothing")
        if self.warmup < 0 or not math.isfinite(self.warmup):
            raise CnncTrainError(f"--warmup must be a non-negative number of epochs, not {self.warmup}",
                                 where="--warmup")


@dataclass
class Epoch:
    """One epoch's figures, as the history and the progress lines report them."""

    epoch: int
    loss: float
    accuracy: float | None  # of the first cross-entropy output; None without one
    val_loss: float | None
    val_accuracy: float | None
    lr: float
    seconds: float
    images_per_s: float


@dataclass
class TrainResult:
    network: object  # the CompiledNetwork with the trained weights
    history: list[Epoch]
    plan: TrainingStep
    source: str  # the generated training module


def loss_terms(config: TrainConfig, outputs: list[str]) -> list[LossTerm]:
    """The run's loss terms: `config.losses` parsed, or cross-entropy on the only output."""
    texts = config.losses or ("cross_entropy",)
    terms = [LossTerm.parse(text, outputs) for text in texts]
    if config.label_smoothing:
        terms = [LossTerm(t.output, t.kind, t.weight, (("label_smoothing", config.label_smoothing),))
                 if t.kind == "cross_entropy" else t for t in terms]
    return terms


class Trainer:
    """A compiled training step with its parameters, optimizer and schedule (see the module docstring)."""

    def __init__(self, source, config: TrainConfig | None = None, params: Mapping[str, np.ndarray] | None = None,
                 input_shapes: dict[str, tuple] | None = None):
        import cnnc

        from ..codegen.train import generate_training  # the kernels' sources: only when training

        config = config or TrainConfig()
        config.check()
        self.config = config
        self.graph = cnnc.parse(source, input_shapes=input_shapes)
        if len(self.graph.info.inputs) != 1:
            raise CnncTrainError(f"training needs a network with one input (this one has "
                                 f"{len(self.graph.info.inputs)})", where=self.graph.info.source_name)
        self.terms = loss_terms(config, list(self.graph.info.outputs))
        self.plan = differentiate(self.graph, self.terms, frozen_params(self.graph, config.freeze))
        # the output whose accuracy is reported: the first cross-entropy one (None without one)
        self.scored = next((t.output for t in self.terms if t.kind == "cross_entropy"), None)
        self.source = generate_training(self.plan)
        self._train_step: Callable = load_module(self.source, f"{self.graph.info.source_name} (train)")["train_step"]
        self.network = cnnc.compile(self.graph, seed=config.seed, params=params)  # parsed once
        # The optimizer's own writable float32 copies; the network gets them after each epoch.
        self.params = {name: np.array(value, dtype=np.float32) for name, value in self.network.params.items()}
        self.optimizer = Optimizer(config.optimizer, config.lr, config.momentum, config.nesterov,
                                   config.weight_decay)
        self.history: list[Epoch] = []
        self.epoch = 0  # epochs completed
        self.position = 0  # steps done in the epoch in progress (a mid-epoch checkpoint)
        self._partial: dict[str, float] = {}

    @property
    def input_name(self) -> str:
        return self.graph.info.inputs[0]

    def outputs_for_data(self) -> tuple[dict[str, tuple], dict[str, str]]:
        shapes = {t.output: tuple(self.graph.shape(self.graph.info.outputs[t.output])) for t in self.terms}
        return shapes, {t.output: t.kind for t in self.terms}

    def gradients(self, x: np.ndarray, targets: Mapping[str, np.ndarray] | np.ndarray,
                  rng: np.random.Generator | None = None) -> tuple[float, dict, dict]:
        """Run the generated training step on one batch: (loss, the values the losses read,
        gradients by parameter name). Batch-norm running statistics advance; weights do not."""
        if not isinstance(targets, Mapping):
            if len(self.terms) != 1:
                raise CnncTrainError("this network has several loss terms: give the targets by output name",
                                     where="targets")
            targets = {self.terms[0].output: targets}
        rng = rng if rng is not None else np.random.default_rng(self.config.seed)
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging step is reported by fit, once
            return self._train_step(self.params, rng, np.asarray(x, np.float32),
                                    *(np.asarray(targets[t.output]) for t in self.terms))

    def step(self, x: np.ndarray, targets: Mapping[str, np.ndarray] | np.ndarray, lr: float | None = None,
             rng: np.random.Generator | None = None) -> float:
        """One optimization step on one batch (at `lr`, default the configured rate); the loss."""
        loss, _, grads = self.gradients(x, targets, rng)
        self.optimizer.step(self.params, grads, self.config.lr if lr is None else lr)
        return loss

    # ---- one run ----
    def fit(self, train: Dataset, val: Dataset | None = None, checkpoint: Path | None = None,
            report: Callable[[Epoch], None] | None = None, progress=None) -> list[Epoch]:
        """Train until `config.epochs` epochs are done (continuing a resumed run)."""
        config = self.config
        per_epoch = batch_count(train, config.batch, shuffled=True)  # checks the batch size too
        schedule = Schedule(config.schedule, per_epoch * config.epochs, per_epoch,
                            int(round(config.warmup * per_epoch)), config.step_size, config.gamma)
        scored = self.scored
        while self.epoch < config.epochs:
            epoch = self.epoch + 1
            start, seen = time.perf_counter(), 0
            sums = self._partial or {"loss": 0.0, "correct": 0.0, "count": 0.0}
            order = np.random.default_rng([config.seed, epoch])
            if progress is not None:
                progress.start_epoch(epoch, config.epochs, per_epoch, self.position)
            try:
                for index, (x, targets) in enumerate(batches(train, config.batch, order)):
                    if index < self.position:
                        continue  # done before the checkpoint this run resumed from
                    rng = np.random.default_rng([config.seed, epoch, index])
                    x = config.augment.apply(x, rng)
                    lr = config.lr * schedule.factor((epoch - 1) * per_epoch + index)
                    loss, values, grads = self.gradients(x, targets, rng)
                    bad = _non_finite(loss, grads, {n: self.params[n] for n in self.plan.state})
                    if bad:
                        raise CnncTrainError(
                            f"the {bad} at epoch {epoch}, step {index + 1} (learning rate {lr:g}); "
                            "training stopped" + (f", and {checkpoint} holds the last good checkpoint"
                                                  if checkpoint is not None and checkpoint.exists() else "")
                            + ". Try a smaller --lr", where=f"epoch {epoch}")
                    self.optimizer.step(self.params, grads, lr)
                    sums["loss"] += loss * len(x)
                    sums["count"] += len(x)
                    if scored is not None:
                        sums["correct"] += _correct(values[scored], targets[scored])
                    seen += len(x)
                    self.position = index + 1
                    if progress is not None:
                        progress.step(index + 1, sums["loss"] / sums["count"],
                                      sums["correct"] / sums["count"] if scored else None, len(x))
            except KeyboardInterrupt:
                self._partial = sums
                if checkpoint is not None:
                    self.save_checkpoint(checkpoint)
                raise
            elapsed = time.perf_counter() - start
            self.network.params.update_from(self.params, "training")  # type: ignore[attr-defined]
            val_loss, val_accuracy = self.evaluate(val) if val is not None else (None, None)
            record = Epoch(epoch, sums["loss"] / sums["count"],
                           sums["correct"] / sums["count"] if scored else None, val_loss, val_accuracy,
                           config.lr * schedule.factor(epoch * per_epoch - 1), elapsed,
                           seen / elapsed if elapsed > 0 else 0.0)
            self.history.append(record)
            self.epoch, self.position, self._partial = epoch, 0, {}
            if progress is not None:
                progress.end_epoch()
            if checkpoint is not None:
                self.save_checkpoint(checkpoint)
            if report is not None:
                report(record)
        self.network.params.update_from(self.params, "training")  # type: ignore[attr-defined]
        return self.history

    def evaluate(self, data: Dataset, batch: int = 256) -> tuple[float | None, float | None]:
        """(loss, accuracy) of the inference network on `data`: the mean loss of the run's terms
        on the network's outputs (cross-entropy on a softmax output from its probabilities), and
        the accuracy of the first cross-entropy output."""
        net = self.network
        from ..kernels import backward as kernels

        total, correct, count = 0.0, 0.0, 0
        scored = self.scored
        for start in range(0, len(data), batch):
            x = data.x[start:start + batch]
            outputs = net.run(x)  # type: ignore[attr-defined]
            for placed in self.plan.losses:
                term = placed.term
                value, target = outputs[term.output], data.targets[term.output][start:start + batch]
                if term.kind == "cross_entropy" and placed.node != self.graph.info.outputs[term.output]:
                    # training read the softmax's logits; the network outputs its probabilities
                    picked = np.take_along_axis(value.reshape(len(x), value.shape[1], -1),
                                                target.reshape(len(x), 1, -1), axis=1)
                    loss = float(-np.log(np.maximum(picked, 1e-30)).mean())
                else:
                    loss = float(getattr(kernels, placed.kernel)(value, target)[0])
                total += term.weight * loss * len(x)
            if scored is not None:
                correct += _correct(outputs[scored], data.targets[scored][start:start + batch])
            count += len(x)
        return total / count, (correct / count if scored is not None else None)

    # ---- checkpoints ----
    def save_checkpoint(self, path: Path) -> None:
        """Weights, optimizer state, position and history in one .npz, replaced atomically."""
        from ..runtime.files import write_npz

        meta = {"format": CHECKPOINT_FORMAT, "epoch": self.epoch, "position": self.position,
                "partial": self._partial, "history": [asdict(e) for e in self.history],
                "source": self.graph.info.source_name, "seed": self.config.seed}
        arrays: dict[str, np.ndarray] = {f"param/{k}": v for k, v in self.params.items()}
        arrays.update({f"optim/{k}": v for k, v in self.optimizer.state_arrays().items()})
        arrays["meta"] = np.array(json.dumps(meta))
        write_npz(path, arrays)

    def load_checkpoint(self, path: Path) -> None:
        from ..runtime.params import read_npz

        try:
            arrays = read_npz(path)
            meta = json.loads(str(arrays["meta"]))
        except (KeyError, ValueError) as error:
            raise CnncTrainError(f"not a cnnc training checkpoint ({error})", where=str(path)) from None
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise CnncTrainError(f"checkpoint format {meta.get('format')} is not {CHECKPOINT_FORMAT}",
                                 where=str(path))
        params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
        self.network.params.update_from(params, str(path))  # type: ignore[attr-defined]  # checks every name
        self.params = {name: np.array(value, dtype=np.float32) for name, value in params.items()}
        self.optimizer.load_state({k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")})
        self.epoch, self.position = int(meta["epoch"]), int(meta["position"])
        self._partial = {k: float(v) for k, v in meta.get("partial", {}).items()}
        self.history = [Epoch(**e) for e in meta["history"]]


def _non_finite(loss: float, grads: Mapping[str, np.ndarray], state: Mapping[str, np.ndarray]) -> str | None:
    """What went NaN or infinite in a step, or None: the loss, a gradient (batch norm keeps the
    loss finite long after its weights have overflowed), or a running statistic."""
    if not math.isfinite(loss):
        return f"loss became {loss}"
    with np.errstate(over="ignore", invalid="ignore"):
        for kind, arrays in (("gradient of", grads), ("running statistic", state)):
            for name, value in arrays.items():
                if not np.isfinite(value.sum(dtype=np.float64)):
                    return f"{kind} '{name}' became NaN or infinite"
    return None


def _correct(scores: np.ndarray, labels: np.ndarray) -> float:
    """How many examples (or pixels, for [N, C, H, W] scores) are classified right."""
    return float(np.sum(np.argmax(scores, axis=1) == labels.reshape(labels.shape[0], *scores.shape[2:])))


def train(source, data: Dataset | str | Path, config: TrainConfig | None = None, *,
          val: Dataset | str | Path | None = None, params: Mapping[str, np.ndarray] | None = None,
          checkpoint: str | Path | None = None, resume: bool = False, input_shapes: dict[str, tuple] | None = None,
          prepare: str | None = None, report: Callable[[Epoch], None] | None = None, progress=None) -> TrainResult:
    """Train the network of `source` (a `.cnn` path or text) on `data` (a Dataset, an .npz file or
    an image folder); returns the trained network and the history. See TrainConfig for settings."""
    from ..runtime.inputs import steps_for
    from .data import load_dataset

    config = config or TrainConfig()
    trainer = Trainer(source, config, params, input_shapes)
    if prepare is not None:  # how images become the input, instead of the program's `prepare` clause
        from ..language.prepare import preparation_from_text

        trainer.graph.info.preprocess[trainer.input_name] = preparation_from_text(
            prepare, tuple(trainer.graph.shape(trainer.input_name)))
    shapes, kinds = trainer.outputs_for_data()
    input_shape = tuple(trainer.graph.shape(trainer.input_name))

    def dataset(value: Dataset | str | Path) -> Dataset:
        if isinstance(value, Dataset):
            return value
        return load_dataset(value, trainer.input_name, input_shape, shapes, kinds, trainer.graph.info.labels,
                            steps_for(trainer.graph, trainer.input_name))

    train_data = dataset(data)
    val_data = dataset(val) if val is not None else None
    if val_data is None:
        train_data, val_data = train_data.split(config.val_split, config.seed)
    path = Path(checkpoint) if checkpoint is not None else None
    if resume:
        if path is None or not path.exists():
            raise CnncTrainError("--resume needs an existing checkpoint", where=str(path or "--checkpoint"))
        trainer.load_checkpoint(path)
    trainer.fit(train_data, val_data, path, report, progress)
    return TrainResult(trainer.network, trainer.history, trainer.plan, trainer.source)
