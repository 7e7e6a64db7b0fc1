"""cnnc.load_torch_state_dict: torchvision-style state dicts load into the examples by name.

Each example whose layer names are torchvision's (resnet50, vgg16, alexnet_torchvision,
googlenet_torchvision, mobilenet_v2) is checked against a torch twin built with torchvision's
module structure (tests/torch_models.py; torchvision itself is not needed): the twin's
state_dict(), untouched and unrenamed, must load strictly — every key used, every parameter
given, every shape right — and then the generated code must agree with torch in eval mode within
RTOL of the output's scale (see tests/test_networks_vs_torch.py for why that bound). The error
cases use a small inline network.

Run with `-s` to see the measured differences and timings.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from torch_models import TORCHVISION_TWINS, randomize_

import cnnc
from cnnc.errors import CnncParamError
from cnnc.interop.torch_weights import LoadResult, state_dict_from

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RTOL = 1e-4


def soften_logits(model: nn.Module, layer: str, x: np.ndarray, target_std: float = 2.0) -> None:
    """Rescale the final dense layer so the test input's logits have standard deviation
    `target_std`: random weights otherwise make a softmax one-hot, and the check vacuous."""
    fc = model.get_submodule(layer)
    seen = []
    hook = fc.register_forward_hook(lambda module, args, out: seen.append(out))
    with torch.no_grad():
        model(torch.from_numpy(x))
        hook.remove()
        factor = target_std / float((seen[0] - seen[0].mean(1, keepdim=True)).std())
        fc.weight.mul_(factor)
        fc.bias.mul_(factor)


def check_example(name: str, input_shape: tuple, seed: int, soften: str | None = None, level: int = 2) -> None:
    start = time.perf_counter()
    make, torchvision_count = TORCHVISION_TWINS[name]
    model = randomize_(make(), seed)
    x = np.random.default_rng(seed).standard_normal(input_shape, dtype=np.float32)
    if soften:
        soften_logits(model, soften, x)
    net = cnnc.compile(EXAMPLES / f"{name}.cnn", input_shapes={"image": input_shape}, optimize=level)

    count = sum(v.size for k, v in net.params.items() if not k.endswith((".mean", ".var")))
    assert count == torchvision_count == sum(p.numel() for p in model.parameters())

    result = cnnc.load_torch_state_dict(net, model.state_dict())  # strict: exact names and shapes
    assert result == LoadResult([], [])
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = net(x)
    assert got.shape == expected.shape
    diff = float(np.abs(got.astype(np.float64) - expected).max())
    scale = float(np.abs(expected).max())
    print(f"\n  {name:<22} {input_shape!s:<17} {count:>11,} params  max|diff| = {diff:.2e}  "
          f"max|torch| = {scale:.2e}  ratio = {diff / scale:.1e}  {time.perf_counter() - start:.1f} s", end="")
    assert scale > 0 and diff <= RTOL * scale


def test_resnet50_small_input():
    check_example("resnet50", (1, 3, 64, 64), seed=1)


@pytest.mark.slow
def test_vgg16_224():
    check_example("vgg16", (1, 3, 224, 224), seed=2, soften="classifier.6")


def test_alexnet_torchvision():
    check_example("alexnet_torchvision", (1, 3, 224, 224), seed=3)


def test_googlenet_torchvision():
    check_example("googlenet_torchvision", (1, 3, 224, 224), seed=4)


def test_mobilenet_v2():
    check_example("mobilenet_v2", (1, 3, 224, 224), seed=5)


# The examples added with the modern-ops issue, at -O0 and -O2: (name, input shape, seed).
MODERN_EXAMPLES = [("mobilenet_v3_small", (2, 3, 224, 224), 6), ("mobilenet_v3_large", (1, 3, 96, 96), 12),
                   ("shufflenet_v2_x1_0", (2, 3, 224, 224), 7),
                   ("squeezenet1_1", (2, 3, 64, 64), 8), ("mnasnet1_0", (1, 3, 64, 64), 9),
                   ("efficientnet_b0", (1, 3, 64, 64), 10), ("densenet121", (1, 3, 64, 64), 11),
                   ("convnext_tiny", (1, 3, 64, 64), 13)]


@pytest.mark.parametrize("level", [0, 2])
@pytest.mark.parametrize("name,shape,seed", MODERN_EXAMPLES, ids=[e[0] for e in MODERN_EXAMPLES])
def test_torchvision_named_examples(name, shape, seed, level):
    check_example(name, shape, seed=seed, level=level)


# ------------------------------------------------------------------------------ error cases

SMALL = """
input image: [N, 3, 16, 16]
output logits = image |> conv(8, 3x3, pad=1, bias=false) as conv1 |> bn as bn1 |> relu
    |> global_avg_pool |> flatten |> dense(4) as fc
