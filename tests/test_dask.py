"""Batch inference on Dask (cnnc.runtime.distributed): a LocalCluster of 2 worker processes and
200 small generated images through LeNet-5; results equal the single-process path, a killed
worker, an interrupted and resumed run, bad files. About 30 s on 2 cores; the long test runs
only with CNNC_DASK_LONG=1."""
from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("dask.distributed")
pytest.importorskip("pyarrow")
Image = pytest.importorskip("PIL.Image")

import cnnc
from cnnc.cli import main
from cnnc.runtime import distributed as dist
from cnnc.runtime.results import read_results

ROOT = Path(__file__).resolve().parents[1]
LENET = ROOT / "examples" / "lenet5.cnn"
COUNT = 200
BATCH = 8


def _write_images(folder: Path, count: int, start: int = 0) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    paths = []
    for i in range(start, start + count):
        path = folder / f"img{i:04d}.png"
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def _huge_png(path: Path) -> None:
    """A valid PNG header claiming 100000×100000 pixels: Pillow refuses it (decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def assert_same_rows(rows: list[dict], expected: list[dict]) -> None:
    """The rows are the expected ones, field for field, scores to within one in their last
    printed (6th) decimal. Dask's worker processes run BLAS on one thread and this process on
    two; some BLAS kernel sets (OpenBLAS's Haswell kernels) round float32 GEMMs differently at
    different thread counts, so a score may differ there."""
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected):
        assert {k: v for k, v in row.items() if k != "scores"} == {k: v for k, v in want.items() if k != "scores"}
        if want.get("scores") is None:
            assert row.get("scores") is None
        else:
            assert row.get("scores") == pytest.approx(want["scores"], rel=0, abs=1.5e-6)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dask") / "imgs"
    _write_images(folder, COUNT)
    return folder


@pytest.fixture(scope="module")
def net():
    return cnnc.compile(LENET)


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory) -> list[dict]:
    """The single-process path's rows: `cnnc run --input imgs/ --batch 8 --output ref.jsonl`."""
    out = tmp_path_factory.mktemp("ref") / "ref.jsonl"
    assert main(["run", str(LENET), "--input", str(images), "--batch", str(BATCH), "--output", str(out)]) == 0
    return read_results(out)


def _cluster():
    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                    silence_logs=40)


@pytest.fixture(scope="module")
def client():
    with _cluster() as cluster, distributed.Client(cluster) as client:
        yield client


def _paths(rows: list[dict]) -> list[str]:
    return [row["path"] for row in rows]


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_rows_equal_the_single_process_path(images, net, reference, client, tmp_path, suffix):
    out = tmp_path / f"preds{suffix}"
    summary = cnnc.predict_files(net, images, out, batch_size=BATCH, client=client, partition_size=40)
    assert (summary.inputs, summary.good, summary.bad, summary.partitions, summary.skipped) == (COUNT, COUNT, 0, 5, 0)
    assert_same_rows(dist.read_rows(out), reference)  # every number, label, path and batch index
    names = sorted(p.name for p in out.iterdir())
    assert names == ["_errors.jsonl", "_manifest.json", "_state", *[f"part-{i:05d}{suffix}" for i in range(5)]]
    assert json.loads((out / "_manifest.json").read_text())["complete"] is True
    assert (out / "_errors.jsonl").read_text() == ""
    if suffix == ".parquet":  # the folder is a dataset as it is: `_` files are left out by readers
        import pyarrow.parquet as pq

        assert pq.read_table(out).num_rows == COUNT


def test_bag_equals_the_single_process_path(images, net, reference, client):
    bag = cnnc.predict_bag(net, str(images / "*.png"), batch_size=BATCH, partition_size=64)
    assert bag.npartitions == 4
    assert_same_rows(bag.compute(), reference)


def test_bad_files_are_reported_and_skipped(tmp_path, net, client, capsys):
    folder = tmp_path / "mixed"
    _write_images(folder, 30)
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(buffer, "JPEG")
    (folder / "corrupt.jpg").write_bytes(buffer.getvalue()[:300])
    (folder / "notes.jpg").write_text("this is text, not a JPEG\n")
    (folder / "empty.png").write_bytes(b"")
    _huge_png(folder / "huge.png")
    out = tmp_path / "preds.parquet"
    argv = ["run", str(LENET), "--input", str(folder), "--batch", "4", "--output", str(out),
            "--scheduler", client.scheduler.address, "--partition-size", "8"]
    assert main(argv) == 1  # some files failed
    captured = capsys.readouterr()
    summary_line = captured.err.strip().splitlines()[-1]
    assert summary_line.startswith("34 input files: 30 ran, 4 failed; 30 images in 5 partitions")
    errors = [json.loads(line) for line in (out / "_errors.jsonl").read_text().splitlines()]
    reasons = {Path(e["path"]).name: e["error"] for e in errors}
    assert sorted(reasons) == ["corrupt.jpg", "empty.png", "huge.png", "notes.jpg"]
    assert "truncated" in reasons["corrupt.jpg"].lower()
    assert "cannot identify image file" in reasons["notes.jpg"]
    assert "decompression bomb" in reasons["huge.png"].lower()
    assert all(e["kind"] == "error" for e in errors)
    for name in reasons:
        assert f"{name}: skipped: " in captured.err
    rows = dist.read_rows(out)
    assert sorted(_paths(rows)) == sorted(str(p) for p in folder.iterdir())  # good + bad == inputs, once each
    assert sum(row["kind"] == "error" for row in rows) == 4
    # the same command again: every partition is there, nothing runs, the same counts
    assert main(argv) == 1
    assert "all 5 partitions were already written" in capsys.readouterr().err


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes(images, net, reference, client, tmp_path):
    out = tmp_path / "preds.jsonl"
    seen = []

    def stop_after_three(result):
        seen.append(result.index)
        if len(seen) == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        cnnc.predict_files(net, images, out, batch_size=BATCH, client=client, partition_size=16,
                           on_partition=stop_after_three)
    client.restart()  # nothing of the interrupted run is still running (a task killed mid-write, maybe)
    committed = sorted(p.name for p in out.glob("part-*.jsonl"))
    assert 3 <= len(committed) < 13
    assert not json.loads((out / "_manifest.json").read_text())["complete"]
    for part in committed:  # a committed partition is whole: its 16 inputs (the last one's 8), each row complete
        index = int(part.split("-")[1].split(".")[0])
        assert len(dist.read_partition(out / part)) == min(16, COUNT - 16 * index)
    summary = cnnc.predict_files(net, images, out, batch_size=BATCH, client=client, partition_size=16)
    assert (summary.partitions, summary.skipped, summary.good, summary.bad) == (13, len(committed), COUNT, 0)
    assert summary.examples == COUNT - 16 * len(committed)
    assert_same_rows(dist.read_rows(out), reference)
    assert not list(out.glob(".*.tmp"))
    redo = cnnc.predict_files(net, images, out, batch_size=BATCH, client=client, partition_size=16, resume=False)
    assert (redo.skipped, redo.examples) == (0, COUNT)
    assert_same_rows(dist.read_rows(out), reference)
    with pytest.raises(cnnc.CnncError, match="another run"):  # other settings, same folder
        cnnc.predict_files(net, images, out, batch_size=BATCH, client=client, partition_size=32)


