"""Whole networks: cnnc against the same network written with plain torch.nn modules.

Each test builds a network twice — from a `.cnn` program (an example file or an inline snippet)
and as a torch module with the layer names cnnc gives its parameters (torchvision-style dotted
paths: `layer1.0.downsample.0`, `inception3a.branch2.1`, ...) — randomizes every torch parameter
and BN buffer deterministically, loads the *same* values by name into cnnc (the load is all or
nothing, so a naming mismatch fails loudly), and compares, on a random input, torch in eval mode
with both the generated NumPy code (`net.run`) and the reference interpreter (`cnnc.eval_graph`).

Run with `-s` to see the measured max |difference| per network and output.

Tolerance. Everything is float32 (ε ≈ 1.2e-7). A length-K dot product summed in a different
order than torch's (oneDNN blocking, BLAS, or the interpreter's float64 accumulation) differs by
about √K·ε relative to its magnitude (K ≤ ~5,000 here: ≈ 1e-5 at worst, far less on average),
and such relative errors add up roughly linearly with depth (≤ ~50 layers). So the error is
bounded relative to the scale of the output, not per element:

    max |cnnc − torch| ≤ RTOL · max |torch|,  RTOL = 1e-4.

Measured, the ratio is 3e-7 … 3e-6 for every network here, so the bound leaves a margin of 30x
or more for other BLAS builds and thread counts, yet it is orders of magnitude below what a real
mistake (a wrong pad, pooling window, LRN scaling, interpolation grid, name mapping, or a
transposed weight) produces on random weights: a difference of the order of the output itself.
The bound is relative to max |torch| itself (not max(1, max |torch|)) so that it stays tight for
softmax probabilities; networks ending in a softmax get their last dense layer rescaled (see
`soften_logits`) so the probabilities are neither one-hot nor uniform.

Random weights: He-normal conv/dense weights (activations stay of order one), biases N(0, 0.1²),
BN γ ~ U(0.5, 1.5), β ~ N(0, 0.2²), running mean ~ N(0, 0.2²), running var ~ U(0.5, 2).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from torch_models import BasicBlock, Bottleneck, ResNet, ResNet18, SqueezeExcitation, randomize_, torch_to_cnnc  # noqa: F401

import cnnc

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RTOL = 1e-4



# ------------------------------------------------------------------------------------ helpers

def compare(label: str, source, model: nn.Module, input_shape: tuple, seed: int = 0,
            rename: dict[str, str] | None = None, rtol: float = RTOL, prepare=None,
            optimize: int = 2) -> dict[str, float]:
    """Randomize `model` (then call `prepare(model, x)` if given), compile `source` (at -O`optimize`),
    load the same weights into it, and check cnnc's generated code and reference interpreter
    against torch. Returns max |diff| per output (codegen)."""
    start = time.perf_counter()
    x = np.random.default_rng(seed).standard_normal(input_shape, dtype=np.float32)
    randomize_(model, seed)
    if prepare is not None:
        prepare(model, x)
    net = cnnc.compile(source, input_shapes={"image": input_shape}, optimize=optimize)
    net.params.update_from(torch_to_cnnc(model, rename), "torch state_dict")  # exact names + shapes

    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    ref = {k: v.numpy() for k, v in ref.items()} if isinstance(ref, dict) else {net.output_names[0]: ref.numpy()}
    assert set(ref) == set(net.output_names)

    results = {"codegen": net.run(x), "interpreter": cnnc.eval_graph(net.source_graph, net.params, {"image": x})}
    diffs = {}
    failures = []
    for how, outputs in results.items():
        for name, expected in ref.items():
            got = outputs[name]
            assert got.shape == expected.shape, (how, name, got.shape, expected.shape)
            assert np.isfinite(got).all(), (how, name)
            diff = float(np.abs(got.astype(np.float64) - expected).max())
            scale = float(np.abs(expected).max())
            assert scale > 0, (how, name)
            print(f"\n  {label:<40} {how:<11} {name:<6} {input_shape!s:<17} max|diff| = {diff:.2e}  "
                  f"max|torch| = {scale:.2e}  ratio = {diff / scale:.1e} (bound {rtol:.0e})", end="")
            if how == "codegen":
                diffs[name] = diff
            if not diff <= rtol * scale:
                failures.append(f"{how} output '{name}': max|diff| {diff:.3e} > {rtol * scale:.3e}")
    print(f"\n  {label}: {time.perf_counter() - start:.2f} s", end="")
    assert not failures, f"{label}: " + "; ".join(failures)
    return diffs


def same_pad(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """TF/ONNX SAME_UPPER padding (odd padding at the bottom/right), as cnnc's pad=same."""
    pads = []
    for n in (x.shape[3], x.shape[2]):  # F.pad order: left, right, top, bottom
        total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


