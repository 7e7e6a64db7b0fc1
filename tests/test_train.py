"""Training: the generated training step against PyTorch's autograd, whole networks at a time.

For each network, cnnc differentiates the IR and generates `train_step`; tests/torch_graph.py
evaluates the same IR with torch's own functions in float64 and autograd differentiates it. With
the same random weights, input and targets, two comparisons:

- The float64 variant of the generated module (the same text with its kernels' float32 made
  float64) must give torch's loss, every gradient and the batch-norm running statistics to
  max |cnnc − torch| ≤ 1e-6 · max |torch| per parameter (measured: 1e-15 … 4e-8; the rest is a
  few float32 constants inside kernels). This checks every rule and all of the wiring (which
  value each rule reads, where each gradient goes, the sums at values with several readers)
  with nothing left to rounding: a wrong stride, kernel flip or input order is wrong by O(1).
- The float32 step itself, as training runs it, where the test point is well posed: within
  max(1e-3, 10 × torch's own float32 error) of torch's float64 gradients. Random deep networks
  amplify rounding, and a relu6 input within float32 rounding of 0 or 6 (there are such inputs
  in MobileNetV2 at any seed tried) sends its gradient the other way in one precision and not
  in the other; those networks are compared in float64 only.

Run with -s to see the measured ratios per network.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from torch_graph import torch_forward

import cnnc
from cnnc.runtime.loader import load_module
from cnnc.runtime.params import random_params
from cnnc.training.autodiff import CnncTrainError, LossTerm, differentiate
from cnnc.training.trainer import TrainConfig, Trainer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RTOL = 1e-3  # the float32 step
RTOL64 = 1e-6  # the float64 variant (a few kernels keep float32 constants)


def torch_loss(kind: str, value, target, options: dict):
    if kind == "cross_entropy":
        return F.cross_entropy(value, torch.from_numpy(target), label_smoothing=options.get("label_smoothing", 0.0))
    t = torch.from_numpy(np.asarray(target, np.float64))
    if kind == "binary_cross_entropy":
        return F.binary_cross_entropy_with_logits(value, t)
    if kind == "mse":
        return F.mse_loss(value, t)
    if kind == "l1":
        return F.l1_loss(value, t)
    return F.smooth_l1_loss(value, t, beta=options.get("beta", 1.0))


def targets_for(trainer: Trainer, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    targets = {}
    for loss in trainer.plan.losses:
        shape = trainer.graph.shape(loss.node)
        concrete = (batch, *shape[1:])
        if loss.term.kind == "cross_entropy":
            labels_shape = (batch,) if len(shape) == 2 else (batch, *shape[2:])
            targets[loss.term.output] = rng.integers(0, shape[1], size=labels_shape)
        elif loss.term.kind == "binary_cross_entropy":
            targets[loss.term.output] = (rng.random(concrete) < 0.5).astype(np.float32)
        else:
            targets[loss.term.output] = rng.standard_normal(concrete).astype(np.float32)
    return targets


def check_against_torch(source, input_shape: tuple, losses: tuple[str, ...] = (), seed: int = 0,
                        float32: bool = True) -> float:
    """Compare one training step's loss, gradients and BN statistics with torch (see the module
    docstring): the float64 variant always, the float32 step itself when `float32`. Returns the
    worst float64 ratio."""
    rng = np.random.default_rng(seed)
    input_name = cnnc.parse(source).info.inputs[0]
    shapes = {input_name: input_shape}
    graph = cnnc.parse(source, input_shapes=shapes)
    params = random_params(graph.info.param_specs, rng)
    trainer = Trainer(source, TrainConfig(losses=losses), params=params, input_shapes=shapes)
    x = rng.standard_normal(input_shape).astype(np.float32)
    targets = targets_for(trainer, input_shape[0], rng)
    label = getattr(source, "name", "snippet")

    theirs, values = torch_step(trainer, x, targets, torch.float64)
    expected = values["loss"].item()
    step64 = load_module(float64_variant(trainer.source), f"{label} (float64)")["train_step"]
    params64 = {k: v.astype(np.float64) for k, v in trainer.params.items()}
    loss64, _, grads64 = step64(params64, np.random.default_rng([5, 5]), x.astype(np.float64),
                                *(targets[t.output] for t in trainer.terms))
    assert abs(loss64 - expected) <= 1e-9 * max(1.0, abs(expected)), (loss64, expected)
    assert set(grads64) == set(trainer.plan.trainable)
    worst64 = worst_ratio(grads64, theirs, trainer, RTOL64)
    for name in trainer.plan.state:  # running statistics, updated by both forward passes
        np.testing.assert_allclose(params64[name], theirs[name].detach().numpy(), rtol=1e-9, err_msg=name)
    report = f"{label}: loss {expected:.6f}, float64 worst gradient ratio {worst64:.1e}"

    if float32:
        loss, _, grads = trainer.gradients(x, targets, np.random.default_rng([5, 5]))
        assert abs(loss - expected) <= 1e-4 * max(1.0, abs(expected)), (loss, expected)
        # torch's own float32 gradients against its float64 ones: how much this network amplifies
        # rounding; cnnc's float32 step may differ by ten times as much.
        theirs32, _ = torch_step(trainer, x, targets, torch.float32)
        torch32 = worst_ratio({n: theirs32[n].grad.numpy() for n in trainer.plan.trainable}, theirs, trainer)
        worst32 = worst_ratio(grads, theirs, trainer, max(RTOL, 10 * torch32))
        for name in trainer.plan.state:
            np.testing.assert_allclose(trainer.params[name], theirs[name].detach().numpy(), rtol=1e-3, atol=1e-4,
                                       err_msg=name)
        report += f", float32 {worst32:.1e} (torch's float32: {torch32:.1e})"
    print(report)
    return worst64


def float64_variant(source: str) -> str:
    """The generated training module computing in float64: every float32 of its kernels made
    float64, except the dropout mask's draw (so both variants and torch_graph share the mask)."""
    assert "def dropout_train" not in source or "rng.random(shape, dtype=np.float32)" in source  # the draw kept
    protected = source.replace("rng.random(shape, dtype=np.float32)", "rng.random(shape, dtype=DRAW)")
    return protected.replace("np.float32", "np.float64").replace("dtype=DRAW", "dtype=np.float32")


