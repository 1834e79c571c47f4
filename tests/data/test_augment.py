"""Whole-batch crop+flip against a per-sample reference (torchvision's RandomCrop(padding) + RandomHorizontalFlip)."""

from __future__ import annotations

import pytest
import torch

from adaptive_lr.data.augment import Normalize, random_crop_flip


def reference(x: torch.Tensor, g: torch.Generator, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One sample at a time, drawing from `g` in the same order: offsets, then flips. Returns (batch, flips)."""
    b, _, h, w = x.shape
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    flip = torch.rand(b, generator=g) < 0.5
    out = []
    for i in range(b):
        padded = torch.nn.functional.pad(x[i], (pad, pad, pad, pad))
        crop = padded[:, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out.append(crop.flip(-1) if flip[i] else crop)
    return torch.stack(out), flip


@pytest.mark.parametrize(("pad", "dtype"), [(4, torch.uint8), (2, torch.float32), (0, torch.uint8)])
def test_random_crop_flip_equals_the_per_sample_crop_and_flip(pad, dtype):
    x = torch.randint(1, 256, (32, 3, 8, 6), generator=torch.Generator().manual_seed(0)).to(dtype)
    out = random_crop_flip(x, torch.Generator().manual_seed(7), pad=pad)
    expected, flips = reference(x, torch.Generator().manual_seed(7), pad)
    assert out.dtype == dtype and out.shape == x.shape and out.is_contiguous()
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert 0 < int(flips.sum()) < len(flips)  # both branches ran
    if pad:
        assert (out == 0).any()  # some sample was shifted into the zero padding


def test_normalize_standardises_uint8_per_channel():
    norm = Normalize((0.5, 0.25), (0.5, 0.25))
    x = torch.tensor([[[[0, 255]], [[0, 255]]]], dtype=torch.uint8)  # [1, 2, 1, 2]
    torch.testing.assert_close(norm(x), torch.tensor([[[[-1.0, 1.0]], [[-1.0, 3.0]]]]))
