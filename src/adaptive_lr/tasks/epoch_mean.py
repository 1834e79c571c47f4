"""Per-epoch means accumulated on the device: no per-step `self.log`, `.item()` or cross-rank sync."""

from __future__ import annotations

import torch


class EpochMeans:
    """Weighted running sums of a fixed set of named scalars, one device tensor for all of them.

    `add` is one in-place tensor op per step; `compute` returns the means (optionally after one all-reduce of the
    sums, so DDP ranks agree on exactly the same numbers) and resets.
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self._sums: torch.Tensor | None = None  # [sum of value * weight for each name..., total weight]

    def add(self, values: torch.Tensor, weight: int) -> None:
        """`values`: 1-D tensor aligned with `names` (batch means); `weight`: the batch size."""
        row = torch.cat([values.detach().float() * weight, values.new_tensor([weight], dtype=torch.float32)])
        if self._sums is None:
            self._sums = torch.zeros_like(row)
        self._sums += row

    def compute(self, reduce=None) -> dict[str, torch.Tensor]:
        if self._sums is None:
            return {}
        sums = reduce(self._sums) if reduce is not None else self._sums  # the one sync point of the epoch
        self._sums = None
        return {name: sums[i] / sums[-1] for i, name in enumerate(self.names)}
