"""PyTorch versions of the example networks, with cnnc's parameter names, for tests and benchmarks.

Also: deterministic randomization of a torch model, and conversion of its state dict to cnnc's
names (BN weight/bias/running_mean/running_var → gamma/beta/mean/var).
"""
from __future__ import annotations

import math

import numpy as np
import torch

nn = torch.nn
F = torch.nn.functional

BN_NAMES = {"weight": "gamma", "bias": "beta", "running_mean": "mean", "running_var": "var"}

# The activations added for modern networks, by their kernels' names, as PyTorch computes them.
MODERN_ACTIVATIONS = {"hardswish": F.hardswish, "silu": F.silu, "gelu": F.gelu,
                      "gelu_tanh": lambda v: F.gelu(v, approximate="tanh")}


def check_activation_against_torch(got: np.ndarray, x: np.ndarray, name: str, exact_rtol: float,
                                   tol: float) -> None:
    """`got` = activation `name` of the float32 `x`: against PyTorch in float64 for |x| ≤ 5
    (where PyTorch's own 1 + erf and 1 + tanh do not yet cancel) to `exact_rtol` relative, against
    PyTorch's float32 result everywhere to `tol` absolute and relative, and with every zero signed
    as x: each of these activations is x times a non-negative factor, so IEEE arithmetic gives a
    zero of x's sign. PyTorch is no oracle for that sign: its float32 GELU returns -0 for negative
    x with its AVX-512 kernels and +0 with its AVX2 ones."""
    assert got.dtype == np.float32 and got.shape == x.shape
    near = np.abs(x) <= 5
    exact = MODERN_ACTIVATIONS[name](torch.from_numpy(x[near].astype(np.float64))).numpy()
    np.testing.assert_allclose(got[near], exact, rtol=exact_rtol, atol=0)
    theirs = MODERN_ACTIVATIONS[name](torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, theirs, rtol=tol, atol=tol)
    zeros = got == 0
    assert np.array_equal(np.signbit(got[zeros]), np.signbit(x[zeros]))


def randomize_(model: nn.Module, seed: int) -> nn.Module:
    """Give every parameter and BN buffer a deterministic random value, scaled to keep
    activations of order one (He-normal weights), and switch to eval mode."""
    g = torch.Generator().manual_seed(seed)

    def normal(t: torch.Tensor, std: float) -> None:
        t.copy_(torch.randn(t.shape, generator=g) * std)

    def uniform(t: torch.Tensor, low: float, high: float) -> None:
        t.copy_(torch.rand(t.shape, generator=g) * (high - low) + low)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                normal(module.weight, math.sqrt(2.0 / module.weight[0].numel()))
            elif isinstance(module, nn.ConvTranspose2d):
                # weight [in, out/groups, kh, kw]: each output sums in/groups·kh·kw/(sh·sw) terms
                cin_g, kh, kw = module.weight.shape[0] // module.groups, *module.weight.shape[2:]
                fan_in = cin_g * kh * kw / (module.stride[0] * module.stride[1])
                normal(module.weight, math.sqrt(2.0 / fan_in))
            elif isinstance(module, nn.BatchNorm2d):
                uniform(module.weight, 0.5, 1.5)
                normal(module.bias, 0.2)
                normal(module.running_mean, 0.2)
                uniform(module.running_var, 0.5, 2.0)  # positive
            elif isinstance(module, nn.LayerNorm):
                uniform(module.weight, 0.5, 1.5)
                normal(module.bias, 0.2)
            scale = getattr(module, "layer_scale", None)
            if isinstance(scale, nn.Parameter):  # ConvNeXt's 1e-6 start would hide the blocks
                uniform(scale, 0.5, 1.5)
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and module.bias is not None:
                normal(module.bias, 0.1)
    return model.eval()


