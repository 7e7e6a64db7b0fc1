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
        weights = [p[: -len(".weight")] for p in net.graph.graph["params"] if p.endswith(".weight")]
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