def soften_logits(layer: str, target_std: float = 2.0):
    """A `prepare` step for networks that end in a softmax: rescale the final dense layer so the
    logits for the test input have standard deviation `target_std` — random weights otherwise
    give logits so spread that the probabilities are one-hot (or so flat they are uniform), and
    the comparison would check next to nothing."""
    def prepare(model: nn.Module, x: np.ndarray) -> None:
        fc = model.get_submodule(layer)
        seen = []
        hook = fc.register_forward_hook(lambda module, args, out: seen.append(out))
        with torch.no_grad():
            model(torch.from_numpy(x))
            hook.remove()
            logits = seen[0]
            factor = target_std / float((logits - logits.mean(1, keepdim=True)).std())
            fc.weight.mul_(factor)
            fc.bias.mul_(factor)
    return prepare


def lrn(size: int, alpha: float, beta: float, k: float) -> nn.Module:
    """cnnc's lrn(size, alpha, beta, k) (α not divided by size, AlexNet's formula)."""
    return nn.LocalResponseNorm(size, alpha=alpha * size, beta=beta, k=k)


# ------------------------------------------------------------- MobileNetV3's SE gate (hardsigmoid)

SE_HARDSIGMOID = """input image: [N, 8, 12, 12]
x = image |> conv(16, 3x3, pad=1) as conv |> relu
s = x |> global_avg_pool |> conv(4, 1x1) as fc1 |> relu |> conv(16, 1x1) as fc2 |> hardsigmoid
output y = x * s
"""


class SEHardsigmoid(nn.Module):
    """torchvision's SqueezeExcitation with scale_activation=Hardsigmoid (MobileNetV3)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 16, 3, padding=1)
        self.fc1 = nn.Conv2d(16, 4, 1)
        self.fc2 = nn.Conv2d(4, 16, 1)

    def forward(self, x):
        x = F.relu(self.conv(x))
        s = F.hardsigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return x * s


def test_se_block_with_hardsigmoid_gate():
    """The gate's conv absorbs hardsigmoid as its epilogue at -O2; both match torch."""
    net = cnnc.compile(SE_HARDSIGMOID)
    assert "activation='hardsigmoid'" in net.source
    compare("SE block, hardsigmoid gate (inline)", SE_HARDSIGMOID, SEHardsigmoid(), (2, 8, 12, 12), seed=7)


# ------------------------------------ the modern activations: MobileNetV3, EfficientNet, ConvNeXt

MOBILENET_V3_BLOCK = """input image: [N, 16, 14, 14]

# torchvision's Conv2dNormActivation(activation_layer=Hardswish): conv, BN, hardswish as 0, 1, 2.
block conv_bn_hardswish(c: int, k: int = 1, groups: int = 1) {
    return x |> conv(c, k, pad=(k - 1) // 2, groups=groups, bias=false) as 0 |> bn(eps=1e-3) as 1
             |> hardswish as 2
}

# torchvision's SqueezeExcitation(scale_activation=Hardsigmoid).
block se_hardsigmoid(squeeze: int) {
    return x * (x |> global_avg_pool |> conv(squeeze, 1x1) as fc1 |> relu |> conv(channels(x), 1x1) as fc2
                  |> hardsigmoid)
}

# MobileNetV3's InvertedResidual: expand, depthwise, SE, project; identity shortcut.
block inverted_residual(expand: int, squeeze: int) {
    return x + (x |> [conv_bn_hardswish(expand), conv_bn_hardswish(expand, 3, groups=expand),
                      se_hardsigmoid(squeeze), conv(channels(x), 1x1, bias=false), bn(eps=1e-3)] as block)
}

output y = image |> inverted_residual(48, 16) as features |> hardswish
"""

