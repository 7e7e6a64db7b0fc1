"""The `cnnc` command: compile, run, bench, check, summary, viz, train, import, export (docs/cli.md).

Every user error is printed as a message that starts with its place (file:line:column), each
of several independent errors of a program in turn, with exit status 1 (also when some of
several input files could not be read); warnings (an unused value) are printed the same way and
do not change the status; a mistyped command line is one line with exit status 2; a Python
traceback means a bug in cnnc.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
import warnings
from pathlib import Path

from . import __version__, build_graph
from .errors import CnncError, CnncImportError, CnncInputError
from .frontend import check_library, parse
from .language.values import Block
from .limits import MAX_SOURCE_BYTES
from .runtime.files import atomic_write, atomic_writes, save_npz, write_npz
from .runtime.inputs import ImageConversion, steps_for
from .runtime.report import is_classifier

DOCS = "docs/cli.md"  # in the source tree; the epilog of every command names it
FILES_BATCH = 8  # examples per forward pass when several --input files run and --batch is not given


def _shape_option(text: str) -> tuple[str, tuple[int, ...]]:
    """`image=1x3x448x448` → ("image", (1, 3, 448, 448))."""
    name, _, dims = text.partition("=")
    try:
        shape = tuple(int(d) for d in dims.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=1x3x224x224, got {text!r}") from None
    if not name or not shape:
        raise argparse.ArgumentTypeError(f"expected NAME=1x3x224x224, got {text!r}")
    return name, shape


def _gib_option(text: str) -> int:
    """`--max-memory 16` (GiB, a positive number) → bytes."""
    try:
        gib = float(text)
    except ValueError:
        gib = math.nan
    if not 0 < gib < 2**40:
        raise argparse.ArgumentTypeError(f"expected a positive number of GiB, got {text!r}")
    return int(gib * 2**30)


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistyped option is one line (exit status 2) instead of the usage block."""

    def error(self, message: str):  # type: ignore[override]  # NoReturn in typeshed
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _int_at_least(low: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    parse.__name__ = what  # argparse names the type in some messages
    return parse


_positive = _int_at_least(1, "a positive integer")
_non_negative = _int_at_least(0, "an integer >= 0")


def _batch_sizes(text: str) -> list[int]:
    """`--batch 1,8,32` → [1, 8, 32]: positive, each once, in the order given."""
    sizes: list[int] = []
    for part in text.split(","):
        try:
            size = int(part)
        except ValueError:
            size = 0
        if size < 1:
            raise argparse.ArgumentTypeError(f"expected positive batch sizes separated by commas (1,8,32), "
                                             f"got {text!r}")
        if size not in sizes:
            sizes.append(size)
    return sizes


def _command(commands, name: str, help: str, examples: str) -> argparse.ArgumentParser:  # noqa: A002
    """A subcommand whose --help ends with examples and the documentation's place."""
    return commands.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                               formatter_class=argparse.RawDescriptionHelpFormatter,
                               epilog=f"examples:\n{examples.strip(chr(10))}\n\nall options: {DOCS}")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the .cnn file (- reads the program from standard input)")
    parser.add_argument("--input-shape", type=_shape_option, action="append", default=[], metavar="NAME=SHAPE",
                        help="override an input's declared shape, e.g. image=1x3x448x448")


def _threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=_positive, metavar="N",
                        help="CPU threads: a batch runs as N parts at once, BLAS single-threaded in each "
                             "(default: as many as NumPy's BLAS uses; 1: one forward pass per batch)")


