"""VGG-16 with batch norm for 32x32 images (Simonyan & Zisserman 2015, the CIFAR adaptation).

Thirteen conv3x3-BN-ReLU layers in five stages, each closed by a 2x2 max-pool, so a 32x32 input leaves the last
stage as 512 features of 1x1; the classifier is one linear layer on those 512 features (the ImageNet model's
4096-wide fully connected layers are not used at this resolution). Convolutions have no bias (the BN after each
makes it redundant): 14,724,042 parameters for 10 classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

POOL = "M"
VGG16 = (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL)


class VGG(nn.Module):
    """VGG with batch norm: `cfg` lists conv widths and "M" (max-pool); logits from the flattened last stage."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, cfg: Sequence[int | str] = VGG16) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"model.num_classes must be a positive int, got {num_classes!r}")
        layers: list[nn.Module] = []
        c_in = in_channels
        for item in cfg:
            if item == POOL:
                layers.append(nn.MaxPool2d(2))
            elif isinstance(item, int) and item > 0:
                layers += [nn.Conv2d(c_in, item, 3, padding=1, bias=False), nn.BatchNorm2d(item), nn.ReLU(inplace=True)]
                c_in = item
            else:
                raise ValueError(f"model.cfg entries must be positive ints or {POOL!r}, got {item!r}")
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class VGG16BN(VGG):
    """VGG-16 with batch norm (the configuration above)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__(num_classes, in_channels, VGG16)