"""


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(F.relu(self.bn1(self.conv1(x))), 1), 1))


@pytest.fixture
def small():
    """A freshly compiled small network, a randomized torch twin, and its state dict."""
    model = randomize_(Small(), 0)
    return cnnc.compile(SMALL), model, model.state_dict()


def snapshot(net) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in net.params.items()}


def assert_unchanged(net, before: dict[str, np.ndarray]) -> None:
    assert all(np.array_equal(net.params[k], v) for k, v in before.items())


def test_small_loads_and_runs(small):
    net, model, sd = small
    assert "bn1.num_batches_tracked" in sd  # skipped
    cnnc.load_torch_state_dict(net, sd)
    np.testing.assert_array_equal(net.params["bn1.gamma"], sd["bn1.weight"].numpy())
    np.testing.assert_array_equal(net.params["bn1.var"], sd["bn1.running_var"].numpy())
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16), dtype=np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(net(x), model(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)


def test_numpy_arrays_and_half_tensors(small):
    net, model, sd = small
    cnnc.load_torch_state_dict(net, {k: v.numpy() for k, v in sd.items()})
    np.testing.assert_array_equal(net.params["conv1.weight"], sd["conv1.weight"].numpy())
    cnnc.load_torch_state_dict(net, {k: v.half() if v.is_floating_point() else v for k, v in sd.items()})
    np.testing.assert_allclose(net.params["fc.weight"], sd["fc.weight"].numpy(), rtol=1e-3)
    assert net.params["fc.weight"].dtype == np.float32


def test_missing_key(small):
    net, _, sd = small
    before = snapshot(net)
    del sd["fc.bias"], sd["bn1.running_var"]
    with pytest.raises(CnncParamError) as error:
        cnnc.load_torch_state_dict(net, sd)
    message = str(error.value)
    assert "nothing was loaded" in message
    assert "missing 2 keys: 'bn1.running_var' (layer 'bn1'), 'fc.bias' (layer 'fc')" in message
    assert_unchanged(net, before)


def test_unexpected_key_with_suggestion(small):
    net, _, sd = small
    before = snapshot(net)
    sd["fc.weights"] = sd["fc.weight"]
    sd["head.bias"] = torch.zeros(4)
    with pytest.raises(CnncParamError) as error:
        cnnc.load_torch_state_dict(net, sd)
    assert ("unexpected 2 keys: 'fc.weights' (did you mean 'fc.weight'?), 'head.bias'"
            in str(error.value))
    assert_unchanged(net, before)


def test_cnnc_names_are_not_torch_names(small):
    net, _, sd = small
    sd = {k.replace("bn1.weight", "bn1.gamma"): v for k, v in sd.items()}
    with pytest.raises(CnncParamError, match=r"missing 1 key: 'bn1.weight'[\s\S]*unexpected 1 key: 'bn1.gamma'"):
        cnnc.load_torch_state_dict(net, sd)


def test_wrong_shape_names_parameter_and_layer(small):
    net, _, sd = small
    before = snapshot(net)
    sd["conv1.weight"] = torch.zeros(8, 3, 5, 5)
    sd["bn1.running_mean"] = torch.zeros(16)
    with pytest.raises(CnncParamError) as error:
        cnnc.load_torch_state_dict(net, sd, strict=False)  # shapes are checked in both modes
    message = str(error.value)
    assert "2 shape mismatches: 'conv1.weight' is [8, 3, 5, 5], layer 'conv1' expects [8, 3, 3, 3]" in message
    assert "'bn1.running_mean' (cnnc 'bn1.mean') is [16], layer 'bn1' expects [8]" in message
    assert_unchanged(net, before)


def test_many_problems_are_listed_briefly(small):
    net, _, sd = small
    extra = {f"extra{i}.weight": torch.zeros(1) for i in range(9)}
    with pytest.raises(CnncParamError) as error:
        cnnc.load_torch_state_dict(net, extra)
    message = str(error.value)
    assert "missing 7 keys: 'conv1.weight' (layer 'conv1'), 'bn1.weight' (layer 'bn1')" in message
    assert ", and 2 more" in message and ", and 4 more" in message


def test_non_strict_loads_what_matches(small):
    net, _, sd = small
    before = snapshot(net)
    del sd["fc.weight"], sd["fc.bias"]
    sd["aux.weight"] = torch.zeros(3)
    result = cnnc.load_torch_state_dict(net, sd, strict=False)
    assert result == LoadResult(["fc.weight", "fc.bias"], ["aux.weight"])
    assert result.missing_keys == ["fc.weight", "fc.bias"]
    np.testing.assert_array_equal(net.params["bn1.beta"], sd["bn1.bias"].numpy())
    np.testing.assert_array_equal(net.params["fc.weight"], before["fc.weight"])


def test_bad_arguments(small):
    net, _, sd = small
    with pytest.raises(CnncParamError, match="expected a mapping"):
        cnnc.load_torch_state_dict(net, list(sd.items()))
    with pytest.raises(CnncParamError, match="expected a compiled network"):
        cnnc.load_torch_state_dict(object(), sd)
    cnnc.load_torch_state_dict(net.params, sd)  # a ParamStore works too


def test_state_dict_from_round_trip(small):
    net, model, sd = small
    cnnc.load_torch_state_dict(net, sd)
    out = state_dict_from(net)
    assert list(out) == [k for k in sd if not k.endswith("num_batches_tracked")]
    twin = Small().eval()
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in out.items()})  # strict, by torch
    for key, value in twin.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, sd[key]), key


def test_import_does_not_need_torch():
    code = ("import sys, cnnc; f = cnnc.load_torch_state_dict; "
            "import cnnc.interop.torch_weights; assert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("level", [0, 2])
def test_inception_v3_both_outputs(level):
    """Inception v3's logits and its auxiliary classifier, both against the twin (torchvision's
    Inception3 with its AuxLogits), the whole state dict loaded strictly."""
    from torch_models import TorchvisionInceptionV3

    model = randomize_(TorchvisionInceptionV3(), seed=14)
    x = np.random.default_rng(14).standard_normal((1, 3, 299, 299), dtype=np.float32)
    net = cnnc.compile(EXAMPLES / "inception_v3.cnn", optimize=level)
    assert cnnc.load_torch_state_dict(net, model.state_dict()) == LoadResult([], [])
    with torch.no_grad():
        logits, aux = (t.numpy() for t in model.both(torch.from_numpy(x)))
    got = net(x)
    for name, want in (("logits", logits), ("aux", aux)):
        diff, scale = float(np.abs(got[name].astype(np.float64) - want).max()), float(np.abs(want).max())
        print(f"\n  inception_v3 -O{level} {name}: max|diff| = {diff:.2e}, ratio {diff / scale:.1e}", end="")
        assert scale > 0 and diff <= RTOL * scale
