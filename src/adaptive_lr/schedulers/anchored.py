"""`AnchoredPolicy`: the base of the policies that read the parameters of the optimizer they are bound to
(`hypergradient.Hypergradient`, `line_search.LineSearch`): the bound param groups, a copy of the parameters (the
anchor) and its persistence, the LR bounds.

The anchor is the parameters at the last decision (or at `bind`): a policy measures the displacement since then,
`anchor - theta`, whatever the optimizer's update rule. It is part of `state_dict` (cloned tensors), so a restored
run sees the same displacement; drivers call `bind` again after `load_state_dict`, which moves it to the
parameters' devices.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from adaptive_lr.schedulers.base import BoundedPolicy, PolicyConfigError

if TYPE_CHECKING:
    from torch.optim import Optimizer

Anchor = list[list[torch.Tensor]]  # per param group, per parameter


class AnchoredPolicy(BoundedPolicy):
    """A policy that reads the parameters of the optimizer it is bound to and keeps a copy of them (the anchor).

    The anchor is taken at `bind` when there is none (a fresh trajectory: `reset` drops it) and kept when there is
    one (a restored state), then moved to each parameter's device and dtype. LRs are clamped to `[min_lr, max_lr]`.
    """

    def __init__(self, min_lr: float | None = None, max_lr: float | None = None,
                 min_factor: float = 1e-4, max_factor: float = 100.0) -> None:
        super().__init__(min_lr, max_lr, min_factor, max_factor)
        self.anchor: Anchor | None = None
        self._groups: list[dict[str, Any]] | None = None
        self._probe: Callable[[], float] | None = None

    # -- binding ---------------------------------------------------------------------------------------------------
    def bind(self, optimizer: Optimizer, probe: Callable[[], float] | None = None) -> None:
        if self.needs_probe and probe is None:
            raise PolicyConfigError(f"{type(self).__name__} needs a probe: bind(optimizer, probe=...)")
        self._groups, self._probe = optimizer.param_groups, probe
        if self.anchor is None:
            self.anchor = self._snapshot()
            return
        shapes = [[tuple(p.shape) for p in g["params"]] for g in self._groups]
        saved = [[tuple(a.shape) for a in group] for group in self.anchor]
        if shapes != saved:
            raise PolicyConfigError(
                f"restored {type(self).__name__} anchor has parameter shapes {saved}, the optimizer {shapes}"
            )
        self.anchor = [
            [a.to(device=p.device, dtype=p.dtype) for a, p in zip(group, g["params"], strict=True)]
            for group, g in zip(self.anchor, self._groups, strict=True)
        ]

    def _bound_groups(self) -> list[dict[str, Any]]:
        if self._groups is None or self.anchor is None:
            raise RuntimeError(f"{type(self).__name__}.observe called before bind(optimizer)")
        if len(self._groups) != len(self.lrs):
            raise PolicyConfigError(
                f"{type(self).__name__} has {len(self.lrs)} LRs but the bound optimizer {len(self._groups)} groups"
            )
        return self._groups

    def _snapshot(self) -> Anchor:
        assert self._groups is not None
        return [[p.detach().clone() for p in g["params"]] for g in self._groups]

    def _take_anchor(self) -> None:
        """The current parameters become the anchor (copied in place: no allocation)."""
        assert self._groups is not None and self.anchor is not None
        with torch.no_grad():
            for group, g in zip(self.anchor, self._groups, strict=True):
                for a, p in zip(group, g["params"], strict=True):
                    a.copy_(p.detach())

    # -- helpers ---------------------------------------------------------------------------------------------------
    def _lrs_at_reset(self) -> list[float]:
        self.anchor = None  # a fresh trajectory: the next bind takes the anchor
        return super()._lrs_at_reset()

    # -- persistence -----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        # cloned: the saved state must not follow the parameters as training goes on
        anchor = None if self.anchor is None else [[a.detach().clone() for a in group] for group in self.anchor]
        return {**super().state_dict(), "anchor": anchor}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        anchor = state["anchor"]
        # cloned too: the anchor is updated in place, which must not write into the caller's state
        self.anchor = None if anchor is None else [[torch.as_tensor(a).clone() for a in g] for g in anchor]
