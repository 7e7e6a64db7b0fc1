"""Hostile input: the limits of cnnc/limits.py, and inputs that once hung or showed a traceback.

Each case is a reproducer from a robustness review: it must end quickly in one CnncError naming
the place (file:line:col, or the input or file concerned), and the command line must exit 1
without a traceback and without leaving or replacing a file.
"""
from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

import numpy as np
import pytest
from test_fuzz import memory_limit

import cnnc
from cnnc import limits
from cnnc.cli import main
from cnnc.errors import CnncError, CnncImportError, CnncInputError, CnncParamError, CnncShapeError, CnncTypeError
from cnnc.language.scope import Namer
from cnnc.source import SourceFile, Span

H = "input image: [N, 3, 8, 8]\n"  # line 1 of the programs below
SMALL = H + "output y = image |> conv(4, 3x3)\n"


def compile_error(text: str, kind: type[CnncError], location: str, *phrases: str) -> CnncError:
    """Compiling `text` (named net.cnn) fails with `kind` at `location`, every phrase in the message."""
    with pytest.raises(CnncError) as info:
        cnnc.compile(text, name="net.cnn")
    error = info.value
    assert isinstance(error, kind), f"{type(error).__name__}: {error}"
    first = str(error).split("\n")[0]
    assert first.startswith(f"{location}: error: "), first
    for phrase in phrases:
        assert phrase in first, f"{phrase!r} not in {first!r}"
    return error


def cli_fails(capsys, *args: str) -> str:
    """`cnnc ARGS` exits 1 with one message (in-process: any other exception fails the test)."""
    assert main(list(args)) == 1
    err = capsys.readouterr().err
    assert err.strip() and "Traceback" not in err
    return err


# ---- integers -----------------------------------------------------------------------------------

BIG = f"({limits.MAX_INT})"
INTEGER_CASES = [
    ("power_tower", H + "k = 10 ** 2 ** 64\n", "net.cnn:2:11", "'**' gives an integer past the limit"),
    ("power_huge_exponent", H + "k = 2 ** 10 ** 10\n", "net.cnn:2:5", "'**' gives an integer past the limit"),
    ("repeat_count", H + "output y = image |> relu * (10**5000)\n", "net.cnn:2:29", "past the limit"),
    ("upsample", H + "output y = image |> upsample(10**5000)\n", "net.cnn:2:30", "past the limit"),
    ("slice", H + "output y = image |> slice(1, 0, 10**5000)\n", "net.cnn:2:33", "past the limit"),
    ("dilation", H + "output y = image |> conv(8, 3x3, dilation=10**5000)\n", "net.cnn:2:43", "past the limit"),
    ("depthwise_multiplier", H + "output y = image |> depthwise_conv(3x3, multiplier=10**5000)\n",
     "net.cnn:2:52", "past the limit"),
    ("leaky_relu_slope", H + "output y = image |> leaky_relu(slope=2**1024)\n", "net.cnn:2:38", "past the limit"),
    ("literal_5000_digits", H + "k = 1" + "0" * 5000 + "\n", "net.cnn:2:5", "is too large"),
    ("product", H + f"k = {BIG} * 2\n", "net.cnn:2:5", "past the limit"),
    ("int_of_float", H + "k = int(1e300)\n", "net.cnn:2:5", "past the limit"),
    ("float_argument", H + "output y = image |> conv(1e300, 3x3)\n", "net.cnn:2:26", "past the limit"),
    ("zero_to_negative_power", H + "k = 0 ** -1\n", "net.cnn:2:5", "division by zero in '**'"),
]


@pytest.mark.parametrize("text, location, phrase", [c[1:] for c in INTEGER_CASES],
                         ids=[c[0] for c in INTEGER_CASES])
def test_integer_limit(text, location, phrase):
    start = time.perf_counter()
    compile_error(text, CnncTypeError, location, phrase)
    assert time.perf_counter() - start < 5  # refused before computing, not after


def test_largest_integer_is_accepted():
    # ±MAX_INT itself, written and computed: (2**62 - 1) * 2 + 1 == MAX_INT.
    net = cnnc.compile(H + f"k = -{limits.MAX_INT} + (2 ** 62 - 1) * 2 + 1\noutput y = image |> relu * (k + 1)\n")
    assert net.input_shapes["image"] == ("N", 3, 8, 8)


