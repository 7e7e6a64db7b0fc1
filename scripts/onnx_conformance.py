"""Run cnnc's ONNX importer and compiler against ONNX's own backend node tests.

For every node test of an op the importer covers (a one-node model with inputs and expected
outputs, from `onnx.backend.test.loader.load_model_tests(kind="node")`, built in memory by
onnx >= 1.23), this imports the model with `cnnc.import_onnx`, compiles it with `cnnc.compile`
(-O2) and compares the outputs with the expected ones at the test's tolerances (rtol 1e-3,
atol 1e-7 unless the case says otherwise).

Scope: cnnc computes float32 NCHW images with static shapes, so a case is *in scope* when its
data inputs are float32 with static shapes and rank 4 (rank 2 for Gemm and MatMul, whose data
input is a dense layer's [N, F]). Inputs after the data inputs (weights, bias, scales, pads,
shapes, bounds...) are given by the test as graph inputs; the harness turns them into
initializers with the test's values, as a real model stores them (cnnc needs them constant).
Function-expanded variants (`*_expanded`) decompose the op into primitive ops the importer does
not cover and are out of scope; so are cases of other ops.

Each in-scope case either passes, or fails: refused with a CnncError (the importer says why:
a feature cnnc cannot represent exactly) or, which would be a bug, a wrong result.

    python scripts/onnx_conformance.py                 # all covered ops; summary and failures
    python scripts/onnx_conformance.py --markdown      # the tables for docs/onnx.md
    python scripts/onnx_conformance.py --ops Conv MaxPool -v
"""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cnnc  # noqa: E402
from cnnc.codegen.python import generate  # noqa: E402
from cnnc.errors import CnncError  # noqa: E402
from cnnc.ir.ops import Op  # noqa: E402
from cnnc.runtime.network import CompiledNetwork  # noqa: E402

# The ops the importer covers (Identity and Constant are helpers, not tested on their own here).
OPS = ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
       "BatchNormalization", "LRN", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "Softmax", "Gemm",
       "MatMul", "Flatten", "Reshape", "Concat", "Add", "Sum", "Mul", "Dropout", "Upsample", "Resize", "Pad",
       "Transpose", "HardSigmoid", "HardSwish", "Gelu", "Sub", "Div", "PRelu", "InstanceNormalization",
       "LayerNormalization", "DepthToSpace", "ReduceMean", "ReduceMax", "ReduceSum", "Slice", "Identity")
# How many leading inputs are data (the rest become initializers); None: all of them.
DATA_INPUTS = {"Concat": None, "Sum": None, "Add": None, "Mul": None, "Sub": None, "Div": None}
MATRIX_OPS = {"Gemm", "MatMul"}
# The onnx.backend.test.case.node module that defines each op's cases (to load only some).
MODULES = {"Conv": "conv", "ConvTranspose": "convtranspose", "MaxPool": "maxpool", "AveragePool": "averagepool",
           "GlobalAveragePool": "globalaveragepool", "GlobalMaxPool": "globalmaxpool",
           "BatchNormalization": "batch_normalization", "LRN": "lrn", "Relu": "relu", "LeakyRelu": "leakyrelu",
           "Sigmoid": "sigmoid", "Tanh": "tanh", "Clip": "clip", "Softmax": "softmax", "Gemm": "gemm",
           "MatMul": "matmul", "Flatten": "flatten", "Reshape": "reshape", "Concat": "concat", "Add": "add",
           "Sum": "sum", "Mul": "mul", "Dropout": "dropout", "Upsample": "upsample", "Resize": "resize",
           "Pad": "pad", "Transpose": "transpose", "HardSigmoid": "hardsigmoid", "HardSwish": "hardswish",
           "Gelu": "gelu", "Sub": "sub", "Div": "div", "PRelu": "prelu", "InstanceNormalization": "instancenorm",
           "LayerNormalization": "layernormalization", "DepthToSpace": "depthtospace", "ReduceMean": "reducemean",
           "ReduceMax": "reducemax", "ReduceSum": "reducesum", "Slice": "slice", "Identity": "identity"}
