"""Whole-batch image augmentation: one vectorised op per batch instead of a PIL pipeline per sample."""

from __future__ import annotations

import torch


def random_crop_flip(x: torch.Tensor, g: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random `pad`-pixel translation (zero padding, like RandomCrop(padding=pad)) and horizontal flip, per sample.

    x: [B, C, H, W], any dtype. Each sample gets its own offset and flip from `g`.
    """
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    rows = (dy[:, None] + torch.arange(h)[None, :]).to(x.device)  # [B, H]
    cols = (dx[:, None] + torch.arange(w)[None, :]).to(x.device)  # [B, W]
    flip = (torch.rand(b, generator=g) < 0.5).to(x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch_idx = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch_idx, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()


class Normalize:
    """uint8 [0, 255] -> float, per-channel standardised (mean/std given in [0, 1] units)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.mean = torch.tensor(mean).view(1, -1, 1, 1) * 255.0
        self.std = torch.tensor(std).view(1, -1, 1, 1) * 255.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean.to(x.device)) / self.std.to(x.device)