def test_tensor_size_limit():
    compile_error("input v: [N, 1048576]\noutput y = v |> dense(1073741824)\n", CnncShapeError,
                  "net.cnn:2:17", "parameter 'dense1.weight'", "more than cnnc allows")
    compile_error("input v: [N, 1099511627776]\noutput y = v |> dense(1099511627776)\n", CnncTypeError,
                  "net.cnn:2:23", "dense: argument 'units'", f"at most {limits.MAX_SIZE}")  # dense(2**40)
    compile_error("input v: [N, 1099511627777]\noutput y = v\n", CnncShapeError, "net.cnn:1:1", "input 'v'")


def test_builtin_with_two_arguments():
    compile_error(H + "k = channels(image, image)\n", CnncTypeError, "net.cnn:2:5", "channels(): takes one tensor")
    compile_error(H + "k = image |> height(2)\n", CnncTypeError, "net.cnn:2:14", "height(): takes one tensor")


def test_unicode_digits_are_not_numbers():
    with pytest.raises(cnnc.CnncError):
        cnnc.compile(H + "output y = image |> conv(٨, ٣x٣)\n")
    with pytest.raises(cnnc.CnncError):
        cnnc.compile(H + "output y = image |> maxpool(２x２)\n")


# ---- the work one compilation may do --------------------------------------------------------------

def test_block_call_budget():
    text = H + "block f(d: int) { return x if d == 0 else x |> f(d - 1) |> f(d - 1) }\noutput y = image |> f(40)\n"
    compile_error(text, CnncError, "net.cnn:2:48", f"more than {limits.MAX_BLOCK_CALLS} block calls")


def test_layer_budget_counts_all_levels(monkeypatch):
    # The reproducer is `[relu * 10000] * 10000`; a lower limit keeps the test fast.
    monkeypatch.setattr("cnnc.language.elaborate.MAX_LAYERS", 2_000)
    compile_error(H + "output y = image |> [relu * 100] * 100\n", CnncError, "net.cnn:2:22",
                  "more than 2000 layers")


def test_naming_is_linear():
    # The first free number was searched from 1 every time: 8,000 statements took 11 s.
    namer, span = Namer(), Span(SourceFile("x", "x"), 1, 1, 1, 2)
    start = time.perf_counter()
    names = [namer.claim("relu", None, span) for _ in range(50_000)]
    assert time.perf_counter() - start < 2
    assert names[:2] == ["relu1", "relu2"] and names[-1] == "relu50000"


def test_naming_skips_names_taken_explicitly():
    namer, span = Namer(), Span(SourceFile("x", "x"), 1, 1, 1, 2)
    assert [namer.claim("conv", n, span) for n in (None, "conv2", None, None)] == ["conv1", "conv2", "conv3", "conv4"]


# ---- imports ------------------------------------------------------------------------------------

def import_error(tmp_path: Path, target: str, *phrases: str) -> None:
    main_file = tmp_path / "main.cnn"
    main_file.write_text(f'import "{target}"\n' + SMALL)
    with pytest.raises(CnncImportError) as info:
        cnnc.compile(main_file)
    first = str(info.value).split("\n")[0]
    assert first.startswith("main.cnn:1:1: error: cannot import"), first
    for phrase in phrases:
        assert phrase in first, first


def test_import_of_a_fifo_does_not_hang(tmp_path):
    os.mkfifo(tmp_path / "fifo.cnn")
    import_error(tmp_path, "fifo.cnn", "not a regular file")


def test_import_of_a_device(tmp_path):
    (tmp_path / "zero.cnn").symlink_to("/dev/zero")
    import_error(tmp_path, "zero.cnn", "only .cnn files")  # what the link names is /dev/zero


def test_import_of_an_oversized_file(tmp_path):
    with open(tmp_path / "big.cnn", "wb") as handle:  # sparse: costs no disk
        handle.truncate(limits.MAX_SOURCE_BYTES + 1)
    import_error(tmp_path, "big.cnn", "more than cnnc reads")


def test_import_of_a_symlink_loop_a_directory_and_a_null_byte(tmp_path):
    (tmp_path / "loop.cnn").symlink_to("loop.cnn")
    import_error(tmp_path, "loop.cnn")
    (tmp_path / "lib.cnn").mkdir()
    import_error(tmp_path, "lib.cnn", "it is a directory")
    import_error(tmp_path, "\0", "null byte")


