"""CIFAR models with an attention slot after the first "semantic" layer.

Each model's first layer is conv (+ BN where the model has it); the slot
``model.attention`` sits right after it (``nn.Identity`` when unused), then the
activation. ``model.first_block(x)`` returns conv -> BN -> ReLU without the
attention: the filters whose frequency response PDM analysis measures
(docs/paper-notes.md, entry 15).
"""
from __future__ import annotations

import torch
from torch import nn

from fastfreq.aps import ChannelAttention, ExtendedChannelAttention

VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def make_attention(kind: str | None, channels: int, hidden: int = 512) -> nn.Module:
    if kind in (None, "none"):
        return nn.Identity()
    if kind == "basic":
        return ChannelAttention(channels, hidden)
    if kind == "extended":
        return ExtendedChannelAttention(channels, hidden)
    raise ValueError(f"attention: expected 'none', 'basic' or 'extended', got {kind!r}")


class _FirstLayerModel(nn.Module):
    """Shared plumbing: stem conv (+BN), attention slot, activation, body."""

    def __init__(self, stem_channels: int, bn: bool, attention: str | None, hidden: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem_channels, 3, padding=1, bias=not bn)
        self.bn1 = nn.BatchNorm2d(stem_channels) if bn else nn.Identity()
        self.attention = make_attention(attention, stem_channels, hidden)

    def first_block(self, x: torch.Tensor) -> torch.Tensor:
        """conv -> BN -> ReLU of the first layer (for PDM analysis)."""
        return torch.relu(self.bn1(self.conv1(x)))

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.attention(self.bn1(self.conv1(x))))

    @property
    def open_ratio(self):
        """The attention's ``v_bar`` from the last forward (None without attention)."""
        return getattr(self.attention, "open_ratio", None) if not isinstance(self.attention, nn.Identity) else None


class VGG(_FirstLayerModel):
    """VGG-16 / VGG-16-BN for 32x32 inputs (one 512 -> classes linear head)."""

    def __init__(self, bn: bool = False, num_classes: int = 10, attention=None, hidden: int = 512,
                 cfg=VGG16_CFG, width: float = 1.0):
        chans = [c if c == "M" else max(8, int(c * width)) for c in cfg]
        super().__init__(chans[0], bn, attention, hidden)
        layers, c_in = [], chans[0]
        for v in chans[1:]:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c_in, v, 3, padding=1, bias=not bn)]
                layers += [nn.BatchNorm2d(v)] if bn else []
                layers += [nn.ReLU(inplace=True)]
                c_in = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x):
        x = self.features(self.stem(x))
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.short = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.short(x))


class ResNet(_FirstLayerModel):
    """CIFAR ResNet (3x3 stem, no max-pool); ``blocks=(2, 2, 2, 2)`` is ResNet-18."""

    def __init__(self, blocks=(2, 2, 2, 2), num_classes: int = 10, attention=None, hidden: int = 512,
                 width: int = 64):
        super().__init__(width, True, attention, hidden)
        layers, c_in = [], width
        for i, n in enumerate(blocks):
            c_out = width * 2 ** i
            for j in range(n):
                layers.append(BasicBlock(c_in, c_out, 2 if (j == 0 and i > 0) else 1))
                c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


MODELS = {
    "resnet18": lambda **kw: ResNet((2, 2, 2, 2), **kw),
    "vgg16": lambda **kw: VGG(bn=False, **kw),
    "vgg16_bn": lambda **kw: VGG(bn=True, **kw),
    # small, fast models for CPU-scale studies
    "small": lambda **kw: ResNet((1, 1, 1), width=32, **kw),
    "narrow": lambda **kw: ResNet((1, 1, 1), width=16, **kw),
    "tiny": lambda **kw: ResNet((1, 1), width=16, **kw),
}


def build_model(name: str, num_classes: int = 10, attention=None, hidden: int = 512) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"model: unknown {name!r}; valid: {', '.join(MODELS)}")
    return MODELS[name](num_classes=num_classes, attention=attention, hidden=hidden)
