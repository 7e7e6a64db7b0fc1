"""The `cnnc` command: compile, run, check, summary.

Every user error is printed as one message (file:line:column first) with exit status 1; a
Python traceback means a bug in cnnc.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from . import __version__, build_graph
from .errors import CnncError, CnncImportError, CnncInputError
from .frontend import check_library, parse
from .language.values import Block
from .limits import MAX_SOURCE_BYTES
from .runtime.files import atomic_write, atomic_writes, save_npz, write_npz


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


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the .cnn file (- reads the program from standard input)")
    parser.add_argument("--input-shape", type=_shape_option, action="append", default=[], metavar="NAME=SHAPE",
                        help="override an input's declared shape, e.g. image=1x3x448x448")


def _optimization(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("optimization")
    group.add_argument("-O", dest="level", type=int, choices=(0, 1, 2), default=2,
                       help="optimization level: -O0 none, -O1 cleanups, -O2 fusion and lowering (default)")
    group.add_argument("--passes", type=lambda s: [p for p in s.split(",") if p], metavar="A,B,C",
                       help="run exactly these passes (in the pipeline's order) instead of a level")
    group.add_argument("--disable-pass", action="append", default=[], metavar="NAME", help="skip a pass")
    group.add_argument("--fcn", action="store_true",
                       help="turn dense layers into convolutions (fully convolutional; use with --input-shape)")
    group.add_argument("--verify", action="store_true",
                       help="check every pass: verify the IR and compare outputs with the un-optimized graph")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnc", description="Compile and run .cnn network descriptions.")
    parser.add_argument("--version", action="version", version=f"cnnc {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    compile_ = commands.add_parser("compile", help="generate a standalone Python module (+ .npz parameters)")
    _common(compile_)
    compile_.add_argument("-o", "--output", help="write MODULE.py and MODULE.npz (default: print the code)")
    compile_.add_argument("--emit", choices=("python", "ir"), default="python", help="what to produce")
    compile_.add_argument("--target", choices=("numpy", "cupy"), default="numpy",
                          help="the generated module's library: numpy (CPU, default) or cupy (NVIDIA GPU)")
    compile_.add_argument("--tf32", action="store_true",
                          help="with --target cupy: the module's runner() uses TF32 tensor cores by default")
    compile_.add_argument("--params", help="parameters (.npz) to ship instead of a seeded initialization")
    compile_.add_argument("--seed", type=int, default=0, help="seed of the parameter initialization")
    compile_.add_argument("--print-after-all", action="store_true", help="print the IR after every pass")
    _optimization(compile_)

    run = commands.add_parser("run", help="compile and run on an input (random by default)")
    _common(run)
    run.add_argument("--input", help=".npy array, or an image (.jpg, .png) resized and normalized")
    run.add_argument("--params", help="parameters (.npz); default: seeded He initialization")
    run.add_argument("--seed", type=int, default=0, help="seed of parameters and of the random input")
    run.add_argument("--batch", type=int, default=1, help="batch size of a random input")
    run.add_argument("--top", type=int, default=5, help="classes to list for a classifier output")
    run.add_argument("--save-output", help="write the outputs to this .npz file")
    run.add_argument("--draw", metavar="OUT.png",
                     help="draw the detected boxes (an [N, K, 6] output, or a [N, 4] box) on the --input image")
    run.add_argument("--mask", metavar="OUT.png",
                     help="write the colour mask of a segmentation output [N, C, H, W] (image-sized with --input)")
    run.add_argument("--max-memory", type=_gib_option, metavar="GIB",
                     help="refuse to run when the estimated memory exceeds this many GiB (default: the "
                          "machine's memory)")
    run.add_argument("--gpu", action="store_true", help="run on an NVIDIA GPU with CuPy")
    run.add_argument("--tf32", action="store_true",
                     help="with --gpu: TF32 tensor cores in the GEMMs (faster, ~1e-3 relative error per product)")
    _optimization(run)

    check = commands.add_parser("check", help="parse and infer every shape, run nothing")
    _common(check)
    summary = commands.add_parser("summary", help="per-layer table: shapes, parameters, MACs")
    _common(summary)
    _optimization(summary)
    summary.set_defaults(level=0)

    import_ = commands.add_parser("import", help="convert an ONNX model to a .cnn program (+ .npz parameters)")
    import_.add_argument("file", help="the .onnx model")
    import_.add_argument("-o", "--output", help="write PROGRAM.cnn and PROGRAM.npz (default: beside the model)")
    import_.add_argument("--input-shape", type=_shape_option, action="append", default=[], metavar="NAME=SHAPE",
                         help="fix a model input's dynamic dimensions, e.g. input=1x3x224x224")
    export = commands.add_parser("export", help="write the network (un-optimized) as an ONNX model")
    _common(export)
    export.add_argument("-o", "--output", help="the .onnx file to write (default: beside the .cnn file)")
    export.add_argument("--params", help="parameters (.npz) to export instead of a seeded initialization")
    export.add_argument("--seed", type=int, default=0, help="seed of the parameter initialization")
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
    `_source` returned, when the caller has read it already (standard input reads once)."""
    source, name = program or _source(args)
    if not hasattr(args, "level"):
        return parse(source, input_shapes=dict(args.input_shape) or None, name=name)
    return build_graph(source, input_shapes=dict(args.input_shape) or None, name=name, optimize=args.level,
                       passes=args.passes, disable_passes=tuple(args.disable_pass), fcn=args.fcn,
                       verify=args.verify, observer=observer)


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