def test_import_never_shows_a_file_that_is_not_a_cnn_program(tmp_path):
    (tmp_path / "secret.txt").write_text("password = hunter2\n")
    main_file = tmp_path / "main.cnn"
    main_file.write_text('import "secret.txt"\n' + SMALL)
    with pytest.raises(CnncImportError) as info:
        cnnc.compile(main_file)
    assert "only .cnn files can be imported" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_main_file_that_is_a_fifo(tmp_path, capsys):
    os.mkfifo(tmp_path / "fifo.cnn")
    assert "not a regular file" in cli_fails(capsys, "check", str(tmp_path / "fifo.cnn"))


# ---- the command line: paths and written files ----------------------------------------------------

def test_path_argument_is_a_path(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli_fails(capsys, "check", "nothere").strip() == "nothere: error: no such file: nothere"
    (tmp_path / "model.txt").write_text(SMALL)
    assert main(["check", "model.txt"]) == 0
    assert "model.txt: ok" in capsys.readouterr().out


def test_program_from_standard_input(capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(SMALL))
    assert main(["check", "-"]) == 0
    assert "ok" in capsys.readouterr().out


def test_standard_input_is_bounded_too(capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("#" * (limits.MAX_SOURCE_BYTES + 1)))
    assert "<stdin>: error: more than" in cli_fails(capsys, "check", "-")


def test_output_naming_a_directory(tmp_path, capsys):
    (tmp_path / "small.cnn").write_text(SMALL)
    (tmp_path / "out.py").mkdir()
    err = cli_fails(capsys, "compile", str(tmp_path / "small.cnn"), "-o", str(tmp_path / "out.py"))
    assert "out.py: error: cannot write the file: it is a directory" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.py", "small.cnn"]  # no .npz, no temporary
    err = cli_fails(capsys, "run", str(tmp_path / "small.cnn"), "--save-output", str(tmp_path / "out.py"))
    assert "it is a directory" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.py", "small.cnn"]


def test_compile_writes_the_pair_both_or_neither(tmp_path, capsys):
    (tmp_path / "small.cnn").write_text(SMALL)
    (tmp_path / "out.npz").mkdir()  # the .npz cannot be written ...
    (tmp_path / "old.py").write_text("old")
    cli_fails(capsys, "compile", str(tmp_path / "small.cnn"), "-o", str(tmp_path / "out.py"))
    assert not (tmp_path / "out.py").exists()  # ... so the .py is not written either
    (tmp_path / "old.npz").write_bytes(b"old")
    (tmp_path / "old.py").unlink()
    (tmp_path / "old.py").mkdir()  # the .py cannot be written: the old .npz stays
    cli_fails(capsys, "compile", str(tmp_path / "small.cnn"), "-o", str(tmp_path / "old.py"))
    assert (tmp_path / "old.npz").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.npz", "old.py", "out.npz", "small.cnn"]


def test_written_files_follow_the_umask(tmp_path, capsys):
    (tmp_path / "small.cnn").write_text(SMALL)
    old = os.umask(0o022)
    try:
        assert main(["compile", str(tmp_path / "small.cnn"), "-o", str(tmp_path / "out.py")]) == 0
    finally:
        os.umask(old)
    for name in ("out.py", "out.npz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


# ---- input shapes -------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [0, -3, True, 8.5, 2**70, None])
def test_api_batch_is_validated(batch):
    with pytest.raises(CnncShapeError, match="does not fit the declared rank 4"):
        cnnc.compile(SMALL, input_shapes={"image": (batch, 3, 8, 8)})


def test_api_input_shape_that_is_no_sequence():
    with pytest.raises(CnncShapeError, match="input shape None"):
        cnnc.compile(SMALL, input_shapes={"image": None})


@pytest.mark.parametrize("shape", ["0x3x8x8", "-2x3x8x8"])
def test_cli_batch_is_validated(tmp_path, capsys, shape):
    (tmp_path / "small.cnn").write_text(SMALL)
    err = cli_fails(capsys, "check", str(tmp_path / "small.cnn"), "--input-shape", f"image={shape}")
    assert "small.cnn:1:1: error: input shape" in err


def test_concat_axis_out_of_range():
    compile_error(H + "output y = concat(image, image, axis=7)\n", CnncShapeError, "net.cnn:2:12",
                  "concat: axis 7 is out of range for [N, 3, 8, 8]")


# ---- run time and excerpts ----------------------------------------------------------------------

def test_running_out_of_memory_names_the_layer():
    # `pad=same` with a huge window pads a 16x16 input to 65550x65550: 1 TiB for one buffer.
    net = cnnc.compile("input x: [1, 64, 16, 16]\noutput c = x |> maxpool(65536, stride=2, pad=same)\n")
    with memory_limit(4 * 2**30), pytest.raises(CnncInputError) as info:
        net(np.zeros((1, 64, 16, 16), np.float32))
    assert str(info.value) == "layer 'maxpool1': error: not enough memory to run this layer at this input size"
    net = cnnc.compile("input x: [1, 3, 8, 8]\noutput y = x |> lrn(size=1000000000)\n")  # 238 GiB of window
    with memory_limit(4 * 2**30), pytest.raises(CnncInputError, match="layer 'lrn1': error: not enough memory"):
        net(np.zeros((1, 3, 8, 8), np.float32))


@pytest.mark.parametrize("separator", ["\f", "\u2028", "\x0b"])
def test_excerpt_counts_lines_as_the_parser_does(separator):
    # str.splitlines also splits at these, which put the excerpt one line off.
    error = compile_error(H + f"k = 1  # a{separator}b\noutput y = image |> cnov\n", CnncError, "net.cnn:3:21")
    source_line, carets = str(error).split("\n")[1:]
    assert source_line == "    output y = image |> cnov" and carets == " " * 24 + "^^^^"


# ---- parameter values ---------------------------------------------------------------------------

def test_parameter_dtype_policy():
    net = cnnc.compile(SMALL)
    shape = net.params["conv1.weight"].shape
    with pytest.raises(CnncParamError, match="complex values are refused"):
        net.params["conv1.weight"] = np.ones(shape, np.complex64)
    for dtype in (np.float64, np.float16, np.int32, np.bool_):
        net.params["conv1.weight"] = np.ones(shape, dtype)
        assert net.params["conv1.weight"].dtype == np.float32
    with pytest.warns(RuntimeWarning, match="parameter 'conv1.weight' holds NaN or infinite values"):
        net.params["conv1.weight"] = np.full(shape, 1e300)


# ---- cnnc run: memory and input files -----------------------------------------------------------

def test_run_refuses_above_the_memory_limit(tmp_path, capsys):
    (tmp_path / "huge.cnn").write_text("input image: [1, 3, 100000, 100000]\noutput y = image |> relu\n")
    err = cli_fails(capsys, "run", str(tmp_path / "huge.cnn"), "--max-memory", "16")
    assert err.startswith("--max-memory: error: the run needs about 224 GiB (layer 'image' alone 112 GiB)")
    (tmp_path / "small.cnn").write_text(SMALL)
    assert "more than the limit" in cli_fails(capsys, "run", str(tmp_path / "small.cnn"), "--max-memory", "1e-6")
    assert main(["run", str(tmp_path / "small.cnn"), "--max-memory", "1"]) == 0


def npy_with_shape(path: Path, header_shape: str) -> None:
    """A valid float32 .npy of [1, 3, 8, 8] whose header then claims `header_shape`."""
    np.save(path, np.zeros((1, 3, 8, 8), np.float32))
    data = path.read_bytes()
    path.write_bytes(data.replace(b"(1, 3, 8, 8)", header_shape.encode(), 1))


def test_run_input_files_are_checked_before_loading(tmp_path, capsys):
    (tmp_path / "small.cnn").write_text(SMALL)
    npy_with_shape(tmp_path / "big.npy", "(100000, 1000000)")  # 400 GB declared, 1 KB present
    err = cli_fails(capsys, "run", str(tmp_path / "small.cnn"), "--input", str(tmp_path / "big.npy"))
    assert "big.npy: error: the .npy header declares [100000, 1000000] of float32" in err
    np.save(tmp_path / "text.npy", np.array(["ab", "cd"]))
    err = cli_fails(capsys, "run", str(tmp_path / "small.cnn"), "--input", str(tmp_path / "text.npy"))
    assert "text.npy: error: not a numeric .npy array (its dtype is <U2)" in err


def test_run_refuses_a_decompression_bomb(tmp_path, capsys):
    pil = pytest.importorskip("PIL.Image")
    import struct
    import zlib

    pil.new("RGB", (2, 2)).save(tmp_path / "bomb.png")
    data = (tmp_path / "bomb.png").read_bytes()
    start = data.index(b"IHDR")  # claim 65535×65535 in the header, with a valid CRC
    fields = struct.pack(">II", 65535, 65535) + data[start + 12:start + 17]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + fields))
    (tmp_path / "bomb.png").write_bytes(data[:start + 4] + fields + crc + data[start + 21:])
    (tmp_path / "small.cnn").write_text(SMALL)
    err = cli_fails(capsys, "run", str(tmp_path / "small.cnn"), "--input", str(tmp_path / "bomb.png"))
    assert "bomb.png: error: cannot read the image" in err


