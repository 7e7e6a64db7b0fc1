"""Compile-time benchmark: `cnnc.compile(path)` (source → callable network) for the ResNets.

    python benchmarks/bench_compile.py                      # resnet18 … resnet152, median of 5
    python benchmarks/bench_compile.py --models resnet50 --repeat 9

Every measurement is a fresh Python process that has imported cnnc and nothing else, as a user's
first `cnnc.compile` after `import cnnc` (so one-time costs — building the LALR parser, importing
the pass and code-generation modules, reading the kernel sources — are counted, as they are for
that user). Two kinds of process, `--repeat` of each per model, median reported:

- one that times the phases `compile` runs, one after the other, by calling the same functions:
  parse + elaborate (`cnnc.parse`), passes (`cnnc.passes.optimize` at -O2), codegen
  (`cnnc.codegen.python.generate`), load (`exec` of the generated module), and parameter init
  (`init_params` into the `ParamStore`, seed 0). Each phase includes its lazy imports;
- one that times a plain `cnnc.compile(path)` call, then, in the same process, what the first
  call adds before it runs any layer: drawing the seeded weights (a network's store draws them
  when they are first read, so `cnnc.compile` does not, and never does when the user's weights
  replace them) and deriving the folded ones (`net.runtime_params()`): "ready to run".

The table gives each model's IR node count (parsed → after the passes) and parameter count,
then milliseconds. `--json FILE` also writes the raw times. The same script run from an older
checkout (its own `benchmarks/` folder) measures that checkout.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DEFAULT_MODELS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
PHASES = ["parse", "passes", "codegen", "load", "init"]
HEADINGS = {"parse": "parse + elaborate", "passes": "passes (-O2)", "codegen": "codegen", "load": "load",
            "init": "param init"}


def _phases(path: str) -> dict[str, float | int]:
    """One cold compile, phase by phase, in a fresh process (the child's work)."""
    import cnnc

    times: dict[str, float | int] = {}
    clock = time.perf_counter
    start = clock()
    graph = cnnc.parse(path)
    times["parse"] = clock() - start

    start = clock()
    from cnnc.passes import optimize

    optimized = optimize(graph, level=2)
    optimized.info.source_graph = graph
    times["passes"] = clock() - start

    start = clock()
    from cnnc.codegen.python import generate

    source = generate(optimized)
    times["codegen"] = clock() - start

    start = clock()
    from cnnc.runtime.loader import load_forward

    load_forward(source, optimized.info.source_name)
    times["load"] = clock() - start

    start = clock()
    from cnnc.runtime.params import ParamStore, init_params

    specs = optimized.info.user_param_specs()
    store = ParamStore(specs, init_params(specs, 0))
    times["init"] = clock() - start

    times["nodes"] = graph.number_of_nodes()
    times["nodes_optimized"] = optimized.number_of_nodes()
    times["params"] = sum(int(value.size) for value in store.values())
    return times


def _compile(path: str) -> dict[str, float | int]:
    import cnnc

    start = time.perf_counter()
    net = cnnc.compile(path)
    compiled = time.perf_counter()
    net.runtime_params()  # the seeded weights drawn, the folded ones derived
    return {"compile": compiled - start, "ready": time.perf_counter() - start}


def _child(kind: str, path: Path) -> dict[str, float | int]:
    """Run `kind` ("phases" or "compile") on `path` in a fresh interpreter; its result."""
    result = subprocess.run([sys.executable, __file__, "--child", kind, str(path)], capture_output=True,
                            text=True, cwd=ROOT, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{kind} {path.name} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(model: str, repeat: int) -> dict[str, object]:
    path = EXAMPLES / f"{model}.cnn"
    phases = [_child("phases", path) for _ in range(repeat)]
    compiles = [_child("compile", path) for _ in range(repeat)]
    row: dict[str, object] = {"model": model, "nodes": phases[0]["nodes"],
                              "nodes_optimized": phases[0]["nodes_optimized"], "params": phases[0]["params"]}
    for phase in PHASES:
        row[phase] = [float(p[phase]) for p in phases]
    row["sum"] = [sum(float(p[phase]) for phase in PHASES) for p in phases]
    row["compile"] = [c["compile"] for c in compiles]
    row["ready"] = [c["ready"] for c in compiles]
    return row


def _ms(values: object) -> str:
    assert isinstance(values, list)
    return f"{statistics.median(values) * 1e3:.0f}"


def table(rows: list[dict[str, object]]) -> str:
    head = (["model", "nodes (parsed → -O2)", "parameters"] + [HEADINGS[p] for p in PHASES]
            + ["phases, sum", "`cnnc.compile`", "ready to run"])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for row in rows:
        params = int(row["params"])  # type: ignore[call-overload]
        cells = [str(row["model"]), f"{row['nodes']} → {row['nodes_optimized']}", f"{params / 1e6:.1f} M"]
        cells += [_ms(row[p]) for p in PHASES] + [_ms(row["sum"]), f"**{_ms(row['compile'])}**", _ms(row["ready"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="example names (examples/NAME.cnn)")
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per model and kind (median)")
    parser.add_argument("--json", type=Path, help="also write the raw times here")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(ROOT))
        kind, path = args.child
        print(json.dumps(_phases(path) if kind == "phases" else _compile(path)))
        return
    missing = [m for m in args.models if not (EXAMPLES / f"{m}.cnn").is_file()]
    if missing:
        parser.error(f"no examples/{missing[0]}.cnn")
    import numpy

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"# cnnc compile time — {platform.processor() or platform.machine()}, {cpus} CPUs, "
          f"Python {platform.python_version()}, NumPy {numpy.__version__}")
    print(f"# median of {args.repeat} fresh processes per cell, milliseconds\n")
    rows = [measure(model, args.repeat) for model in args.models]
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