EFFICIENTNET_BLOCK = MOBILENET_V3_BLOCK.replace("hardswish", "silu").replace("hardsigmoid", "sigmoid") \
    .replace("|> relu |>", "|> silu |>")

CONVNEXT_BLOCK = """input image: [N, 16, 14, 14]

# ConvNeXt's block with its pointwise MLP as 1x1 convs (bn stands in for the channel LayerNorm):
# 7x7 depthwise conv, norm, expand 4x, exact GELU, project; identity shortcut.
block cn_block() {
    c = channels(x)
    return x + (x |> [depthwise_conv(7x7, pad=3), bn, conv(4 * c, 1x1), gelu, conv(c, 1x1)] as block)
}

output y = image |> [cn_block, cn_block] as stages |> global_avg_pool |> flatten
    |> [dense(32), gelu(approximate=tanh), dense(10)] as head
"""


def conv_bn_act(cin: int, c: int, k: int, groups: int, act: type) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, c, k, 1, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c, eps=1e-3), act())


class SqueezeExcitationConv(nn.Module):
    """torchvision's SqueezeExcitation: 1x1 convs fc1, fc2 on the pooled map."""

    def __init__(self, c: int, squeeze: int, act: type, gate: type):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1)
        self.activation, self.scale_activation = act(), gate()

    def forward(self, x):
        return x * self.scale_activation(self.fc2(self.activation(self.fc1(F.adaptive_avg_pool2d(x, 1)))))


class InvertedResidual(nn.Module):
    """MobileNetV3's InvertedResidual (hardswish, hardsigmoid gate) or EfficientNet's MBConv
    (SiLU, sigmoid gate), stride 1, with torchvision's module names."""

    def __init__(self, c: int, expand: int, squeeze: int, act: type, se_act: type, gate: type):
        super().__init__()
        self.block = nn.Sequential(conv_bn_act(c, expand, 1, 1, act), conv_bn_act(expand, expand, 3, expand, act),
                                   SqueezeExcitationConv(expand, squeeze, se_act, gate),
                                   nn.Conv2d(expand, c, 1, bias=False), nn.BatchNorm2d(c, eps=1e-3))

    def forward(self, x):
        return x + self.block(x)


class InvertedResidualNet(nn.Module):
    def __init__(self, act: type, se_act: type, gate: type):
        super().__init__()
        self.features = InvertedResidual(16, 48, 16, act, se_act, gate)
        self.act = act()

    def forward(self, x):
        return self.act(self.features(x))


class ConvNeXtBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(c, c, 7, padding=3, groups=c), nn.BatchNorm2d(c), nn.Conv2d(c, 4 * c, 1),
                                   nn.GELU(), nn.Conv2d(4 * c, c, 1))

    def forward(self, x):
        return x + self.block(x)


class ConvNeXtLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.stages = nn.Sequential(ConvNeXtBlock(16), ConvNeXtBlock(16))
        self.head = nn.Sequential(nn.Linear(16, 32), nn.GELU(approximate="tanh"), nn.Linear(32, 10))

    def forward(self, x):
        return self.head(torch.flatten(F.adaptive_avg_pool2d(self.stages(x), 1), 1))


MODERN_NETWORKS = {  # label → (program, torch model, activations the -O2 code fuses into convs/dense)
    "MobileNetV3 block (hardswish, hardsigmoid SE)": (
        MOBILENET_V3_BLOCK, lambda: InvertedResidualNet(nn.Hardswish, nn.ReLU, nn.Hardsigmoid),
        {"hardswish", "hardsigmoid"}),
    "EfficientNet MBConv (silu, sigmoid SE)": (
        EFFICIENTNET_BLOCK, lambda: InvertedResidualNet(nn.SiLU, nn.SiLU, nn.Sigmoid), {"silu", "sigmoid"}),
    "ConvNeXt-like (gelu, gelu tanh)": (CONVNEXT_BLOCK, ConvNeXtLike, {"gelu", "gelu_tanh"}),
}


@pytest.mark.parametrize("optimize", [0, 2])
@pytest.mark.parametrize("label", MODERN_NETWORKS)
def test_modern_activations_in_networks(label, optimize):
    """hardswish, hardsigmoid, silu and both GELUs inside the blocks that use them; at -O2 the
    convs and dense layers before them compute them as their epilogues."""
    source, model, fused = MODERN_NETWORKS[label]
    if optimize == 2:
        code = cnnc.compile(source, optimize=2).source
        assert {act for act in fused if f"activation={act!r}" in code} == fused
    compare(f"{label} -O{optimize}", source, model(), (2, 16, 14, 14), seed=11, optimize=optimize)


