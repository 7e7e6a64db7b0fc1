"""A batch split over threads (cnnc/runtime/threads.py): the same outputs as one forward, and
BLAS's process-wide thread count held at 1 during the run and restored after, however runs overlap."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import EXAMPLES, randomize

import cnnc
from cnnc.runtime import threads

pytest.importorskip("threadpoolctl")

# Nets with several outputs, NMS, channels-last values, Winograd and im2col convs at a small size.
NETS = {"yolo_tiny.cnn": (3, 3, 128, 128), "mobilenet_v2.cnn": (3, 3, 64, 64), "resnet18.cnn": (5, 3, 64, 64),
        "googlenet.cnn": (2, 3, 224, 224)}


@pytest.fixture
def split_any(monkeypatch):
    """Split whatever the work per part (the policy has its own test)."""
    monkeypatch.setattr(threads, "MIN_PART_MACS", 1)


@pytest.mark.parametrize("name", sorted(NETS))
def test_split_batch_gives_the_outputs_of_one_forward(name, split_any):
    shape = NETS[name]
    net = cnnc.compile(EXAMPLES / name, input_shapes={"image": shape})
    randomize(net, seed=3, weights=False)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    net.threads = 1
    whole = net.run(x)
    for count in (2, 3, 8):  # 3 examples in 2 parts (1 + 2); more threads than examples
        net.threads = count
        parts = net.run(x)
        assert set(parts) == set(whole)
        for out in whole:
            assert parts[out].shape == whole[out].shape
            scale = max(1.0, float(np.abs(whole[out]).max()))
            # the kernels may lay a smaller batch out differently for BLAS: rounding only
            np.testing.assert_allclose(parts[out], whole[out], rtol=0, atol=1e-5 * scale, err_msg=f"{name}:{out}")
    # and each part equals the network run on that part alone: the examples are independent
    net.threads = 1
    first = net.run(x[:1])
    for out in whole:
        scale = max(1.0, float(np.abs(first[out]).max()))
        np.testing.assert_allclose(first[out], whole[out][:1], rtol=0, atol=1e-5 * scale)


def test_blas_is_single_threaded_during_a_split_run_and_restored_after():
    controller = threads._controller()
    before = threads.blas_threads()
    seen: list[int] = []

    def forward(params, x):
        seen.append(threads._current_blas_threads(controller))
        return {"y": x * 2}

    x = np.arange(8, dtype=np.float32).reshape(4, 2)
    with controller.limit(limits=2, user_api="blas"):  # a count to restore even on a 1-core machine
        out = threads.split_batch(forward, {}, [x], threads=2)
        assert seen == [1, 1]
        assert threads.blas_threads() == 2
    np.testing.assert_array_equal(out["y"], x * 2)
    assert threads.blas_threads() == before


def test_overlapping_split_runs_restore_blas_once_the_last_ends():
    controller = threads._controller()
    inside = threading.Barrier(4)  # both runs' parts are inside at once
    counts: list[int] = []

    def forward(params, x):
        inside.wait(timeout=30)
        counts.append(threads._current_blas_threads(controller))
        inside.wait(timeout=30)
        return {"y": x + 1}

    with controller.limit(limits=2, user_api="blas"):
        runs = [threading.Thread(target=threads.split_batch, args=(forward, {}, [np.zeros((2, 3))], 2))
                for _ in range(2)]
        for run in runs:
            run.start()
        for run in runs:
            run.join(timeout=60)
        assert counts == [1, 1, 1, 1]
        assert threads.blas_threads() == 2  # not left at the 1 the second run saw when it began


def test_an_error_in_a_part_propagates_and_restores_blas():
    before = threads.blas_threads()

    def forward(params, x):
        if x[0, 0] > 0:
            raise MemoryError("part 2")
        return {"y": x}

    with pytest.raises(MemoryError, match="part 2"):
        threads.split_batch(forward, {}, [np.array([[0.0], [1.0]])], threads=2)
    assert threads.blas_threads() == before


def test_cli_run_threads_option_keeps_the_outputs(tmp_path, capsys, split_any):
    from cnnc.cli import main

    saved = {}
    for count in ("1", "2"):
        path = tmp_path / f"out{count}.npz"
        assert main(["run", str(EXAMPLES / "resnet18.cnn"), "--input-shape", "image=3x3x64x64", "--batch", "3",
                     "--threads", count, "--save-output", str(path)]) == 0
        saved[count] = dict(np.load(path))
    capsys.readouterr()
    for out, value in saved["1"].items():
        np.testing.assert_allclose(saved["2"][out], value, rtol=0, atol=1e-5 * max(1.0, float(np.abs(value).max())))


def test_split_batch_matches_the_reference_interpreter(split_any):
    """Against an independent reference: the un-optimized IR evaluated by cnnc's interpreter."""
    net = cnnc.compile(EXAMPLES / "resnet18.cnn", input_shapes={"image": (3, 3, 64, 64)})
    randomize(net, seed=5)
    net.threads = 2
    x = np.random.default_rng(1).standard_normal((3, 3, 64, 64)).astype(np.float32)
    got = net.run(x)
    want = cnnc.eval_graph(net.source_graph, net.params, {"image": x})
    for out in want:
        scale = max(1.0, float(np.abs(want[out]).max()))
        np.testing.assert_allclose(got[out], want[out], rtol=1e-3, atol=2e-4 * scale)


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True, None])
def test_threads_must_be_a_positive_integer(bad):
    net = cnnc.compile(EXAMPLES / "lenet5.cnn")
    with pytest.raises(cnnc.CnncError, match="threads must be a positive integer"):
        net.threads = bad
    assert net.threads >= 1


def test_a_batch_splits_only_into_parts_worth_a_thread():
    calls: list[int] = []

    def forward(params, x):
        calls.append(len(x))
        return {"y": x}

    x = np.zeros((8, 1), dtype=np.float32)
    threads.split_batch(forward, {}, [x], threads=2, macs_per_example=threads.MIN_PART_MACS // 8)  # one part's worth
    assert calls == [8]
    calls.clear()
    threads.split_batch(forward, {}, [x], threads=4, macs_per_example=threads.MIN_PART_MACS // 4)  # two parts' worth
    assert sorted(calls) == [4, 4]
    calls.clear()
    threads.split_batch(forward, {}, [x], threads=2, macs_per_example=threads.MIN_PART_MACS)
    assert sorted(calls) == [4, 4]


def test_inputs_sharing_the_batch_must_agree_on_it():
    net = cnnc.compile("input a: [N, 2, 4, 4]\ninput b: [N, 2, 4, 4]\noutput y = add(a, b)\n")
    ones = np.ones((2, 2, 4, 4), dtype=np.float32)
    with pytest.raises(cnnc.CnncError, match="inputs 'a' and 'b' share the dimension N but have 2 and 1"):
        net(ones, ones[:1])  # NumPy alone would broadcast b over a's batch
    net.threads = 2
    np.testing.assert_array_equal(net(ones, 3 * ones), 4 * ones)
