"""A non-editable install, used from another directory, finds its grammar and runs."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.slow
def test_wheel_install_outside_checkout(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for item in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / item, source / item)
    for folder in ("cnnc", "grammars"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(source)], check=True, capture_output=True, timeout=600)
    assert (site / "cnnc" / "grammars" / "cnn.lark").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "net.cnn").write_text("input x: [N, 3, 8, 8]\noutput y = x |> conv(4, 3x3) |> relu\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = (f"import cnnc, numpy as np; assert cnnc.__file__.startswith({str(site)!r}), cnnc.__file__; "
            "net = cnnc.compile('net.cnn'); print(net(np.ones((1, 3, 8, 8), np.float32)).shape)")
    result = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "(1, 4, 6, 6)" in result.stdout
    shutil.rmtree(source)  # the installed copy must not depend on the source tree
    result = subprocess.run([sys.executable, "-m", "cnnc", "check", "net.cnn"], cwd=elsewhere, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