# ------------------------------------------------------------------------- ResNet-18 (torchvision)

def test_resnet18_small_input():
    compare("ResNet-18 (examples/resnet18.cnn)", EXAMPLES / "resnet18.cnn", ResNet18(), (2, 3, 64, 64), seed=1)


@pytest.mark.slow
def test_resnet18_full_224_batch2():
    compare("ResNet-18 (examples/resnet18.cnn)", EXAMPLES / "resnet18.cnn", ResNet18(), (2, 3, 224, 224), seed=2)


@pytest.mark.slow
def test_se_resnet50_small_input():
    # Bottleneck blocks (stride in the 3x3 conv) and squeeze-and-excitation, from resnet_blocks.cnn.
    compare("SE-ResNet-50 (examples/se_resnet50.cnn)", EXAMPLES / "se_resnet50.cnn",
            ResNet(Bottleneck, [3, 4, 6, 3], se_ratio=16), (1, 3, 64, 64), seed=10)


# --------------------------------------------------------------------- GoogLeNet (Caffe-style)

class Inception(nn.Module):
    """torchvision's branch layout, without BN (the Caffe/paper model, as examples/googlenet.cnn)."""

    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool_proj: int):
        super().__init__()
        self.branch1 = nn.Conv2d(cin, c1, 1)
        self.branch2 = nn.Sequential(nn.Conv2d(cin, c3r, 1), nn.Conv2d(c3r, c3, 3, padding=1))
        self.branch3 = nn.Sequential(nn.Conv2d(cin, c5r, 1), nn.Conv2d(c5r, c5, 5, padding=2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(cin, pool_proj, 1))

    def forward(self, x):
        b2 = F.relu(self.branch2[1](F.relu(self.branch2[0](x))))
        b3 = F.relu(self.branch3[1](F.relu(self.branch3[0](x))))
        return torch.cat([F.relu(self.branch1(x)), b2, b3, F.relu(self.branch4(x))], 1)


# torch module path → cnnc's automatic names inside the `inception` block
INCEPTION_NAMES = {"branch1": "conv1", "branch2.0": "conv2", "branch2.1": "conv3",
                   "branch3.0": "conv4", "branch3.1": "conv5", "branch4.1": "conv6"}

GOOGLENET_TABLE = {  # Table 1 of the paper
    "inception3a": (192, 64, 96, 128, 16, 32, 32), "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64), "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64), "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128), "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}


class GoogLeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3)
        self.conv2 = nn.Conv2d(64, 64, 1)
        self.conv3 = nn.Conv2d(64, 192, 3, padding=1)
        self.lrn = lrn(5, 2e-5, 0.75, 1.0)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        for name, widths in GOOGLENET_TABLE.items():
            setattr(self, name, Inception(*widths))
        self.dropout = nn.Dropout(0.4)
        self.fc = nn.Linear(1024, 1000)

    def forward(self, x):
        x = self.lrn(self.pool(F.relu(self.conv1(x))))
        x = self.pool(self.lrn(F.relu(self.conv3(F.relu(self.conv2(x))))))
        x = self.pool(self.inception3b(self.inception3a(x)))
        for name in ("inception4a", "inception4b", "inception4c", "inception4d", "inception4e"):
            x = getattr(self, name)(x)
        x = self.inception5b(self.inception5a(self.pool(x)))
        x = self.dropout(F.avg_pool2d(x, 7))
        return F.softmax(self.fc(torch.flatten(x, 1)), dim=1)


GOOGLENET_RENAME = {"fc": "dense1", **{f"{block}.{branch}": f"{block}.{conv}" for block in GOOGLENET_TABLE
                                       for branch, conv in INCEPTION_NAMES.items()}}


@pytest.mark.slow
def test_googlenet():
    # The 7x7 average pool at the end needs a 7x7 feature map: the full 224x224 input.
    compare("GoogLeNet (examples/googlenet.cnn)", EXAMPLES / "googlenet.cnn", GoogLeNet(), (1, 3, 224, 224),
            seed=3, rename=GOOGLENET_RENAME, prepare=soften_logits("fc"))


