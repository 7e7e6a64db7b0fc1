"""ONNX import: constant folding (each folded op against onnxruntime on a constant-only graph, and
whole models whose weights and shapes are computed from constants), dead nodes, the names kept
from the source model (a torchvision-style state dict loads into the import), the runnable
result of `import_onnx`, and models exported by PyTorch with these patterns."""
from __future__ import annotations

import builtins
import io
import os
import pickle
import re
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from conftest import EXAMPLES
from onnx import TensorProto, helper, numpy_helper

import cnnc
from cnnc.errors import CnncError
from cnnc.interop.onnx_fold import fold
from cnnc.interop.onnx_import import ImportedModel, import_onnx

RNG = np.random.default_rng(11)
I64 = np.int64


def rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def make(nodes, inputs=None, outputs=("y",), inits=None, opset=17):
    """A model: `inputs` {name: shape} (float32), `outputs` names (types left to inference)."""
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in (inputs or {}).items()],
        [helper.make_empty_tensor_value_info(n) for n in outputs],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in (inits or {}).items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def node(op, inputs, outputs=("y",), name="", **attrs):
    return helper.make_node(op, list(inputs), list(outputs), name=name, **attrs)


def const(name, value):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value)))


def ort_run(m, feeds=None):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds or {})


def check(m, feeds, rtol=1e-5, atol=1e-6, **compile_args):
    """Import `m`, run it with cnnc and compare every output with onnxruntime; the .cnn text."""
    imported = import_onnx(m)
    net = imported.compile(**compile_args)
    ours = list(net.run(*feeds.values()).values())
    theirs = ort_run(m, feeds)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape, imported.text
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * max(1.0, float(np.abs(b).max())),
                                   err_msg=imported.text)
    return imported.text


# ---- every folded op against onnxruntime -----------------------------------------------------

A = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7 - 1.3
V = np.array([-7, 7, 5, -2, 0, 9], I64)
B = np.array([2, -2, 3, 3, -4, 2], I64)
FLOATS = np.array([-2.5, -1.5, -0.4, 0.6, 1.5, 3.7], np.float32)