FLOAT = 1


@dataclass
class Result:
    name: str
    op: str
    status: str  # "pass" | "fail" | "out of scope"
    reason: str = ""
    max_diff: float = 0.0


def load_cases(ops: tuple[str, ...] | None = None) -> list:
    """ONNX's node test cases: all of them, or only those defined by the modules of `ops`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some case generators overflow on purpose
        if ops is None:
            from onnx.backend.test import loader

            return loader.load_model_tests(kind="node")
        for op in ops:
            importlib.import_module(f"onnx.backend.test.case.node.{MODULES[op]}")
        from onnx.backend.test.case.node import _NodeTestCases

        return list(_NodeTestCases)


def materialize(case):
    """The case with its model and data sets in memory (onnx < 1.23 keeps them on disk)."""
    if case.model is not None:
        return case
    import glob
    import os

    import onnx
    from onnx import numpy_helper

    model = onnx.load(os.path.join(case.model_dir, "model.onnx"))
    data_sets = []
    for folder in sorted(glob.glob(os.path.join(case.model_dir, "test_data_set_*"))):
        def read(kind, folder=folder):
            files = sorted(glob.glob(os.path.join(folder, f"{kind}_*.pb")), key=lambda f: int(f.rsplit("_", 1)[1][:-3]))
            return [numpy_helper.to_array(onnx.load_tensor(f)) for f in files]
        data_sets.append((read("input"), read("output")))
    case.model, case.data_sets = model, data_sets
    return case


def op_of(case) -> str | None:
    nodes = case.model.graph.node
    return nodes[0].op_type if len(nodes) == 1 and nodes[0].op_type in OPS else None


def base_name(name: str) -> str | None:
    """`test_softmax_axis_0` for `test_softmax_axis_0_expanded` (and `..._expanded_ver18`)."""
    if "_expanded" in name:
        return name[:name.index("_expanded")]
    return None


def _shape(value_info) -> list:
    return [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]


def scope_problem(case, op: str) -> str | None:
    """Why the case is out of scope, or None."""
    graph = case.model.graph
    count = DATA_INPUTS.get(op, 1)
    data = list(graph.input)[:count] if count is not None else list(graph.input)
    ranks = (2,) if op in MATRIX_OPS else (4,)
    for value_info in data:
        tensor_type = value_info.type.tensor_type
        if tensor_type.elem_type != FLOAT:
            from onnx import TensorProto

            return f"{TensorProto.DataType.Name(tensor_type.elem_type).lower()} data"
        shape = _shape(value_info)
        if any(d is None or d == 0 for d in shape):
            return "dynamic or empty shape"
        if len(shape) not in ranks:
            return f"{len(shape)}-D data" + (" (a dense layer's input is [N, F])" if op in MATRIX_OPS else "")
    for value_info in graph.output:
        if value_info.type.tensor_type.elem_type != FLOAT:
            return "non-float32 output"
    return None


def with_constants(case, op: str, inputs: list[np.ndarray]):
    """The case's model with its non-data inputs turned into initializers; and the data inputs."""
    from onnx import numpy_helper

    model = type(case.model)()
    model.CopyFrom(case.model)
    graph = model.graph
    count = DATA_INPUTS.get(op, 1)
    count = len(graph.input) if count is None else count
    kept, data = [], []
    for index, value_info in enumerate(list(graph.input)):
        if index < count:
            kept.append(value_info)
            data.append(inputs[index])
        else:
            graph.initializer.append(numpy_helper.from_array(np.asarray(inputs[index]), value_info.name))
    del graph.input[:]
    graph.input.extend(kept)
    return model, data