def _optimization(parser: argparse.ArgumentParser, level: int = 2) -> None:
    group = parser.add_argument_group("optimization")
    group.add_argument("-O", dest="level", type=int, choices=(0, 1, 2), default=level,
                       help=f"optimization level: -O0 none, -O1 cleanups, -O2 fusion and lowering "
                            f"(default: -O{level})")
    group.add_argument("--passes", type=lambda s: [p for p in s.split(",") if p], metavar="A,B,C",
                       help="run exactly these passes (in the pipeline's order) instead of a level")
    group.add_argument("--disable-pass", action="append", default=[], metavar="NAME", help="skip a pass")
    group.add_argument("--fcn", action="store_true",
                       help="turn dense layers into convolutions (fully convolutional; use with --input-shape)")
    group.add_argument("--verify", action="store_true",
                       help="check every pass: verify the IR and compare outputs with the un-optimized graph; "
                            "prints a table of the passes (to standard error)")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cnnc", description="Compile and run .cnn network descriptions.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  cnnc run examples/resnet18.cnn --input photo.jpg\n"
               "  cnnc run examples/resnet18.cnn --input imgs/ --output preds.jsonl\n"
               "  cnnc bench examples/resnet18.cnn --batch 1,8\n"
               f"\n'cnnc COMMAND --help' describes a command; all of them: {DOCS}")
    parser.add_argument("--version", action="version", version=f"cnnc {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    compile_ = _command(commands, "compile", "generate a standalone Python module (+ .npz parameters)", """
  cnnc compile examples/resnet50.cnn -o resnet50.py     # resnet50.py + resnet50.npz
  cnnc compile examples/resnet50.cnn --emit ir          # the optimized IR, one node per line
  cnnc compile examples/resnet50.cnn -O0 -o plain.py    # no optimization
  cnnc compile examples/resnet18.cnn --target cupy -o r18_gpu.py""")
    _common(compile_)
    compile_.add_argument("-o", "--output", help="write MODULE.py and MODULE.npz (default: print the code)")
    compile_.add_argument("--emit", choices=("python", "ir"), default="python",
                          help="what to produce (default: python)")
    compile_.add_argument("--target", choices=("numpy", "cupy"), default="numpy",
                          help="the generated module's library: numpy (CPU) or cupy (NVIDIA GPU) (default: numpy)")
    compile_.add_argument("--tf32", action="store_true",
                          help="with --target cupy: the module's runner() uses TF32 tensor cores by default")
    compile_.add_argument("--params", help="parameters (.npz) to ship (default: a seeded He initialization)")
    compile_.add_argument("--seed", type=_non_negative, default=0,
                          help="seed of the parameter initialization (default: 0)")
    compile_.add_argument("--print-after-all", action="store_true", help="print the IR after every pass")
    _optimization(compile_)

    run = _command(commands, "run", "compile and run on inputs (a random one by default)", """
  cnnc run examples/resnet18.cnn                               # random input, top-5 classes
  cnnc run examples/resnet18.cnn --input photo.jpg --top 3
  cnnc run examples/resnet18.cnn --input imgs/ --batch 16 --output preds.jsonl
  cnnc run examples/resnet18.cnn --input 'data/**/*.png' a.jpg --output preds.csv
  cnnc run examples/yolo_tiny.cnn --input photo.jpg --draw boxes.png
  cnnc run examples/segmentation.cnn --batch 2 --seed 1 --save-output out.npz
  cnnc run model.cnn --input 'photos/**/*.jpg' --output preds.parquet --workers 4   # on Dask
  cnnc run model.cnn --input 'photos/**/*.jpg' --output preds.parquet --scheduler tcp://host:8786""")
    _common(run)
    run.add_argument("--input", nargs="+", action="extend", default=[], metavar="PATH",
                     help="input files: .npy arrays or images (.jpg, .png, ...; resized and normalized), "
                          "folders of them, or glob patterns ('imgs/*.jpg', quoted); several, or a folder, run "
                          "in batches and a bad file is reported and skipped (default: a random input)")
    run.add_argument("-o", "--output", metavar="RESULTS",
                     help="write the results, a row per example and output, as JSON Lines (.jsonl) or CSV "
                          f"(.csv): file, top-k classes and scores, or boxes (the schema: {DOCS})")
    run.add_argument("--params", help="parameters (.npz) (default: a seeded He initialization)")
    run.add_argument("--labels", metavar="FILE",
                     help="class names, one per line, for the classifier or detection outputs with that many "
                          "classes (default: the program's `labels`, e.g. imagenet)")
    run.add_argument("--prepare", metavar="STEPS",
                     help="how --input images become the input, instead of the program's `prepare` clause, e.g. "
                          "'resize(256) |> center_crop |> normalize(imagenet)' (docs/language.md)")
    run.add_argument("--seed", type=_non_negative, default=0,
                     help="seed of the parameters and of the random input (default: 0)")
    run.add_argument("--batch", type=_positive, metavar="N",
                     help=f"examples per forward pass: the random input's batch (default: 1), or how many "
                          f"input examples run together (default: {FILES_BATCH}; one file: all its examples)")
    run.add_argument("--top", type=_positive, default=5, metavar="K",
                     help="classes to list for a classifier output (default: 5)")
    run.add_argument("--save-output", metavar="OUT.npz", help="write the output arrays to this .npz file")
    run.add_argument("--draw", metavar="OUT.png",
                     help="draw the detected boxes (an [N, K, 6] output, or a [N, 4] box) on the --input image")
    run.add_argument("--mask", metavar="OUT.png",
                     help="picture a segmentation output: instance masks (from instance_masks) coloured on the "
                          "--input image, with their boxes and labels; or the colour mask of a score map "
                          "[N, C, H, W] (image-sized with --input)")
    run.add_argument("--max-memory", type=_gib_option, metavar="GIB",
                     help="refuse to run when the estimated memory exceeds this many GiB (default: the "
                          "machine's memory)")
    run.add_argument("--gpu", action="store_true", help="run on an NVIDIA GPU with CuPy")
    run.add_argument("--tf32", action="store_true",
                     help="with --gpu: TF32 tensor cores in the GEMMs (faster, ~1e-3 relative error per product)")
    _threads(run)
    dask = run.add_argument_group("on Dask (pip install 'cnnc[dask]'; --output is then a folder of partitions)")
    dask.add_argument("--workers", type=_positive, metavar="N",
                      help="run the --input files on a local Dask cluster of N worker processes, writing "
                           "--output preds.parquet or preds.jsonl as a folder of partitions")
    dask.add_argument("--scheduler", metavar="ADDRESS",
                      help="run on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786); inputs and "
                           "--output must be at the same paths on every worker (a shared file system)")
    dask.add_argument("--partition-size", type=_positive, metavar="N",
                      help="input files per partition, one task and one output file each (default: 256, rounded "
                           "up to a multiple of --batch)")
    dask.add_argument("--no-resume", dest="no_resume", action="store_true",
                      help="redo every partition; without it a rerun keeps the partitions the same run wrote")
    _optimization(run)

    bench = _command(commands, "bench", "time the compiled network: latency and throughput per batch size", """
  cnnc bench examples/resnet18.cnn                       # batch 1: 2 warm-ups, 10 timed runs
  cnnc bench examples/resnet50.cnn --batch 1,8,32 --repeat 20
  cnnc bench examples/resnet50.cnn --batch 8 --profile   # + time per kind of layer
  OMP_NUM_THREADS=2 cnnc bench examples/vgg16.cnn -O0    # fewer BLAS threads, no optimization""")
    _common(bench)
    bench.add_argument("--batch", type=_batch_sizes, default=[1], metavar="B[,B...]",
                       help="batch sizes to time, e.g. 1,8,32 (default: 1)")
    bench.add_argument("--warmup", type=_non_negative, default=2, metavar="N",
                       help="untimed runs before the timed ones, per batch size (default: 2)")
    bench.add_argument("--repeat", type=_positive, default=10, metavar="N",
                       help="timed runs per batch size (default: 10)")
    bench.add_argument("--profile", action="store_true",
                       help="also time every layer (the NumPy kernels one by one) and sum the time per kind")
    bench.add_argument("--profile-top", type=_non_negative, default=10, metavar="K",
                       help="with --profile: the slowest layers to list (default: 10)")
    bench.add_argument("--params", help="parameters (.npz) (default: a seeded He initialization)")
    bench.add_argument("--seed", type=_non_negative, default=0,
                       help="seed of the parameters and of the random inputs (default: 0)")
    bench.add_argument("--max-memory", type=_gib_option, metavar="GIB",
                       help="refuse to run when the largest batch's estimated memory exceeds this many GiB "
                            "(default: the machine's memory)")
    bench.add_argument("--gpu", action="store_true", help="time on an NVIDIA GPU with CuPy (CUDA graph replay)")
    bench.add_argument("--tf32", action="store_true", help="with --gpu: TF32 tensor cores in the GEMMs")
    _threads(bench)
    _optimization(bench)

    check = _command(commands, "check", "parse and infer every shape, run nothing", """
  cnnc check examples/resnet50.cnn
  cnnc check examples/resnet50.cnn --input-shape image=1x3x320x320
  cnnc check examples/resnet_blocks.cnn                  # a library: its blocks""")
    _common(check)
    summary = _command(commands, "summary", "per-layer table: shapes, parameters, MACs, blocks and their totals", """
  cnnc summary examples/resnet50.cnn                     # every layer, under its blocks (-O0)
  cnnc summary examples/resnet50.cnn --depth 1           # the top-level layers, blocks with their totals
  cnnc summary examples/resnet50.cnn -O2                 # the layers that run after optimization
  cnnc summary examples/googlenet.cnn --columns layer,op,kernel,stride,receptive_field,connected_to
  cnnc summary examples/resnet50.cnn --json > resnet50.json""")
    _common(summary)
    summary.add_argument("--depth", type=_positive, metavar="N",
                         help="show N levels of blocks, deeper ones folded into their block's row (default: all)")
    summary.add_argument("--columns", type=_summary_columns, metavar="A,B,...",
                         help="the columns, from: layer, op, output_shape, params, macs, kernel, stride, "
                              "connected_to, receptive_field, cumulative_stride, activation_memory "
                              "(default: layer,op,output_shape,params,macs,connected_to)")
    summary.add_argument("--json", action="store_true",
                         help="print the rows and totals as JSON (format cnnc.summary/1) instead of a table")
    _optimization(summary, level=0)

    viz = _command(commands, "viz", "draw the network: Graphviz DOT, SVG, PNG, PDF or an HTML page", """
  cnnc viz examples/resnet18.cnn -o resnet18.svg         # the source program's layers (-O0)
  cnnc viz examples/resnet50.cnn -O2 -o fused.html       # what runs: fused nodes show what they absorbed
  cnnc viz examples/resnet152.cnn --depth 1 -o r152.svg  # each block below depth 1 as one box
  cnnc viz examples/googlenet.cnn -o googlenet.dot       # DOT text: needs no Graphviz""")
    _common(viz)
    viz.add_argument("-o", "--output", required=True, metavar="FILE",
                     help="the picture: .svg, .png, .pdf, .html (a page that folds blocks) or .dot/.gv (DOT text); "
                          "all but DOT need Graphviz's dot program")
    viz.add_argument("--depth", type=_non_negative, metavar="K",
                     help="draw each block nested deeper than K as one box with its totals (default: every layer)")
    _optimization(viz, level=0)

    from .training import command as train_command

    train = _command(commands, "train", "train the network's weights on a data set", train_command.EXAMPLES)
    train_command.add_arguments(train, _positive, _non_negative)

    import_ = _command(commands, "import", "convert an ONNX model to a .cnn program (+ .npz parameters)", """
  cnnc import model.onnx -o model.cnn                    # model.cnn + model.npz
  cnnc import model.onnx --input-shape input=1x3x224x224""")
    import_.add_argument("file", help="the .onnx model")
    import_.add_argument("-o", "--output", help="write PROGRAM.cnn and PROGRAM.npz (default: beside the model)")
    import_.add_argument("--input-shape", type=_shape_option, action="append", default=[], metavar="NAME=SHAPE",
                         help="fix a model input's dynamic dimensions, e.g. input=1x3x224x224")
    export = _command(commands, "export", "write the network (un-optimized) as an ONNX model", """
  cnnc export examples/resnet18.cnn -o resnet18.onnx
  cnnc export model.cnn --params model.npz -o model.onnx""")
    _common(export)
    export.add_argument("-o", "--output", help="the .onnx file to write (default: beside the .cnn file)")
    export.add_argument("--params", help="parameters (.npz) to export (default: a seeded He initialization)")
    export.add_argument("--seed", type=_non_negative, default=0,
                        help="seed of the parameter initialization (default: 0)")
    return parser


def _source(args: argparse.Namespace) -> tuple[str | Path, str | None]:
    """The program and its name: the file argument is always a path (a missing one says so,
    whatever its suffix); `-` reads the program text from standard input."""
    if args.file == "-":
        text = sys.stdin.read(MAX_SOURCE_BYTES + 1)  # characters, at least as many as bytes
        if len(text) > MAX_SOURCE_BYTES:
            raise CnncImportError(f"more than {MAX_SOURCE_BYTES} characters, more than cnnc reads",
                                  where="<stdin>")
        return text, "<stdin>"
    return Path(args.file), None


def _graph(args: argparse.Namespace, observer=None, program: tuple[str | Path, str | None] | None = None):
    """The IR for the command: parsed, then optimized as the options say; `program` is what
    `_source` returned, when the caller has read it already (standard input reads once).
    With --verify, every pass is checked as it runs and its row of the table is printed."""
    source, name = program or _source(args)
    shapes = dict(args.input_shape) or None
    if not hasattr(args, "level"):
        return parse(source, input_shapes=shapes, name=name)
    table = None
    if args.verify:
        from .runtime.verify_report import VerifyTable

        # what build_graph optimizes (an FCN is elaborated at its declared size), parsed once more
        # here (milliseconds) as the reference the passes are compared with
        table = VerifyTable(parse(source, input_shapes=None if args.fcn else shapes, name=name))
        observer = _observers(table, observer)
    graph = build_graph(source, input_shapes=shapes, name=name, optimize=args.level, passes=args.passes,
                        disable_passes=tuple(args.disable_pass), fcn=args.fcn, observer=observer)
    if table is not None:
        table.finish()
    return graph


def _observers(*observers):
    """One pass observer calling each of `observers` (None ones left out) in turn."""
    chosen = [o for o in observers if o is not None]

    def observe(name: str, graph, changed: bool) -> None:
        for observer in chosen:
            observer(name, graph, changed)
    return observe


def _print_after(name: str, graph, changed: bool) -> None:
    from .ir.printer import print_graph

    print(f"# ---- after {name}{'' if changed else ' (no change)'} ----")
    print(print_graph(graph), end="")


def _cmd_check(args: argparse.Namespace) -> None:
    program = _source(args)
    library = check_library(*program)
    if library is not None:  # blocks only: nothing to compile, but check what is there
        blocks = sorted(n for n, v in library.items() if isinstance(v, Block))
        print(f"{args.file}: ok — a library (no input or output): {len(blocks)} block(s)"
              f"{': ' + ', '.join(blocks) if blocks else ''}; {len(library) - len(blocks)} constant(s)")
        return
    graph = _graph(args, program=program)
    from .ir.shapes import fmt
    ins = ", ".join(f"{n} {fmt(graph.shape(n))}" for n in graph.info.inputs)
    outs = ", ".join(f"{o} {fmt(graph.shape(n))}" for o, n in graph.info.outputs.items())
    print(f"{args.file}: ok — {len(graph)} nodes; inputs: {ins}; outputs: {outs}")
    from .ir.preprocess import describe, image_input

    for name in graph.info.inputs:
        if image_input(graph.shape(name)):
            declared = name in graph.info.preprocess
            print(f"  images become '{name}' by: {describe(steps_for(graph, name))}"
                  f"{'' if declared else ' (the default; declare yours with `prepare`)'}")


def _summary_columns(text: str) -> tuple[str, ...]:
    from .summary import COLUMNS

    chosen = tuple(c.strip() for c in text.split(",") if c.strip())
    unknown = [c for c in chosen if c not in COLUMNS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown column {unknown[0]!r} (the columns: {', '.join(COLUMNS)})"
                                         if unknown else "name at least one column")
    return chosen


def _cmd_summary(args: argparse.Namespace) -> None:
    from .summary import DEFAULT_COLUMNS, print_summary, summary_json

    graph = _graph(args)
    if args.json:
        import json

        print(json.dumps(summary_json(graph, args.depth), indent=2))
        return
    print_summary(graph, args.depth, args.columns or DEFAULT_COLUMNS)


def _cmd_compile(args: argparse.Namespace) -> None:
    from .codegen.python import generate
    from .ir.printer import print_graph
    from .passes.derived import materialize
    from .runtime.params import ParamStore, read_npz

    if args.tf32 and args.target != "cupy":
        raise CnncInputError("--tf32 applies to --target cupy", where="--tf32")
    graph = _graph(args, _print_after if args.print_after_all else None)
    if args.emit == "ir":
        text = print_graph(graph)
    elif args.target == "cupy":
        from .codegen.cupy import generate as generate_cupy

        text = generate_cupy(graph, tf32=args.tf32)
    else:
        text = generate(graph)
    if not args.output:
        sys.stdout.write(text)
        return
    output = Path(args.output)
    if args.emit == "ir":
        with atomic_write(output) as handle:
            handle.write(text)
        return
    specs = graph.info.user_param_specs()
    store = ParamStore.seeded(specs, args.seed)
    if args.params:
        store.update_from(read_npz(args.params), args.params)
    module = output if output.suffix == ".py" else output.with_suffix(".py")
    # The module reads the optimized graph's parameters (folded ones computed here); the pair is
    # written both or neither.
    with atomic_writes([(module.with_suffix(".npz"), "wb"), (module, "w")]) as (params_file, module_file):
        save_npz(params_file, materialize(graph, store.data))
        module_file.write(text)
    print(f"wrote {module} and {module.with_suffix('.npz')}")


def _cpu_parts(args: argparse.Namespace) -> int:
    """How many parts of a batch a CPU run executes at once (CompiledNetwork.threads's default is
    BLAS's thread count); 1 on the GPU."""
    from .runtime.threads import blas_threads

    return 1 if args.gpu else (args.threads or blas_threads())


def _cmd_run(args: argparse.Namespace) -> int:
    from .codegen.python import generate
    from .ir.shapes import fmt
    from .runtime.inputs import expand_inputs, random_input
    from .runtime.memory import check_run_memory, machine_memory
    from .runtime.network import CompiledNetwork
    from .runtime.results import result_format

    if args.tf32 and not args.gpu:
        raise CnncInputError("--tf32 applies to --gpu", where="--tf32")
    if args.gpu:  # before any work: no CuPy or no GPU is one line and exit status 1
        from .runtime.gpu import require_gpu

        require_gpu(where="--gpu")
    dask = args.workers is not None or args.scheduler is not None
    if dask:
        _check_dask_run(args)
    elif args.output:
        result_format(args.output)  # a wrong suffix before the (long) work
    if not dask and (args.partition_size is not None or args.no_resume):
        flag = "--partition-size" if args.partition_size is not None else "--no-resume"
        raise CnncInputError(f"{flag} applies to a Dask run (--workers N or --scheduler ADDRESS)", where=flag)
    started = time.perf_counter()
    graph = _graph(args)
    names = list(graph.info.inputs)
    name = names[0]
    shape = graph.shape(name)
    if args.prepare is not None:  # before any image is read, and on the graph Dask workers receive
        from .language.prepare import preparation_from_text

        graph.info.preprocess[name] = preparation_from_text(args.prepare, tuple(shape))
    if not isinstance(shape[0], str) and args.batch not in (None, shape[0]):
        raise CnncInputError(f"input '{name}' has a fixed batch of {shape[0]} ({fmt(shape)}); declare it "
                             f"[N, ...] to run other batch sizes", where="--batch")
    found = None
    if args.input:
        if len(names) != 1:
            raise CnncInputError("--input works for networks with one input", where="--input")
        found = expand_inputs(args.input)
    several = found is not None and (found.several or dask)
    if several:
        for option in ("draw", "mask", "save_output"):
            if getattr(args, option):
                flag = "--" + option.replace("_", "-")
                raise CnncInputError(f"{flag} works with one input file, and --input names "
                                     f"{len(found.files) if found else 0}; --output preds.jsonl writes the "
                                     f"results of every file", where=flag)
    draw_plan = mask_plan = None
    # the one input file when it is an image (pictures are drawn on it), else None
    photo = found.files[0] if found is not None and Path(found.files[0]).suffix.lower() != ".npy" else None
    if args.draw or args.mask:  # is there something to draw? (before the network runs)
        from .runtime import visualize

        if args.draw:
            draw_plan = visualize.plan_draw(graph)
            if photo is None:
                raise CnncInputError("--draw draws on the input image: give one with --input photo.jpg",
                                     where="--draw")
            visualize.image_format(args.draw, "--draw")
        if args.mask:
            mask_plan = visualize.plan_mask(graph)
            if mask_plan.kind == "instances" and photo is None:
                raise CnncInputError("--mask colours the instances on the input image: give one with --input "
                                     "photo.jpg", where="--mask")
            visualize.image_format(args.mask, "--mask")
    examples = None
    if found is not None and not several:  # one file: read before the parameters; a bad one is an error
        from .runtime.batches import read_examples

        examples = read_examples(found.files[0], shape, steps_for(graph, name))
        if args.batch is not None and args.batch > len(examples) and isinstance(shape[0], str):
            print(f"note: --batch {args.batch}, but {found.files[0]} holds {len(examples)} example"
                  f"{'s' if len(examples) != 1 else ''}: it runs as a batch of {len(examples)} (--batch sets the "
                  "random input's size, or how many input examples run together)", file=sys.stderr)
        batch = min(args.batch or len(examples), len(examples))
    else:
        batch = args.batch or (FILES_BATCH if several else 1)
    if not isinstance(shape[0], str):  # a fixed batch: every forward pass has that size
        batch = int(shape[0])
    limit = args.max_memory or machine_memory()
    if limit is not None:  # before the random input and the parameters are allocated
        check_run_memory(graph, batch, limit, parts=_cpu_parts(args))
    if args.labels:
        _override_labels(graph, args.labels)
    net = CompiledNetwork(graph, generate(graph), seed=args.seed)
    net.threads = args.threads or net.threads
    if args.params:
        net.load_params(args.params)
    elif found is not None and any(is_classifier(graph, n) for n in graph.info.outputs.values()):
        print("note: the weights are random (a seeded He initialization), so these classes mean nothing; "
              "load trained weights with --params weights.npz (from `cnnc import model.onnx`, or "
              "cnnc.load_torch_state_dict in Python)", file=sys.stderr)
    if args.gpu:  # one forward pass (one file or a random input): nothing to replay, so no CUDA graph
        net.to("gpu", tf32=args.tf32, cuda_graph=several)
    compiled = time.perf_counter() - started
    if dask:
        from .runtime.distributed import run_cli

        return run_cli(net, args.input, args.output, batch, args.top, args.workers, args.scheduler,
                       args.partition_size, not args.no_resume, compiled)
    if several:
        assert found is not None
        return _run_files(args, net, found, batch, compiled)
    from .runtime.progress import Status
    from .runtime.results import Source, prediction_rows

    with Status(f"compiled in {compiled:.1f} s; running {len(examples) if examples is not None else batch} "
                "example(s) ..."):
        if examples is not None:
            outputs, sources, rows, seconds = _run_examples(net, name, shape, examples, batch, args.top)
        else:
            inputs = {n: random_input(graph.shape(n), batch, args.seed) for n in names}
            start = time.perf_counter()
            outputs = net.run(**inputs)
            seconds = time.perf_counter() - start
            sources = [Source(None, i) for i in range(len(inputs[name]))]
            rows = prediction_rows(graph, outputs, sources, 0, args.top) if args.output else []
    from .runtime.report import describe_outputs

    print(describe_outputs(graph, outputs, args.top))
    print(f"time: compile {compiled:.2f} s, run {seconds:.2f} s ({len(sources)} example"
          f"{'s' if len(sources) != 1 else ''}, {len(sources) / seconds if seconds > 0 else 0:.1f} examples/s)")
    if args.output:
        from .runtime.results import write_results

        count = write_results(args.output, rows)
        print(f"wrote {args.output}: {count} row{'s' if count != 1 else ''}")
    if args.save_output:
        write_npz(args.save_output, outputs)
    if draw_plan is not None:
        assert photo is not None
        count = visualize.draw_boxes(graph, draw_plan, outputs, sources[0].placement, photo, args.draw)
        print(f"wrote {args.draw}: {count} box{'es' if count != 1 else ''} from '{draw_plan.boxes}'")
    if mask_plan is not None and mask_plan.kind == "instances":
        assert photo is not None
        count = visualize.write_instances(graph, mask_plan, outputs, sources[0].placement, photo, args.mask)
        print(f"wrote {args.mask}: {count} instance{'s' if count != 1 else ''} from '{mask_plan.masks}'")
    elif mask_plan is not None:
        width, height = visualize.write_mask(outputs[mask_plan.masks], photo, args.mask,
                                             sources[0].placement if photo is not None else None)
        print(f"wrote {args.mask}: {width}x{height} mask of '{mask_plan.masks}'")
    return 0


def _override_labels(graph, path: str) -> None:
    """--labels FILE: its names for every classifier or detection output with that many classes."""
    from .ir.ops import Op
    from .labels import class_count, read_label_file
    from .runtime.results import output_kinds

    names = read_label_file(path)
    kinds = output_kinds(graph)
    matched = []
    for out, node in graph.info.outputs.items():
        if not (kinds[out] == "classes" or graph.op(node) == Op.NMS):
            continue
        if class_count(graph, node)[0] == len(names):
            graph.info.labels[out] = names
            matched.append(out)
    if not matched:
        raise CnncInputError(f"{path} names {len(names)} classes, but no classifier or detection output has "
                             "that many", where="--labels")


def _check_dask_run(args: argparse.Namespace) -> None:
    """--workers / --scheduler: what they need, before anything is compiled."""
    from .runtime.distributed import output_format

    flag = "--workers" if args.workers is not None else "--scheduler"
    if args.workers is not None and args.scheduler is not None:
        raise CnncInputError("--workers starts a local cluster and --scheduler names one: give one of them",
                             where="--workers")
    if not args.input:
        raise CnncInputError("a Dask run needs input files: --input 'photos/**/*.jpg'", where=flag)
    if not args.output:
        raise CnncInputError("a Dask run writes a folder of partitions: --output preds.parquet or preds.jsonl",
                             where=flag)
    for option in ("gpu", "draw", "mask", "save_output"):
        if getattr(args, option):
            raise CnncInputError(f"--{option.replace('_', '-')} does not run on Dask", where=flag)
    output_format(args.output)


def _run_examples(net, name: str, shape: tuple, examples: list, batch: int, top: int):
    """One file's examples, `batch` at a time: the outputs of all of them (the padding of a
    fixed-size batch dropped), their sources, their result rows, and the seconds the forward
    passes took."""
    import numpy as np

    from .runtime.batches import run_batches
    from .runtime.results import prediction_rows

    parts: dict[str, list] = {}
    sources: list = []
    rows: list = []

    def keep(index: int, batch_sources: list, outputs: dict) -> None:
        sources.extend(batch_sources)
        rows.extend(prediction_rows(net.graph, outputs, batch_sources, index, top))
        for out, value in outputs.items():
            parts.setdefault(out, []).append(value[:len(batch_sources)])

    stats = run_batches(net.run, name, shape, examples, batch, keep)
    outputs = {out: np.concatenate(values) if len(values) > 1 else values[0] for out, values in parts.items()}
    return outputs, sources, rows, stats.seconds


def _run_files(args: argparse.Namespace, net, found, batch: int, compiled: float) -> int:
    """Several input files: batches of `batch` examples, a row per example and output (on
    standard output, or into --output), a bad file reported and skipped, a summary line."""
    from .runtime.batches import RunStats, iter_examples, run_batches
    from .runtime.progress import Progress
    from .runtime.report import describe_row
    from .runtime.results import ResultWriter, error_row, prediction_rows

    graph = net.graph
    name = net.input_names[0]
    shape = graph.shape(name)
    images = all(Path(f).suffix.lower() != ".npy" for f in found.files)
    progress = Progress(len(found.files), "images" if images else "examples")
    stats = RunStats()
    writer = ResultWriter(args.output) if args.output else None

    def failure(path: str, reason: str) -> None:
        progress.clear()
        print(f"{path}: skipped: {reason}", file=sys.stderr)
        if writer is not None:
            writer.write([error_row(path, reason)])
        progress.done = stats.files + stats.failed
        progress.advance()

    def batch_done(index: int, sources: list, outputs: dict) -> None:
        rows = prediction_rows(graph, outputs, sources, index, args.top)
        if writer is not None:
            writer.write(rows)
        else:
            progress.clear()
            print("\n".join(describe_row(row) for row in rows), flush=True)
        progress.done = stats.files + stats.failed
        progress.advance(examples=len(sources))

    try:
        with writer if writer is not None else contextlib.nullcontext():
            examples = iter_examples(found.files, shape, stats, failure, steps_for(net.graph, name))
            run_batches(net.run, name, shape, examples, batch, batch_done, stats)
    finally:
        progress.close()
    if writer is not None:
        print(f"wrote {args.output}: {writer.rows} row{'s' if writer.rows != 1 else ''}")
    unit = "images" if images else "examples"
    skipped = (f"; {len(found.skipped)} other file{'s' if len(found.skipped) != 1 else ''} in the folders "
               "ignored (not images or .npy)") if found.skipped else ""
    print(f"{len(found.files)} input files: {stats.files} ran, {stats.failed} failed{skipped}; "
          f"{stats.examples} {unit} in {stats.batches} batch{'es' if stats.batches != 1 else ''} of up to {batch}, "
          f"{stats.seconds:.2f} s ({stats.rate:.1f} {unit}/s; compile {compiled:.2f} s)", file=sys.stderr)
    return 1 if stats.failed else 0


def _cmd_bench(args: argparse.Namespace) -> None:
    from .codegen.python import generate
    from .ir.shapes import fmt
    from .runtime.bench import blas_note, loops_note, table_header, table_row, threads_note, time_batch
    from .runtime.memory import check_run_memory, machine_memory
    from .runtime.network import CompiledNetwork

    if args.tf32 and not args.gpu:
        raise CnncInputError("--tf32 applies to --gpu", where="--tf32")
    if args.profile and args.gpu:
        raise CnncInputError("--profile times the NumPy kernels one by one; it does not run on the GPU",
                             where="--profile")
    if args.gpu:
        from .runtime.gpu import require_gpu

        require_gpu(where="--gpu")
    started = time.perf_counter()
    graph = _graph(args)
    for name in graph.info.inputs:
        shape = graph.shape(name)
        if not isinstance(shape[0], str) and args.batch != [shape[0]]:
            raise CnncInputError(f"input '{name}' has a fixed batch of {shape[0]} ({fmt(shape)}); declare it "
                                 f"[N, ...] to time other batch sizes", where="--batch")
    limit = args.max_memory or machine_memory()
    if limit is not None:
        check_run_memory(graph, max(args.batch), limit, parts=_cpu_parts(args))
    net = CompiledNetwork(graph, generate(graph), seed=args.seed)
    net.threads = args.threads or net.threads
    if args.params:
        net.load_params(args.params)
    if args.gpu:
        net.to("gpu", tf32=args.tf32)
    compiled = time.perf_counter() - started
    optimization = f"passes {','.join(args.passes)}" if args.passes is not None else f"-O{args.level}"
    device = "GPU (CuPy)" if args.gpu else f"CPU (NumPy{blas_note()}{loops_note()}; {threads_note(net.threads)})"
    print(f"{args.file}: {optimization}, {len(graph)} nodes, on the {device}; compiled in {compiled:.2f} s")
    print(f"{args.repeat} timed run{'s' if args.repeat != 1 else ''} per batch size after {args.warmup} "
          f"warm-up run{'s' if args.warmup != 1 else ''}; random input (seed {args.seed}); times per forward pass")
    print(table_header(), flush=True)
    for batch in args.batch:
        print(table_row(time_batch(net, batch, args.warmup, args.repeat, args.seed)), flush=True)
    if args.profile:
        from .runtime.profile import profile_net, report

        for batch in args.batch:
            print()
            print(report(profile_net(net, batch, args.repeat, args.seed), f"per layer, batch {batch}",
                         args.repeat, args.profile_top), flush=True)


def _cmd_import(args: argparse.Namespace) -> None:
    from .interop.onnx_import import import_onnx

    text, params = import_onnx(args.file, input_shapes=dict(args.input_shape) or None)
    program = Path(args.output) if args.output else Path(args.file).with_suffix(".cnn")
    if program.suffix != ".cnn":
        program = program.with_suffix(".cnn")
    with atomic_writes([(program.with_suffix(".npz"), "wb"), (program, "w")]) as (params_file, program_file):
        save_npz(params_file, params)
        program_file.write(text)
    print(f"wrote {program} and {program.with_suffix('.npz')} "
          f"(run it: cnnc run {program} --params {program.with_suffix('.npz')})")


def _cmd_export(args: argparse.Namespace) -> None:
    from .interop.onnx_export import export_onnx
    from .runtime.params import read_npz

    source, name = _source(args)
    graph = parse(source, input_shapes=dict(args.input_shape) or None, name=name)
    params = read_npz(args.params) if args.params else None
    if not args.output and args.file == "-":  # the program came on standard input: no name to derive
        raise CnncInputError("a program read from standard input needs -o model.onnx", where="export")
    output = Path(args.output) if args.output else Path(args.file).with_suffix(".onnx")
    export_onnx(graph, params, output, seed=args.seed)
    print(f"wrote {output}")


def _cmd_viz(args: argparse.Namespace) -> None:
    from .viz import output_format, write

    output_format(args.output)  # before compiling: a wrong suffix is the user's first mistake
    graph = _graph(args)
    level = "the passes given" if args.passes else f"-O{args.level}"
    chosen = write(graph, args.output, args.depth, title=f"{graph.info.source_name} ({level})")
    print(f"wrote {args.output} ({chosen}; {len(graph)} IR nodes at {level})")


def _cmd_train(args: argparse.Namespace) -> int:
    from .training.command import run

    return run(args)


_COMMANDS = {"compile": _cmd_compile, "run": _cmd_run, "bench": _cmd_bench, "check": _cmd_check,
             "summary": _cmd_summary, "viz": _cmd_viz, "train": _cmd_train, "import": _cmd_import,
             "export": _cmd_export}


def _show_notes(message, category, filename, lineno, file=None, line=None,  # noqa: ANN001
                shown: set[str] | None = None) -> None:
    """Image conversions are notes for the user, and a program's warnings are diagnostics like its
    errors (`file:line:col: warning: ...`, each once: a program may be parsed twice), not Python
    warnings with a source line."""
    from .errors import CnncWarning

    if issubclass(category, ImageConversion):
        print(f"note: {message}", file=sys.stderr)
    elif issubclass(category, CnncWarning):
        text = str(message)
        if shown is None or text not in shown:
            print(_painted(text, "warning"), file=sys.stderr)
        if shown is not None:
            shown.add(text)
    else:
        _SHOW_WARNING(message, category, filename, lineno, file, line)


_SHOW_WARNING = warnings.showwarning
_COLOURS = {"error": "\033[1;31m", "warning": "\033[1;33m"}  # bold red, bold yellow (ANSI)


def _painted(text: str, kind: str) -> str:
    """`text` (a diagnostic) with its `error:` or `warning:` label coloured, when standard error is a
    terminal and NO_COLOR is unset or empty (https://no-color.org)."""
    import os

    label = f"{kind}:"
    head = text.split("\n", 1)[0]
    at = 0 if head.startswith(label) else head.find(f": {label}") + 2  # 1: not there
    isatty = getattr(sys.stderr, "isatty", None)
    if at == 1 or os.environ.get("NO_COLOR") or not (isatty is not None and isatty()):
        return text
    return f"{text[:at]}{_COLOURS[kind]}{label}\033[0m{text[at + len(label):]}"


def _print_errors(error: CnncError) -> None:
    """Every error of `error` (several, from a program with independent errors), then their count."""
    from .errors import CnncErrors

    errors = error.errors if isinstance(error, CnncErrors) else [error]
    for each in errors:
        print(_painted(str(each), "error"), file=sys.stderr)
    if len(errors) > 1:
        print(f"{len(errors)} errors", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    import functools

    from .errors import CnncWarning

    args = _build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = functools.partial(_show_notes, shown=set())
            warnings.simplefilter("always", CnncWarning)  # every one, whatever -W says: they are diagnostics
            status = _COMMANDS[args.command](args)
    except CnncError as error:
        _print_errors(error)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `cnnc compile ... | head`
        sys.stderr.close()
        return 0
    return status or 0
