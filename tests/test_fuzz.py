"""A seeded, grammar-aware fuzzer over the examples and the documentation's programs.

Each program is one to three token-level mutations of a seed program (a number replaced by an
awkward one, a name by another name of the language, a token deleted, doubled, swapped or
inserted, a line spliced in from another program). Every mutant must compile or fail with a
CnncError within TIME_LIMIT seconds and MEMORY_LIMIT bytes; a small accepted network must compute the same at -O0 and
-O2. Anything else (another exception, a hang, a disagreement) fails the test, listing the
programs that did it.

`CNNC_FUZZ=N` runs N programs instead of the default (`CNNC_FUZZ=100000 pytest tests/test_fuzz.py`
for a long run; `CNNC_FUZZ_SEED` changes the seed).
"""
from __future__ import annotations

import contextlib
import os
import random
import re
import resource
import signal
import traceback
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import cnnc
from cnnc.ir.cost import node_cost

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = int(os.environ.get("CNNC_FUZZ", "1000"))
SEED = int(os.environ.get("CNNC_FUZZ_SEED", "0"))
TIME_LIMIT = 10  # seconds per program: far above any real compile of these seeds
MEMORY_LIMIT = 4 * 2**30  # bytes each program may map beyond what the test process has mapped
# The -O2 passes are not linear in the graph's size (fusion asks networkx for paths), so a
# mutant that repeats a ResNet stage 1,000 times is elaborated and verified, not optimized.
PASS_LIMIT = 2_000
RUN_LIMIT = 2_000_000  # run -O0 and -O2 only below this many MACs + parameters + activations

TOKEN = re.compile(r'"[^"\n]*"|[0-9]+x[0-9]+|[0-9]+\.[0-9]*(?:[eE][+-]?[0-9]+)?|[0-9]+(?:[eE][+-]?[0-9]+)?'
                   r'|[A-Za-z_][A-Za-z0-9_]*|\|>|\*\*|//|==|!=|<=|>=|#[^\n]*|\s+|.', re.S)
NUMBERS = ["0", "1", "2", "3", "7", "-1", "64", "1000", "65536", "2**62", "2**64", "10**30", "10**5000",
           "0.5", "1e308", "1e-30", "-0.0", "3x3", "0x0", "1x1", "1x100", "100x100", "(2, 0)"]
WORDS = ["x", "true", "false", "same", "valid", "N", "channels", "height", "width", "max", "int", "as",
         "if", "else", "and", "not", "return", "block", "input", "output", "import", "relu", "conv", "dense",
         "concat", "add", "flatten", "maxpool", "bn", "softmax", "upsample", "slice", "reshape"]
PUNCTUATION = ["(", ")", "[", "]", "{", "}", ",", "=", "|>", "*", "+", "-", "/", "//", "**", ":", "==", "\n"]


def seed_programs() -> list[str]:
    """The examples and every `cnn` block of the documentation."""
    texts = [path.read_text() for path in sorted((ROOT / "examples").glob("*.cnn"))]
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        texts += re.findall(r"```cnn\n(.*?)```", doc.read_text(), re.S)
    return texts


def mutate(text: str, corpus: list[str], rng: random.Random) -> str:
    """One to three mutations of `text`, token by token."""
    tokens = TOKEN.findall(text)
    for _ in range(rng.randint(1, 3)):
        solid = [i for i, tok in enumerate(tokens) if tok.strip() and not tok.startswith("#")]
        if not solid:
            break
        numbers = [i for i in solid if tokens[i][0].isdigit()]
        i = rng.choice(solid)
        kind = rng.randrange(9)
        if kind <= 2 and numbers:  # most often: keep the program's structure, change its sizes
            tokens[rng.choice(numbers)] = rng.choice(NUMBERS)
        elif kind <= 3:
            tokens[i] = rng.choice(WORDS + NUMBERS)
        elif kind == 4:
            del tokens[i]
        elif kind == 7:
            tokens.insert(i, tokens[i])
        elif kind == 6 and i + 1 < len(tokens):
            tokens[i], tokens[i + 1] = tokens[i + 1], tokens[i]
        elif kind == 5:
            tokens.insert(i, " " + rng.choice(PUNCTUATION + WORDS) + " ")
        else:
            lines = rng.choice(corpus).splitlines() or [""]
            tokens.insert(i, "\n" + rng.choice(lines) + "\n")
    return "".join(tokens)


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Raise TimeoutError in the main thread after `seconds` (SIGALRM)."""
    def expire(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def memory_limit(extra: int) -> Iterator[None]:
    """Let the process map at most `extra` more bytes (RLIMIT_AS; Linux), so that a mutant's
    huge allocation fails with MemoryError instead of exhausting the machine."""
    try:
        status = Path("/proc/self/status").read_text()
        mapped = int(re.search(r"VmSize:\s*(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]
    except (OSError, AttributeError):
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (mapped + extra if hard == resource.RLIM_INFINITY
                                            else min(hard, mapped + extra), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def small(graph) -> bool:
    """Cheap enough to run twice: the work of one example, all nodes together."""
    total = 0
    for name in graph.nodes:
        cost = node_cost(graph, name)
        total += cost.macs + cost.params + cost.activation_bytes // 4
    return total < RUN_LIMIT


def check(text: str) -> str:
    """'error', 'elaborated', 'compiled' or 'ran' (both levels agreed); raises on anything else."""
    try:
        graph = cnnc.parse(text, name="fuzz.cnn")
        if len(graph) > PASS_LIMIT:
            return "elaborated"
        if not small(graph):
            cnnc.build_graph(text, name="fuzz.cnn")  # the passes still run
            return "compiled"
        low, high = (cnnc.compile(text, name="fuzz.cnn", optimize=level) for level in (0, 2))
        rng = np.random.default_rng(0)
        inputs = {n: rng.standard_normal([1 if isinstance(d, str) else d for d in s]).astype(np.float32)
                  for n, s in low.input_shapes.items()}
        expected, actual = low.run(**inputs), high.run(**inputs)
    except cnnc.CnncError:
        return "error"
    for name, value in expected.items():
        if not np.allclose(value, actual[name], rtol=1e-3, atol=1e-3, equal_nan=True):
            raise AssertionError(f"-O0 and -O2 disagree on output '{name}'")
    return "ran"


def test_fuzz(monkeypatch):
    monkeypatch.chdir(ROOT / "examples")  # imports in the examples resolve from here
    corpus = seed_programs()
    rng = random.Random(SEED)
    counts: dict[str, int] = {}
    failures = []
    np.seterr(all="ignore")  # overflow in a mutant's arithmetic is its own business
    for index in range(PROGRAMS):
        text = mutate(rng.choice(corpus), corpus, rng)
        try:
            with deadline(TIME_LIMIT), memory_limit(MEMORY_LIMIT):
                outcome = check(text)
        except Exception:  # noqa: BLE001 - every other exception is what this test looks for
            outcome = "failed"
            failures.append(f"--- program {index} ---\n{text}\n{traceback.format_exc(limit=-3)}")
        counts[outcome] = counts.get(outcome, 0) + 1
    print(f"fuzz: {PROGRAMS} programs, seed {SEED}: {counts}")
    if failures:
        pytest.fail(f"{len(failures)} of {PROGRAMS} programs failed:\n" + "\n".join(failures[:5]))
