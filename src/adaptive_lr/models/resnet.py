"""ResNet-18 for 32x32 images (the CIFAR variant of He et al. 2016 used across LR-schedule papers).

Differences from torchvision's ImageNet ResNet-18: a 3x3 stride-1 stem and no max-pool, so the four stages see
32, 16, 8 and 4 pixel maps. BasicBlocks [2, 2, 2, 2] with 64, 128, 256, 512 channels, a 1x1 convolution (+BN) on
the shortcut where the shape changes, global average pooling and one linear layer: 11,173,962 parameters for 10
classes.
"""

from __future__ import annotations

import torch
from torch import nn

STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (channels, stride of the stage's first block)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus the (projected when the shape changes) input, then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for CIFAR-sized inputs [B, in_channels, 32, 32] -> logits [B, num_classes]."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, blocks: tuple[int, ...] = (2, 2, 2, 2)) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"model.num_classes must be a positive int, got {num_classes!r}")
        if len(blocks) != len(STAGES) or any(b < 1 for b in blocks):
            raise ValueError(f"model.blocks must be {len(STAGES)} positive ints, got {blocks!r}")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        c_in = 64
        for (c_out, stride), n in zip(STAGES, blocks, strict=True):
            for i in range(n):
                layers.append(BasicBlock(c_in, c_out, stride if i == 0 else 1))
                c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.layers(self.stem(x))))