def torch_to_cnnc(model: nn.Module, rename: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """The model's state dict under cnnc's names: BN weight/bias/running_mean/running_var become
    gamma/beta/mean/var, num_batches_tracked is dropped, and module paths are renamed by the
    longest matching prefix in `rename`."""
    bn_modules = {name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    rename = rename or {}
    out = {}
    for key, value in model.state_dict().items():
        module, _, leaf = key.rpartition(".")
        if leaf == "num_batches_tracked":
            continue
        if module in bn_modules:
            leaf = BN_NAMES[leaf]
        for prefix in sorted(rename, key=len, reverse=True):
            if module == prefix or module.startswith(prefix + "."):
                module = rename[prefix] + module[len(prefix):]
                break
        out[f"{module}.{leaf}"] = value.detach().numpy().astype(np.float32)
    return out


class BasicBlock(nn.Module):
    def __init__(self, cin: int, c: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.downsample = None
        if stride != 1 or cin != c:
            self.downsample = nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class SqueezeExcitation(nn.Module):
    """examples/resnet_blocks.cnn's `se`: dense layers on the pooled [N, C, 1, 1] map."""

    def __init__(self, c: int, ratio: int):
        super().__init__()
        self.fc1 = nn.Linear(c, c // ratio)
        self.fc2 = nn.Linear(c // ratio, c)

    def forward(self, x):
        s = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s[:, :, None, None]


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (stride in the 3x3 conv, "v1.5"), optionally with SE."""
    expansion = 4

    def __init__(self, cin: int, c: int, stride: int = 1, se_ratio: int = 0):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, 4 * c, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * c)
        self.se_module = SqueezeExcitation(4 * c, se_ratio) if se_ratio else None
        self.downsample = None
        if stride != 1 or cin != 4 * c:
            self.downsample = nn.Sequential(nn.Conv2d(cin, 4 * c, 1, stride, bias=False), nn.BatchNorm2d(4 * c))

    def forward(self, x):
        y = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        y = self.bn3(self.conv3(y))
        if self.se_module is not None:
            y = self.se_module(y)
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """torchvision's ResNet: `layers` blocks per stage; `block_args` go to every block."""

    def __init__(self, block: type, layers: list[int], num_classes: int = 1000, **block_args):
        super().__init__()
        expansion = getattr(block, "expansion", 1)
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (c, n) in enumerate(zip([64, 128, 256, 512], layers), 1):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, c, 2 if j == 0 and i > 1 else 1, **block_args))
                cin = c * expansion
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def ResNet18() -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2])




class VGG16(nn.Module):
    """examples/vgg16.cnn: 13 3x3 convs with ReLU in five stages, three dense layers, softmax."""

    def __init__(self, names: list[str]):
        super().__init__()
        widths = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
        convs, cin = iter(names), 3
        self.layers = []
        for width in widths:
            if width == "M":
                self.layers.append(nn.MaxPool2d(2))
                continue
            conv = nn.Conv2d(cin, width, 3, padding=1)
            self.add_module(next(convs).replace(".", "_"), conv)
            self.layers += [conv, nn.ReLU()]
            cin = width
        self.fc = [nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000)]
        for name, layer in zip(names[13:], self.fc[::2]):
            self.add_module(name.replace(".", "_"), layer)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        x = torch.flatten(x, 1)
        for layer in self.fc:
            x = layer(x)
        return F.softmax(x, dim=1)


def build_torch_model(name: str, net=None) -> nn.Module:
    """The torch twin of examples/<name>.cnn (resnet18/34/50/101/152, vgg16)."""
    depths = {"resnet18": (BasicBlock, [2, 2, 2, 2]), "resnet34": (BasicBlock, [3, 4, 6, 3]),
              "resnet50": (Bottleneck, [3, 4, 6, 3]), "resnet101": (Bottleneck, [3, 4, 23, 3]),
              "resnet152": (Bottleneck, [3, 8, 36, 3])}
    if name in depths:
        return ResNet(*depths[name]).eval()
    if name == "vgg16":
        weights = [p[: -len(".weight")] for p in net.params if p.endswith(".weight")]  # the user's names
        return VGG16(weights).eval()
    raise KeyError(f"no torch twin for {name}")


