"""Diagnostics as a user meets them: several independent errors in one run (and not their
consequences), warnings about unused names, colour only on a terminal, suggestions for pass names.

Driven through the command (`cnnc.cli.main`, its standard error captured) and through the API.
"""
from __future__ import annotations

import sys
import warnings

import pytest

import cnnc
from cnnc.cli import main
from cnnc.errors import CnncErrors, CnncImportError, CnncNameError, CnncSyntaxError, CnncTypeError, CnncWarning

TWO_ERRORS = """\
input image: [N, 3, 32, 32]
a = image |> cnov(8, 3x3)
b = image |> relu
c = image |> conv(8, 3x3, padding=1)
output y = b + image
"""

TWO_ERRORS_SHOWN = """\
two.cnn:2:14: error: unknown op or block 'cnov'; did you mean 'conv'?
    a = image |> cnov(8, 3x3)
                 ^^^^
two.cnn:4:27: error: conv has no argument 'padding'; did you mean 'pad'? (its arguments: filters, kernel, stride, \
pad, dilation, groups, bias)
    c = image |> conv(8, 3x3, padding=1)
                              ^^^^^^^^^
2 errors
"""

UNUSED = """\
input image: [N, 3, 32, 32]
x = image |> conv(8, 3x3)
output y = image |> relu
"""

UNUSED_SHOWN = """\
unused.cnn:2:1: warning: value 'x' is never used
    x = image |> conv(8, 3x3)
    ^
"""

RED, YELLOW, RESET = "\033[1;31m", "\033[1;33m", "\033[0m"


