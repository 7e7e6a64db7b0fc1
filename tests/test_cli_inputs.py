"""`cnnc run --input`: folders, globs and several files, batched; bad files reported and skipped;
results as JSON Lines or CSV (cnnc/runtime/results.py's schema), written atomically; a progress
line on a terminal."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from conftest import ROOT

import cnnc
from cnnc.cli import main
from cnnc.runtime import results
from cnnc.runtime.inputs import load_input
from cnnc.runtime.progress import Progress

Image = pytest.importorskip("PIL.Image")

TINY = ROOT / "tests" / "golden" / "tiny.cnn"  # input image [N, 1, 12, 12], output probs [N, 10]
DETECTOR = """input image: [N, 3, 16, 16]
f = image |> conv(8, 3x3, pad=1) |> relu |> global_avg_pool |> flatten
boxes = f |> dense(16) |> reshape((4, 4)) |> sigmoid
scores = f |> dense(12) |> reshape((4, 3)) |> sigmoid
output detections = nms(boxes, scores, score_threshold=0.0, max_boxes=6)
"""


def photo(path, width=30, height=40, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    """imgs/: three photos, a text file named .jpg, a truncated PNG, an .npy of 2 examples, one
    .npy of the wrong size, and a README (not an input)."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(3):
        photo(imgs / f"p{i}.png", seed=i)
    (imgs / "text.jpg").write_text("not an image")
    whole = photo(tmp_path / "whole.png").read_bytes()
    (imgs / "cut.png").write_bytes(whole[:len(whole) // 2])
    np.save(imgs / "two.npy", np.random.default_rng(1).standard_normal((2, 1, 12, 12)).astype(np.float32))
    np.save(imgs / "wrong.npy", np.zeros((1, 1, 10, 12), np.float32))
    (imgs / "README.txt").write_text("photos")
    return imgs


def test_folder_runs_good_files_and_reports_bad_ones(folder, tmp_path, capsys):
    out = tmp_path / "preds.jsonl"
    assert main(["run", str(TINY), "--input", str(folder), "--batch", "2", "--output", str(out)]) == 1
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert f"{folder / 'text.jpg'}: skipped: cannot read the image" in captured.err
    assert f"{folder / 'cut.png'}: skipped: cannot read the image" in captured.err
    assert f"{folder / 'wrong.npy'}: skipped: the input expects [N, 1, 12, 12], the file holds [1, 1, 10, 12]" \
        in captured.err
    assert err[-1].startswith("7 input files: 4 ran, 3 failed; 1 other file in the folders ignored (not images "
                              "or .npy); 5 examples in 3 batches of up to 2, ")
    assert f"wrote {out}: 8 rows" in captured.out
    rows = results.read_results(out)
    good = [r for r in rows if r["kind"] == "classes"]
    assert [(r["path"], r["index"]) for r in good] == [
        (str(folder / f), i) for f, i in [("p0.png", 0), ("p1.png", 0), ("p2.png", 0), ("two.npy", 0), ("two.npy", 1)]]
    assert [r["batch"] for r in good] == [0, 0, 1, 1, 2]
    assert sorted(r["path"] for r in rows if r["kind"] == "error") == [
        str(folder / "cut.png"), str(folder / "text.jpg"), str(folder / "wrong.npy")]
    # the scores are the network's, image by image
    net = cnnc.compile(TINY)
    expected = net(load_input(str(folder / "p1.png"), net.input_shapes["image"]))[0]
    row = good[1]
    assert row["output"] == "probs" and len(row["labels"]) == 5
    assert row["labels"] == list(np.argsort(-expected, kind="stable")[:5])
    np.testing.assert_allclose(row["scores"], expected[row["labels"]], rtol=1e-5)


def test_glob_several_flags_and_duplicates(folder, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    args = ["run", str(TINY), "--input", str(folder / "p*.png"), "--input", str(folder / "p0.png"),
            str(folder / "two.npy"), "--top", "2", "-o", str(out)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "4 input files: 4 ran, 0 failed; 5 examples in 1 batch of up to 8" in err
    with open(out, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == list(results.CSV_COLUMNS)
    assert len(table) == 5 * 2  # five examples, two ranks each
    assert [(r["path"], r["index"], r["rank"]) for r in table[:2]] == [(str(folder / "p0.png"), "0", "1"),
                                                                       (str(folder / "p0.png"), "0", "2")]
    assert {r["kind"] for r in table} == {"classes"} and all(0 < float(r["score"]) <= 1 for r in table)


def test_stdout_lists_every_example_without_output(folder, capsys):
    assert main(["run", str(TINY), "--input", str(folder / "*.png"), str(folder / "two.npy"), "--top", "3"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{folder / 'p0.png'}: probs: top-3: class ")
    assert any(line.startswith(f"{folder / 'two.npy'}[1]: probs: top-3: ") for line in out)
    assert len(out) == 5  # one line per example; cut.png's problem is on stderr


def test_missing_inputs_fail_before_running(tmp_path, capsys):
    assert main(["run", str(TINY), "--input", str(tmp_path / "nothere")]) == 1
    assert capsys.readouterr().err.strip() == f"{tmp_path / 'nothere'}: error: no such input file or folder"
    assert main(["run", str(TINY), "--input", str(tmp_path / "*.jpg")]) == 1
    assert capsys.readouterr().err.strip() == f"{tmp_path / '*.jpg'}: error: no file matches this pattern"
    (tmp_path / "empty").mkdir()
    assert main(["run", str(TINY), "--input", str(tmp_path / "empty")]) == 1
    assert "the folder holds no images or .npy files" in capsys.readouterr().err
    assert main(["run", str(TINY), "-o", str(tmp_path / "preds.txt")]) == 1
    assert "results are written as JSON Lines (.jsonl) or CSV (.csv)" in capsys.readouterr().err


def test_one_bad_file_alone_is_still_an_error(folder, capsys):
    assert main(["run", str(TINY), "--input", str(folder / "text.jpg")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{folder / 'text.jpg'}: error: cannot read the image") and err.count("\n") == 1


def test_single_image_with_batch_says_what_runs(folder, capsys):
    assert main(["run", str(TINY), "--input", str(folder / "p0.png"), "--batch", "4"]) == 0
    captured = capsys.readouterr()
    assert f"note: --batch 4, but {folder / 'p0.png'} holds 1 example: it runs as a batch of 1" in captured.err
    assert "probs: shape [1, 10]" in captured.out


def test_one_npy_runs_in_batches_and_writes_every_row(tmp_path, capsys):
    x = np.random.default_rng(2).standard_normal((5, 1, 12, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "preds.jsonl"
    assert main(["run", str(TINY), "--input", str(tmp_path / "x.npy"), "--batch", "2", "--save-output",
                 str(tmp_path / "y.npz"), "--output", str(out)]) == 0
    captured = capsys.readouterr().out
    assert "probs: shape [5, 10]" in captured and "... 1 more example not shown" in captured
    np.testing.assert_allclose(np.load(tmp_path / "y.npz")["probs"], cnnc.compile(TINY)(x), rtol=1e-5, atol=1e-7)
    rows = results.read_results(out)
    assert [(r["index"], r["batch"]) for r in rows] == [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2)]


def test_options_that_need_one_input_are_refused_with_several(folder, tmp_path, capsys):
    assert main(["run", str(TINY), "--input", str(folder), "--save-output", str(tmp_path / "y.npz")]) == 1
    assert "--save-output: error: --save-output works with one input file" in capsys.readouterr().err


def test_fixed_batch_inputs_are_padded_and_batch_is_checked(tmp_path, capsys):
    program = tmp_path / "fixed.cnn"
    program.write_text("input image: [2, 1, 12, 12]\noutput y = image |> flatten |> dense(6)\n")
    for i in range(3):
        np.save(tmp_path / f"x{i}.npy", np.full((1, 1, 12, 12), i, np.float32))
    out = tmp_path / "rows.jsonl"
    assert main(["run", str(program), "--input", str(tmp_path / "x*.npy"), "-o", str(out)]) == 0
    rows = results.read_results(out)
    assert [(r["path"][-6:], r["batch"]) for r in rows] == [("x0.npy", 0), ("x1.npy", 0), ("x2.npy", 1)]
    assert "3 examples in 2 batches of up to 2" in capsys.readouterr().err
    assert main(["run", str(program), "--batch", "4"]) == 1
    assert ("--batch: error: input 'image' has a fixed batch of 2 ([2, 1, 12, 12]); declare it [N, ...] to run "
            "other batch sizes") in capsys.readouterr().err


def test_detection_rows_are_boxes_in_image_pixels(tmp_path, capsys):
    program = tmp_path / "det.cnn"
    program.write_text(DETECTOR)
    image = photo(tmp_path / "wide.png", width=32, height=64)
    photo(tmp_path / "b.png")
    out = tmp_path / "det.jsonl"
    assert main(["run", str(program), "--input", str(image), str(tmp_path / "b.png"), "-o", str(out)]) == 0
    row = results.read_results(out)[0]
    assert row["kind"] == "detections" and row["output"] == "detections"
    raw = cnnc.compile(program)(load_input(str(image), (1, 3, 16, 16)))[0]
    kept = raw[raw[:, 4] >= 0]
    assert len(row["boxes"]) == len(kept) == len(row["scores"]) == len(row["labels"]) > 0
    np.testing.assert_allclose(row["boxes"], kept[:, :4] * [2, 4, 2, 4], rtol=1e-4)  # 32/16 wide, 64/16 high
    assert row["labels"] == [int(c) for c in kept[:, 5]]
    with open(tmp_path / "det.csv", "w", encoding="utf-8") as handle:
        handle.writelines(results.csv_lines([row]))
    with open(tmp_path / "det.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == len(kept) and float(table[0]["x2"]) == pytest.approx(row["boxes"][0][2], rel=1e-5)


def test_tensor_rows_and_non_finite_numbers():
    graph = cnnc.parse("input x: [N, 2]\noutput y = x |> relu\n")
    rows = results.prediction_rows(graph, {"y": np.array([[1.5, np.nan]], np.float32)},
                                   [results.Source("a.npy")], batch=0)
    assert rows == [{"path": "a.npy", "index": 0, "batch": 0, "output": "y", "kind": "tensor", "shape": [2],
                     "min": None, "max": None, "mean": None, "std": None, "values": [1.5, None]}]
    line = next(results.jsonl_lines(rows))
    assert json.loads(line)["values"] == [1.5, None] and "NaN" not in line
    assert list(results.csv_lines(rows))[1] == "a.npy,0,0,y,tensor" + "," * (len(results.CSV_COLUMNS) - 5) + "\n"
    error = results.error_row("b.jpg", "cannot read, it says \"no\"")
    assert list(results.csv_lines([error], header=False)) == ['b.jpg,,,,error,,,,,,,,,"cannot read, it says ""no"""\n']


def test_output_is_atomic(folder, tmp_path, capsys, monkeypatch):
    """A run that fails after its first batch leaves the old results file as it was, and no
    temporary file beside it."""
    out = tmp_path / "preds.jsonl"
    out.write_text("old\n")
    from cnnc.runtime.network import CompiledNetwork

    calls = []
    real = CompiledNetwork.run

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise cnnc.CnncError("out of luck", where="run")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(CompiledNetwork, "run", failing)
    assert main(["run", str(TINY), "--input", str(folder / "*.png"), "--batch", "1", "-o", str(out)]) == 1
    assert "run: error: out of luck" in capsys.readouterr().err
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs", "preds.jsonl", "whole.png"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_only_on_a_terminal():
    screen = Terminal()
    bar = Progress(10, stream=screen, delay=0, interval=0)
    bar.done = 4
    bar.advance(examples=8)
    assert screen.getvalue().startswith("\r[##########..............] 4/10 files  ")
    assert "images/s" in screen.getvalue() and "ETA" in screen.getvalue()
    bar.close()
    assert screen.getvalue().endswith("\r")
    log = io.StringIO()  # a file or a pipe: nothing
    quiet = Progress(10, stream=log, delay=0, interval=0)
    quiet.advance(1, 1)
    quiet.close()
    assert log.getvalue() == ""


def test_status_note_is_erased_and_only_on_a_terminal():
    from cnnc.runtime.progress import Status

    screen = Terminal()
    with Status("running 8 examples ...", stream=screen):
        assert screen.getvalue() == "running 8 examples ..."
    assert screen.getvalue().endswith("\r" + " " * len("running 8 examples ...") + "\r")
    log = io.StringIO()
    with Status("running", stream=log):
        pass
    assert log.getvalue() == ""