def load_cnnc_weights_into_torch(net, model: nn.Module) -> None:
    """Copy cnnc's parameters into the torch twin by name (the inverse of torch_to_cnnc).

    VGG16 registers its layers with "." replaced by "_" (torch module names cannot hold dots).
    """
    bn_modules = {n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    state = {}
    for key in model.state_dict():
        module, _, leaf = key.rpartition(".")
        if leaf == "num_batches_tracked":
            continue
        leaf = BN_NAMES[leaf] if module in bn_modules else leaf
        name = f"{module}.{leaf}" if f"{module}.{leaf}" in net.params else f"{module.replace('_', '.')}.{leaf}"
        state[key] = torch.from_numpy(np.array(net.params[name]))
    model.load_state_dict(state)


# ------------------------------------------------------------------------------------------
# torchvision's architectures, rebuilt with torchvision's module names and structure (torchvision
# itself is not a dependency), so that their state dicts have exactly torchvision's keys. The
# examples examples/resnet50.cnn, vgg16.cnn, alexnet_torchvision.cnn, googlenet_torchvision.cnn
# and mobilenet_v2.cnn load them with cnnc.load_torch_state_dict, unrenamed.

class TorchvisionVGG16(nn.Module):
    """torchvision.models.vgg16: features.0 ... features.30, avgpool, classifier.0 ... classifier.6.
    `softmax=True` ends in a softmax like examples/vgg16.cnn (torchvision returns the logits)."""

    def __init__(self, softmax: bool = False):
        super().__init__()
        layers, cin = [], 3
        for width in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
            if width == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(inplace=True)]
                cin = width
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, 1000))
        self.softmax = softmax

    def forward(self, x):
        x = self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))
        return F.softmax(x, dim=1) if self.softmax else x


class TorchvisionAlexNet(nn.Module):
    """torchvision.models.alexnet (examples/alexnet_torchvision.cnn)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(True), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(True), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(3, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(True),
            nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(True), nn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class BasicConv2d(nn.Module):
    """torchvision.models.googlenet.BasicConv2d: conv (no bias), BN (eps 0.001), ReLU."""

    def __init__(self, cin: int, c: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(cin, c, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(c, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """torchvision.models.googlenet.Inception, with its 3x3 (not 5x5) conv in branch3."""

    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool_proj: int):
        super().__init__()
        self.branch1 = BasicConv2d(cin, c1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(cin, c3r, kernel_size=1),
                                     BasicConv2d(c3r, c3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(cin, c5r, kernel_size=1),
                                     BasicConv2d(c5r, c5, kernel_size=3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(cin, pool_proj, kernel_size=1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class TorchvisionGoogLeNet(nn.Module):
    """torchvision.models.googlenet(aux_logits=False, transform_input=False, init_weights=False)."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
        self.aux1 = self.aux2 = None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x):
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        for name in ("inception4a", "inception4b", "inception4c", "inception4d", "inception4e"):
            x = getattr(self, name)(x)
        x = self.inception5b(self.inception5a(self.maxpool4(x)))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