FOLD_CASES = {
    "identity": ([node("Identity", ["a"])], {"a": A}, 17),
    "constant_value": ([const("y", np.array([[1, 2], [3, 4]], np.int32))], {}, 17),
    "constant_value_float": ([node("Constant", [], value_float=0.25)], {}, 17),
    "constant_value_floats": ([node("Constant", [], value_floats=[0.5, -1.0])], {}, 17),
    "constant_value_int": ([node("Constant", [], value_int=-3)], {}, 17),
    "constant_value_ints": ([node("Constant", [], value_ints=[1, -1, 4])], {}, 17),
    "unsqueeze_opset11_attr": ([node("Unsqueeze", ["v"], axes=[0, -1])], {"v": V}, 11),
    "unsqueeze_opset13_input": ([node("Unsqueeze", ["v", "ax"])], {"v": V, "ax": np.array([2, 0], I64)}, 13),
    "squeeze_opset11_attr": ([node("Squeeze", ["a1"], axes=[0])], {"a1": A[None]}, 11),
    "squeeze_opset13_input": ([node("Squeeze", ["a1", "ax"])], {"a1": A[:, None], "ax": np.array([-3], I64)}, 13),
    "squeeze_all": ([node("Squeeze", ["a1"])], {"a1": A[None, :, None, :1]}, 13),
    "reshape_zero_and_minus_one": ([node("Reshape", ["a", "s"])], {"a": A, "s": np.array([0, -1], I64)}, 13),
    "reshape_copy_middle": ([node("Reshape", ["a", "s"])], {"a": A, "s": np.array([-1, 0, 2, 2], I64)}, 13),
    "reshape_allowzero": ([node("Reshape", ["e", "s"], allowzero=1)],
                          {"e": np.zeros((0, 3), np.float32), "s": np.array([3, 0], I64)}, 14),
    "cast_float_to_int_truncates": ([node("Cast", ["f"], to=TensorProto.INT64)], {"f": FLOATS}, 17),
    "cast_int_to_float": ([node("Cast", ["v"], to=TensorProto.FLOAT)], {"v": V}, 17),
    "cast_to_bool_and_half": ([node("Cast", ["f"], ["b"], to=TensorProto.BOOL),
                               node("Cast", ["b"], ["h"], to=TensorProto.FLOAT16),
                               node("Cast", ["h"], to=TensorProto.DOUBLE)], {"f": FLOATS}, 17),
    "cast_like": ([node("CastLike", ["v", "f"])], {"v": V, "f": FLOATS}, 17),
    "shape_of_constant": ([node("Shape", ["a"])], {"a": A}, 13),
    "shape_start_end_opset15": ([node("Shape", ["a"], start=1, end=-1)], {"a": A}, 15),
    "shape_negative_start": ([node("Shape", ["a"], start=-2)], {"a": A}, 15),
    "size": ([node("Size", ["a"])], {"a": A}, 13),
    "gather_negative_index": ([node("Gather", ["v", "i"])], {"v": V, "i": np.array(-2, I64)}, 13),
    "gather_axis1_2d_indices": ([node("Gather", ["a", "i"], axis=1)], {"a": A, "i": np.array([[0, 2], [1, -1]], I64)},
                                13),
    "concat_negative_axis": ([node("Concat", ["a", "a"], axis=-1)], {"a": A}, 13),
    "add_broadcast": ([node("Add", ["a", "r"])], {"a": A, "r": np.float32([1, 2, 3, 4])}, 13),
    "sub": ([node("Sub", ["v", "b"])], {"v": V, "b": B}, 13),
    "mul": ([node("Mul", ["f", "f"])], {"f": FLOATS}, 13),
    "div_float": ([node("Div", ["f", "g"])], {"f": FLOATS, "g": np.float32([3, -7, 0.1, 9, -2, 1e-3])}, 13),
    "div_int_truncates": ([node("Div", ["v", "b"])], {"v": V, "b": B}, 13),
    "div_int32": ([node("Div", ["v", "b"])], {"v": V.astype(np.int32), "b": B.astype(np.int32)}, 13),
    "mod_int": ([node("Mod", ["v", "b"])], {"v": V, "b": B}, 13),
    "mod_fmod": ([node("Mod", ["f", "g"], fmod=1)], {"f": FLOATS, "g": np.float32([2, -1, 0.3, 1, 1, -2])}, 13),
    "pow": ([node("Pow", ["f", "two"])], {"f": FLOATS, "two": np.float32(2)}, 13),
    "pow_int_exponent": ([node("Pow", ["f", "three"])], {"f": FLOATS, "three": np.int64(3)}, 13),
    "neg_abs": ([node("Neg", ["v"], ["n"]), node("Abs", ["n"])], {"v": V}, 13),
    "sqrt_reciprocal": ([node("Abs", ["f"], ["p"]), node("Sqrt", ["p"], ["q"]), node("Reciprocal", ["q"])],
                        {"f": FLOATS}, 13),
    "floor_ceil": ([node("Floor", ["f"], ["p"]), node("Ceil", ["f"], ["q"]), node("Sub", ["q", "p"])],
                   {"f": FLOATS}, 13),
    "min_max": ([node("Min", ["v", "b"], ["p"]), node("Max", ["v", "b", "p"])], {"v": V, "b": B}, 13),
    "sum": ([node("Sum", ["f", "g", "f"])], {"f": FLOATS, "g": np.float32([3, -7, 0.1, 9, -2, 1e-3])}, 13),
    "slice_opset13": ([node("Slice", ["a", "st", "en", "ax", "sp"])],
                      {"a": A, "st": np.array([-1, 0], I64), "en": np.array([-2**63, 2**62], I64),
                       "ax": np.array([-1, 1], I64), "sp": np.array([-2, 2], I64)}, 13),
    "slice_opset10_defaults": ([node("Slice", ["a", "st", "en"])],
                               {"a": A, "st": np.array([1, -2], I64), "en": np.array([5, 3], I64)}, 10),
    "slice_opset9_attrs": ([node("Slice", ["a"], starts=[0, 1], ends=[1, 100], axes=[0, 2])], {"a": A}, 9),
    "range_int": ([node("Range", ["s", "l", "d"])], {"s": I64(10), "l": I64(-3), "d": I64(-4)}, 13),
    "range_float": ([node("Range", ["s", "l", "d"])],
                    {"s": np.float32(0.1), "l": np.float32(2.0), "d": np.float32(0.3)}, 13),
    "constant_of_shape_default": ([node("ConstantOfShape", ["s"])], {"s": np.array([2, 3], I64)}, 13),
    "constant_of_shape_value": ([node("ConstantOfShape", ["s"], value=numpy_helper.from_array(np.array([7], I64)))],
                                {"s": np.array([4], I64)}, 13),
    "expand_bidirectional": ([node("Expand", ["c", "s"])],
                             {"c": np.float32([[1], [2], [3]]), "s": np.array([2, 1, 4], I64)}, 13),
    "transpose_default_and_perm": ([node("Transpose", ["a"], ["t"]), node("Transpose", ["t"], perm=[1, 0, 2])],
                                   {"a": A}, 13),
    "flatten_axis2": ([node("Flatten", ["a"], axis=2)], {"a": A}, 13),
    "equal_where": ([node("Equal", ["v", "b"], ["e"]), node("Where", ["e", "f", "g"])],
                    {"v": np.array([1, 2, 3], I64), "b": np.array([1, 0, 3], I64),
                     "f": np.float32([1, 2, 3]), "g": np.float32([-1, -2, -3])}, 13),
    "compare_and_logic": ([node("Less", ["v", "b"], ["p"]), node("GreaterOrEqual", ["v", "b"], ["q"]),
                           node("Not", ["p"], ["r"]), node("And", ["q", "r"], ["s"]), node("Or", ["s", "p"])],
                          {"v": V, "b": B}, 13),
    "split_input_opset13": ([node("Split", ["v", "sp"], ["y", "z"])], {"v": V, "sp": np.array([4, 2], I64)}, 13),
    "split_num_outputs_opset18": ([node("Split", ["v"], ["y", "z", "w"], num_outputs=3)], {"v": V[:5]}, 18),
    "shape_gather_div_concat": ([node("Shape", ["a"], ["s"]), node("Gather", ["s", "one"], ["c"]),
                                 node("Div", ["c", "two"], ["h"]), node("Unsqueeze", ["h", "zero"], ["u"]),
                                 node("Concat", ["u", "m1"], axis=0)],
                                {"a": A, "one": I64(1), "two": I64(2), "zero": np.array([0], I64),
                                 "m1": np.array([-1], I64)}, 13),
}


