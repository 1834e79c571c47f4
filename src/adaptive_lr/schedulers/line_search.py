"""A line search on the LR (from the XOR lab): try a few multiples of the last move on a held-out probe batch.

At each decision the policy knows where the parameters were at the previous decision (`anchor`) and where they
are now (`theta`), reached with the current LR. Scaling the LR by `c` would, to first order, have scaled that move:
candidate `c` puts the parameters at `anchor + c * (theta - anchor)`. Each candidate of `factors` ({0.5, 1, 2} by
default) is evaluated with `probe()` (the loss on a fixed held-out batch, one forward pass each); the parameters
are left at the best candidate and every group's LR is multiplied by its factor (clamped to `[min_lr, max_lr]`;
the parameters take the unclamped factor).

Design:
1) The move is measured from decision to decision, not from the optimizer step before the last one. With a
   decision every step (`interval: step, frequency: 1`) both are the same; with a decision per epoch the searched
   move is the whole epoch's, trained at the one LR the search is about. This needs no per-step hook and no copy
   of the parameters on every step (the alternative: a driver hook that snapshots the parameters before each
   update, to keep only the last one): one copy per decision, and the drivers stay unchanged.
2) The anchor is taken at `bind` (train start), so the first decision already has a move to search along, and is
   saved in `state_dict` with the probe-forward count, so a resumed run searches along the same move.
3) Ties and non-finite losses: a non-finite probe loss counts as +inf; among equal losses the factor closest to 1
   (in log scale) wins, so a flat probe keeps the LR.
4) Factor 1 is evaluated at `theta` itself (not recomputed from the anchor), so keeping it changes nothing.

The probe costs `len(factors)` forward passes and as many host syncs per decision: meant for per-epoch decisions.
Momentum or Adam moments in the optimizer are left as they are when the parameters move.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from adaptive_lr.checks import is_number
from adaptive_lr.schedulers.anchored import Anchor, AnchoredPolicy
from adaptive_lr.schedulers.base import Decision, Observation, PolicyConfigError


class LineSearch(AnchoredPolicy):
    """Keep the best of `factors` times the last move, judged on the probe batch (see the module docstring).

    Args:
        factors: LR multipliers to try at each decision (0.5, 1, 2); a non-empty list of positive numbers.
        min_lr, max_lr, min_factor, max_factor: the LR bounds (`BoundedPolicy`): by default each group within
            [start x 1e-4, start x 100]; with min_lr and max_lr set, those (a start outside them is an error).

    `last_decision.extra`: `best_factor`, `probe_loss` (of the kept candidate) and `probe_forwards_total` (every
    probe forward pass since `reset`, in `state_dict`).
    """

    needs_probe = True

    def __init__(
        self, factors: Sequence[float] = (0.5, 1.0, 2.0), min_lr: float | None = None, max_lr: float | None = None,
        min_factor: float = 1e-4,
        max_factor: float = 100.0,
    ) -> None:
        super().__init__(min_lr, max_lr, min_factor, max_factor)
        ok = isinstance(factors, Sequence) and not isinstance(factors, str) and len(factors) > 0
        ok = ok and all(is_number(f) and f > 0 for f in factors)
        if not ok:
            raise PolicyConfigError(f"factors must be a non-empty list of positive numbers, got {factors!r}")
        self.factors = tuple(float(f) for f in factors)
        self.probe_forwards = 0

    def _lrs_at_reset(self) -> list[float]:
        self.probe_forwards = 0
        return super()._lrs_at_reset()

    def _update(self, obs: Observation) -> list[float]:
        groups = self._bound_groups()
        assert self.anchor is not None and self._probe is not None
        theta = self._snapshot()
        # 1) one probe forward per candidate, the parameters placed at anchor + c * (theta - anchor)
        losses = []
        for factor in self.factors:
            self._place(groups, theta, factor)
            loss = float(self._probe())  # host sync: one per candidate
            self.probe_forwards += 1
            losses.append(loss if math.isfinite(loss) else math.inf)
        # 2) the best candidate; ties (and all-non-finite) go to the factor closest to 1
        best = min(range(len(self.factors)), key=lambda i: (losses[i], abs(math.log(self.factors[i]))))
        factor = self.factors[best]
        # 3) leave the parameters there; they are the anchor of the next decision
        self._place(groups, theta, factor)
        self._take_anchor()
        lrs = [self._clamp(lr * factor, i) for i, lr in enumerate(self.lrs)]
        self.last_decision = Decision(
            tick=self.tick,
            action="line_search",
            lr_before=self.lrs[0],
            lr_after=lrs[0],
            extra={
                "best_factor": factor,
                "probe_loss": losses[best],
                "probe_forwards_total": float(self.probe_forwards),
            },
        )
        return lrs

    def _place(self, groups: list[dict[str, Any]], theta: Anchor, factor: float) -> None:
        assert self.anchor is not None
        with torch.no_grad():
            for anchor, now, g in zip(self.anchor, theta, groups, strict=True):
                for a, t, p in zip(anchor, now, g["params"], strict=True):
                    p.copy_(t if factor == 1.0 else torch.lerp(a, t, factor))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "probe_forwards": self.probe_forwards}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.probe_forwards = int(state["probe_forwards"])