class Conv2dNormActivation(nn.Sequential):
    """torchvision.ops.Conv2dNormActivation with BN and ReLU6: children 0 (conv), 1 (bn), 2."""

    def __init__(self, cin: int, c: int, kernel_size: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(nn.Conv2d(cin, c, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """torchvision.models.mobilenetv2.InvertedResidual."""

    def __init__(self, cin: int, c: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_res_connect = stride == 1 and cin == c
        layers = [Conv2dNormActivation(cin, hidden, kernel_size=1)] if expand_ratio != 1 else []
        layers += [Conv2dNormActivation(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, c, 1, 1, 0, bias=False), nn.BatchNorm2d(c)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class TorchvisionMobileNetV2(nn.Module):
    """torchvision.models.mobilenet_v2 (width 1.0): features.0 ... features.18, classifier.1."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers, cin = [Conv2dNormActivation(3, 32, stride=2)], 32
        for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                           (6, 160, 3, 2), (6, 320, 1, 1)]:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(Conv2dNormActivation(cin, 1280, kernel_size=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), (1, 1)), 1))


class V3ConvBNActivation(nn.Sequential):
    """torchvision's Conv2dNormActivation in MobileNetV3: conv (no bias), BN (eps 0.001), then
    hardswish, ReLU or nothing, as children 0, 1, 2."""

    def __init__(self, cin: int, c: int, kernel_size: int = 1, stride: int = 1, groups: int = 1,
                 activation: type[nn.Module] | None = nn.Hardswish):
        layers: list[nn.Module] = [nn.Conv2d(cin, c, kernel_size, stride, (kernel_size - 1) // 2, groups=groups,
                                             bias=False), nn.BatchNorm2d(c, eps=0.001, momentum=0.01)]
        super().__init__(*layers, *([activation()] if activation else []))


class V3SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation with MobileNetV3's hardsigmoid gate: fc1, fc2."""

    def __init__(self, c: int, squeeze: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1)

    def forward(self, x):
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))


class V3InvertedResidual(nn.Module):
    """torchvision.models.mobilenetv3.InvertedResidual: `block` = [expand], depthwise, [SE], project."""

    def __init__(self, cin: int, k: int, e: int, c: int, squeeze: int, hs: bool, stride: int):
        super().__init__()
        act = nn.Hardswish if hs else nn.ReLU
        layers: list[nn.Module] = [V3ConvBNActivation(cin, e, activation=act)] if e != cin else []
        layers.append(V3ConvBNActivation(e, e, k, stride, groups=e, activation=act))
        if squeeze:
            layers.append(V3SqueezeExcitation(e, squeeze))
        layers.append(V3ConvBNActivation(e, c, activation=None))
        self.block = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and cin == c

    def forward(self, x):
        return x + self.block(x) if self.use_res_connect else self.block(x)


class TorchvisionMobileNetV3(nn.Module):
    """torchvision.models.mobilenet_v3_small / _large (width 1.0): features.0 ... features.N, classifier."""

    # (kernel, expanded, out, SE squeeze or 0, hardswish, stride) per block, the last conv's width
    # and the classifier's hidden width (torchvision's _mobilenet_v3_conf)
    SMALL = ([(3, 16, 16, 8, False, 2), (3, 72, 24, 0, False, 2), (3, 88, 24, 0, False, 1),
              (5, 96, 40, 24, True, 2), (5, 240, 40, 64, True, 1), (5, 240, 40, 64, True, 1),
              (5, 120, 48, 32, True, 1), (5, 144, 48, 40, True, 1), (5, 288, 96, 72, True, 2),
              (5, 576, 96, 144, True, 1), (5, 576, 96, 144, True, 1)], 576, 1024)
    LARGE = ([(3, 16, 16, 0, False, 1), (3, 64, 24, 0, False, 2), (3, 72, 24, 0, False, 1),
              (5, 72, 40, 24, False, 2), (5, 120, 40, 32, False, 1), (5, 120, 40, 32, False, 1),
              (3, 240, 80, 0, True, 2), (3, 200, 80, 0, True, 1), (3, 184, 80, 0, True, 1),
              (3, 184, 80, 0, True, 1), (3, 480, 112, 120, True, 1), (3, 672, 112, 168, True, 1),
              (5, 672, 160, 168, True, 2), (5, 960, 160, 240, True, 1), (5, 960, 160, 240, True, 1)], 960, 1280)

    def __init__(self, config: tuple = SMALL, num_classes: int = 1000):
        super().__init__()
        setting, last, hidden = config
        layers: list[nn.Module] = [V3ConvBNActivation(3, 16, 3, 2)]
        cin = 16
        for k, e, c, squeeze, hs, stride in setting:
            layers.append(V3InvertedResidual(cin, k, e, c, squeeze, hs, stride))
            cin = c
        layers.append(V3ConvBNActivation(cin, last))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(last, hidden), nn.Hardswish(), nn.Dropout(0.2),
                                        nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


class ShuffleUnit(nn.Module):
    """torchvision.models.shufflenetv2.InvertedResidual: branch1 (stride 2 only) and branch2."""

    def __init__(self, cin: int, c: int, stride: int):
        super().__init__()
        b = c // 2
        self.stride = stride
        if stride > 1:
            self.branch1 = nn.Sequential(nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                                         nn.Conv2d(cin, b, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU())
        self.branch2 = nn.Sequential(nn.Conv2d(cin if stride > 1 else b, b, 1, bias=False), nn.BatchNorm2d(b),
                                     nn.ReLU(),
                                     nn.Conv2d(b, b, 3, stride, 1, groups=b, bias=False), nn.BatchNorm2d(b),
                                     nn.Conv2d(b, b, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU())

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        n, c, h, w = out.shape  # torchvision's channel_shuffle(out, 2)
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


class TorchvisionShuffleNetV2(nn.Module):
    """torchvision.models.shufflenet_v2_x1_0: conv1, maxpool, stage2-4, conv5, fc."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU())
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 24
        for name, repeats, c in (("stage2", 4, 116), ("stage3", 8, 232), ("stage4", 4, 464)):
            units = [ShuffleUnit(cin, c, 2), *(ShuffleUnit(c, c, 1) for _ in range(repeats - 1))]
            setattr(self, name, nn.Sequential(*units))
            cin = c
        self.conv5 = nn.Sequential(nn.Conv2d(cin, 1024, 1, bias=False), nn.BatchNorm2d(1024), nn.ReLU())
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x):
        x = self.stage4(self.stage3(self.stage2(self.maxpool(self.conv1(x)))))
        return self.fc(self.conv5(x).mean([2, 3]))


class Fire(nn.Module):
    """torchvision.models.squeezenet.Fire: squeeze, expand1x1, expand3x3, each followed by ReLU."""

    def __init__(self, cin: int, s: int, e1: int, e3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, s, 1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(s, e1, 1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(s, e3, 3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                          self.expand3x3_activation(self.expand3x3(x))], 1)


class TorchvisionSqueezeNet11(nn.Module):
    """torchvision.models.squeezenet1_1: features.0 ... features.12, classifier.1 (the final conv)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, stride=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256))
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Conv2d(512, num_classes, 1), nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


_MNASNET_BN_MOMENTUM = 1 - 0.9997  # torchvision's _BN_MOMENTUM (eps stays PyTorch's 1e-5)


class MNASNetInvertedResidual(nn.Module):
    """torchvision.models.mnasnet._InvertedResidual: `layers` = expand, depthwise, project (with BNs)."""

    def __init__(self, cin: int, c: int, k: int, stride: int, t: int, bn_momentum: float = 0.1):
        super().__init__()
        mid = cin * t
        self.apply_residual = cin == c and stride == 1
        self.layers = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid, momentum=bn_momentum), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, k, padding=k // 2, stride=stride, groups=mid, bias=False),
            nn.BatchNorm2d(mid, momentum=bn_momentum), nn.ReLU(inplace=True),
            nn.Conv2d(mid, c, 1, bias=False), nn.BatchNorm2d(c, momentum=bn_momentum))

    def forward(self, x):
        return self.layers(x) + x if self.apply_residual else self.layers(x)


def _mnasnet_stack(cin: int, c: int, k: int, stride: int, t: int, repeats: int, bn_momentum: float) -> nn.Sequential:
    """torchvision.models.mnasnet._stack: the first unit changes the shape, the others keep it."""
    return nn.Sequential(MNASNetInvertedResidual(cin, c, k, stride, t, bn_momentum),
                         *(MNASNetInvertedResidual(c, c, k, 1, t, bn_momentum) for _ in range(1, repeats)))


class TorchvisionMNASNet10(nn.Module):
    """torchvision.models.mnasnet1_0: layers.0 ... layers.16, classifier.1."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        m = _MNASNET_BN_MOMENTUM
        depths = [32, 16, 24, 40, 80, 96, 192, 320]  # _get_depths(1.0)
        self.layers = nn.Sequential(
            nn.Conv2d(3, depths[0], 3, padding=1, stride=2, bias=False), nn.BatchNorm2d(depths[0], momentum=m),
            nn.ReLU(inplace=True),
            nn.Conv2d(depths[0], depths[0], 3, padding=1, stride=1, groups=depths[0], bias=False),
            nn.BatchNorm2d(depths[0], momentum=m), nn.ReLU(inplace=True),
            nn.Conv2d(depths[0], depths[1], 1, padding=0, stride=1, bias=False), nn.BatchNorm2d(depths[1], momentum=m),
            _mnasnet_stack(depths[1], depths[2], 3, 2, 3, 3, m),
            _mnasnet_stack(depths[2], depths[3], 5, 2, 3, 3, m),
            _mnasnet_stack(depths[3], depths[4], 5, 2, 6, 3, m),
            _mnasnet_stack(depths[4], depths[5], 3, 1, 6, 2, m),
            _mnasnet_stack(depths[5], depths[6], 5, 2, 6, 4, m),
            _mnasnet_stack(depths[6], depths[7], 3, 1, 6, 1, m),
            nn.Conv2d(depths[7], 1280, 1, padding=0, stride=1, bias=False), nn.BatchNorm2d(1280, momentum=m),
            nn.ReLU(inplace=True))
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(self.layers(x).mean([2, 3]))


class EffConv2dNormActivation(nn.Sequential):
    """torchvision's Conv2dNormActivation in EfficientNet-B0: conv (no bias), BN (PyTorch's default
    eps 1e-5), then SiLU or nothing, as children 0, 1, 2."""

    def __init__(self, cin: int, c: int, kernel_size: int = 1, stride: int = 1, groups: int = 1,
                 activation: bool = True):
        super().__init__(nn.Conv2d(cin, c, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c), *([nn.SiLU(inplace=True)] if activation else []))


class EffSqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation with EfficientNet's SiLU and sigmoid gate: fc1, fc2."""

    def __init__(self, c: int, squeeze: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1)
        self.activation, self.scale_activation = nn.SiLU(inplace=True), nn.Sigmoid()

    def forward(self, x):
        return x * self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))