def run_case(case) -> Result:
    op = op_of(case)
    problem = scope_problem(case, op)
    if problem:
        return Result(case.name, op, "out of scope", problem)
    worst = 0.0
    for inputs, expected in case.data_sets:
        model, data = with_constants(case, op, list(inputs))
        try:
            text, params = cnnc.import_onnx(model)
        except CnncError as error:
            return Result(case.name, op, "fail", f"refused: {error.message}")
        try:
            net = cnnc.compile(text, params=params)
            outputs = list(net.run(*data).values())
        except CnncError as error:
            return Result(case.name, op, "fail", f"compile/run: {str(error).splitlines()[0]}")
        if len(outputs) != len(expected):
            return Result(case.name, op, "fail", f"{len(outputs)} outputs, expected {len(expected)}")
        for got, want in zip(outputs, expected):
            want = np.asarray(want)
            if got.shape != want.shape:
                return Result(case.name, op, "fail", f"wrong result: shape {got.shape}, expected {want.shape}")
            diff = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
            worst = max(worst, diff)
            if not np.allclose(got, want, rtol=case.rtol, atol=case.atol):
                return Result(case.name, op, "fail", f"wrong result: max abs diff {diff:.3g}", diff)
    return Result(case.name, op, "pass", max_diff=worst)


def run(ops: tuple[str, ...] | None = None, names: set[str] | None = None) -> tuple[list[Result], Counter]:
    """Results for the relevant cases (of `ops`, or all covered ops; or only `names`), and the
    count of cases that are not relevant by kind ("expanded variant", "other op")."""
    cases = [materialize(c) for c in load_cases(ops)]
    relevant = {c.name for c in cases if op_of(c) and (ops is None or op_of(c) in ops)}
    results, others = [], Counter()
    for case in cases:
        if names is not None and case.name not in names:
            continue
        if case.name in relevant:
            results.append(run_case(case))
        elif base_name(case.name) in relevant:
            others["expanded variant"] += 1
            results.append(Result(case.name, op_of_name(case.name, cases), "out of scope",
                                  "function-expanded variant (primitive ops outside the importer's list)"))
        else:
            others["other op"] += 1
    return results, others


def op_of_name(name: str, cases) -> str:
    base = base_name(name)
    return next((op_of(c) for c in cases if c.name == base), "?")


def report(results: list[Result], markdown: bool = False, verbose: bool = False) -> str:
    by_op: dict[str, Counter] = defaultdict(Counter)
    for r in results:
        by_op[r.op][r.status] += 1
    total = Counter(r.status for r in results)
    lines = []
    if markdown:
        lines += ["| ONNX op | node tests | in scope | pass | fail | out of scope |", "|---|---|---|---|---|---|"]
        for op in sorted(by_op):
            c = by_op[op]
            in_scope = c["pass"] + c["fail"]
            lines.append(f"| {op} | {sum(c.values())} | {in_scope} | {c['pass']} | {c['fail']} | {c['out of scope']} |")
        lines.append(f"| **total** | {len(results)} | {total['pass'] + total['fail']} | {total['pass']} | "
                     f"{total['fail']} | {total['out of scope']} |")
        lines += ["", "Failures (in scope):", "", "| case | reason |", "|---|---|"]
        lines += [f"| `{r.name}` | {r.reason.replace('|', '/')} |" for r in results if r.status == "fail"]
        lines += ["", "Out of scope, by reason:", "", "| reason | cases |", "|---|---|"]
        reasons = Counter(r.reason for r in results if r.status == "out of scope")
        lines += [f"| {reason} | {count} |" for reason, count in reasons.most_common()]
    else:
        for op in sorted(by_op):
            c = by_op[op]
            lines.append(f"{op:20s} pass {c['pass']:3d}  fail {c['fail']:3d}  out of scope {c['out of scope']:3d}")
        lines.append(f"{'total':20s} pass {total['pass']:3d}  fail {total['fail']:3d}  "
                     f"out of scope {total['out of scope']:3d}  ({len(results)} node tests of covered ops)")
        worst = max((r.max_diff for r in results if r.status == "pass"), default=0.0)
        lines.append(f"largest abs difference among passing cases: {worst:.3g}")
        for r in results:
            if r.status == "fail" or (verbose and r.status != "pass"):
                lines.append(f"  {r.status:12s} {r.name}: {r.reason}")
            elif verbose:
                lines.append(f"  pass         {r.name} (max abs diff {r.max_diff:.3g})")
    return "\n".join(lines)