@pytest.mark.parametrize("case", list(FOLD_CASES), ids=list(FOLD_CASES))
def test_folded_op_matches_onnxruntime(case):
    nodes, inits, opset = FOLD_CASES[case]
    outputs = list(nodes[-1].output)
    m = make(nodes, outputs=outputs, inits=inits, opset=opset)
    folded = fold(m)
    assert folded.nodes == {}  # everything folded
    for out, expected in zip(outputs, ort_run(m)):
        ours = folded.consts[out]
        assert ours.dtype == expected.dtype and ours.shape == expected.shape, (out, ours, expected)
        if ours.dtype.kind == "f":
            np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=0)
        else:
            np.testing.assert_array_equal(ours, expected)


def test_fold_refusals_name_the_node():
    cases = [
        (node("Reshape", ["a", "s"], name="r"), {"a": A, "s": np.array([5, -1], I64)}, ["'r' (Reshape)", "cannot fold",
                                                                                      "does not fit"]),
        (node("Div", ["v", "z"], name="d"), {"v": V, "z": np.zeros(6, I64)}, ["'d' (Div)", "integer division by zero"]),
        (node("Gather", ["v", "i"], name="g"), {"v": V, "i": I64(6)}, ["'g' (Gather)", "out of range"]),
        (node("ConstantOfShape", ["s"], name="big"), {"s": np.array([1 << 20, 1 << 20], I64)},
         ["'big' (ConstantOfShape)", "at most"]),
        (node("Cast", ["f"], name="c", to=TensorProto.STRING), {"f": FLOATS}, ["'c' (Cast)", "Cast to STRING"]),
        (node("Add", ["f", "v"], name="a"), {"f": FLOATS, "v": V}, ["'a' (Add)", "ONNX requires one type"]),
    ]
    for n, inits, words in cases:
        conv = node("Conv", ["x", "w"], ["z"], name="conv")
        m = make([n, conv, node("Mul", ["z", "y"], ["out"])], {"x": (1, 1, 3, 3)}, ["out"],
                 {**inits, "w": rand(1, 1, 1, 1)})
        with pytest.raises(CnncError) as caught:
            import_onnx(m)
        for word in words:
            assert word in str(caught.value)


# ---- whole models with folded weights and shapes ---------------------------------------------