class MBConv(nn.Module):
    """torchvision.models.efficientnet.MBConv: `block` = [expand], depthwise, SE, project; stochastic
    depth (identity in eval mode) is left out."""

    def __init__(self, t: int, k: int, stride: int, cin: int, c: int):
        super().__init__()
        self.use_res_connect = stride == 1 and cin == c
        expanded = cin * t  # _make_divisible(cin * t, 8) for B0's widths
        layers: list[nn.Module] = [EffConv2dNormActivation(cin, expanded)] if expanded != cin else []
        layers += [EffConv2dNormActivation(expanded, expanded, k, stride, groups=expanded),
                   EffSqueezeExcitation(expanded, max(1, cin // 4)),
                   EffConv2dNormActivation(expanded, c, activation=False)]
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        return self.block(x) + x if self.use_res_connect else self.block(x)


class TorchvisionEfficientNetB0(nn.Module):
    """torchvision.models.efficientnet_b0: features.0 ... features.8, avgpool, classifier.1."""

    SETTING = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
               (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]  # t, k, stride, in, out, layers

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = [EffConv2dNormActivation(3, 32, 3, 2)]
        for t, k, stride, cin, c, n in self.SETTING:
            layers.append(nn.Sequential(*(MBConv(t, k, stride if i == 0 else 1, cin if i == 0 else c, c)
                                          for i in range(n))))
        layers.append(EffConv2dNormActivation(320, 1280))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class DenseLayer(nn.Module):
    """torchvision.models.densenet._DenseLayer: norm1, relu1, conv1 (1x1), norm2, relu2, conv2 (3x3)."""

    def __init__(self, cin: int, growth: int, bn_size: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, stride=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, stride=1, padding=1, bias=False)

    def forward(self, features: list):
        x = torch.cat(features, 1)
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class DenseBlock(nn.ModuleDict):
    """torchvision.models.densenet._DenseBlock: denselayer1 ... denselayerN, each seeing all earlier features."""

    def __init__(self, n: int, cin: int, bn_size: int, growth: int):
        super().__init__()
        for i in range(n):
            self.add_module(f"denselayer{i + 1}", DenseLayer(cin + i * growth, growth, bn_size))

    def forward(self, x):
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """torchvision.models.densenet._Transition: norm, relu, conv (1x1), pool (2x2 average)."""

    def __init__(self, cin: int, c: int):
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(cin))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(cin, c, 1, stride=1, bias=False))
        self.add_module("pool", nn.AvgPool2d(2, 2))


