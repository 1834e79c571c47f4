"""The 2-D XOR family, generated in memory (no download). Label 1 where exactly one coordinate is "high".

Variants (inputs in the unit square, the XOR truth table at its corners):
  - `perfect`:      only the four truth-table points (0,0) (0,1) (1,0) (1,1), repeated; val/test are the same points.
  - `clean`:        four tight Gaussian clusters (sigma 0.05) around the corners: separable, easy.
  - `noisy`:        the same clusters with sigma `noise` (default 0.25): overlapping, Bayes error well above 0.
  - `corner`:       points uniform in the square, labelled by quadrant (x > 0.5) xor (y > 0.5): the boundary is
                    the two midlines, which a 2-2-1 net can only approximate.
  - `corner_noisy`: `corner` with a fraction `label_noise` (default 0.1) of labels flipped.
"""

from __future__ import annotations

from typing import Unpack

import torch

from adaptive_lr.data.base import InMemoryDataModule, LoaderOptions
from adaptive_lr.data.splits import split_indices

VARIANTS = ("perfect", "clean", "noisy", "corner", "corner_noisy")
_CORNERS = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
_CORNER_LABELS = torch.tensor([0.0, 1.0, 1.0, 0.0])


def make_xor(variant: str, n: int, noise: float, label_noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` points of one variant as (x float32 [n, 2], y float32 [n, 1])."""
    if variant not in VARIANTS:
        raise ValueError(f"xor variant must be one of {list(VARIANTS)}, got {variant!r}")
    g = torch.Generator().manual_seed(seed)
    if variant in ("perfect", "clean", "noisy"):
        which = torch.arange(n) % 4
        x = _CORNERS[which].clone()
        sigma = {"perfect": 0.0, "clean": 0.05, "noisy": noise}[variant]
        x += sigma * torch.randn(n, 2, generator=g)
        y = _CORNER_LABELS[which].clone()
    else:
        x = torch.rand(n, 2, generator=g)
        y = ((x[:, 0] > 0.5) ^ (x[:, 1] > 0.5)).float()
        if variant == "corner_noisy":
            flip = torch.rand(n, generator=g) < label_noise
            y[flip] = 1.0 - y[flip]
    return x, y.unsqueeze(1)


class XORDataModule(InMemoryDataModule):
    """One XOR variant with a seeded train/val/test split (the data seed is fixed, independent of the run seed)."""

    num_outputs = 1

    def __init__(self, variant: str = "clean", n_samples: int = 600, noise: float = 0.25, label_noise: float = 0.1,
                 data_seed: int = 1234, val_fraction: float = 0.2, test_fraction: float = 0.2,
                 **options: Unpack[LoaderOptions]) -> None:
        super().__init__(**{"batch_size": 32, **options})  # a smaller default batch than the other tasks'
        if variant not in VARIANTS:
            raise ValueError(f"data.variant must be one of {list(VARIANTS)}, got {variant!r}")
        self.variant, self.n_samples, self.noise, self.label_noise = variant, n_samples, noise, label_noise
        self.data_seed, self.val_fraction, self.test_fraction = data_seed, val_fraction, test_fraction

    def load(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        x, y = make_xor(self.variant, self.n_samples, self.noise, self.label_noise, self.data_seed)
        if self.variant == "perfect":  # nothing to generalise to: every split is the truth table itself
            return ((x, y),) * 3
        parts = split_indices(len(x), self.val_fraction, self.test_fraction, self.data_seed)
        return tuple((x[idx], y[idx]) for idx in parts)