def cli(capsys, tmp_path, text: str, *args: str, name: str = "prog.cnn", command: str = "check"):
    """Run `cnnc COMMAND FILE ARGS` on `text`; the exit status, standard output and standard error."""
    path = tmp_path / name
    path.write_text(text)
    status = main([command, str(path), *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err.replace(str(tmp_path) + "/", "")


@pytest.fixture(autouse=True)
def plain_terminal(monkeypatch):
    """No NO_COLOR from the environment running the tests; each test sets what it checks."""
    monkeypatch.delenv("NO_COLOR", raising=False)


# ---- several errors ---------------------------------------------------------------------------
def test_two_independent_errors_are_both_reported_in_source_order(capsys, tmp_path):
    status, out, err = cli(capsys, tmp_path, TWO_ERRORS, name="two.cnn")
    assert status == 1 and out == ""
    assert err == TWO_ERRORS_SHOWN


def test_the_api_raises_one_exception_holding_every_error():
    with pytest.raises(CnncErrors) as caught:
        cnnc.parse(TWO_ERRORS, name="two.cnn")
    error = caught.value
    assert isinstance(error, cnnc.CnncError)  # `except CnncError` still catches everything
    assert [type(e) for e in error.errors] == [CnncNameError, CnncTypeError]
    assert [e.span.line for e in error.errors] == [2, 4]
    assert str(error) == TWO_ERRORS_SHOWN.rstrip("\n")
    assert error.span == error.errors[0].span and error.message == error.errors[0].message


def test_one_error_is_raised_as_itself_as_before(capsys, tmp_path):
    text = "input image: [N, 3, 32, 32]\noutput y = image |> cnov(8, 3x3)\n"
    with pytest.raises(CnncNameError) as caught:
        cnnc.parse(text, name="one.cnn")
    assert not isinstance(caught.value, CnncErrors)
    status, _, err = cli(capsys, tmp_path, text, name="one.cnn")
    assert status == 1
    assert err == f"{caught.value}\n"  # no count line for a single error
    assert "errors" not in err


def test_a_use_of_a_failed_statements_name_is_no_second_error(capsys, tmp_path):
    text = ("input image: [N, 3, 32, 32]\n"
            "x = image |> cnov(8, 3x3)\n"
            "y = x |> relu\n"
            "output z = y + x\n")
    status, _, err = cli(capsys, tmp_path, text, name="cascade.cnn")
    assert status == 1
    assert err == ("cascade.cnn:2:14: error: unknown op or block 'cnov'; did you mean 'conv'?\n"
                   "    x = image |> cnov(8, 3x3)\n"
                   "                 ^^^^\n")
    with pytest.raises(CnncNameError):  # one error: itself, not a CnncErrors
        cnnc.parse(text, name="cascade.cnn")


def test_the_consequences_of_a_failed_input_block_or_import_are_not_reported():
    bad_input = "input image: [N, 0, 32, 32]\noutput y = image |> relu\n"
    with pytest.raises(cnnc.CnncError) as caught:
        cnnc.parse(bad_input, name="p.cnn")
    assert str(caught.value).startswith("p.cnn:1:1: error: input dimensions must be positive")
    assert not isinstance(caught.value, CnncErrors)

    bad_block = ("input image: [N, 3, 8, 8]\n"
                 "block b(c: float, c: int) { return x |> relu }\n"
                 "output y = image |> b(1, 2)\n")
    with pytest.raises(CnncNameError, match="parameter 'c' is declared twice"):
        cnnc.parse(bad_block, name="p.cnn")

    # the names the missing file would define are not "undefined"; an error of its own still is
    missing = ('import "nothere.cnn"\n'
               "input image: [N, 3, 8, 8]\n"
               "output y = image |> resblock(8)\n"
               "output z = image |> conv(8, 3x3, stride=0)\n")
    with pytest.raises(CnncErrors) as several:
        cnnc.parse(missing, name="p.cnn")
    assert [type(e) for e in several.value.errors] == [CnncImportError, CnncTypeError]
    assert [e.span.line for e in several.value.errors] == [1, 4]


def test_a_block_that_fails_at_each_call_is_reported_once():
    text = ("input image: [N, 3, 8, 8]\n"
            "block b() { return x |> cnov }\n"
            "p = image |> b\n"
            "q = image |> b\n"
            "output y = p + q\n")
    with pytest.raises(CnncNameError) as caught:
        cnnc.parse(text, name="p.cnn")
    assert str(caught.value).startswith("p.cnn:2:25: error: unknown op or block 'cnov'")


def test_errors_in_an_imported_file_and_in_the_main_file_are_reported_together(tmp_path):
    (tmp_path / "lib.cnn").write_text("block one() { return x |> relu }\nk = 1 / 0\n")
    main_file = tmp_path / "net.cnn"
    main_file.write_text('import "lib.cnn"\ninput image: [N, 3, 8, 8]\noutput y = image |> one |> cnov\n')
    with pytest.raises(CnncErrors) as caught:
        cnnc.parse(main_file)
    assert [(e.span.file.name, e.span.line) for e in caught.value.errors] == [("lib.cnn", 2), ("net.cnn", 3)]


def test_a_syntax_error_stops_the_parse_so_it_is_the_only_error(capsys, tmp_path):
    text = "input image: [N, 3, 8, 8]\na = image |> cnov\noutput y = image |> conv(8, 3 x 3)\n"
    with pytest.raises(CnncSyntaxError):
        cnnc.parse(text, name="p.cnn")
    status, _, err = cli(capsys, tmp_path, text, name="p.cnn")
    assert status == 1 and err.count("error:") == 1


# ---- warnings ---------------------------------------------------------------------------------
def test_an_unused_value_warns_with_its_place_and_still_compiles(capsys, tmp_path):
    status, out, err = cli(capsys, tmp_path, UNUSED, name="unused.cnn")
    assert status == 0 and "ok" in out
    assert err == UNUSED_SHOWN
    status, out, err = cli(capsys, tmp_path, UNUSED, "-o", str(tmp_path / "net.py"), name="unused.cnn",
                           command="compile")
    assert status == 0 and (tmp_path / "net.py").exists()
    assert err == UNUSED_SHOWN  # once, though --verify and other options may parse the program again


def test_the_api_warns_with_a_cnnc_warning_attributed_to_the_caller():
    with pytest.warns(CnncWarning) as caught:
        graph = cnnc.parse(UNUSED, name="unused.cnn")
    assert list(graph.info.outputs) == ["y"]
    [warning] = caught.list
    assert issubclass(warning.category, UserWarning)
    assert str(warning.message) == UNUSED_SHOWN.rstrip("\n")
    assert warning.message.message == "value 'x' is never used"
    assert (warning.message.span.line, warning.message.span.column) == (2, 1)
    assert warning.filename == __file__  # the user's call, not a line inside cnnc


def messages(text: str) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cnnc.parse(text, name="p.cnn")
    return [f"{w.message.span.line}:{w.message.span.column} {w.message.message}" for w in caught
            if issubclass(w.category, CnncWarning)]


def test_what_is_warned_about_and_what_is_not():
    assert messages("input image: [N, 3, 8, 8]\ninput mask: [N, 1, 8, 8]\n"
                    "block twice(n: int) { return x |> conv(n, 1x1) }\n"
                    "block helper() { return x |> relu }\n"
                    "block used() { return x |> helper }\n"
                    "a = image |> relu\n"
                    "a = image |> twice(4)\n"
                    "_scratch = image |> relu\n"
                    "sized = image |> conv(8, 1x1)\n"
                    "wide = channels(sized) * 2\n"
                    "output y = image |> used |> conv(wide, 1x1)\n") == [
        "2:7 input 'mask' is never used",
        "6:1 value 'a' is never used before it is assigned again",
        "7:1 value 'a' is never used",
    ]
    assert messages("input image: [N, 3, 8, 8]\nblock spare() { return x |> relu }\n"
                    "output y = image |> relu\n") == ["2:7 block 'spare' is never used"]


def test_nothing_is_warned_about_in_a_program_with_errors_or_in_a_library(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would be raised here
        with pytest.raises(CnncErrors):
            cnnc.parse(TWO_ERRORS + "unused = image |> relu\n", name="two.cnn")
        library = tmp_path / "lib.cnn"
        library.write_text("block one() { return x |> relu }\n")
        assert cnnc.frontend.check_library(library) is not None


# ---- colour -----------------------------------------------------------------------------------
def test_no_colour_when_standard_error_is_not_a_terminal(capsys, tmp_path):
    _, _, err = cli(capsys, tmp_path, TWO_ERRORS, name="two.cnn")
    assert "\033" not in err


def test_colour_on_a_terminal_red_errors_and_yellow_warnings(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    _, _, err = cli(capsys, tmp_path, TWO_ERRORS, name="two.cnn")
    assert err == TWO_ERRORS_SHOWN.replace("error:", f"{RED}error:{RESET}")
    _, _, err = cli(capsys, tmp_path, UNUSED, name="unused.cnn")
    assert err == UNUSED_SHOWN.replace("warning:", f"{YELLOW}warning:{RESET}")
    monkeypatch.setenv("NO_COLOR", "")  # set but empty: colour stays (no-color.org)
    _, _, err = cli(capsys, tmp_path, UNUSED, name="unused.cnn")
    assert YELLOW in err


@pytest.mark.parametrize("value", ["1", "yes", "0"])
def test_no_color_turns_colour_off_even_on_a_terminal(capsys, tmp_path, monkeypatch, value):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setenv("NO_COLOR", value)
    _, _, err = cli(capsys, tmp_path, TWO_ERRORS, name="two.cnn")
    assert err == TWO_ERRORS_SHOWN
    _, _, err = cli(capsys, tmp_path, UNUSED, name="unused.cnn")
    assert err == UNUSED_SHOWN


def test_an_error_without_a_span_is_coloured_at_its_label(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    status, _, err = cli(capsys, tmp_path, UNUSED, "--passes", "zzz", name="unused.cnn", command="summary")
    assert status == 1
    assert err.splitlines()[-1].startswith(f"passes: {RED}error:{RESET} unknown pass 'zzz'; passes: ")


# ---- pass names -------------------------------------------------------------------------------
@pytest.mark.parametrize("option", ["--passes", "--disable-pass"])
def test_a_mistyped_pass_name_gets_a_suggestion(capsys, tmp_path, option):
    from cnnc.passes import pass_order

    status, out, err = cli(capsys, tmp_path, "input image: [N, 3, 8, 8]\noutput y = image |> relu\n",
                           option, "fold_bn", command="compile")
    assert status == 1 and out == ""
    assert err == (f"passes: error: unknown pass 'fold_bn'; did you mean 'fold_batch_norm'? "
                   f"(passes: {', '.join(pass_order())})\n")


def test_a_name_defined_twice_is_one_error_and_its_uses_none():
    text = ("input image: [N, 3, 8, 8]\n"
            "block b(n: int) { return x |> conv(n, 1x1) }\n"
            "block b(n: int, m: int) { return x |> conv(n * m, 1x1) }\n"
            "output y = image |> b(2, 3)\n")  # fits the second b, not the first: no second error
    with pytest.raises(CnncNameError) as caught:
        cnnc.parse(text, name="p.cnn")
    assert str(caught.value).startswith("p.cnn:3:1: error: 'b' is already defined (as a block)")
