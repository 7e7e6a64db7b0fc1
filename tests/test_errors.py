"""Bad input, one case at a time: every user error is one CnncError whose message names the file,
line and column (or the parameter, input or file concerned) and says what is wrong; the CLI
prints it with exit status 1 and never a Python traceback.

Most cases go through the Python API (fast); a handful run `python -m cnnc` in a subprocess.
"""
from __future__ import annotations

import ast
import builtins
import keyword
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cnnc
from cnnc.errors import (
    CnncError,
    CnncImportError,
    CnncInputError,
    CnncNameError,
    CnncParamError,
    CnncShapeError,
    CnncSyntaxError,
    CnncTypeError,
)

ROOT = Path(__file__).resolve().parents[1]
H = "input image: [N, 3, 16, 16]\n"  # line 1 of most cases below
BLOCK = "block b(c: int) {\n    return x |> conv(c, 3x3)\n}\n"  # lines 1-3; H is then line 4


def compile_error(text: str, kind: type[CnncError] = CnncError, name: str = "net.cnn") -> CnncError:
    with pytest.raises(CnncError) as info:
        cnnc.compile(text, name=name)
    assert isinstance(info.value, kind), f"{type(info.value).__name__}: {info.value}"
    return info.value


def check_message(error: CnncError, location: str, *phrases: str) -> str:
    """`str(error)` starts with `location: error: `, holds every phrase, and (when it has a span)
    ends with the offending line and a caret under the reported column."""
    text = str(error)
    first, *rest = text.split("\n")
    assert first.startswith(f"{location}: error: "), text
    for phrase in phrases:
        assert phrase in first, f"{phrase!r} not in {first!r}"
    if error.span is not None:
        line, column = (int(n) for n in location.rsplit(":", 2)[1:])
        assert (error.span.line, error.span.column) == (line, column)
        source_line, carets = rest
        assert source_line == "    " + error.span.file.line(line)
        assert carets.startswith(" " * (4 + column - 1) + "^"), text
        assert set(carets.strip()) == {"^"}
    return first


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "cnnc", *args], check=False, capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=60)


def cli_error(*args: str, cwd: Path) -> str:
    result = cli(*args, cwd=cwd)
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip(), "an error must be printed"
    return result.stderr


# ---- compile-time errors: (id, source, error class, file:line:col, key phrases) ------------------