def test_identity_of_a_shared_constant_bias():
    """PyTorch links equal parameters (zero biases) through Identity: the importer folds them."""
    zeros = np.zeros(4, np.float32)
    nodes = [node("Identity", ["shared_zero"], ["features.1.conv.bias"], name="Identity_0"),
             node("Conv", ["x", "features.0.conv.weight", "shared_zero"], ["h"], name="/features/features.0/conv/Conv",
                  pads=[1, 1, 1, 1]),
             node("Relu", ["h"], ["r"], name="/features/features.0/relu/Relu"),
             node("Conv", ["r", "features.1.conv.weight", "features.1.conv.bias"], ["y"],
                  name="/features/features.1/conv/Conv")]
    inits = {"shared_zero": zeros, "features.0.conv.weight": rand(4, 3, 3, 3, scale=0.3),
             "features.1.conv.weight": rand(4, 4, 1, 1, scale=0.3)}
    text = check(make(nodes, {"x": (1, 3, 6, 6)}, inits=inits), {"x": rand(1, 3, 6, 6)})
    assert "as features.0.conv" in text and "as features.1.conv" in text and "Identity" not in text


@pytest.mark.parametrize("opset", [11, 13])
def test_constant_nodes_and_unsqueezed_bias(opset):
    """Constant nodes (value, value_float(s), value_ints) and a bias vector unsqueezed to [1, C, 1, 1]
    (axes as an attribute before opset 13, as an input from 13 on)."""
    axes = [0, 2, 3]
    unsqueeze = (node("Unsqueeze", ["bias"], ["bias4"], axes=axes) if opset < 13 else
                 node("Unsqueeze", ["bias", "axes"], ["bias4"]))
    nodes = [node("Constant", [], ["bias"], value_floats=[0.5, -1.0, 2.0]),
             const("axes", np.array(axes, I64)),
             unsqueeze,
             node("Constant", [], ["scale"], value_float=1.5),
             node("Constant", [], ["shape"], value_ints=[0, -1]),
             node("Add", ["x", "bias4"], ["b"], name="add_bias"),
             node("Mul", ["b", "scale"], ["s"], name="scale"),
             node("Reshape", ["s", "shape"], ["y"], name="flat")]
    text = check(make(nodes, {"x": (2, 3, 4, 4)}, opset=opset), {"x": rand(2, 3, 4, 4)})
    assert "Unsqueeze" not in text and "Constant" not in text


def test_view_size0_minus_one_from_a_static_shape():
    """`x.view(x.size(0), -1)` as exporters write it: Shape → Gather(0) → Unsqueeze → Concat(-1) → Reshape."""
    nodes = [node("Conv", ["x", "w"], ["c"], name="/conv/Conv"),
             node("Shape", ["c"], ["s"]), node("Gather", ["s", "zero"], ["n"], axis=0),
             node("Unsqueeze", ["n", "axes0"], ["n1"]), node("Concat", ["n1", "minus1"], ["shape"], axis=0),
             node("Reshape", ["c", "shape"], ["flat"], name="/Reshape"),
             node("Gemm", ["flat", "fc.weight", "fc.bias"], ["y"], name="/fc/Gemm", transB=1)]
    inits = {"w": rand(4, 3, 3, 3, scale=0.3), "zero": I64(0), "axes0": np.array([0], I64),
             "minus1": np.array([-1], I64), "fc.weight": rand(5, 4 * 4 * 4, scale=0.1), "fc.bias": rand(5)}
    text = check(make(nodes, {"x": (2, 3, 6, 6)}, inits=inits, opset=13), {"x": rand(2, 3, 6, 6)})
    assert "|> flatten as Reshape" in text and "dense(5) as fc" in text


