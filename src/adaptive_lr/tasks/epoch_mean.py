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
        self._sums: torch.Tensor | None = None  # sum of value * weight for each name
        self._weight = 0  # total weight, counted on the host (batch sizes are known there)

    def add(self, values: torch.Tensor, weight: int) -> None:
        """`values`: 1-D tensor aligned with `names` (batch means); `weight`: the batch size."""
        if self._sums is None:
            self._sums = torch.zeros(len(self.names), dtype=torch.float32, device=values.device)
        self._sums.add_(values.detach(), alpha=weight)
        self._weight += weight

    def state_dict(self, reduce=None) -> dict[str, torch.Tensor | None]:
        """The running sums and weight (after an all-reduce with `reduce`: a DDP checkpoint holds every rank's
        part of the epoch), for a checkpoint written mid-epoch; no reset."""
        if self._sums is None:
            return {"sums": None}
        sums = torch.cat([self._sums, self._sums.new_tensor([self._weight])]).detach()
        if reduce is not None:
            sums = reduce(sums.clone())
        return {"sums": sums.cpu()}

    def load_state_dict(self, state: dict[str, torch.Tensor | None], device: torch.device) -> None:
        sums = state.get("sums")
        if sums is None:
            self._sums, self._weight = None, 0
        else:
            self._sums, self._weight = sums[:-1].to(device=device, dtype=torch.float32), int(sums[-1].item())

    def compute(self, reduce=None) -> dict[str, torch.Tensor]:
        if self._sums is None:
            return {}
        sums = torch.cat([self._sums, self._sums.new_tensor([self._weight])])
        if reduce is not None:
            sums = reduce(sums)  # the one cross-rank sync of the epoch: sums and weights together
        self._sums, self._weight = None, 0
        return {name: sums[i] / sums[-1] for i, name in enumerate(self.names)}