class TorchvisionDenseNet121(nn.Module):
    """torchvision.models.densenet121: features (conv0, norm0, relu0, pool0, denseblock1-4,
    transition1-3, norm5), classifier."""

    def __init__(self, growth: int = 32, blocks: tuple = (6, 12, 24, 16), init: int = 64, bn_size: int = 4,
                 num_classes: int = 1000):
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(3, init, 7, stride=2, padding=3, bias=False))
        self.features.add_module("norm0", nn.BatchNorm2d(init))
        self.features.add_module("relu0", nn.ReLU(inplace=True))
        self.features.add_module("pool0", nn.MaxPool2d(3, stride=2, padding=1))
        c = init
        for i, n in enumerate(blocks, 1):
            self.features.add_module(f"denseblock{i}", DenseBlock(n, c, bn_size, growth))
            c += n * growth
            if i != len(blocks):
                self.features.add_module(f"transition{i}", Transition(c, c // 2))
                c //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(c))
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        out = F.relu(self.features(x), inplace=True)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(out, (1, 1)), 1))


class LayerNorm2d(nn.LayerNorm):
    """torchvision.models.convnext.LayerNorm2d: LayerNorm over the channels of NCHW."""

    def forward(self, x):
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


class Permute(nn.Module):
    def __init__(self, dims: list[int]):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return torch.permute(x, self.dims)