def test_channel_shuffle_with_shape_gather_div():
    """ShuffleNetV2's channel shuffle from `x.size()`: Shape → Gather → Div (integer, truncating)
    → Unsqueeze → Concat → Reshape → Transpose → Reshape, all shapes folded; the shuffle is then
    recognized as a permutation conv."""
    def dims(prefix, tensor):
        out = [node("Shape", [tensor], [f"{prefix}_shape"])]
        for i in range(4):
            out.append(node("Gather", [f"{prefix}_shape", f"i{i}"], [f"{prefix}_d{i}"], axis=0))
            out.append(node("Unsqueeze", [f"{prefix}_d{i}", "axes0"], [f"{prefix}_u{i}"]))
        return out
    nodes = [node("Conv", ["x", "w"], ["c"], name="conv"), *dims("a", "c"),
             node("Div", ["a_d1", "groups"], ["cpg"]), node("Unsqueeze", ["cpg", "axes0"], ["cpg1"]),
             node("Concat", ["a_u0", "groups1", "cpg1", "a_u2", "a_u3"], ["shape5"], axis=0),
             node("Reshape", ["c", "shape5"], ["r5"], name="/Reshape"),
             node("Transpose", ["r5"], ["t"], name="/Transpose", perm=[0, 2, 1, 3, 4]),
             node("Concat", ["a_u0", "minus1", "a_u2", "a_u3"], ["shape4"], axis=0),
             node("Reshape", ["t", "shape4"], ["y"], name="/Reshape_1")]
    inits = {"w": rand(6, 3, 1, 1), "groups": I64(2), "groups1": np.array([2], I64), "axes0": np.array([0], I64),
             "minus1": np.array([-1], I64), **{f"i{i}": I64(i) for i in range(4)}}
    text = check(make(nodes, {"x": (2, 3, 5, 5)}, inits=inits, opset=13), {"x": rand(2, 3, 5, 5)})
    assert "channel shuffle" in text and "Shape" not in text.split("\n", 3)[3]


def test_weights_computed_from_constants(monkeypatch):
    """Weights, biases and scales computed from constants by Reshape, Transpose, Cast, Slice,
    Concat, Expand, Range, ConstantOfShape, Equal and Where, then mapped as usual (and folding
    never evaluates or executes Python code)."""
    flat = rand(4 * 3 * 3 * 3, scale=0.3)
    nodes = [node("Reshape", ["flat", "hwio_shape"], ["hwio"]),
             node("Transpose", ["hwio"], ["w"], perm=[3, 2, 0, 1]),              # HWIO → OIHW
             node("Range", ["r0", "r4", "r1"], ["idx"]),                          # [0, 1, 2, 3]
             node("Equal", ["idx", "two"], ["is2"]),
             node("Cast", ["idx"], ["idxf"], to=TensorProto.FLOAT),
             node("Where", ["is2", "minus", "idxf"], ["b"]),                     # [0, 1, -5, 3]
             node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             node("ConstantOfShape", ["cshape"], ["ones"], value=numpy_helper.from_array(np.float32([0.5]))),
             node("Slice", ["long", "s0", "s1"], ["part"]),
             node("Concat", ["part", "ones"], ["scale"], axis=0),                # [4]
             node("Unsqueeze", ["scale", "axes12"], ["scale3"]),                 # [4, 1, 1]
             node("Expand", ["scale3", "eshape"], ["scale4"]),                   # [1, 4, 1, 1]
             node("Mul", ["c", "scale4"], ["y"], name="scale")]
    inits = {"flat": flat, "hwio_shape": np.array([3, 3, 3, 4], I64), "r0": I64(0), "r4": I64(4), "r1": I64(1),
             "two": I64(2), "minus": np.float32(-5), "cshape": np.array([2], I64),
             "long": np.float32([9, 1.5, -2, 7]), "s0": np.array([1], I64), "s1": np.array([3], I64),
             "axes12": np.array([1, 2], I64), "eshape": np.array([1, 1, 1, 1], I64)}
    m = make(nodes, {"x": (1, 3, 5, 5)}, inits=inits, opset=13)

    def forbidden(*args, **kwargs):
        raise AssertionError("the importer must not evaluate anything")
    with monkeypatch.context() as patch:
        patch.setattr(builtins, "eval", forbidden)
        patch.setattr(builtins, "exec", forbidden)
        import_onnx(m)
    text = check(m, {"x": rand(1, 3, 5, 5)})
    assert text.count(" as ") == 2  # the conv and the scale; everything else folded