def test_check_on_a_library(capsys):
    root = Path(__file__).resolve().parents[1]
    assert main(["check", str(root / "examples" / "resnet_blocks.cnn")]) == 0
    assert "ok — a library (no input or output): 3 block(s): basic, bottleneck, se" in capsys.readouterr().out


def test_check_on_a_broken_library(tmp_path, capsys):
    (tmp_path / "lib.cnn").write_text("k = 3\nblock b() { return x }\nj = k |> relu\n")
    err = cli_fails(capsys, "check", str(tmp_path / "lib.cnn"))
    assert "lib.cnn:3:10: error: relu expects a tensor input here" in err


# ---- found by tests/test_fuzz.py ------------------------------------------------------------------

def test_stride_past_the_size_limit():
    # NumPy's strided view overflowed: "Python int too large to convert to C long" at run time.
    compile_error(H + "output y = image |> conv(8, 3x3, stride=2**62, pad=1)\n", CnncTypeError, "net.cnn:2:41",
                  "conv: argument 'stride'", f"at most {limits.MAX_SIZE}")


def test_same_padding_on_a_tensor_without_height_and_width():
    compile_error(H + "output y = image |> flatten |> conv(8, 3x3, pad=same)\n", CnncShapeError, "net.cnn:2:32",
                  "conv expects a 4-D input, got [N, 192]")


