"""The limits that bound how much work a program may ask of the compiler, in one place.

Each is far above what any real network needs and low enough that a hostile or mistaken
program fails within a second, with a message at the construct that crossed it, instead of
running for hours or exhausting memory. docs/language.md (section "Limits") states each one.
"""
from __future__ import annotations

MAX_INT = 2**63 - 1
"""Every integer a program writes or computes lies within ±MAX_INT (a signed 64-bit integer)."""

MAX_SIZE = 2**31 - 1
"""The largest size, count, stride or dilation an op argument may give (`stride=2**62` is refused)."""

MAX_REPEAT = 10_000
"""The largest count of one repetition `stage * n`."""

MAX_LAYERS = 50_000
"""The most layers (IR nodes) one compilation may build, however repetitions nest."""

MAX_BLOCK_CALLS = 20_000
"""The most block calls one compilation may make, recursion included."""

MAX_BLOCK_DEPTH = 64
"""The deepest nesting of block calls: deep enough for any network, shallow for Python's stack."""

MAX_TENSOR_ELEMENTS = 2**40
"""The most elements of one tensor or parameter (4 TiB of float32), batch dimension excluded."""

MAX_SOURCE_BYTES = 2 * 2**20
"""The largest `.cnn` file cnnc reads (the main file or an import): 2 MiB, some 50,000 lines.
Lark parses about 100 KB a second, so this also bounds the time a file takes to parse."""