class CNBlock(nn.Module):
    """torchvision.models.convnext.CNBlock (stochastic depth: the identity in eval mode)."""

    def __init__(self, dim: int):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(dim, dim, 7, padding=3, groups=dim), Permute([0, 2, 3, 1]),
                                   nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, 4 * dim), nn.GELU(),
                                   nn.Linear(4 * dim, dim), Permute([0, 3, 1, 2]))
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * 1e-6)

    def forward(self, x):
        return self.layer_scale * self.block(x) + x


class TorchvisionConvNeXtTiny(nn.Module):
    """torchvision.models.convnext_tiny: features.0 (stem) ... features.7, classifier."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, 96, 4, 4), LayerNorm2d(96, eps=1e-6))]
        for i, (dim, depth) in enumerate([(96, 3), (192, 3), (384, 9), (768, 3)]):
            layers.append(nn.Sequential(*(CNBlock(dim) for _ in range(depth))))
            if i < 3:
                layers.append(nn.Sequential(LayerNorm2d(dim, eps=1e-6), nn.Conv2d(dim, 2 * dim, 2, 2)))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(LayerNorm2d(768, eps=1e-6), nn.Flatten(1), nn.Linear(768, num_classes))

    def forward(self, x):
        return self.classifier(F.adaptive_avg_pool2d(self.features(x), 1))


class LeNet5(nn.Module):
    """examples/lenet5.cnn, its layers registered under `names` (the .cnn's: c1, c3, c5, f6, out);
    returns the logits, before the .cnn's final softmax."""

    def __init__(self, names: tuple[str, ...] = ("c1", "c3", "c5", "f6", "out")):
        super().__init__()
        self.names = tuple(names)
        layers = [nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5), nn.Conv2d(16, 120, 5), nn.Linear(120, 84), nn.Linear(84, 10)]
        assert len(self.names) == len(layers), self.names
        for name, layer in zip(self.names, layers):
            self.add_module(name, layer)

    def forward(self, x):
        c1, c3, c5, f6, out = (getattr(self, name) for name in self.names)
        x = F.avg_pool2d(torch.tanh(c1(x)), 2)
        x = F.avg_pool2d(torch.tanh(c3(x)), 2)
        x = torch.flatten(torch.tanh(c5(x)), 1)
        return out(torch.tanh(f6(x)))


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1))], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
        b = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(a), self.branch3x3_2b(a),
                          self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b),
                          self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1))], 1)