CASES = [
    # syntax
    ("missing_paren_at_eof", H + "output y = image |> conv(8, 3x3\n", CnncSyntaxError, "net.cnn:2:32",
     ["unexpected end of file", "expected ')', ','"]),
    ("missing_paren_before_next_statement", H + "x = image |> conv(8, 3x3\noutput y = x\n", CnncSyntaxError,
     "net.cnn:3:1", ["unexpected 'output'", "expected ')'"]),
    ("stray_character", H + "output y = image |> conv(8, 3x3) $ relu\n", CnncSyntaxError, "net.cnn:2:34",
     ["unexpected character '$'"]),
    ("unexpected_end_of_file_after_pipe", H + "output y = image |>\n", CnncSyntaxError, "net.cnn:2:20",
     ["unexpected end of file", "a name"]),
    ("input_declaration_unclosed", "input image: [N, 3, 16\noutput y = image\n", CnncSyntaxError, "net.cnn:2:1",
     ["unexpected 'output'", "expected ',', ']'"]),
    ("input_declaration_without_colon", "input image [N, 3, 16, 16]\noutput y = image\n", CnncSyntaxError,
     "net.cnn:1:13", ["unexpected '['", "expected ':'"]),
    ("unterminated_string", H + 'output y = image |> upsample(mode="near\n', CnncSyntaxError, "net.cnn:2:35",
     ["unexpected character '\"'"]),
    ("input_dimension_zero", "input image: [N, 3, 0, 16]\noutput y = image\n", CnncShapeError, "net.cnn:1:1",
     ["input dimensions must be positive"]),
    ("input_symbolic_non_batch_dimension", "input image: [N, C, 16, 16]\noutput y = image\n", CnncShapeError,
     "net.cnn:1:1", ["only the first (batch) dimension of an input may be a name"]),
    # names
    ("unknown_op_did_you_mean", H + "output y = image |> conv2d(8, 3x3)\n", CnncNameError, "net.cnn:2:21",
     ["unknown op or block 'conv2d'", "did you mean 'conv'?"]),
    ("unknown_bare_stage_did_you_mean", H + "output y = image |> rleu\n", CnncNameError, "net.cnn:2:21",
     ["unknown op or block 'rleu'", "did you mean 'relu'?"]),
    ("undefined_variable_did_you_mean", H + "output y = imag |> relu\n", CnncNameError, "net.cnn:2:12",
     ["undefined name 'imag'", "did you mean 'image'?"]),
    ("undefined_variable_in_sum", H + "x = image |> relu\noutput y = x + zzz\n", CnncNameError, "net.cnn:3:16",
     ["undefined name 'zzz'"]),
    ("undefined_output_name", H + "output missing_name\n", CnncNameError, "net.cnn:2:1",
     ["undefined name 'missing_name'"]),
    ("duplicate_input", H + H + "output y = image\n", CnncNameError, "net.cnn:2:1", ["'image' is already defined"]),
    ("duplicate_explicit_layer_name", H + "output y = image |> conv(8, 3x3) as conv1 |> conv(8, 3x3) as conv1\n",
     CnncNameError, "net.cnn:2:46", ["layer name 'conv1' is already used", "(first used at net.cnn:2:21)"]),
    ("duplicate_output", H + "output y = image |> relu\noutput y = image |> tanh\n", CnncNameError,
     "net.cnn:3:1", ["output 'y' is declared twice"]),
    ("calling_a_tensor", H + "output y = image |> image(3)\n", CnncTypeError, "net.cnn:2:21",
     ["'image' is a tensor [N, 3, 16, 16], not an op or block"]),
    # arguments
    ("unknown_keyword_did_you_mean", H + "output y = image |> conv(8, 3x3, strides=2)\n", CnncTypeError,
     "net.cnn:2:34", ["conv has no argument 'strides'", "did you mean 'stride'?", "its arguments: filters, kernel"]),
    ("argument_positional_and_keyword", H + "output y = image |> conv(8, 3x3, kernel=3)\n", CnncTypeError,
     "net.cnn:2:34", ["argument 'kernel' is given twice"]),
    ("keyword_given_twice", H + "output y = image |> conv(8, 3x3, stride=1, stride=2)\n", CnncTypeError,
     "net.cnn:2:44", ["argument 'stride' is given twice"]),
    ("positional_after_keyword", H + "output y = image |> conv(filters=8, 3x3)\n", CnncTypeError, "net.cnn:2:37",
     ["a positional argument cannot follow a keyword argument"]),
    ("missing_required_argument", H + "output y = image |> conv(8)\n", CnncTypeError, "net.cnn:2:21",
     ["conv needs argument 'kernel'"]),
    ("argument_to_op_without_arguments", H + "output y = image |> relu(3)\n", CnncTypeError, "net.cnn:2:26",
     ["relu takes at most 0 argument(s)", "got 1"]),
    ("too_many_arguments", H + "output y = image |> conv(8, 3x3, 1, 1, 1, 1, true, 5)\n", CnncTypeError,
     "net.cnn:2:52", ["conv takes at most 7 argument(s)", "got 8"]),
    ("float_filters", H + "output y = image |> conv(8.5, 3x3)\n", CnncTypeError, "net.cnn:2:26",
     ["conv: argument 'filters': expected an integer, got the number 8.5"]),
    ("pad_misspelled_word", H + "output y = image |> conv(8, 3x3, pad=sme)\n", CnncTypeError, "net.cnn:2:38",
     ["conv: argument 'pad'", "expected same, valid", "got the undefined name 'sme'"]),
    ("bool_where_int", H + "output y = image |> conv(true, 3x3)\n", CnncTypeError, "net.cnn:2:26",
     ["argument 'filters': expected an integer, got the boolean true"]),
    ("tensor_where_number", H + "output y = image |> conv(image, 3x3)\n", CnncTypeError, "net.cnn:2:26",
     ["argument 'filters': expected an integer, got a tensor [N, 3, 16, 16]"]),
    ("undefined_name_as_number", H + "output y = image |> conv(filterz, 3x3)\n", CnncTypeError, "net.cnn:2:26",
     ["argument 'filters'", "got the undefined name 'filterz'"]),
    ("string_mode_not_allowed", H + 'output y = image |> upsample(mode="cubic")\n', CnncTypeError,
     "net.cnn:2:35", ["upsample: argument 'mode': expected one of nearest, bilinear, got the string \"cubic\""]),
    ("kernel_zero", H + "output y = image |> conv(8, 0x3)\n", CnncTypeError, "net.cnn:2:29",
     ["argument 'kernel': expected a positive integer, got 0"]),
    ("negative_padding", H + "output y = image |> conv(8, 3x3, pad=-1)\n", CnncTypeError, "net.cnn:2:38",
     ["argument 'pad': padding must not be negative"]),
    ("conv_transpose_pad_same", H + "output y = image |> conv_transpose(8, 3x3, pad=same)\n", CnncTypeError,
     "net.cnn:2:21", ["conv_transpose: pad=same is not available"]),
    ("builtin_with_keyword", H + "k = max(a=1)\noutput y = image\n", CnncTypeError, "net.cnn:2:5",
     ["max() takes no keyword arguments"]),
    ("builtin_on_a_number", H + "k = channels(3)\noutput y = image\n", CnncTypeError, "net.cnn:2:5",
     ["channels(): expected a tensor with a channel dimension, got the integer 3"]),
    # expressions
    ("condition_not_boolean", H + "output y = image if 3 else image\n", CnncTypeError, "net.cnn:2:21",
     ["a condition must be true or false, got the integer 3"]),
    ("condition_is_a_tensor", H + "output y = image if image else image\n", CnncTypeError, "net.cnn:2:21",
     ["a condition must be true or false, got a tensor"]),
    ("and_on_a_number", H + "k = 1 and true\noutput y = image\n", CnncTypeError, "net.cnn:2:5",
     ["'and' needs true or false, got the integer 1"]),
    ("division_by_zero", H + "k = 1 / 0\noutput y = image\n", CnncTypeError, "net.cnn:2:5",
     ["division by zero in '/'"]),
    ("tensor_power", H + "output y = image ** image\n", CnncTypeError, "net.cnn:2:12",
     ["'**' cannot combine a tensor", "tensors support + - * / with a tensor or a number"]),
    ("number_over_tensor", H + "output y = 1 / image\n", CnncTypeError, "net.cnn:2:12",
     ["a number cannot be divided by a tensor"]),
    ("index_out_of_range", H + "t = (1, 2)\nk = t[5]\noutput y = image\n", CnncTypeError, "net.cnn:3:7",
     ["index the integer 5 is out of range for the tuple (1, 2)"]),
    ("output_not_a_tensor", H + "output y = 3\n", CnncTypeError, "net.cnn:2:1",
     ["output 'y' must be a tensor, got the integer 3"]),
    # repetition
    ("repeat_count_zero", H + "output y = image |> relu * 0\n", CnncTypeError, "net.cnn:2:28",
     ["a repeat count must be a positive integer, got the integer 0"]),
    ("repeat_count_float", H + "output y = image |> relu * 2.5\n", CnncTypeError, "net.cnn:2:28",
     ["a repeat count must be a positive integer, got the number 2.5"]),
    ("repeat_count_tensor", H + "output y = image |> relu * image\n", CnncTypeError, "net.cnn:2:28",
     ["a repeat count must be a positive integer, got a tensor"]),
    # shapes
    ("sum_channel_mismatch",
     H + "a = image |> conv(8, 3x3, pad=1)\nb = image |> conv(4, 3x3, pad=1)\noutput y = a + b\n",
     CnncShapeError, "net.cnn:4:12", ["[N, 8, 16, 16] and [N, 4, 16, 16] differ in dimension 1 (channels): 8 vs 4",
                                      "(layer 'add1')"]),
    ("sum_spatial_mismatch", H + "a = image |> conv(8, 3x3)\nb = image |> conv(8, 3x3, pad=1)\noutput y = a + b\n",
     CnncShapeError, "net.cnn:4:12", ["differ in dimension 2 (height): 14 vs 16"]),
    ("concat_spatial_mismatch",
     H + "a = image |> conv(8, 3x3)\nb = image |> conv(8, 3x3, pad=1)\noutput y = concat(a, b)\n",
     CnncShapeError, "net.cnn:4:12",
     ["concat along axis 1: [N, 8, 14, 14] and [N, 8, 16, 16] differ outside that axis", "(layer 'concat1')"]),
    ("groups_do_not_divide_channels", H + "output y = image |> conv(8, 3x3, groups=2)\n", CnncShapeError,
     "net.cnn:2:21", ["groups=2 must divide both the input channels (3) and the filters (8)", "(layer 'conv1')"]),
    ("kernel_larger_than_input", H + "output y = image |> conv(8, 17x17) as big\n", CnncShapeError, "net.cnn:2:21",
     ["kernel 17 (spanning 17) is larger than the padded input height 16", "(layer 'big')"]),
    ("dense_on_4d_input", H + "output y = image |> dense(10)\n", CnncShapeError, "net.cnn:2:21",
     ["dense expects [N, features] or [N, C, 1, 1], got [N, 3, 16, 16]", "insert `flatten`"]),
    ("reshape_does_not_fit", H + "output y = image |> reshape((5, 7))\n", CnncShapeError, "net.cnn:2:21",
     ["reshape: [N, 3, 16, 16] has 768 values per example, shape (5, 7) holds 35"]),
    ("crop_larger_than_input", H + "output y = image |> crop(32x32)\n", CnncShapeError, "net.cnn:2:21",
     ["crop: offset (0, 0) + size (32, 32) exceeds the input [N, 3, 16, 16]"]),
    ("softmax_axis_out_of_range", H + "output y = image |> softmax(axis=7)\n", CnncShapeError, "net.cnn:2:21",
     ["softmax: axis 7 is out of range for [N, 3, 16, 16]"]),
    # blocks
    ("block_without_return", "block b(c: int) {\n    y = x |> conv(c, 3x3)\n}\n" + H + "output y = image |> b(4)\n",
     CnncError, "net.cnn:1:1", ["block 'b' ends without `return`"]),
    ("block_parameter_wrong_type", BLOCK + H + "output y = image |> b(2.5)\n", CnncTypeError, "net.cnn:5:23",
     ["parameter 'c': expected an integer, got the number 2.5"]),
    ("block_parameter_given_a_tensor", BLOCK + H + "output y = image |> b(image)\n", CnncTypeError,
     "net.cnn:5:23", ["parameter 'c': expected an integer, got a tensor [N, 3, 16, 16]"]),
    ("block_parameter_bad_default", "block b(c: int = 2.5) {\n    return x |> conv(c, 3x3)\n}\n" + H
     + "output y = image |> b\n", CnncTypeError, "net.cnn:1:18", ["parameter 'c': expected an integer"]),
    ("unknown_parameter_type_name", "block b(c: integer) {\n    return x |> conv(c, 3x3)\n}\n" + H
     + "output y = image |> b(2)\n", CnncTypeError, "net.cnn:1:9",
     ["unknown type 'integer' (types: int, float, bool, tensor, str)"]),
    ("block_unknown_keyword", BLOCK + H + "output y = image |> b(4, d=3)\n", CnncTypeError, "net.cnn:5:26",
     ["block 'b' has no argument 'd'", "(its arguments: x, c)"]),
    ("block_too_many_arguments", BLOCK + H + "output y = image |> b(4, 5)\n", CnncTypeError, "net.cnn:5:26",
     ["block 'b' takes 2 argument(s) (x, c), got 3"]),
    ("block_missing_argument", BLOCK + H + "output y = image |> b\n", CnncTypeError, "net.cnn:5:21",
     ["block 'b' needs argument 'c'"]),
    ("import_missing_file", 'import "nope.cnn"\n' + H + "output y = image\n", CnncImportError, "net.cnn:1:1",
     ["cannot import 'nope.cnn'", "No such file or directory"]),
]