def test_deep_nesting_names_a_line_and_column():
    with pytest.raises(CnncError) as info:  # the column is where Python's stack ran out
        cnnc.compile(H + "k = " + "-" * 20_000 + "1\noutput y = image\n", name="net.cnn")
    assert re.match(r"net\.cnn:2:\d+: error: the program nests expressions too deeply", str(info.value))


def test_the_memory_estimate_counts_one_workspace_per_batch_part():
    """A batch split into parts that run at once holds each part's workspace; a depthwise conv's
    (one image's padded copy and taps) does not shrink with the part."""
    from cnnc.runtime.memory import max_workspace, run_bytes

    graph = cnnc.build_graph("input x: [N, 32, 64, 64]\noutput y = x |> conv(32, 3x3, pad=1, groups=32)\n")
    one_image = max_workspace(graph, 1)
    assert one_image > 0 and max_workspace(graph, 8) == one_image
    assert run_bytes(graph, 8, parts=2) - run_bytes(graph, 8) == 4 * one_image
    assert run_bytes(graph, 8, parts=4) - run_bytes(graph, 8) == 3 * 4 * one_image
    assert run_bytes(graph, 1, parts=4) == run_bytes(graph, 1)  # one image: one part


def test_the_memory_estimate_counts_the_largest_kernel_workspace():
    """im2col columns (C·kh·kw per output pixel) can outgrow every activation: they are counted."""
    from cnnc.runtime.memory import max_workspace, run_bytes

    graph = cnnc.build_graph("input x: [N, 16, 64, 64]\noutput y = x |> conv(4, 7x7, pad=3, groups=2)\n")
    columns = 16 * 7 * 7 * 64 * 64  # per image: C·kh·kw·Ho·Wo
    padded = 16 * (64 + 14) * (64 + 14)
    assert max_workspace(graph, 2) == 2 * (columns + padded)
    activations = 2 * (16 + 4) * 64 * 64 * 4
    assert run_bytes(graph, 2) >= activations + 4 * max_workspace(graph, 2)
