"""The parser's table cache: used from the user's private cache folder, refused from one that
others can write to (Lark's cache is a pickle), and harmless when stale or garbage."""
from __future__ import annotations

import os

import pytest

import cnnc
from cnnc.syntax import parser

pytestmark = pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX file ownership")


def fresh_parser(monkeypatch, root):
    monkeypatch.setenv("XDG_CACHE_HOME", str(root))
    monkeypatch.delenv("CNNC_NO_CACHE", raising=False)
    parser._lark.cache_clear()
    try:
        return parser._lark(), parser._cache_file()
    finally:
        parser._lark.cache_clear()


def test_cache_is_written_privately_and_reused(tmp_path, monkeypatch):
    lark, path = fresh_parser(monkeypatch, tmp_path)
    assert path is not None and path.exists() and path.parent == tmp_path / "cnnc"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    stamp = path.stat().st_mtime_ns
    fresh_parser(monkeypatch, tmp_path)
    assert path.stat().st_mtime_ns == stamp  # read, not rebuilt
    assert cnnc.parse("input x: [N, 3, 8, 8]\noutput y = x |> relu").info.outputs == {"y": "relu1"}


def test_a_folder_others_can_write_is_not_trusted(tmp_path, monkeypatch):
    (tmp_path / "cnnc").mkdir(mode=0o777)
    os.chmod(tmp_path / "cnnc", 0o777)
    _, path = fresh_parser(monkeypatch, tmp_path)
    assert path is None and not list((tmp_path / "cnnc").iterdir())


def test_a_garbage_cache_file_is_rebuilt(tmp_path, monkeypatch):
    _, path = fresh_parser(monkeypatch, tmp_path)
    path.write_bytes(b"not a cache\n\x00\x01")
    lark, _ = fresh_parser(monkeypatch, tmp_path)
    assert lark.parse("input x: [N, 3]\noutput y = x", start="start") is not None
