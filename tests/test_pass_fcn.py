"""dense_to_conv and reshape_inputs: a classifier becomes fully convolutional and, given a larger
image, computes a score map whose every window is the classifier on the matching crop."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from conftest import EXAMPLES, ROOT

import cnnc
from cnnc.errors import CnncNameError, CnncShapeError
from cnnc.passes.derived import materialize
from cnnc.passes.fcn import reshape_inputs
from cnnc.passes.manager import NumericChecker, optimize

# A trunk without padding: then a window of the big image sees exactly what the crop sees.
# Total stride 4 (two 2x2 pools); at 32x32 the flatten reads [N, 16, 6, 6].
CLASSIFIER = """
input image: [N, 3, 32, 32]
output scores = image
    |> conv(8, 3x3) as conv1 |> bn as bn1 |> relu |> maxpool(2x2)
    |> conv(16, 3x3) as conv2 |> relu |> maxpool(2x2)
    |> flatten |> dense(24) as fc1 |> relu |> dropout(0.5) |> dense(10) as fc2
"""
STRIDE, CROP = 4, 32


def _ops(graph) -> Counter:
    return Counter(str(graph.op(n)) for n in graph)


def _windows(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Every CROPxCROP crop, STRIDE apart, as one batch (row-major)."""
    return np.concatenate([image[:, :, STRIDE * i:STRIDE * i + CROP, STRIDE * j:STRIDE * j + CROP]
                           for i in range(rows) for j in range(cols)])