def torch_step(trainer: Trainer, x: np.ndarray, targets: dict, dtype) -> tuple[dict, dict]:
    """torch's parameters (with .grad after backward) and values, the loss under "loss"."""
    input_name = trainer.graph.info.inputs[0]
    theirs = {k: torch.tensor(np.asarray(v), dtype=dtype, requires_grad=k in trainer.plan.trainable)
              for k, v in trainer.params.items()}
    values = torch_forward(trainer.graph, theirs, {input_name: torch.from_numpy(x).to(dtype)},
                           np.random.default_rng([5, 5]))
    values["loss"] = sum(loss.term.weight * torch_loss(loss.term.kind, values[loss.node], targets[loss.term.output],
                                                       dict(loss.term.options)) for loss in trainer.plan.losses)
    values["loss"].backward()
    return theirs, values


def worst_ratio(grads: dict, theirs: dict, trainer: Trainer, bound: float = float("inf")) -> float:
    """max over parameters of max |g − torch| / max |torch| (asserted ≤ bound). A gradient that is
    zero in exact arithmetic (a conv's bias just before a batch norm) is rounding noise in both;
    it is measured against the largest gradient of the network instead."""
    floor = 1e-4 * max(float(np.abs(theirs[n].grad.numpy()).max()) for n in trainer.plan.trainable)
    worst = 0.0
    for name in trainer.plan.trainable:
        want = theirs[name].grad.numpy().astype(np.float64)
        got = grads[name]
        assert got.shape == want.shape, name
        ratio = float(np.abs(got - want).max() / max(np.abs(want).max(), floor))
        worst = max(worst, ratio)
        assert ratio <= bound, f"{name}: max |cnnc − torch| = {ratio:.2e} · max |torch| (bound {bound:.1e})"
    return worst


SNIPPET = """
input image: [N, 3, 12, 12]
x = image |> conv(8, 3x3, stride=2, pad=1, bias=false) as c1 |> bn as b1 |> leaky_relu(0.1)
          |> lrn(3, 1e-3, 0.75, 2) |> dropout(0.3)
a = x |> conv(8, 3x3, pad=1, groups=2) as c2 |> relu6
b = x |> conv(8, 1x1) as c3 |> sigmoid
y = concat(a + b, a * b, x - a) |> maxpool(2x2, stride=1) |> conv(6, 1x1) as c4 |> tanh
output logits = y |> avgpool(3x3, stride=2, pad=1, count_include_pad=false)
    |> global_max_pool |> flatten |> dense(5) as fc |> softmax
"""


def test_snippet_of_many_ops():
    check_against_torch(SNIPPET, (3, 3, 12, 12))


