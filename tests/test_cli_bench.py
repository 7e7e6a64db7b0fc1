"""`cnnc bench`: the timing table per batch size, --profile's per-layer table, and the checks."""
from __future__ import annotations

import re

import pytest
from conftest import ROOT

import cnnc
from cnnc.cli import main
from cnnc.runtime import bench, profile

TINY = ROOT / "tests" / "golden" / "tiny.cnn"
NUMBER = r"\d+\.\d+"


def test_bench_prints_a_row_per_batch_size(capsys):
    assert main(["bench", str(TINY), "--batch", "1,3", "--repeat", "3", "--warmup", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.match(rf"{re.escape(str(TINY))}: -O2, \d+ nodes, on the CPU \(NumPy[^;]*; .*\); compiled in {NUMBER} s$",
                    lines[0])
    assert lines[1] == ("3 timed runs per batch size after 1 warm-up run; random input (seed 0); "
                        "times per forward pass")
    assert lines[2].split() == ["batch", "median", "ms", "IQR", "ms", "min", "ms", "max", "ms", "ms/example",
                                "examples/s"]
    rows = [line.split() for line in lines[3:]]
    assert [row[0] for row in rows] == ["1", "3"]
    for row in rows:
        median, iqr, low, high, per_example, rate = map(float, row[1:])
        assert low <= median <= high and iqr >= 0
        assert per_example == pytest.approx(median / int(row[0]), abs=0.01)
        # the rate comes from the unrounded median: within what the printed median's rounding allows
        assert 1000 * int(row[0]) / (median + 0.005) * 0.999 <= rate <= 1000 * int(row[0]) / max(median - 0.005, 1e-9)


@pytest.mark.parametrize("threads, note", [
    ("1", "1 thread"), ("3", "3 threads, a batch split over them in parts of at least 100 M multiply-adds")])
def test_bench_threads_option_sets_the_split(threads, note, capsys):
    from cnnc.kernels import compiled
    from cnnc.runtime.bench import blas_note, loops_note

    assert main(["bench", str(TINY), "--batch", "2", "--repeat", "1", "--warmup", "0", "--threads", threads]) == 0
    assert f"on the CPU (NumPy{blas_note()}{loops_note()}; {note}" in capsys.readouterr().out.splitlines()[0]
    assert ("compiled loops" in loops_note()) == (compiled.loops() is not None)


def test_bench_names_the_blas_kernels(monkeypatch):
    """The header names the kernel set threadpoolctl reads from NumPy's BLAS, and the variables
    that tune OpenBLAS when the environment sets them (OPENBLAS_CORETYPE=Haswell halves the GEMMs
    on AVX-512)."""
    from threadpoolctl import threadpool_info

    pools = [p for p in threadpool_info() if p.get("user_api") == "blas" and p.get("architecture")]
    if not pools:
        pytest.skip("threadpoolctl reads no kernel set from this BLAS")
    for var in bench.OPENBLAS_TUNING:
        monkeypatch.delenv(var, raising=False)
    assert bench.blas_note().endswith(f"'s {pools[0]['architecture']} kernels")
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "512")
    assert bench.blas_note().endswith(f"'s {pools[0]['architecture']} kernels, OPENBLAS_CORETYPE=Haswell, "
                                      "OPENBLAS_L2_SIZE=512")


def test_bench_profile_times_every_layer(capsys):
    assert main(["bench", str(TINY), "--batch", "2", "--repeat", "1", "--warmup", "0", "--profile",
                 "--profile-top", "2"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^per layer, batch 2: {NUMBER} ms in \d+ nodes \(median of 1 per node\)$", out, re.M)
    assert "| kind | nodes | ms | share |" in out and "slowest 2 nodes:" in out


def test_bench_refuses_what_it_cannot_time(tmp_path, capsys):
    program = tmp_path / "fixed.cnn"
    program.write_text("input image: [1, 1, 12, 12]\noutput y = image |> flatten |> dense(3)\n")
    assert main(["bench", str(program), "--batch", "1,8"]) == 1
    assert "--batch: error: input 'image' has a fixed batch of 1" in capsys.readouterr().err
    assert main(["bench", str(program), "--repeat", "1"]) == 0  # its own batch is fine
    assert main(["bench", str(TINY), "--gpu", "--profile"]) == 1
    assert "--profile: error: --profile times the NumPy kernels one by one" in capsys.readouterr().err


def test_timing_statistics():
    timing = bench.Timing(4, (10.0, 12.0, 11.0, 30.0), (50.0,))
    assert timing.median == 11.5 and timing.per_example == 11.5 / 4
    assert timing.iqr == pytest.approx(16.5 - 10.75)  # the middle half, not the 30 ms outlier
    assert timing.throughput == pytest.approx(4000 / 11.5)
    assert bench.Timing(1, (5.0,), ()).iqr == 0.0


def test_profile_nodes_script_wraps_the_package():
    """benchmarks/profile_nodes.py's names are the package's profiler (bench_cpu.py imports them)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_profile_nodes", ROOT / "benchmarks" / "profile_nodes.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    net = cnnc.compile(TINY)
    rows = script.profile_net(net, 1, 1, 0)
    assert [name for name, _, _ in rows] == [name for name, _, _ in profile.profile_net(net, 1, 1, 0)]
    fixed = [("a", "relu", 1.0)]
    assert script.report(fixed, "t", 1, 1) == profile.report(fixed, "t", 1, 1)


def test_profile_drops_each_value_after_its_last_reader():
    """Values are freed as the forward pass frees them, so large outputs reuse memory (holding all
    of them made fresh pages, and page faults, on every call); the inputs and the outputs, one of
    them read again later, stay for the next pass."""
    import tracemalloc

    chain = " |> ".join(f"relu as r{i}" for i in range(12))
    net = cnnc.compile(f"input x: [N, 16, 64, 64]\na = x |> {chain}\noutput early = a\n"
                       "output y = relu(a + a)\n")
    value = 4 * 16 * 64 * 64 * 4  # bytes of one [4, 16, 64, 64] float32 value
    tracemalloc.start()
    try:
        rows = profile.profile_net(net, 4, 2, 0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [name for name, _, _ in rows][:12] == [f"r{i}" for i in range(12)] and len(rows) >= 13
    assert peak < 6 * value  # inputs, outputs and a value or two in flight; all held would be 14x