def _cmd_summary(args: argparse.Namespace) -> None:
    from .summary import summary_table
    print(summary_table(_graph(args)))


def _cmd_compile(args: argparse.Namespace) -> None:
    from .codegen.python import generate
    from .ir.printer import print_graph
    from .passes.derived import materialize
    from .runtime.params import ParamStore, init_params, read_npz

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
    store = ParamStore(specs, init_params(specs, args.seed))
    if args.params:
        store.update_from(read_npz(args.params), args.params)
    module = output if output.suffix == ".py" else output.with_suffix(".py")
    # The module reads the optimized graph's parameters (folded ones computed here); the pair is
    # written both or neither.
    with atomic_writes([(module.with_suffix(".npz"), "wb"), (module, "w")]) as (params_file, module_file):
        save_npz(params_file, materialize(graph, store.data))
        module_file.write(text)
    print(f"wrote {module} and {module.with_suffix('.npz')}")


def _cmd_run(args: argparse.Namespace) -> None:
    from .codegen.python import generate
    from .runtime.inputs import load_input, random_input
    from .runtime.memory import check_run_memory, machine_memory
    from .runtime.network import CompiledNetwork
    from .runtime.report import describe_outputs

    if args.tf32 and not args.gpu:
        raise CnncInputError("--tf32 applies to --gpu", where="--tf32")
    if args.gpu:  # before any work: no CuPy or no GPU is one line and exit status 1
        from .runtime.gpu import require_gpu

        require_gpu(where="--gpu")
    if args.batch < 1:
        raise CnncInputError("--batch must be at least 1", where="--batch")
    graph = _graph(args)
    draw_plan = mask_output = None
    if args.draw or args.mask:  # is there something to draw? (before the network runs)
        from .runtime import visualize

        if args.draw:
            draw_plan = visualize.plan_draw(graph)
            if not args.input or Path(args.input).suffix.lower() == ".npy":
                raise CnncInputError("--draw draws on the input image: give one with --input photo.jpg",
                                     where="--draw")
            visualize.image_format(args.draw, "--draw")
        if args.mask:
            mask_output = visualize.plan_mask(graph)
            visualize.image_format(args.mask, "--mask")
    limit = args.max_memory or machine_memory()
    if limit is not None:  # before the random input and the parameters are allocated
        check_run_memory(graph, args.batch, limit)
    net = CompiledNetwork(graph, generate(graph), seed=args.seed)
    if args.params:
        net.load_params(args.params)
    if args.gpu:  # one forward pass: nothing to replay, so no CUDA graph
        net.to("gpu", tf32=args.tf32, cuda_graph=False)
    name = net.input_names[0]
    if args.input:
        if len(net.input_names) != 1:
            raise CnncInputError("--input works for networks with one input", where="--input")
        x = load_input(args.input, graph.shape(name))
    else:
        x = None
    inputs = {n: random_input(graph.shape(n), args.batch, args.seed) for n in net.input_names}
    if x is not None:
        inputs[name] = x
    outputs = net.run(**inputs)
    print(describe_outputs(graph, outputs, args.top))
    if args.save_output:
        write_npz(args.save_output, outputs)
    if draw_plan is not None:
        count = visualize.draw_boxes(graph, draw_plan, outputs, graph.shape(name), args.input, args.draw)
        print(f"wrote {args.draw}: {count} box{'es' if count != 1 else ''} from '{draw_plan.boxes}'")
    if mask_output is not None:
        image = args.input if args.input and Path(args.input).suffix.lower() != ".npy" else None
        width, height = visualize.write_mask(outputs[mask_output], image, args.mask)
        print(f"wrote {args.mask}: {width}x{height} mask of '{mask_output}'")


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
    output = Path(args.output) if args.output else Path(args.file).with_suffix(".onnx")
    export_onnx(graph, params, output, seed=args.seed)
    print(f"wrote {output}")


_COMMANDS = {"compile": _cmd_compile, "run": _cmd_run, "check": _cmd_check, "summary": _cmd_summary,
             "import": _cmd_import, "export": _cmd_export}


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        _COMMANDS[args.command](args)
    except CnncError as error:
        print(str(error), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `cnnc compile ... | head`
        sys.stderr.close()
        return 0
    return 0