def test_dead_nodes_and_identity_alias():
    """A node no output depends on is dropped (here an unsupported op), and so is a producer
    whose only reader was a folded Shape; Identity of a computed tensor is an alias."""
    nodes = [node("Relu", ["x"], ["r"], name="relu"),
             node("Softsign", ["r"], ["unused"], name="dead"),
             node("Sin", ["r"], ["only_shaped"], name="shaped"),
             node("Shape", ["only_shaped"], ["s"]),
             node("Slice", ["s", "zero", "two"], ["nc"]),
             node("Concat", ["nc", "minus1"], ["shape"], axis=0),
             node("Identity", ["r"], ["same"], name="alias"),
             node("Reshape", ["same", "shape"], ["y"], name="flat")]
    inits = {"zero": np.array([0], I64), "two": np.array([2], I64), "minus1": np.array([-1], I64)}
    m = make(nodes, {"x": (2, 3, 4, 4)}, inits=inits, opset=13)
    folded = fold(m)
    assert sorted(n.name for n in folded.nodes.values()) == ["alias", "flat", "relu"]
    assert folded.shapes == {"only_shaped": (2, 3, 4, 4)}
    text = check(m, {"x": rand(2, 3, 4, 4)})
    assert "Softsign" not in text and "Sin" not in text and "alias" not in text


def test_refusals_for_what_cannot_fold():
    x = {"x": (1, 3, 4, 4)}
    cases = [
        (make([node("Gather", ["x", "i"], name="g")], x, inits={"i": np.array([0], I64)}),
         ["'g' (Gather)", "supported only on constants", "input 0 ('x') is computed"]),
        (make([node("Unsqueeze", ["x", "ax"], name="u")], x, inits={"ax": np.array([0], I64)}),
         ["'u' (Unsqueeze)", "move the batch"]),
        (make([node("Shape", ["x"], ["s"], name="sh"), node("Reshape", ["x", "s"], name="r")], {"x": ("N", 3, 4, 4)}),
         ["'sh' (Shape)", "not static", "input_shapes"]),
        (make([node("Softsign", ["x"], name="act7")], x), ["'act7' (Softsign)", "unsupported op type 'Softsign'"]),
        (make([node("Relu", ["x"], ["r"]), node("Conv", ["r", "r"], name="cv")], x),
         ["'cv' (Conv)", "must be a constant", "folds"]),
    ]
    for m, words in cases:
        with pytest.raises(CnncError) as caught:
            import_onnx(m)
        for word in words:
            assert word in str(caught.value)
    # With the batch fixed, the same Shape folds.
    m = make([node("Shape", ["x"], ["s"]), node("Reshape", ["x", "s"])], {"x": ("N", 3, 4, 4)})
    text, _ = import_onnx(m, input_shapes={"x": (2, 3, 4, 4)})
    assert "input x: [2, 3, 4, 4]" in text


# ---- names --------------------------------------------------------------------------------------

def test_dotted_layer_names_are_written_as_they_are():
    """The importer writes `as layer1.0.conv1`: such names parse as written."""
    for name in ("layer1.0.conv1", "features.0.0", "a.10.b.2.c", "x.01.y", "m.0.0.0.k", "0.a"):
        net = cnnc.compile(f"input x: [N, 3, 4, 4]\noutput y = x |> conv(2, 1x1) as {name}\n")
        assert sorted(net.params.specs) == [f"{name}.bias", f"{name}.weight"]