class InceptionAux(nn.Module):
    def __init__(self, cin: int, num_classes: int):
        super().__init__()
        self.conv0 = BasicConv2d(cin, 128, kernel_size=1)
        self.conv1 = BasicConv2d(128, 768, kernel_size=5)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x):
        x = self.conv1(self.conv0(F.avg_pool2d(x, kernel_size=5, stride=3)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))


class TorchvisionInceptionV3(nn.Module):
    """torchvision's Inception3 (aux_logits=True, transform_input=False): `forward` returns the
    logits, as torchvision's does in eval mode; `both` also the auxiliary classifier's."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = InceptionA(192, 32), InceptionA(256, 64), InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b, self.Mixed_6c = InceptionC(768, 128), InceptionC(768, 160)
        self.Mixed_6d, self.Mixed_6e = InceptionC(768, 160), InceptionC(768, 192)
        self.AuxLogits = InceptionAux(768, num_classes)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b, self.Mixed_7c = InceptionE(1280), InceptionE(2048)
        self.fc = nn.Linear(2048, num_classes)

    def both(self, x):
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, kernel_size=3, stride=2)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
            x = getattr(self, name)(x)
        aux = self.AuxLogits(x)
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)), aux

    def forward(self, x):
        return self.both(x)[0]


# The torch twin of each example whose layer names are torchvision's, and torchvision's own
# parameter count for it (sum of model.parameters(): BN running statistics excluded).
TORCHVISION_TWINS = {
    "resnet50": (lambda: ResNet(Bottleneck, [3, 4, 6, 3]), 25_557_032),
    "vgg16": (lambda: TorchvisionVGG16(softmax=True), 138_357_544),
    "alexnet_torchvision": (TorchvisionAlexNet, 61_100_840),
    "googlenet_torchvision": (TorchvisionGoogLeNet, 6_624_904),
    "mobilenet_v2": (TorchvisionMobileNetV2, 3_504_872),
    "mobilenet_v3_small": (TorchvisionMobileNetV3, 2_542_856),
    "mobilenet_v3_large": (lambda: TorchvisionMobileNetV3(TorchvisionMobileNetV3.LARGE), 5_483_032),
    "shufflenet_v2_x1_0": (TorchvisionShuffleNetV2, 2_278_604),
    "convnext_tiny": (TorchvisionConvNeXtTiny, 28_589_128),
    "squeezenet1_1": (TorchvisionSqueezeNet11, 1_235_496),
    "mnasnet1_0": (TorchvisionMNASNet10, 4_383_312),
    "efficientnet_b0": (TorchvisionEfficientNetB0, 5_288_548),
    "densenet121": (TorchvisionDenseNet121, 7_978_856),
    "inception_v3": (TorchvisionInceptionV3, 27_161_264),
}