def _assert_score_map_matches_crops(net, fcn, image: np.ndarray) -> None:
    score_map = fcn(image)
    _, classes, rows, cols = score_map.shape
    assert (rows, cols) == ((image.shape[2] - CROP) // STRIDE + 1, (image.shape[3] - CROP) // STRIDE + 1)
    per_crop = net(_windows(image, rows, cols)).reshape(rows, cols, classes)
    np.testing.assert_allclose(score_map[0].transpose(1, 2, 0), per_crop, rtol=1e-4, atol=1e-5)


def test_score_map_windows_equal_the_classifier_on_crops(rng):
    net = cnnc.compile(CLASSIFIER)
    fcn = cnnc.compile(CLASSIFIER, fcn=True, input_shapes={"image": (1, 3, 64, 72)}, verify=True)
    assert fcn.output_shapes == {"scores": ("N", 10, 9, 11)}
    assert {n: v.shape for n, v in fcn.params.items()} == {n: v.shape for n, v in net.params.items()}
    image = rng.standard_normal((1, 3, 64, 72)).astype(np.float32)
    _assert_score_map_matches_crops(net, fcn, image)  # all 99 windows: corners, centre, the rest
    # generated code on the enlarged graph vs the reference interpreter on the same graph
    want = cnnc.eval_graph(fcn.graph, fcn.runtime_params(), {"image": image})["scores"]
    np.testing.assert_allclose(fcn(image), want, rtol=1e-4, atol=1e-5)


def test_dense_to_conv_structure_and_weights():
    graph = cnnc.parse(CLASSIFIER)
    fcn = optimize(graph, passes=["dense_to_conv"], check_numerics=True)
    assert _ops(fcn) == _ops(graph) - Counter(dense=2, flatten=1) + Counter(conv=2)
    assert fcn.attrs("fc1").kernel == (6, 6) and fcn.attrs("fc2").kernel == (1, 1)
    assert fcn.inputs_of("fc1") == ["maxpool2"] and fcn.shape("fc2") == ("N", 10, 1, 1)
    assert fcn.info.fully_convolutional is True
    # parameters: the user's keep their names and shapes; the convs read reshaped views of them
    assert fcn.info.user_params == graph.info.param_specs
    values = {n: np.random.default_rng(0).standard_normal(s.shape).astype(np.float32)
              for n, s in graph.info.param_specs.items()}
    weights = materialize(fcn, values)
    w1 = weights[fcn.params_of("fc1")["weight"]]
    assert w1.shape == (24, 16, 6, 6)
    np.testing.assert_array_equal(w1[3, 5, 2, 4], values["fc1.weight"][3, 5 * 36 + 2 * 6 + 4])
    assert fcn.params_of("fc1")["bias"] == "fc1.bias"


VARIANTS = {
    "pointwise ops between flatten and dense": """
        input image: [N, 4, 6, 6]
        output y = image |> conv(6, 3x3) |> flatten |> dropout(0.2) |> relu |> dense(5) |> tanh |> dense(3)""",
    "dense on [N, C, 1, 1], no flatten": """
        input image: [N, 4, 6, 6]
        output y = image |> global_avg_pool |> dense(7) |> sigmoid |> dense(3) |> softmax""",
    "global pool, flatten, dense": """
        input image: [N, 4, 6, 6]
        output y = image |> conv(8, 1x1) |> global_max_pool |> flatten |> dense(3) |> softmax(axis=-1)""",
    "bn, leaky_relu, relu6 between denses": """
        input image: [N, 4, 5, 5]
        output y = image |> flatten |> dense(6) |> bn |> leaky_relu(0.1) |> dense(6) |> relu6 |> dense(2)""",
    "two heads, add and concat of dense outputs": """
        input image: [N, 4, 5, 5]
        f = image |> flatten
        a = f |> dense(6) as a
        b = f |> dense(6) as b
        output s = a + b
        output c = concat(a, b * a, axis=-1) |> dense(3)""",
    "squeeze-and-excitation: dense on pooled channels scales the map": """
        input image: [N, 8, 5, 5]
        s = image |> global_avg_pool |> dense(2) |> relu |> dense(8) |> sigmoid
        output y = image * s |> conv(4, 5x5) |> flatten |> dense(3)""",
}


@pytest.mark.parametrize("text", VARIANTS.values(), ids=VARIANTS.keys())
def test_every_dense_converts_and_outputs_are_unchanged(text):
    graph = cnnc.parse(text)
    fcn = optimize(graph, passes=["dense_to_conv"], check_numerics=True)
    assert "dense" not in _ops(fcn) and "flatten" not in _ops(fcn)
    for out, node in fcn.info.outputs.items():  # [N, O] outputs are [N, O, 1, 1] now
        before = graph.shape(graph.info.outputs[out])
        assert fcn.shape(node) == (before + (1, 1) if len(before) == 2 else before)


def test_softmax_and_concat_axes_follow_the_channels():
    graph = cnnc.parse("input image: [N, 4, 5, 5]\nf = image |> flatten |> dense(6) as d\n"
                       "output y = f |> concat(f, axis=-1) as cat |> softmax(axis=-1) as sm")
    fcn = optimize(graph, passes=["dense_to_conv"], check_numerics=True)
    assert fcn.attrs("cat").axis == 1 and fcn.attrs("sm").axis == 1


UNCONVERTIBLE = """
input image: [N, 3, 16, 16]
input extra: [N, 16]
t = image |> conv(16, 3x3) |> global_avg_pool |> flatten as t
h = image |> conv(4, 3x3) |> flatten |> dense(16) as fc
output y = h + extra
output z = t |> dense(5) as head |> softmax(axis=0)
"""


def test_a_dense_whose_output_must_stay_2d_stays_and_resizing_names_it():
    fcn = optimize(cnnc.parse(UNCONVERTIBLE), passes=["dense_to_conv"], check_numerics=True)
    assert fcn.op("fc") == "dense"  # added to a 2-D network input
    assert fcn.op("head") == "dense" and fcn.op("t") == "flatten"  # softmax over the batch
    reshape_inputs(fcn, {"image": (1, 3, 16, 16)})  # the declared size still works
    with pytest.raises(CnncShapeError, match=r"layer 'fc' \(dense\) would need its weight to be \[16, 1296\]"):
        reshape_inputs(fcn, {"image": (1, 3, 20, 20)})


def test_a_flatten_of_pooled_channels_disappears():
    text = UNCONVERTIBLE.replace("softmax(axis=0)", "softmax")
    fcn = optimize(cnnc.parse(text), passes=["dense_to_conv"], check_numerics=True)
    assert "t" not in fcn and fcn.op("head") == "conv" and fcn.attrs("head").kernel == (1, 1)


def test_reshape_inputs_refuses_crops_and_bad_shapes():
    graph = cnnc.parse("input image: [N, 3, 16, 16]\noutput y = image |> conv(4, 3x3) |> crop(8x8) as cut")
    with pytest.raises(CnncShapeError, match="layer 'cut' \\(crop\\) has a size fixed at elaboration") as error:
        reshape_inputs(graph, {"image": (1, 3, 32, 32)})
    assert error.value.span is not None  # points at the crop in the source
    with pytest.raises(CnncShapeError, match=r"layer 'conv1' \(conv\)"):
        reshape_inputs(graph, {"image": (1, 3, 2, 2)})  # smaller than the kernel
    with pytest.raises(CnncShapeError, match="does not fit the declared"):
        reshape_inputs(graph, {"image": (3, 32, 32)})
    with pytest.raises(CnncNameError, match="unknown input 'img'"):
        reshape_inputs(graph, {"img": (1, 3, 32, 32)})


def test_reshape_inputs_keeps_the_batch_symbolic_and_leaves_the_graph_alone():
    graph = optimize(cnnc.parse(CLASSIFIER), passes=["dense_to_conv"])
    bigger = reshape_inputs(graph, {"image": (1, 3, 48, 48)})
    assert bigger.shape("image") == ("N", 3, 48, 48) and bigger.shape("fc2") == ("N", 10, 5, 5)
    assert graph.shape("image") == ("N", 3, 32, 32) and graph.shape("fc2") == ("N", 10, 1, 1)


# An avg pool over the whole map at 32x32 slides at 64x64 (lower_pooling must not turn it into a
# global mean), and a depthwise pool lowered to reshape + reduce follows the new size.
POOLED = """
input image: [N, 3, 32, 32]
output scores = image
    |> conv(12, 3x3) |> relu |> depthwise_maxpool(2) |> maxpool(2x2) |> conv(16, 3x3) |> maxpool(2x2)
    |> avgpool(6x6, stride=1) |> flatten |> dense(10)
"""


def test_lowered_pools_keep_working_at_the_new_size(rng):
    net = cnnc.compile(POOLED)
    fcn = cnnc.compile(POOLED, fcn=True, input_shapes={"image": (1, 3, 64, 64)}, verify=True)
    ops = _ops(fcn.graph)
    assert ops["avg_pool"] == 1 and ops["reshape"] == 1 and ops["reduce"] == 1
    _assert_score_map_matches_crops(net, fcn, rng.standard_normal((1, 3, 64, 64)).astype(np.float32))


def test_composes_with_fold_batch_norm_and_fusion(rng):
    text = CLASSIFIER.replace("dense(24) as fc1 |>", "dense(24) as fc1 |> bn as bn2 |>")
    fcn = cnnc.compile(text, fcn=True, input_shapes={"image": (1, 3, 48, 48)}, verify=True)
    ops = _ops(fcn.graph)
    assert "batch_norm" not in ops and "channel_affine" not in ops and "dense" not in ops
    assert "relu" not in ops  # fused into the converted convs' epilogues
    net = cnnc.compile(text)
    rng_values = np.random.default_rng(3)
    for name in net.params:  # non-trivial batch norms in both networks
        if name.endswith((".gamma", ".beta", ".mean")):
            value = rng_values.uniform(0.5, 1.5, net.params[name].shape)
            net.params[name] = fcn.params[name] = value
    _assert_score_map_matches_crops(net, fcn, rng.standard_normal((1, 3, 48, 48)).astype(np.float32))


def test_checker_accepts_the_fcn_output_rank_but_nothing_else():
    graph = cnnc.parse(CLASSIFIER)
    checker = NumericChecker(graph)
    checker.check(optimize(graph, passes=["dense_to_conv"]), "dense_to_conv")  # [N, 10, 1, 1]: accepted
    wrong = optimize(graph, passes=["dense_to_conv"])
    wrong.info.outputs["scores"] = "conv2"
    with pytest.raises(cnnc.errors.CnncIRError, match="has shape"):
        checker.check(wrong, "broken")


def test_vgg16_at_a_small_size_becomes_fully_convolutional(rng):
    """examples/vgg16.cnn with 1/8 of the widths at 32x32: at 96x96 it gives a 3x3 score map."""
    text = (EXAMPLES / "vgg16.cnn").read_text().replace("224, 224", "32, 32").replace("dense(4096)", "dense(64)")
    for width in (512, 256, 128, 64):
        text = text.replace(f"conv({width},", f"conv({width // 8},")
    fcn = cnnc.compile(text, fcn=True, input_shapes={"image": (1, 3, 96, 96)}, verify=True)
    assert fcn.output_shapes == {"probs": ("N", 1000, 3, 3)}
    image = rng.standard_normal((1, 3, 96, 96)).astype(np.float32)
    probs = fcn(image)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)  # a softmax per location
    want = cnnc.eval_graph(fcn.graph, fcn.runtime_params(), {"image": image})["probs"]
    np.testing.assert_allclose(probs, want, rtol=1e-4, atol=1e-6)


