"""The command line's help and option checking: every default stated (and true), examples and the
docs in every --help, bad option values refused in one line, truncated output said so."""
from __future__ import annotations

import argparse
import re

import pytest
from conftest import ROOT

from cnnc.cli import _build_parser, main

TINY = ROOT / "tests" / "golden" / "tiny.cnn"


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = _build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_help_states_every_default_it_uses(command):
    """An option with a default that is not 'off' (None, False, an empty list) says which, and
    what it says is what argparse really uses."""
    parser = subcommands()[command]
    for action in parser._actions:
        if action.help in (None, argparse.SUPPRESS) or action.default in (None, False, [], argparse.SUPPRESS):
            continue
        stated = re.search(r"\(default: ([^)]*)\)", action.help)
        assert stated, f"cnnc {command} {action.option_strings}: its help does not state its default"
        shown = f"-O{action.default}" if action.dest == "level" else (
            ",".join(map(str, action.default)) if isinstance(action.default, list) else str(action.default))
        assert stated.group(1) == shown, (command, action.option_strings, stated.group(1), action.default)


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_help_has_examples_and_the_docs(command, capsys):
    with pytest.raises(SystemExit) as leaving:
        main([command, "--help"])
    assert leaving.value.code == 0
    text = capsys.readouterr().out
    assert "examples:\n  cnnc " + command in text and "docs/cli.md" in text


def test_summary_help_tells_its_own_default(capsys):
    with pytest.raises(SystemExit):
        main(["summary", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: -O0)" in text and "(default: -O2)" not in text
    assert _build_parser().parse_args(["summary", "x.cnn"]).level == 0
    assert _build_parser().parse_args(["run", "x.cnn"]).level == 2


@pytest.mark.parametrize("args, message", [
    (["run", "T", "--top", "-3"], "argument --top: expected a positive integer, got '-3'"),
    (["run", "T", "--top", "0"], "argument --top: expected a positive integer, got '0'"),
    (["run", "T", "--batch", "0"], "argument --batch: expected a positive integer, got '0'"),
    (["run", "T", "--batch", "two"], "argument --batch: expected a positive integer, got 'two'"),
    (["run", "T", "--seed", "-1"], "argument --seed: expected an integer >= 0, got '-1'"),
    (["compile", "T", "--seed", "1.5"], "argument --seed: expected an integer >= 0, got '1.5'"),
    (["bench", "T", "--batch", "1,0"], "argument --batch: expected positive batch sizes separated by commas "
                                       "(1,8,32), got '1,0'"),
    (["bench", "T", "--repeat", "0"], "argument --repeat: expected a positive integer, got '0'"),
    (["bench", "T", "--warmup", "-1"], "argument --warmup: expected an integer >= 0, got '-1'"),
])
def test_bad_option_values_are_one_line(args, message, capsys):
    command = args[0]
    with pytest.raises(SystemExit) as leaving:
        main([str(TINY) if a == "T" else a for a in args])
    assert leaving.value.code == 2
    err = capsys.readouterr().err
    assert err == f"cnnc {command}: error: {message} (see 'cnnc {command} --help')\n"


def test_top_lists_that_many_and_hidden_examples_are_counted(capsys):
    assert main(["run", str(TINY), "--batch", "8", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count(": top-3: class") == 4
    assert "  ... 4 more examples not shown (--output preds.jsonl writes them all)" in out
    assert re.search(r"^time: compile \d+\.\d\d s, run \d+\.\d\d s \(8 examples, ", out, re.M)
    assert main(["run", str(TINY), "--batch", "4"]) == 0
    assert "not shown" not in capsys.readouterr().out


def test_verify_prints_its_table(capsys):
    assert main(["compile", str(TINY), "--verify", "--emit", "ir"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("# ")  # the IR, untouched by the table
    lines = captured.err.splitlines()
    assert lines[0].startswith("verify: each pass's IR is verified and its outputs are compared with the "
                               "un-optimized graph's (13 nodes)")
    assert "random input (image [2, 1, 12, 12])" in lines[0]
    assert lines[1].split() == ["pass", "changed", "nodes", "max", "rel", "diff", "check", "ms"]
    rows = [line.split() for line in lines[2:-1]]
    assert "fold_batch_norm" in [row[0] for row in rows]
    assert all(row[1] in ("yes", "no") and float(row[3]) < 1e-4 for row in rows)
    assert lines[-1].startswith(f"verify: ok — {len(rows)} passes (")


def test_verify_table_follows_the_passes_chosen(capsys):
    assert main(["summary", str(TINY), "--verify", "--passes", "fold_batch_norm"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line.split()[0] for line in err[2:-1]] == ["fold_batch_norm"]
    assert main(["summary", str(TINY), "--verify"]) == 0  # -O0: no pass
    assert capsys.readouterr().err.splitlines()[-1] == "verify: no pass ran, nothing to compare"