def test_torchvision_names_survive_and_a_state_dict_loads():
    """Layers with parameters are named after them (`layer1.0.conv1`), other layers after
    PyTorch's scopes (`relu`, an op's name, gets a number as before); a torchvision-style state
    dict loads strictly into the imported network."""
    c = 4
    sd = {"conv1.weight": rand(c, 3, 3, 3, scale=0.3),
          "layer1.0.conv1.weight": rand(c, c, 3, 3, scale=0.2),
          "layer1.0.bn1.weight": RNG.uniform(0.5, 1.5, c).astype(np.float32),
          "layer1.0.bn1.bias": rand(c, scale=0.1), "layer1.0.bn1.running_mean": rand(c, scale=0.1),
          "layer1.0.bn1.running_var": RNG.uniform(0.5, 1.5, c).astype(np.float32),
          "layer1.0.downsample.0.weight": rand(c, c, 1, 1, scale=0.3),
          "fc.weight": rand(10, c, scale=0.3), "fc.bias": rand(10)}
    bn = ["layer1.0.bn1.weight", "layer1.0.bn1.bias", "layer1.0.bn1.running_mean", "layer1.0.bn1.running_var"]
    nodes = [node("Conv", ["x", "conv1.weight"], ["/conv1/Conv_output_0"], name="/conv1/Conv", pads=[1, 1, 1, 1]),
             node("Relu", ["/conv1/Conv_output_0"], ["a"], name="/relu/Relu"),
             node("Conv", ["a", "layer1.0.conv1.weight"], ["b"], name="/layer1/layer1.0/conv1/Conv", pads=[1, 1, 1, 1]),
             node("BatchNormalization", ["b", *bn], ["c"], name="/layer1/layer1.0/bn1/BatchNormalization"),
             node("Relu", ["c"], ["d"], name="/layer1/layer1.0/relu/Relu"),
             node("Conv", ["a", "layer1.0.downsample.0.weight"], ["e"],
                  name="/layer1/layer1.0/downsample/downsample.0/Conv"),
             node("Add", ["d", "e"], ["f"], name="/layer1/layer1.0/Add"),
             node("Relu", ["f"], ["g"], name="/layer1/layer1.0/relu_1/Relu"),
             node("GlobalAveragePool", ["g"], ["h"], name="/avgpool/GlobalAveragePool"),
             node("Flatten", ["h"], ["i"], name="/Flatten"),
             node("Gemm", ["i", "fc.weight", "fc.bias"], ["y"], name="/fc/Gemm", transB=1)]
    m = make(nodes, {"x": (1, 3, 8, 8)}, inits=sd)
    text, params = import_onnx(m)
    layers = re.findall(r" as ([\w .]+?)  #", text)
    assert [name.replace(" ", "") for name in layers] == [
        "conv1", "relu_2", "layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu", "layer1.0.downsample.0", "layer1.0",
        "layer1.0.relu_1", "avgpool_2", "Flatten", "fc"]
    assert "conv1_Conv = x |> conv(4, 3x3, pad=1, bias=false) as conv1" in text
    net = cnnc.compile(text)  # seeded parameters, then the state dict
    result = cnnc.load_torch_state_dict(net, {**sd, "layer1.0.bn1.num_batches_tracked": np.array(0)})
    assert result == ([], [])
    x = rand(1, 3, 8, 8)
    np.testing.assert_allclose(net(x), ort_run(m, {"x": x})[0], rtol=1e-5, atol=1e-6)


def test_name_collisions_stay_legal():
    """Two ops of one module (`/layer1/layer1.0/Relu`, `.../Relu_1`), a name given twice and an
    extra layer of a node whose name ends in a number keep distinct, legal names."""
    nodes = [node("Relu", ["x"], ["a"], name="/layer1/layer1.0/Relu"),
             node("Relu", ["a"], ["b"], name="/layer1/layer1.0/Relu_1"),
             node("Relu", ["b"], ["c"], name="layer1.0.Relu_1"),
             node("MaxPool", ["c"], ["y"], name="/features/features.3/MaxPool", kernel_shape=[3, 3], pads=[2, 2, 2, 2],
                  strides=[1, 1])]
    text = check(make(nodes, {"x": (1, 2, 5, 5)}), {"x": rand(1, 2, 5, 5)})
    layers = [name.replace(" ", "") for name in re.findall(r" as ([\w .]+?)  #", text)]
    assert layers == ["layer1.0", "layer1.0.Relu_1", "layer1.0.Relu_1_2", "features.3.pad", "features.3"]


def test_export_import_round_trip_keeps_every_layer_name():
    """cnnc's exporter names nodes after layers and initializers after parameters; the import
    keeps them all (`layer1.0.conv1` stays `layer1.0.conv1`)."""
    from cnnc.interop.onnx_export import export_onnx

    net = cnnc.compile(str(EXAMPLES / "resnet18.cnn"))
    imported = import_onnx(export_onnx(net, net.params))
    assert list(cnnc.parse(imported.text).nodes) == list(cnnc.parse(str(EXAMPLES / "resnet18.cnn")).nodes)
    assert sorted(imported.params) == sorted(net.params.specs)


# ---- the result of import_onnx --------------------------------------------------------------

