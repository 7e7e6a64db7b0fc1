"""benchmarks/bench_cpu.py and benchmarks/profile_nodes.py: their helpers, and one tiny end-to-end run."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import cnnc

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str) -> ModuleType:
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))  # bench_cpu imports its sibling profile_nodes
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def profile_nodes() -> ModuleType:
    return _load("profile_nodes")


@pytest.fixture(scope="module")
def bench_cpu() -> ModuleType:
    return _load("bench_cpu")


def test_report_sums_kinds_sorted_by_time(profile_nodes: ModuleType) -> None:
    rows = [("a", "conv 3x3 s1 dense", 3.0), ("b", "relu", 1.0), ("c", "conv 3x3 s1 dense", 4.0)]
    text = profile_nodes.report(rows, "net", repeat=2, top=1)
    lines = text.splitlines()
    assert lines[0] == "net: 8.0 ms in 3 nodes (median of 2 per node)"
    assert lines[3] == "| conv 3x3 s1 dense | 2 | 7.0 | 87.5% |"
    assert lines[4] == "| relu | 1 | 1.0 | 12.5% |"
    assert lines[-1].split() == ["4.00", "ms", "c", "(conv", "3x3", "s1", "dense)"]
    assert "slowest" not in profile_nodes.report(rows, "net", repeat=2, top=0)


def test_profile_net_times_every_node(profile_nodes: ModuleType) -> None:
    net = cnnc.compile(ROOT / "examples" / "lenet5.cnn")
    rows = profile_nodes.profile_net(net, batch=2, repeat=1, seed=0)
    assert [name for name, _, _ in rows] == [n for n in net.graph.topo_order() if n not in net.graph.info.inputs]
    assert all(ms >= 0 for _, _, ms in rows)
    assert {"conv 5x5 s1 dense", "avg_pool 2x2"} <= {kind for _, kind, _ in rows}


def test_bench_helpers(bench_cpu: ModuleType) -> None:
    assert bench_cpu._fmt(None) == "—"
    assert bench_cpu._fmt([3.0, 1.0, 2.0]) == "2.0 (1–3)"
    assert bench_cpu._ratio([2.0], [4.0]) == "0.50"
    assert bench_cpu._ratio([2.0], None) == "—"
    assert 3.9 < bench_cpu._peak_mib(lambda: np.ones(2**20, np.float32)) < 4.5  # NumPy's buffers are traced
    net = cnnc.compile(ROOT / "examples" / "lenet5.cnn")
    planned = bench_cpu._planned_mib(net, 4)
    assert planned is not None and 0 < planned == pytest.approx(4 * bench_cpu._planned_mib(net, 1))
    assert bench_cpu._planned_mib(cnnc.compile(ROOT / "examples" / "lenet5.cnn", optimize=0), 1) is None
    assert bench_cpu._cpu_model()
    assert bench_cpu._blas(np)


def test_engines_are_timed_in_rotating_rounds(bench_cpu: ModuleType) -> None:
    calls: list[str] = []
    engines = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    times = bench_cpu._timed_rounds(engines, rounds=3, warmup=1, pause=0, block=2)
    assert {name: len(t) for name, t in times.items()} == {"a": 2 * 3, "b": 2 * 3, "c": 2 * 3}
    assert all(t >= 0 for ts in times.values() for t in ts)
    assert calls[:3] == ["a", "b", "c"]  # the warm-ups, then each turn: one untimed call and two timed
    turns = calls[3::3]
    assert turns == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # each round starts one engine later
    assert all(calls[3 + 3 * i:6 + 3 * i] == [turns[i]] * 3 for i in range(9))


@pytest.mark.slow
def test_bench_cpu_tiny_run() -> None:
    pytest.importorskip("torch")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_cpu.py"), "--models", "resnet18",
                          "--batch", "1", "--repeat", "1", "--warmup", "0", "--threads", "1", "--with-O0"],
                         capture_output=True, text=True, check=True, timeout=600).stdout
    header, _, columns, _, row = out.splitlines()[:5]
    assert header.startswith("CPU: ") and "threads=1" in header
    cells = [c.strip() for c in row.strip("|").split("|")]
    names = [c.strip() for c in columns.strip("|").split("|")]
    assert names[:4] == ["model", "batch", "cnnc -O2", "cnnc -O0"] and len(cells) == len(names)
    assert cells[:2] == ["resnet18", "1"]
    assert float(cells[names.index("max abs diff vs PyTorch")]) < 1e-3
    assert float(cells[names.index("cnnc peak MiB")]) >= float(cells[names.index("planned MiB")]) > 0


def test_bench_threads_compares_the_two_modes() -> None:
    bench_threads = _load("bench_threads")
    whole, split = bench_threads.compare("lenet5", batch=4, threads=2, rounds=1, per_round=1, pause=0)
    assert whole > 0 and split > 0


def test_bench_compiled_times_both_paths() -> None:
    from cnnc.kernels import compiled

    if compiled.loops() is None:
        pytest.skip("numba is not installed (the fast extra)")
    bench_compiled = _load("bench_compiled")
    times = bench_compiled.compare("lenet5", batch=2, rounds=1, per_round=1, pause=0)
    assert len(times["numpy"]) == len(times["compiled"]) == 1 and min(times["numpy"] + times["compiled"]) > 0
    assert compiled._state["loops"] is compiled.loops() is not None  # restored


def test_bench_layers_runs_every_kernel_it_names(monkeypatch, capsys) -> None:
    bench_layers = _load("bench_layers")
    monkeypatch.setattr(bench_layers, "DENSE", [(2, 8, 8, 14)])
    monkeypatch.setattr(bench_layers, "DEPTHWISE", [(1, 8, 9, 1), (2, 8, 9, 2)])
    monkeypatch.setattr(sys, "argv", ["bench_layers.py", "--repeat", "1"])
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, "1")  # main() sets them; monkeypatch restores them after
    bench_layers.main()
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| n")]
    assert len(rows) == 3 and all("nan" not in row.split("|")[2] for row in rows)