def test_cli_compile_fcn_writes_a_score_map_module(tmp_path, rng):
    source = tmp_path / "classifier.cnn"
    source.write_text(CLASSIFIER)
    result = subprocess.run([sys.executable, "-m", "cnnc", "compile", str(source), "--fcn", "--verify",
                             "--input-shape", "image=1x3x64x64", "-o", str(tmp_path / "fcn.py")],
                            capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            timeout=120)
    assert result.returncode == 0, result.stderr
    spec = importlib.util.spec_from_file_location("fcn_module", tmp_path / "fcn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.OUTPUTS == {"scores": ("N", 10, 9, 9)}
    image = rng.standard_normal((1, 3, 64, 64)).astype(np.float32)
    score_map = module.forward(module.load_params(), image)["scores"]
    net = cnnc.compile(CLASSIFIER)  # the same seed: the same parameters
    centre = net(image[:, :, 16:48, 16:48])
    np.testing.assert_allclose(score_map[0, :, 4, 4], centre[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(score_map[0, :, 8, 0], net(image[:, :, 32:, :32])[0], rtol=1e-4, atol=1e-5)


def test_ranks_change_only_where_a_dense_converts():
    text = "input image: [N, 4, 5, 5]\noutput feats = image |> global_avg_pool |> flatten |> relu\n"
    graph = cnnc.parse(text)
    assert _ops(optimize(graph, passes=["dense_to_conv"])) == _ops(graph)