@pytest.mark.parametrize("text, kind, location, phrases", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_compile_error(text, kind, location, phrases):
    check_message(compile_error(text, kind), location, *phrases)


def test_case_ids_are_unique():
    assert len({c[0] for c in CASES}) == len(CASES)


def test_no_output_names_the_last_statement():
    error = compile_error(H + "x = image |> relu\n", CnncNameError)
    check_message(error, "net.cnn:2:1", "the network declares no output (add `output name = ...`)")
    assert str(compile_error("", CnncNameError)).startswith("net.cnn: error: the network declares no output")


def test_input_shape_override_errors():
    with pytest.raises(CnncNameError) as info:
        cnnc.parse(H + "output y = image\n", input_shapes={"img": (1, 3, 8, 8)}, name="net.cnn")
    check_message(info.value, "net.cnn", "input shape given for unknown input(s): img", "the inputs are: image")
    for bad in [(1, 3, 8), (1, 3, "a", 8), (1, 3, 0, 8)]:
        with pytest.raises(CnncShapeError) as info:
            cnnc.parse(H + "output y = image\n", input_shapes={"image": bad}, name="net.cnn")
        check_message(info.value, "net.cnn:1:1", f"input shape {bad} for 'image' does not fit the declared rank 4")


def test_unknown_target():
    with pytest.raises(CnncError) as info:
        cnnc.compile(H + "output y = image\n", target="cuda")
    assert str(info.value) == "target: error: unknown target 'cuda' (available: numpy, cupy)"


def test_parameter_too_large_to_allocate_is_an_error_not_a_crash():
    # Refused while elaborating (the tensor-size limit, cnnc/limits.py), before any allocation.
    error = compile_error("input v: [N, 1000000]\noutput y = v |> dense(1000000000) as fc\n", CnncShapeError)
    check_message(error, "net.cnn:2:17", "parameter 'fc.weight'", "1000000000000000 elements")


# ---- imports ------------------------------------------------------------------------------------

def test_import_cycle(tmp_path):
    (tmp_path / "a.cnn").write_text('import "b.cnn"\n' + H + "output y = image\n")
    (tmp_path / "b.cnn").write_text('import "a.cnn"\nk = 3\n')
    with pytest.raises(CnncImportError) as info:
        cnnc.compile(tmp_path / "a.cnn")
    check_message(info.value, "b.cnn:1:1", "import cycle: a.cnn -> b.cnn -> a.cnn")


def test_import_cycle_through_the_main_file_after_its_input(tmp_path):
    # the main file is on the import stack too: b.cnn importing it is a cycle, not a library with an input
    (tmp_path / "a.cnn").write_text(H + 'import "b.cnn"\noutput y = image\n')
    (tmp_path / "b.cnn").write_text('import "a.cnn"\nk = 3\n')
    with pytest.raises(CnncImportError) as info:
        cnnc.compile(str(tmp_path / "a.cnn"))
    check_message(info.value, "b.cnn:1:1", "import cycle: a.cnn -> b.cnn -> a.cnn")


def test_self_import(tmp_path):
    (tmp_path / "self.cnn").write_text('import "self.cnn"\n' + H + "output y = image\n")
    with pytest.raises(CnncImportError) as info:
        cnnc.compile(tmp_path / "self.cnn")
    check_message(info.value, "self.cnn:1:1", "import cycle: self.cnn -> self.cnn")


def test_imported_file_declares_an_input(tmp_path):
    (tmp_path / "lib.cnn").write_text("k = 3\ninput other: [N, 3, 8, 8]\n")
    (tmp_path / "main.cnn").write_text('import "lib.cnn"\n' + H + "output y = image\n")
    with pytest.raises(CnncError) as info:
        cnnc.compile(tmp_path / "main.cnn")
    check_message(info.value, "lib.cnn:2:1", "an imported file may define blocks and constants only",
                  "not inputs or outputs")


def test_syntax_error_in_an_imported_file_names_that_file(tmp_path):
    (tmp_path / "lib.cnn").write_text("k = 3\nblock b() {\n    return x $\n}\n")
    (tmp_path / "main.cnn").write_text('import "lib.cnn"\n' + H + "output y = image\n")
    with pytest.raises(CnncSyntaxError) as info:
        cnnc.compile(tmp_path / "main.cnn")
    check_message(info.value, "lib.cnn:3:14", "unexpected character '$'")


def test_imported_file_that_is_not_utf8(tmp_path):
    (tmp_path / "lib.cnn").write_bytes(b'k = "\xff"\n')
    (tmp_path / "main.cnn").write_text('import "lib.cnn"\n' + H + "output y = image\n")
    with pytest.raises(CnncImportError) as info:
        cnnc.compile(tmp_path / "main.cnn")
    check_message(info.value, "main.cnn:1:1", "cannot import 'lib.cnn'", "utf-8")


def test_missing_and_unreadable_main_file(tmp_path):
    with pytest.raises(CnncImportError) as info:
        cnnc.compile(str(tmp_path / "nothere.cnn"))
    assert str(info.value) == f"{tmp_path / 'nothere.cnn'}: error: no such file: {tmp_path / 'nothere.cnn'}"
    (tmp_path / "latin1.cnn").write_bytes(b"# caf\xe9\n" + H.encode() + b"output y = image\n")
    with pytest.raises(CnncImportError) as info:
        cnnc.compile(tmp_path / "latin1.cnn")
    assert "cannot read" in str(info.value) and "utf-8" in str(info.value)


# ---- run time: inputs ---------------------------------------------------------------------------

SMALL = "input image: [N, 3, 8, 8]\noutput y = image |> conv(4, 3x3) as c1 |> flatten |> dense(5) as fc\n"


@pytest.fixture(scope="module")
def net():
    return cnnc.compile(SMALL, name="small.cnn")


def test_wrong_input_shape_names_the_input(net):
    with pytest.raises(CnncInputError) as info:
        net(np.zeros((1, 3, 9, 8), np.float32))
    assert str(info.value) == "input 'image': error: input 'image' expects [N, 3, 8, 8], got [1, 3, 9, 8]"
    with pytest.raises(CnncInputError, match=r"expects \[N, 3, 8, 8\], got \[3, 8, 8\]"):
        net(np.zeros((3, 8, 8), np.float32))


def test_missing_unknown_and_doubled_inputs(net):
    x = np.zeros((1, 3, 8, 8), np.float32)
    with pytest.raises(CnncInputError) as info:
        net()
    assert str(info.value) == "inputs: error: missing input 'image' [N, 3, 8, 8]"
    with pytest.raises(CnncInputError) as info:
        net(img=x)
    assert str(info.value) == "inputs: error: unknown input 'img'; the inputs are: image"
    with pytest.raises(CnncInputError, match="input 'image' is given twice"):
        net(x, image=x)
    with pytest.raises(CnncInputError, match=r"the network takes 1 input\(s\) \(image\), got 2"):
        net(x, x)


@pytest.mark.parametrize("value", ["hello", [[1, 2], [3]], np.array([object()] * 192).reshape(1, 3, 8, 8)],
                         ids=["string", "ragged", "objects"])
def test_non_numeric_input(net, value):
    with pytest.raises(CnncInputError) as info:
        net(value)
    assert str(info.value).startswith("input 'image': error: input 'image' must be a numeric array")


# ---- parameters ---------------------------------------------------------------------------------

@pytest.fixture
def good_params(net):
    return {name: value.copy() for name, value in net.params.items()}


def test_param_assignment_errors(net):
    with pytest.raises(CnncParamError) as info:
        net.params["nope"] = np.zeros(3)
    assert str(info.value) == "nope: error: the network has no parameter 'nope'"
    with pytest.raises(CnncParamError) as info:
        net.params["c1.weight"] = np.zeros((4, 3, 5, 5))
    assert str(info.value) == "c1.weight: error: shape (4, 3, 5, 5) does not fit layer 'c1', which expects (4, 3, 3, 3)"
    with pytest.raises(CnncParamError, match="parameter values must be numeric arrays"):
        net.params["c1.bias"] = np.array([None] * 4, dtype=object)
    with pytest.raises(CnncParamError, match="parameter values must be numeric arrays"):
        net.params["c1.bias"] = "abcd"
    with pytest.raises(CnncParamError, match="cannot be deleted"):
        del net.params["c1.bias"]


def test_compile_with_incomplete_params():
    with pytest.raises(CnncParamError) as info:
        cnnc.compile(SMALL, params={})
    assert str(info.value) == "params: error: missing parameter 'c1.weight' (layer 'c1') and 3 more"


def test_load_params_missing_name(net, good_params, tmp_path):
    del good_params["fc.weight"]
    np.savez(tmp_path / "p.npz", **good_params)
    with pytest.raises(CnncParamError) as info:
        net.load_params(tmp_path / "p.npz")
    assert str(info.value) == f"{tmp_path / 'p.npz'}: error: missing parameter 'fc.weight' (layer 'fc')"


def test_load_params_unknown_name(net, good_params, tmp_path):
    np.savez(tmp_path / "p.npz", **good_params, **{"extra.weight": np.zeros(2)})
    with pytest.raises(CnncParamError, match="unknown parameter 'extra.weight'"):
        net.load_params(tmp_path / "p.npz")


def test_load_params_wrong_shape_names_parameter_and_layer_and_changes_nothing(net, good_params, tmp_path):
    before = net.params["fc.bias"].copy()
    good_params["c1.weight"] = np.zeros((4, 3, 5, 5), np.float32)
    good_params["fc.bias"] = before + 1
    np.savez(tmp_path / "p.npz", **good_params)
    with pytest.raises(CnncParamError) as info:
        net.load_params(tmp_path / "p.npz")
    check_message(info.value, "c1.weight", "shape (4, 3, 5, 5) does not fit layer 'c1'", "expects (4, 3, 3, 3)")
    np.testing.assert_array_equal(net.params["fc.bias"], before)  # all or nothing


def test_load_params_refuses_pickled_objects(net, good_params, tmp_path):
    good_params["c1.bias"] = np.array([{"a": 1}, 2, 3, 4], dtype=object)
    np.savez(tmp_path / "p.npz", **good_params)  # an object array inside an npz is pickled
    with pytest.raises(CnncParamError) as info:
        net.load_params(tmp_path / "p.npz")
    assert str(info.value) == (f"{tmp_path / 'p.npz'}: error: the file holds pickled Python objects, "
                               "which cnnc refuses to load")


def test_load_params_not_an_npz(net, tmp_path):
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file at all")
    np.save(tmp_path / "array.npy", np.zeros(3), allow_pickle=True)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for name in ["garbage.npz", "array.npy", "objects.npy"]:
        with pytest.raises(CnncParamError) as info:
            net.load_params(tmp_path / name)
        check_message(info.value, str(tmp_path / name), "not a valid .npz parameter file")
        assert "pickle" not in str(info.value)
    with pytest.raises(CnncParamError) as info:
        net.load_params(tmp_path / "nothere.npz")
    assert str(info.value) == f"{tmp_path / 'nothere.npz'}: error: no such parameter file"


def test_load_params_string_values(net, good_params, tmp_path):
    good_params["c1.bias"] = np.array(["a", "b", "c", "d"])
    np.savez(tmp_path / "p.npz", **good_params)
    with pytest.raises(CnncParamError) as info:
        net.load_params(tmp_path / "p.npz")
    check_message(info.value, "c1.bias", "parameter values must be numeric arrays")


# ---- hostile names --------------------------------------------------------------------------------

HOSTILE = """input exec: [N, 3, 8, 8]
# __import__('os').system('touch pwned')
x = exec |> conv(8, 3x3) as system
y = x |> relu as __import__ |> conv(4, 1x1) as os
z = y |> conv(4, 1x1) as print |> [relu as eval, relu as globals] as open
output eval = z + y
output __builtins__ = x
"""


def _assigned_names(source: str) -> set[str]:
    tree = ast.parse(source)
    forward = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "forward")
    names = {a.arg for a in forward.args.args}
    names |= {n.id for n in ast.walk(forward) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return names


def test_hostile_layer_and_input_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = cnnc.compile(HOSTILE, name="hostile.cnn")
    compile(net.source, "generated", "exec")
    assert "touch pwned" not in net.source  # comments never reach generated code
    assigned = _assigned_names(net.source)
    shadowed = {n for n in assigned if n in dir(builtins) or keyword.iskeyword(n)}
    assert not shadowed, shadowed
    assert {"exec", "__import__", "print", "eval", "globals", "open"}.isdisjoint(assigned)
    assert set(net.params) >= {"system.weight", "os.weight", "print.weight"}
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    out = net(exec=x)
    assert set(out) == {"eval", "__builtins__"}
    expected = cnnc.eval_graph(net.source_graph, net.params, {"exec": x})
    for key in out:
        np.testing.assert_allclose(out[key], expected[key], rtol=1e-4, atol=1e-5)
    assert out["eval"].shape == (2, 4, 6, 6) and out["__builtins__"].shape == (2, 8, 6, 6)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("name", [
    "evil\nimport os",
    'evil"""\nimport os\n"""',
    'a""" + __import__("os").system("touch pwned") + """',
    "back\\slash\\N{x}\\",
    "tab\there\rcr\x00nul",
])
def test_source_name_cannot_break_generated_code(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = cnnc.compile("input image: [N, 3, 8, 8]\noutput y = image |> relu\n", name=name)
    tree = ast.parse(net.source)  # valid Python
    assert not any(line.lstrip().startswith("import os") for line in net.source.splitlines())
    assert [type(n).__name__ for n in tree.body[:1]] == ["Expr"]  # the docstring stays one string
    assert ast.get_docstring(tree).startswith("Network compiled by cnnc")
    assert not (tmp_path / "pwned").exists()
    assert net(np.ones((1, 3, 8, 8), np.float32)).shape == (1, 3, 8, 8)


# ---- the command line -----------------------------------------------------------------------------

def test_cli_missing_file(tmp_path):
    stderr = cli_error("check", "nothere.cnn", cwd=tmp_path)
    assert stderr.strip() == "nothere.cnn: error: no such file: nothere.cnn"


def test_cli_syntax_and_shape_errors(tmp_path):
    (tmp_path / "bad.cnn").write_text(H + "output y = image |> conv(8, 3x3) |> dense(5) as fc\n")
    stderr = cli_error("check", "bad.cnn", cwd=tmp_path)
    assert stderr.startswith("bad.cnn:2:37: error: dense expects [N, features] or [N, C, 1, 1], got [N, 8, 14, 14]")
    assert stderr.splitlines()[1:] == ["    output y = image |> conv(8, 3x3) |> dense(5) as fc",
                                       "                                        ^^^^^^^^"]


def test_cli_compile_error_writes_nothing_and_keeps_old_output(tmp_path):
    (tmp_path / "good.cnn").write_text(SMALL)
    (tmp_path / "bad.cnn").write_text(SMALL.replace("|> flatten ", ""))
    stderr = cli_error("compile", "bad.cnn", "-o", "out.py", cwd=tmp_path)
    assert stderr.startswith("bad.cnn:2:")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.cnn", "good.cnn"]  # no out.*, no temp files

    assert cli("compile", "good.cnn", "-o", "out.py", cwd=tmp_path).returncode == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert {"out.py", "out.npz"} <= set(before)
    cli_error("compile", "bad.cnn", "-o", "out.py", cwd=tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # unchanged, nothing new

    stderr = cli_error("compile", "good.cnn", "-o", "no/such/dir/out.py", cwd=tmp_path)
    assert stderr.startswith("no/such/dir/out.npz: error: cannot write the file")


def test_cli_run_params_errors(tmp_path, net, good_params):
    (tmp_path / "small.cnn").write_text(SMALL)
    missing = dict(good_params)
    del missing["fc.weight"]
    np.savez(tmp_path / "missing.npz", **missing)
    np.savez(tmp_path / "shape.npz", **{**good_params, "c1.weight": np.zeros((4, 3, 5, 5), np.float32)})
    np.savez(tmp_path / "pickled.npz", **{**good_params, "c1.bias": np.array([{"a": 1}, 2, 3, 4], dtype=object)})
    script = ("import sys\nfrom cnnc.cli import main\ncodes = []\n"
              "for p in sys.argv[1:]:\n    codes.append(main(['run', 'small.cnn', '--params', p]))\n"
              "    print('---', file=sys.stderr)\nprint(codes)\n")
    # one interpreter for the three files (each `main` call is what `cnnc run --params FILE` does)
    result = subprocess.run([sys.executable, "-c", script, "missing.npz", "shape.npz", "pickled.npz"],
                            check=False, capture_output=True, text=True, cwd=tmp_path, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert result.stdout.strip() == "[1, 1, 1]"
    messages = [m.strip() for m in result.stderr.split("---")[:3]]
    assert messages == [
        "missing.npz: error: missing parameter 'fc.weight' (layer 'fc')",
        "c1.weight: error: shape (4, 3, 5, 5) does not fit layer 'c1', which expects (4, 3, 3, 3)",
        "pickled.npz: error: the file holds pickled Python objects, which cnnc refuses to load",
    ]
    # and the real command line, once
    stderr = cli_error("run", "small.cnn", "--params", "pickled.npz", cwd=tmp_path)
    assert stderr.strip() == "pickled.npz: error: the file holds pickled Python objects, which cnnc refuses to load"


def test_cli_file_name_with_quotes_compiles_to_valid_python(tmp_path):
    name = 'q"""x.cnn'
    (tmp_path / name).write_text(SMALL)
    result = cli("compile", name, "-o", "out.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ast.parse((tmp_path / "out.py").read_text())


def test_block_defined_twice_is_an_error():
    with pytest.raises(CnncNameError, match=r"net.cnn:3:1: error: 'b' is already defined \(as a block\)"):
        cnnc.parse("input x: [N, 1, 4, 4]\nblock b() { return x }\nblock b() { return x |> relu }\noutput y = x |> b",
                   name="net.cnn")


def test_absurd_repeat_count_is_refused_quickly():
    with pytest.raises(CnncTypeError, match="more than cnnc allows"):
        cnnc.parse("input x: [N, 1, 4, 4]\noutput y = x |> relu * 100000000", name="net.cnn")


@pytest.mark.parametrize("text, kind, location, phrase", [
    ("input a: [N, 3, 8, 8]\noutput y = a |> conv(4, 1x1) as layer1.0 |> [conv(4, 1x1)] as layer1",
     CnncNameError, "net.cnn:2:46", "layer name 'layer1.0' is already used (first at net.cnn:2:17)"),
    ("p = 10.0 ** 1000\ninput a: [N, 3, 8, 8]\noutput y = a", CnncTypeError, "net.cnn:1:5", "overflows"),
    ("p = int(1e400)\ninput a: [N, 3, 8, 8]\noutput y = a", CnncTypeError, "net.cnn:1:9", "too large"),
    ("block f(x, c: int) { return x }\ninput a: [N, 3, 8, 8]\noutput y = a |> f(4)", CnncTypeError,
     "net.cnn:1:9", "'x' is the block's input"),
    ("block f() { return x |> relu\n y = 3 }\ninput a: [N, 3, 8, 8]\noutput y = a |> f", CnncError,
     "net.cnn:2:2", "statements after `return` would never run"),
    ("block f(c: int, c: int) { return x }\ninput a: [N, 3, 8, 8]\noutput y = a |> f(1, 2)", CnncNameError,
     "net.cnn:1:17", "parameter 'c' is declared twice"),
    ("input a: [N, 3, 8, 8]\noutput y = a |> dropout(7)", CnncTypeError, "net.cnn:2:25", "expected a rate in [0, 1)"),
    ("input a: [N, 3, 8, 8]\nc = a |> channels as width_of_a\noutput y = a", CnncNameError, "net.cnn:2:10",
     "cannot be named"),
    ("input a: [N, 3, 8, 8]\nblock f() { return a |> relu }\noutput y = a |> f", CnncNameError, "net.cnn:2:20",
     "undefined name 'a'"),
])
def test_block_and_naming_rules(text, kind, location, phrase):
    check_message(compile_error(text, kind), location, phrase)