def test_a_killed_worker_loses_nothing(images, net, reference, tmp_path):
    out = tmp_path / "preds.parquet"
    with _cluster() as cluster, distributed.Client(cluster) as client:
        pids = client.run(os.getpid)
        done = []

        def kill_one(result):
            done.append(result.index)
            if len(done) == 2:
                os.kill(next(iter(pids.values())), signal.SIGKILL)

        summary = cnnc.predict_files(net, images, out, batch_size=BATCH, client=client, partition_size=8,
                                     on_partition=kill_one)
        assert len(done) == 25 and sorted(done) == list(range(25))
        assert set(client.run(os.getpid).values()) != set(pids.values())  # the nanny started a new worker
    assert (summary.good, summary.bad, summary.partitions) == (COUNT, 0, 25)
    rows = dist.read_rows(out)
    assert sorted(_paths(rows)) == sorted(_paths(reference))  # every input exactly once
    assert_same_rows(rows, reference)


def test_unreachable_scheduler_is_one_line(images, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(dist, "CONNECT_TIMEOUT", 1)
    status = main(["run", str(LENET), "--input", str(images), "--output", str(tmp_path / "p.parquet"),
                   "--scheduler", "tcp://127.0.0.1:1"])
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("note: ")]
    assert status == 1 and len(err) == 1  # one line (beside the note that the weights are random)
    assert err[0].startswith("--scheduler: error: cannot reach the Dask scheduler at tcp://127.0.0.1:1")


def test_options_are_checked_before_the_work(images, tmp_path, capsys):
    base = ["run", str(LENET), "--input", str(images)]
    assert main([*base, "--output", str(tmp_path / "p.csv"), "--workers", "2"]) == 1
    assert main([*base, "--workers", "2"]) == 1
    assert main([*base, "--output", str(tmp_path / "p.jsonl"), "--partition-size", "4"]) == 1
    assert main([*base, "--output", str(tmp_path / "p.jsonl"), "--workers", "2", "--scheduler", "tcp://x:1"]) == 1
    (tmp_path / "mine.parquet").mkdir()
    (tmp_path / "mine.parquet" / "keep.txt").write_text("not cnnc's")
    assert main([*base, "--output", str(tmp_path / "mine.parquet"), "--workers", "1"]) == 1
    assert (tmp_path / "mine.parquet" / "keep.txt").is_file()
    err = capsys.readouterr().err
    assert "Parquet (preds.parquet) or JSON Lines" in err
    assert "--workers: error: a Dask run writes a folder of partitions" in err
    assert "--partition-size applies to a Dask run" in err
    assert "--workers starts a local cluster and --scheduler names one" in err
    assert "is not a cnnc results folder" in err


def test_import_cnnc_does_not_import_dask():
    code = ("import sys, cnnc; cnnc.predict_files; "
            "print(sorted(m for m in ('dask', 'distributed', 'pyarrow') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.skipif(os.environ.get("CNNC_DASK_LONG") != "1", reason="long: set CNNC_DASK_LONG=1")
def test_long_cli_killed_driver_resumes(tmp_path):
    """The command itself (its embedded cluster) killed mid-run, then run again: 2,000 images."""
    folder = tmp_path / "imgs"
    _write_images(folder, 2000)
    out = tmp_path / "preds.parquet"
    argv = [sys.executable, "-m", "cnnc", "run", str(LENET), "--input", str(folder), "--output", str(out),
            "--workers", "2", "--partition-size", "40"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    deadline = time.monotonic() + 120
    while len(list(out.glob("part-*.parquet"))) < 5 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the command and its workers
    process.wait()
    committed = len(list(out.glob("part-*.parquet")))
    assert committed < 50
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"({committed} already written, skipped)" in result.stdout
    rows = dist.read_rows(out)
    assert sorted(_paths(rows)) == sorted(str(p) for p in folder.iterdir())