# Example networks for --export; those ending in global pooling at a reduced size (as tests/test_onnx.py).
EXPORT_EXAMPLES = [("lenet5", None), ("alexnet", None), ("resnet18", (1, 3, 64, 64)), ("googlenet", None),
                   ("xception", (1, 3, 71, 71)), ("segmentation", (1, 3, 32, 32))]


def export_report(examples=EXPORT_EXAMPLES, seed: int = 3) -> str:
    """Export each example (random weights, random input) and compare: onnxruntime (default
    optimizations) against cnnc -O2, and the imported-back program against the original."""
    import onnxruntime as ort

    lines = ["| example | input | outputs | max abs diff, onnxruntime | relative to max abs output | "
             "max abs diff, export → import → compile |", "|---|---|---|---|---|---|"]
    rng = np.random.default_rng(seed)
    for example, shape in examples:
        net = cnnc.compile(ROOT / "examples" / f"{example}.cnn", input_shapes={"image": shape} if shape else None)
        for name, value in list(net.params.items()):  # random weights, BN statistics in a sane range
            if name.endswith((".var", ".gamma")):
                net.params[name] = rng.uniform(0.5, 1.5, value.shape)
            elif name.endswith((".beta", ".mean", ".bias")):
                net.params[name] = rng.normal(0, 0.1, value.shape)
            else:
                net.params[name] = rng.normal(0, np.sqrt(2.0 / (int(np.prod(value.shape[1:])) or 1)), value.shape)
        model = cnnc.export_onnx(net)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        x = rng.standard_normal((2, *net.graph.shape(net.input_names[0])[1:])).astype(np.float32)
        ours = net.run(x)
        theirs = dict(zip(net.output_names, session.run(None, {net.input_names[0]: x})))
        text, params = cnnc.import_onnx(model)
        again = list(cnnc.compile(text, params=params).run(x).values())
        diff = max(float(np.abs(v - theirs[k]).max()) for k, v in ours.items())
        scale = max(float(np.abs(theirs[k]).max()) for k in ours)
        back = max(float(np.abs(v - w).max()) for v, w in zip(ours.values(), again))
        lines.append(f"| {example} | {list(x.shape)} | {', '.join(ours)} | {diff:.2g} | {diff / scale:.2g} | "
                     f"{back:.2g} |")
        # A softmax of random logits saturates (to 0 and 1): compare the logits too, by exporting
        # and compiling (-O0) the graph with the softmax's input as the output.
        graph = net.source_graph
        for out_name, node in graph.info.outputs.items():
            if graph.op(node) != Op.SOFTMAX:
                continue
            logits = graph.clone()
            logits.info.outputs = {"logits": graph.inputs_of(node)[0]}
            logits.info.source_graph = None
            pre = CompiledNetwork(logits, generate(logits), params=net.params).run(x)["logits"]
            session = ort.InferenceSession(cnnc.export_onnx(logits, net.params).SerializeToString(),
                                           providers=["CPUExecutionProvider"])
            other = session.run(None, {net.input_names[0]: x})[0]
            diff = float(np.abs(pre - other).max())
            lines.append(f"| {example} | {list(x.shape)} | logits before `{out_name}`'s softmax | {diff:.2g} | "
                         f"{diff / float(np.abs(other).max()):.2g} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", nargs="+", choices=OPS, help="only these ops' cases (loads only their modules)")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables (for docs/onnx.md)")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every case")
    parser.add_argument("--export", action="store_true",
                        help="instead: export the example networks, compare with onnxruntime and round trip")
    args = parser.parse_args(argv)
    import onnx

    print(f"onnx {onnx.__version__}, cnnc {cnnc.__version__}")
    if args.export:
        import onnxruntime

        print(f"onnxruntime {onnxruntime.__version__}")
        print(export_report())
        return 0
    results, others = run(tuple(args.ops) if args.ops else None)
    print(report(results, args.markdown, args.verbose))
    return 0


if __name__ == "__main__":
    sys.exit(main())