def test_imported_model_unpacks_and_runs():
    m = make([node("Conv", ["x", "w", "b"], ["c"], name="stem"), node("Relu", ["c"], name="act")], {"x": (1, 2, 4, 4)},
             inits={"w": rand(3, 2, 1, 1), "b": rand(3)})
    imported = import_onnx(m)
    text, params = imported
    assert isinstance(imported, ImportedModel) and isinstance(imported, tuple) and len(imported) == 2
    assert imported.text is text and imported.params is params and imported == (text, params)
    assert sorted(params) == ["stem.bias", "stem.weight"]
    x = rand(1, 2, 4, 4)
    expected = ort_run(m, {"x": x})[0]
    np.testing.assert_allclose(imported(x), expected, rtol=1e-5, atol=1e-6)
    assert imported.network is imported.network  # compiled once
    np.testing.assert_allclose(imported.compile(optimize=0).run(x)["y"], expected, rtol=1e-5, atol=1e-6)
    assert repr(imported).startswith("ImportedModel(") and "2 parameters" in repr(imported)
    with pytest.raises(TypeError):
        imported.compile(params={})
    again = pickle.loads(pickle.dumps(imported))
    assert isinstance(again, ImportedModel) and again.text == text and sorted(again.params) == sorted(params)


# ---- PyTorch's exporter --------------------------------------------------------------------------

def _torch_net(torch):
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
            self.expand1x1, self.expand3x3 = nn.Conv2d(8, 4, 1), nn.Conv2d(8, 4, 3, padding=1)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            return torch.cat([self.expand1x1(x), self.expand3x3(x)], 1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), Block())
            self.fc1, self.fc2 = nn.Linear(8 * 4 * 4, 16), nn.Linear(16, 10)

        def forward(self, x):
            x = self.features(x)
            x = nn.functional.max_pool2d(x, 2)
            x = x.view(x.size(0), -1)                       # Unsqueeze/Concat or a Constant
            x = torch.flatten(torch.relu(self.fc1(x))[:, :, None], 1)
            return self.fc2(x)

    torch.manual_seed(0)
    net = Net().eval()
    for module in net.modules():
        if isinstance(module, nn.Conv2d) and module.bias is not None:
            nn.init.zeros_(module.bias)                     # equal biases: the exporter links them by Identity
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return net


@pytest.mark.parametrize("opset, constant_folding", [(13, True), (17, True), (13, False), (17, False)])
def test_pytorch_exports(opset, constant_folding):
    """Models exported by torch.onnx (dynamo=False): shared zero biases linked by Identity, the
    batch norm's parameters kept or fused, `x.view(x.size(0), -1)` and `torch.flatten` with a
    static batch. The import agrees with onnxruntime and torch; with the batch norm kept
    (do_constant_folding=False) the model's own state dict loads into the import."""
    torch = pytest.importorskip("torch")
    net = _torch_net(torch)
    x = torch.randn(2, 3, 16, 16)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), buffer, dynamo=False, opset_version=opset, do_constant_folding=constant_folding,
                          input_names=["image"], output_names=["logits"])
    m = onnx.load_from_string(buffer.getvalue())
    ops = {n.op_type for n in m.graph.node}
    assert "Identity" in ops  # the pattern this test is about
    if not constant_folding:
        assert {"Unsqueeze", "Concat"} <= ops
    text = check(m, {"image": x.numpy()})
    with torch.no_grad():
        expected = net(x).numpy()
    imported = import_onnx(m)
    np.testing.assert_allclose(imported(x.numpy()), expected, rtol=1e-4, atol=1e-5)
    assert "as features.2.expand1x1" in text and "as fc2" in text
    if not constant_folding:
        fresh = cnnc.compile(imported.text, seed=1)
        assert cnnc.load_torch_state_dict(fresh, net.state_dict()) == ([], [])
        np.testing.assert_allclose(fresh(x.numpy()), expected, rtol=1e-4, atol=1e-5)


# ---- the onnx package's light models ---------------------------------------------------------

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


@pytest.mark.parametrize("name", ["light_densenet121", "light_inception_v1", "light_inception_v2"])
def test_light_models_import(name):
    """Their weights are ConstantOfShape nodes and their biases are unsqueezed constants; densenet121
    runs (at 64×64, to stay fast) against onnxruntime."""
    path = os.path.join(LIGHT, f"{name}.onnx")
    if not os.path.isfile(path):
        pytest.skip(f"{name} is not shipped with this onnx")
    m = onnx.load(path)
    text, params = import_onnx(m)
    assert "ConstantOfShape" not in text and params
    if name == "light_densenet121":
        data = next(i for i in m.graph.input if i.name not in {init.name for init in m.graph.initializer})
        for dim, size in zip(data.type.tensor_type.shape.dim, (1, 3, 64, 64)):
            dim.dim_value = size
        check(m, {data.name: rand(1, 3, 64, 64)}, rtol=1e-4, atol=1e-5)
