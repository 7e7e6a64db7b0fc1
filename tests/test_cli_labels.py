"""`cnnc run` names classes (the program's label set, or --labels) and says when weights are random."""
from __future__ import annotations

import json

import numpy as np
from conftest import EXAMPLES
from PIL import Image

from cnnc.cli import main

SMALL = "input image: [N, 3, 16, 16]\noutput logits = image |> global_avg_pool |> flatten |> dense(5) as fc\n"


def test_imagenet_names_and_the_random_weights_note(tmp_path, capsys):
    Image.new("RGB", (32, 32), (200, 40, 10)).save(tmp_path / "photo.png")
    assert main(["run", str(EXAMPLES / "resnet18.cnn"), "--input", str(tmp_path / "photo.png"), "--top", "2"]) == 0
    captured = capsys.readouterr()
    assert "note: the weights are random" in captured.err and "--params" in captured.err
    ranked = next(line for line in captured.out.splitlines() if "top-2" in line)
    names = (EXAMPLES.parent / "cnnc" / "labels" / "imagenet.txt").read_text(encoding="utf-8").splitlines()
    number = int(ranked.split("(")[1].split(",")[0])  # "pill bottle (720, 100.0%)"
    assert ranked.split(": top-2: ")[1].startswith(f"{names[number]} ({number}, ")


def test_labels_file_overrides_and_reaches_the_results(tmp_path, capsys):
    program = tmp_path / "small.cnn"
    program.write_text(SMALL, encoding="utf-8")
    (tmp_path / "names.txt").write_text("cat\ndog\nfish\nbird\nfrog\n", encoding="utf-8")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32))
    weights = tmp_path / "w.npz"
    np.savez(weights, **{"fc.weight": np.eye(5, 3, dtype=np.float32), "fc.bias": np.zeros(5, np.float32)})
    out = tmp_path / "preds.jsonl"
    assert main(["run", str(program), "--input", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "names.txt"),
                 "--params", str(weights), "--output", str(out), "--top", "3"]) == 0
    err = capsys.readouterr().err
    assert "weights are random" not in err  # trained weights were given
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    names = ["cat", "dog", "fish", "bird", "frog"]
    assert len(rows) == 2 and all(len(r["names"]) == 3 for r in rows)
    assert all(r["names"] == [names[c] for c in r["labels"]] for r in rows)


def test_a_label_file_that_fits_no_output_is_refused(tmp_path, capsys):
    program = tmp_path / "small.cnn"
    program.write_text(SMALL, encoding="utf-8")
    (tmp_path / "names.txt").write_text("a\nb\n", encoding="utf-8")
    assert main(["run", str(program), "--labels", str(tmp_path / "names.txt")]) == 1
    assert "names 2 classes, but no classifier or detection output has that many" in capsys.readouterr().err


def test_drawn_boxes_are_labelled_with_class_names():
    import cnnc
    from cnnc.ir.preprocess import Placement
    from cnnc.runtime.visualize import DrawPlan, _boxes_to_draw

    graph = cnnc.parse(EXAMPLES / "yolo_tiny.cnn")  # `labels voc` on its detections
    rows = np.array([[[10, 20, 50, 60, 0.9, 14], [0, 0, 0, 0, -1, 0]]], np.float32)  # a person, then padding
    squashed = Placement((416 / 832, 416 / 416), (0.0, 0.0))  # an 832x416 photo squashed to 416x416
    drawn = _boxes_to_draw(DrawPlan("detections", "detections"), {"detections": rows}, graph, squashed, (416, 416))
    assert [d[-1] for d in drawn] == ["person 0.90"]
    assert drawn[0][:4] == (20.0, 20.0, 100.0, 60.0)  # scaled from the network's 416x416 to the photo