# ------------------------------------------- AlexNet-like: LRN, grouped conv, dropout, ceil pools

ALEXNET_LIKE = """
input image: [N, 3, 64, 64]
output logits = image
    |> conv(32, 5x5, stride=2, pad=2) as conv1 |> relu                       # 32x32x32
    |> lrn(size=5, alpha=1e-2, beta=0.75, k=2)
    |> maxpool(3x3, stride=2, ceil_mode=true)                                # 16x16 (overhangs)
    |> conv(64, 3x3, pad=1, groups=2) as conv2 |> relu                       # 16x16x64
    |> lrn(size=4, alpha=0.1, beta=0.5, k=1)                                 # even size: 2 before, 1 after
    |> avgpool(3x3, stride=2, pad=1, ceil_mode=true)                         # 9x9, padding counted
    |> conv(64, 3x3, pad=1, groups=4) as conv3 |> relu                       # 9x9x64
    |> avgpool(2x2, stride=2, ceil_mode=true, count_include_pad=false)       # 5x5, last window half out
    |> flatten |> dense(128) as fc1 |> relu |> dropout(0.5) |> dense(10) as fc2
"""


class AlexNetLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 5, 2, 2)
        self.lrn1 = lrn(5, 1e-2, 0.75, 2.0)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, groups=2)
        self.lrn2 = lrn(4, 0.1, 0.5, 1.0)
        self.conv3 = nn.Conv2d(64, 64, 3, padding=1, groups=4)
        self.fc1 = nn.Linear(64 * 5 * 5, 128)
        self.dropout = nn.Dropout(0.5)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(self.lrn1(F.relu(self.conv1(x))), 3, 2, ceil_mode=True)
        x = F.avg_pool2d(self.lrn2(F.relu(self.conv2(x))), 3, 2, 1, ceil_mode=True)
        x = F.avg_pool2d(F.relu(self.conv3(x)), 2, 2, ceil_mode=True, count_include_pad=False)
        return self.fc2(self.dropout(F.relu(self.fc1(torch.flatten(x, 1)))))


def test_alexnet_like_lrn_groups_dropout_ceil_avgpool():
    compare("AlexNet-like (inline)", ALEXNET_LIKE, AlexNetLike(), (2, 3, 64, 64), seed=4)


class AlexNet(nn.Module):
    """The paper's AlexNet, as examples/alexnet.cnn (two-GPU split as groups=2)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 96, 11, 4)
        self.conv2 = nn.Conv2d(96, 256, 5, padding=2, groups=2)
        self.conv3 = nn.Conv2d(256, 384, 3, padding=1)
        self.conv4 = nn.Conv2d(384, 384, 3, padding=1, groups=2)
        self.conv5 = nn.Conv2d(384, 256, 3, padding=1, groups=2)
        self.fc6 = nn.Linear(9216, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, 1000)
        self.lrn = lrn(5, 1e-4, 0.75, 2.0)

    def forward(self, x):
        x = F.max_pool2d(self.lrn(F.relu(self.conv1(x))), 3, 2)
        x = F.max_pool2d(self.lrn(F.relu(self.conv2(x))), 3, 2)
        x = F.relu(self.conv5(F.relu(self.conv4(F.relu(self.conv3(x))))))
        x = torch.flatten(F.max_pool2d(x, 3, 2), 1)
        x = F.dropout(F.relu(self.fc6(x)), 0.5, self.training)
        x = F.dropout(F.relu(self.fc7(x)), 0.5, self.training)
        return F.softmax(self.fc8(x), dim=1)


@pytest.mark.slow
def test_alexnet_example():
    compare("AlexNet (examples/alexnet.cnn)", EXAMPLES / "alexnet.cnn", AlexNet(), (1, 3, 227, 227), seed=5,
            prepare=soften_logits("fc8"))


# ----------------------------------------------- Xception-like: separable convs and residuals

class SeparableConv(nn.Module):
    """cnnc's separable_conv: a depthwise 3x3 conv then a 1x1 conv, no bias, nothing between."""

    def __init__(self, cin: int, c: int):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, c, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class Sep(nn.Module):
    """[relu →] separable conv → BN (eps 1e-3): the `sep` block."""

    def __init__(self, cin: int, c: int, pre_relu: bool = True):
        super().__init__()
        self.pre_relu = pre_relu
        self.separable_conv1 = SeparableConv(cin, c)
        self.bn1 = nn.BatchNorm2d(c, eps=1e-3)

    def forward(self, x):
        return self.bn1(self.separable_conv1(F.relu(x) if self.pre_relu else x))


