"""ResNet-18, CIFAR variant: the classifier of the supplement's Table 4 (§F.3).

He et al.'s ResNet-18 (basic blocks, ``[2, 2, 2, 2]``, widths 64-128-256-512) with the stem
changed for 32×32 inputs, as in the coreset literature the table quotes (DeepCore, ZCore): a
**3×3 convolution with stride 1** (no 7×7 stride-2 convolution) and **no max-pool**, so the
first stage works on the full 32×32 grid and the last one on 4×4, then global average pooling
and one linear layer. Shortcuts are identity where the shape is kept, else a 1×1 convolution
with stride 2 and batch norm (option B of the paper).

``width`` scales every stage (``width=64`` is ResNet-18; a smaller one keeps the depth, the stem
and the strides with fewer channels, for CPU smoke runs, and must then be reported). Written
for this workbench from the paper's description.

>>> import torch
>>> net = resnet18_cifar(num_classes=10)
>>> net(torch.zeros(2, 3, 32, 32)).shape
torch.Size([2, 10])
"""
from __future__ import annotations

import numbers

import torch
from torch import nn

from qd_lib.utils.validation import check_scalar

__all__ = ["BasicBlock", "ResNetCIFAR", "resnet18_cifar"]


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with batch norm and a residual connection.

    Parameters
    ----------
    in_channels, out_channels : int
    stride : int, default=1
        Stride of the first convolution; a 1×1 projection shortcut is used when the stride or
        the channel count changes.
    """

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNetCIFAR(nn.Module):
    """A ResNet for small images: 3×3 stride-1 stem, no max-pool, four stages, linear head.

    Parameters
    ----------
    blocks : sequence of 4 ints
        Basic blocks per stage (``(2, 2, 2, 2)`` for ResNet-18).
    num_classes : int, default=10
    width : int, default=64
        Channels of the stem and the first stage; the stages use ``width × (1, 2, 4, 8)``.
    in_channels : int, default=3

    Attributes
    ----------
    stem : nn.Sequential
        ``Conv2d(in_channels, width, 3, stride=1, padding=1)``, batch norm, ReLU.
    layer1 … layer4 : nn.Sequential
        The stages; ``layer2`` to ``layer4`` start with stride 2.
    fc : nn.Linear
        The classifier on the globally pooled ``8 × width`` features.
    """

    def __init__(self, blocks=(2, 2, 2, 2), num_classes: int = 10, *, width: int = 64,
                 in_channels: int = 3):
        super().__init__()
        blocks = tuple(blocks)
        if len(blocks) != 4 or not all(isinstance(b, numbers.Integral) and b >= 1
                                       for b in blocks):
            raise ValueError(f"The 'blocks' parameter must be 4 positive ints. Got {blocks!r} "
                             "instead.")
        check_scalar(num_classes, "num_classes", numbers.Integral, min_val=2)
        check_scalar(width, "width", numbers.Integral, min_val=1)
        check_scalar(in_channels, "in_channels", numbers.Integral, min_val=1)
        self.blocks = blocks
        self.num_classes = int(num_classes)
        self.width = int(width)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        channels = width
        stages = []
        for i, n_blocks in enumerate(blocks):
            out = width * 2 ** i
            layers = []
            for j in range(n_blocks):
                layers.append(BasicBlock(channels, out, stride=2 if (i > 0 and j == 0) else 1))
                channels = out
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal convolutions (fan-out, ReLU), unit/zero batch norm, PyTorch's default
        linear layer."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        self.fc.reset_parameters()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled penultimate features, shape ``(B, 8 × width)``."""
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.pool(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, shape ``(B, num_classes)``."""
        return self.fc(self.features(x))


def resnet18_cifar(num_classes: int = 10, *, width: int = 64, in_channels: int = 3
                   ) -> ResNetCIFAR:
    """ResNet-18, CIFAR variant (3×3 stride-1 stem, no max-pool); ``width=64`` is the standard
    network (11.2 M parameters for 10 classes)."""
    return ResNetCIFAR((2, 2, 2, 2), num_classes, width=width, in_channels=in_channels)