# (example, input shape, losses, whether the float32 step is compared too). The float32
# comparison is left out where relu6 or max-pool ties sit within float32 rounding of their kink
# at this test point (measured: a relu6 input 1e-7 from 0 sends its gradient the other way).
NETWORKS = [
    ("lenet5.cnn", (4, 1, 32, 32), (), True),
    ("resnet18.cnn", (2, 3, 32, 32), (), False),
    ("resnet18.cnn", (4, 3, 64, 64), (), True),
    ("mobilenet_v2.cnn", (2, 3, 32, 32), (), False),
    ("mobilenet_v3_small.cnn", (2, 3, 32, 32), (), False),
    ("shufflenet_v2_x1_0.cnn", (2, 3, 64, 64), (), False),
    ("googlenet_torchvision.cnn", (2, 3, 64, 64), (), False),
    ("convnext_tiny.cnn", (2, 3, 32, 32), (), True),
    ("segmentation.cnn", (2, 3, 32, 32), (), True),
    ("classify_localize.cnn", (2, 3, 64, 64), ("class_scores=cross_entropy", "box=smooth_l1:0.5"), True),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, shape, losses, float32", NETWORKS,
                         ids=[f"{n}-{s[-1]}" for n, s, _, _ in NETWORKS])
def test_network_gradients_match_torch(name, shape, losses, float32):
    check_against_torch(EXAMPLES / name, shape, losses, float32=float32)


def test_refuses_nms_between_parameters_and_loss():
    source = """
input image: [N, 3, 8, 8]
boxes = image |> conv(4, 1x1) |> global_avg_pool |> flatten |> reshape([1, 4])
scores = image |> conv(2, 1x1) |> global_avg_pool |> flatten |> reshape([1, 2])
output detections = nms(boxes, scores, 0.5, 0.1, 1)
"""
    graph = cnnc.parse(source)
    with pytest.raises(CnncTrainError, match="nms.*has no gradient"):
        differentiate(graph, [LossTerm("detections", "mse")])


def test_frozen_parameters_get_no_gradient():
    graph = cnnc.parse(EXAMPLES / "lenet5.cnn")
    step = differentiate(graph, [LossTerm("probs")], frozen={"c1.weight", "c1.bias"})
    assert "c1.weight" not in step.trainable and "c3.weight" in step.trainable
    assert all(s.node not in ("c1", "tanh1", "s2") for s in step.backward)  # nothing trainable below c3
    c3 = next(s for s in step.backward if s.node == "c3")
    assert c3.kwargs.get("need_input") is False and c3.input_grads == (None,)


def test_freeze_pattern_that_matches_nothing():
    from cnnc.training.autodiff import frozen_params

    with pytest.raises(CnncTrainError, match="matches no parameter"):
        frozen_params(cnnc.parse(EXAMPLES / "lenet5.cnn"), ("conv1.*",))


def test_generated_training_step_is_readable_and_deterministic():
    a = Trainer(EXAMPLES / "lenet5.cnn").source
    b = Trainer(EXAMPLES / "lenet5.cnn").source
    assert a == b
    assert "def train_step(params, rng, digit, target_probs):" in a
    assert "c1 = conv(" in a and "conv_backward(" in a
    assert "lenet5.cnn:13 c1: conv (gradient)" in a  # each backward statement names its source line
    assert "loss on output 'probs': cross_entropy of its logits 'out'" in a
    assert "del " in a  # values die at their last use
    assert "\nimport cnnc" not in a and "\nfrom cnnc" not in a  # self-contained
    for line in a.splitlines():
        assert len(line) <= 120, line


STOCHASTIC = """
input image: [N, 4, 6, 6]
y = image |> conv(4, 3x3, pad=1) as c1 |> relu
output z = (image + (y |> stochastic_depth(0.5))) |> global_avg_pool |> flatten |> dense(3) as fc
"""


def test_stochastic_depth_drops_whole_examples_and_its_gradient_matches_torch():
    from cnnc.kernels.backward import dropout_train

    x = np.ones((64, 4, 6, 6), np.float32)
    y, _ = dropout_train(x, rate=0.5, rng=np.random.default_rng(0), mode="row")
    per_example = y.reshape(64, -1)
    assert set(np.unique(per_example.min(axis=1))) <= {0.0, 2.0}  # all or nothing, kept ones scaled by 2
    assert np.all(per_example.min(axis=1) == per_example.max(axis=1)) and 16 < (per_example[:, 0] == 0).sum() < 48
    graph = cnnc.parse(STOCHASTIC)
    assert graph.attrs("stochastic_depth1").mode == "row"
    x = np.random.default_rng(1).standard_normal((2, 4, 6, 6)).astype(np.float32)
    net = cnnc.compile(STOCHASTIC, optimize=0)
    without = cnnc.compile(STOCHASTIC.replace(" |> stochastic_depth(0.5)", ""), optimize=0, params=net.params)
    np.testing.assert_array_equal(net(x), without(x))  # the identity at inference
    check_against_torch(STOCHASTIC, (6, 4, 6, 6), ("z=mse",))