class Down(nn.Module):
    """Two `sep`s and a 3x3 stride-2 SAME max pool, plus a strided 1x1 conv + BN shortcut."""

    def __init__(self, cin: int, c1: int, c2: int, pre_relu: bool = True):
        super().__init__()
        self.sep1 = Sep(cin, c1, pre_relu)
        self.sep2 = Sep(c1, c2)
        self.conv1 = nn.Conv2d(cin, c2, 1, 2, bias=False)
        self.bn1 = nn.BatchNorm2d(c2, eps=1e-3)

    def forward(self, x):
        y = F.max_pool2d(same_pad(self.sep2(self.sep1(x)), 3, 2, float("-inf")), 3, 2)
        return y + self.bn1(self.conv1(x))


class Middle(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.sep1 = nn.Sequential(Sep(c, c), Sep(c, c), Sep(c, c))  # `sep(c) * 3`: sep1.0, sep1.1, sep1.2

    def forward(self, x):
        return x + self.sep1(x)


XCEPTION_LIKE = """
input image: [N, 3, 50, 50]

block sep(c: int) {
    return x |> relu |> separable_conv(c, 3x3, pad=same, bias=false) |> bn(eps=1e-3)
}
block down(c: int) {
    y = x |> sep(c) |> sep(c) |> maxpool(3x3, stride=2, pad=same)    # 24 -> 12: pads (0, 0, 1, 1)
    return y + (x |> conv(c, 1x1, stride=2, bias=false) |> bn(eps=1e-3))
}
block middle() {
    return x + (x |> sep(channels(x)) * 3)
}

output logits = image
    |> conv(16, 3x3, stride=2, bias=false) as conv1 |> bn(eps=1e-3) as bn1 |> relu     # 24x24x16
    |> depthwise_conv(3x3, pad=1, multiplier=2) as dw |> relu                         # 24x24x32
    |> down(48) as block1                                                              # 12x12x48
    |> middle * 2 as middle
    |> sep(64) as exit |> relu
    |> global_avg_pool |> flatten |> dense(10) as fc
"""


class XceptionLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 2, bias=False)
        self.bn1 = nn.BatchNorm2d(16, eps=1e-3)
        self.dw = nn.Conv2d(16, 32, 3, padding=1, groups=16)  # depthwise, channel multiplier 2, bias
        self.block1 = Down(32, 48, 48)
        self.middle = nn.Sequential(Middle(48), Middle(48))
        self.exit = Sep(48, 64)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.dw(F.relu(self.bn1(self.conv1(x)))))
        x = F.relu(self.exit(self.middle(self.block1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def test_xception_like_separable_residual():
    compare("Xception-like (inline)", XCEPTION_LIKE, XceptionLike(), (2, 3, 50, 50), seed=6)


class Xception(nn.Module):
    """examples/xception.cnn (Chollet 2017, Figure 5)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, 2, bias=False)
        self.bn1 = nn.BatchNorm2d(32, eps=1e-3)
        self.conv2 = nn.Conv2d(32, 64, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(64, eps=1e-3)
        self.block2 = Down(64, 128, 128, pre_relu=False)
        self.block3 = Down(128, 256, 256)
        self.block4 = Down(256, 728, 728)
        self.middle = nn.Sequential(*[Middle(728) for _ in range(8)])
        self.block13 = Down(728, 728, 1024)
        self.sep1 = Sep(1024, 1536, pre_relu=False)
        self.sep2 = Sep(1536, 2048, pre_relu=False)
        self.dense1 = nn.Linear(2048, 1000)

    def forward(self, x):
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        x = self.block13(self.middle(self.block4(self.block3(self.block2(x)))))
        x = F.relu(self.sep2(F.relu(self.sep1(x))))
        return F.softmax(self.dense1(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)), dim=1)


@pytest.mark.slow
def test_xception_example_small_input():
    # 96x96: the SAME max pools see 45, 23, 12 and 6 pixels, so both symmetric and
    # bottom/right-heavy padding occur.
    compare("Xception (examples/xception.cnn)", EXAMPLES / "xception.cnn", Xception(), (1, 3, 96, 96), seed=7,
            prepare=soften_logits("dense1"))


# ---------------------------------- segmentation: conv_transpose, concat skips, bilinear upsample

SEGMENTATION_TINY = """
input image: [N, 3, 32, 32]

block cbr(c: int) {
    return x |> conv(c, 3x3, pad=1, bias=false) |> bn |> relu
}

e1 = image |> cbr(16) as enc1                                                     # 32x32x16
e2 = e1 |> maxpool(2x2) |> cbr(32) as enc2                                        # 16x16x32
b = e2 |> maxpool(2x2) |> cbr(64) as bottleneck                                   # 8x8x64
u2 = b |> conv_transpose(32, 2x2, stride=2) as up2                                # 16x16x32
d2 = concat(e2, u2) |> cbr(32) as dec2                                            # 16x16x32
u1 = d2 |> conv_transpose(16, 3x3, stride=2, pad=1, output_padding=1, groups=2) as up1   # 32x32x16
d1 = concat(u1, e1) |> cbr(16) as dec1                                            # 32x32x16
output scores = d1 |> conv(5, 1x1) as head |> upsample(scale=2, mode="bilinear")  # 64x64x5
output aux = b |> conv(5, 1x1) as aux_head |> upsample(scale=4, mode="bilinear")  # 32x32x5
"""


class CBR(nn.Module):
    def __init__(self, cin: int, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(self.bn1(self.conv1(x)))


class SegmentationTiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc1, self.enc2, self.bottleneck = CBR(3, 16), CBR(16, 32), CBR(32, 64)
        self.up2 = nn.ConvTranspose2d(64, 32, 2, 2)
        self.dec2 = CBR(64, 32)
        self.up1 = nn.ConvTranspose2d(32, 16, 3, 2, padding=1, output_padding=1, groups=2)
        self.dec1 = CBR(32, 16)
        self.head = nn.Conv2d(16, 5, 1)
        self.aux_head = nn.Conv2d(64, 5, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        b = self.bottleneck(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([e2, self.up2(b)], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        up = {"mode": "bilinear", "align_corners": False}
        return {"scores": F.interpolate(self.head(d1), scale_factor=2, **up),
                "aux": F.interpolate(self.aux_head(b), scale_factor=4, **up)}


def test_segmentation_tiny_transpose_concat_bilinear():
    compare("Segmentation (inline)", SEGMENTATION_TINY, SegmentationTiny(), (2, 3, 32, 32), seed=8)


class DoubleConv(nn.Module):
    def __init__(self, cin: int, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class Up(nn.Module):
    def __init__(self, cin: int, c: int):
        super().__init__()
        self.conv_transpose1 = nn.ConvTranspose2d(cin, c, 2, 2)
        self.double_conv1 = DoubleConv(2 * c, c)

    def forward(self, x, skip):
        return self.double_conv1(torch.cat([skip, self.conv_transpose1(x)], 1))


class UNet(nn.Module):
    """examples/segmentation.cnn: a padded, half-width U-Net with BN, 21 classes."""

    def __init__(self):
        super().__init__()
        self.enc1, self.enc2, self.enc3 = DoubleConv(3, 32), DoubleConv(32, 64), DoubleConv(64, 128)
        self.enc4, self.bottom = DoubleConv(128, 256), DoubleConv(256, 512)
        self.dec4, self.dec3, self.dec2, self.dec1 = Up(512, 256), Up(256, 128), Up(128, 64), Up(64, 32)
        self.classifier = nn.Conv2d(32, 21, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        e4 = self.enc4(F.max_pool2d(e3, 2))
        y = self.bottom(F.max_pool2d(e4, 2))
        y = self.dec1(self.dec2(self.dec3(self.dec4(y, e4), e3), e2), e1)
        return self.classifier(y)


@pytest.mark.slow
def test_segmentation_example_small_input():
    compare("U-Net (examples/segmentation.cnn)", EXAMPLES / "segmentation.cnn", UNet(), (1, 3, 64, 64), seed=9)
