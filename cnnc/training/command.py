"""`cnnc train`: its options (added to the CLI's parser by cnnc/cli.py) and the command itself.

It prints one line per epoch on standard output (a log keeps them) and, on a terminal, a
progress line with the running loss, accuracy and images/s on standard error. Ctrl-C writes a
checkpoint of the step reached before exiting (status 130); `--resume` continues from it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..runtime.progress import Progress
from .autodiff import LOSSES
from .data import Augment
from .optim import OPTIMIZERS, SCHEDULES
from .trainer import Epoch, TrainConfig

EXAMPLES = """
  cnnc train examples/lenet5.cnn --data digits.npz --epochs 10 --batch 64 --lr 0.05 -o lenet5.npz
  cnnc train model.cnn --data photos/ --optimizer adamw --lr 1e-3 --schedule cosine --warmup 1
  cnnc train model.cnn --data photos/ --params pretrained.npz --freeze 'layer1.*' --freeze conv1
  cnnc train model.cnn --data train.npz --val val.npz --shift 2 --flip -o model.npz --resume
  cnnc train classify_localize.cnn --data boxes.npz --loss class=cross_entropy --loss box=smooth_l1:0.5"""


def add_arguments(parser: argparse.ArgumentParser, positive, non_negative) -> None:
    """The train command's options (`positive`, `non_negative`: the CLI's integer types)."""
    parser.add_argument("file", help="the .cnn file")
    parser.add_argument("--data", required=True, metavar="PATH",
                        help="training data: an .npz file (arrays named after the input and the loss outputs, or "
                             "x and y) or an image folder with one subfolder of images per class")
    parser.add_argument("--val", metavar="PATH", help="validation data, as --data (default: --val-split of --data)")
    parser.add_argument("--val-split", type=float, default=0.1, metavar="F",
                        help="fraction of --data held out for validation when --val is not given (default: 0.1)")
    parser.add_argument("-o", "--output", metavar="WEIGHTS.npz",
                        help="write the trained weights here, for `cnnc run --params` (default: FILE's name with "
                             ".npz)")
    parser.add_argument("--checkpoint", metavar="PATH",
                        help="the checkpoint written after every epoch and on Ctrl-C (default: the output's name "
                             "with .ckpt.npz)")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in the checkpoint")
    parser.add_argument("--params", help="initial weights (.npz), e.g. to fine-tune (default: seeded He init)")
    parser.add_argument("--prepare", metavar="STEPS",
                        help="how images of an image folder become the input, instead of the program's "
                             "`prepare` clause, e.g. 'resize(256) |> center_crop |> normalize(imagenet)'")
    parser.add_argument("--freeze", action="append", default=[], metavar="PATTERN",
                        help="leave the parameters matching this glob unchanged, e.g. 'layer1.*' or conv1 "
                             "(repeatable)")
    group = parser.add_argument_group("optimization")
    group.add_argument("--epochs", type=positive, default=10, help="epochs (default: 10)")
    group.add_argument("--batch", type=positive, default=64, help="examples per step (default: 64)")
    group.add_argument("--lr", type=float, default=0.01, help="learning rate (default: 0.01)")
    group.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", help="the optimizer (default: sgd)")
    group.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    group.add_argument("--nesterov", action="store_true", help="SGD with Nesterov momentum")
    group.add_argument("--weight-decay", type=float, default=0.0,
                       help="L2 weight decay; AdamW's is decoupled (default: 0.0)")
    group.add_argument("--schedule", choices=SCHEDULES, default="constant",
                       help="learning-rate schedule (default: constant)")
    group.add_argument("--warmup", type=float, default=0.0, metavar="EPOCHS",
                       help="linear learning-rate warm-up, in epochs (default: 0.0)")
    group.add_argument("--step-size", type=positive, default=1, metavar="EPOCHS",
                       help="step schedule: epochs between decays (default: 1)")
    group.add_argument("--gamma", type=float, default=0.1, help="step schedule: the decay factor (default: 0.1)")
    group.add_argument("--loss", action="append", default=[], metavar="[OUTPUT=]KIND[:WEIGHT]",
                       help=f"a loss term, repeatable; KIND is one of {', '.join(LOSSES)} "
                            "(default: cross_entropy on the only output)")
    group.add_argument("--label-smoothing", type=float, default=0.0, help="for cross_entropy (default: 0.0)")
    group.add_argument("--seed", type=non_negative, default=0,
                       help="seed of the initialization, shuffling, augmentation and dropout (default: 0)")
    augment = parser.add_argument_group("augmentation (training batches only)")
    augment.add_argument("--shift", type=non_negative, default=0, metavar="PIXELS",
                         help="random shifts of up to this many pixels (default: 0)")
    augment.add_argument("--flip", action="store_true", help="random horizontal flips")
    augment.add_argument("--brightness", type=float, default=0.0, help="random brightness change ±B (default: 0.0)")
    augment.add_argument("--contrast", type=float, default=0.0, help="random contrast change ×(1±C) (default: 0.0)")


class EpochProgress(Progress):
    """The progress line of one epoch: batches done, running loss and accuracy, images/s."""

    epoch = epochs = 0
    loss = 0.0
    accuracy: float | None = None

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        self.epoch, self.epochs, self.total, self.done = epoch, epochs, steps, done
        self.examples, self.loss, self.accuracy = 0, 0.0, None
        self.start = time.perf_counter()

    def step(self, done: int, loss: float, accuracy: float | None, examples: int) -> None:
        self.loss, self.accuracy = loss, accuracy
        self.advance(done - self.done, examples)

    def line(self, now: float | None = None) -> str:
        elapsed = (time.perf_counter() if now is None else now) - self.start
        rate = self.examples / elapsed if elapsed > 0 else 0.0
        filled = round(24 * self.done / max(self.total, 1))
        accuracy = f"  acc {100 * self.accuracy:.2f}%" if self.accuracy is not None else ""
        return (f"epoch {self.epoch}/{self.epochs} [{'#' * filled}{'.' * (24 - filled)}] {self.done}/{self.total}  "
                f"loss {self.loss:.4f}{accuracy}  {rate:.0f} img/s")

    def end_epoch(self) -> None:
        self.clear()


def format_epoch(e: Epoch, epochs: int) -> str:
    """The line printed after each epoch."""
    width = len(str(epochs))
    parts = [f"epoch {e.epoch:>{width}}/{epochs}", f"loss {e.loss:.4f}"]
    if e.accuracy is not None:
        parts.append(f"acc {100 * e.accuracy:6.2f}%")
    if e.val_loss is not None:
        parts.append(f"val_loss {e.val_loss:.4f}")
    if e.val_accuracy is not None:
        parts.append(f"val_acc {100 * e.val_accuracy:6.2f}%")
    parts += [f"lr {e.lr:.3g}", f"{e.images_per_s:,.0f} img/s", f"{e.seconds:.1f} s"]
    return "  ".join(parts)


def run(args: argparse.Namespace) -> int:
    from ..runtime.params import read_npz
    from .trainer import train

    output = Path(args.output) if args.output else Path(args.file).with_suffix(".npz")
    checkpoint = Path(args.checkpoint) if args.checkpoint else output.with_name(output.stem + ".ckpt.npz")
    config = TrainConfig(
        epochs=args.epochs, batch=args.batch, lr=args.lr, optimizer=args.optimizer, momentum=args.momentum,
        nesterov=args.nesterov, weight_decay=args.weight_decay, schedule=args.schedule, warmup=args.warmup,
        step_size=args.step_size, gamma=args.gamma, val_split=args.val_split, seed=args.seed,
        augment=Augment(args.shift, args.flip, args.brightness, args.contrast), freeze=tuple(args.freeze),
        losses=tuple(args.loss), label_smoothing=args.label_smoothing)
    params = read_npz(args.params) if args.params else None
    progress = EpochProgress(0)
    try:
        result = train(Path(args.file), args.data, config, val=args.val, params=params, checkpoint=checkpoint,
                       resume=args.resume, prepare=args.prepare, progress=progress,
                       report=lambda e: print(format_epoch(e, config.epochs), flush=True))
    except KeyboardInterrupt:
        progress.close()
        print(f"interrupted: the checkpoint {checkpoint} holds the step reached; --resume continues from it",
              file=sys.stderr)
        return 130
    result.network.save_params(output)  # type: ignore[attr-defined]
    print(f"wrote {output} (checkpoint: {checkpoint})")
    return 0
