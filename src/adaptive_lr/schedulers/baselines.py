"""Open-loop baselines: fixed schedules that ignore feedback, written as closed forms of the tick.

Each matches its `torch.optim.lr_scheduler` counterpart (tests compare them over 100 ticks), so a comparison
against "the usual schedule" is a comparison against what people actually run. A linear warmup in front of any
policy is `warmup.Warmup`.
"""

from __future__ import annotations

import math

from adaptive_lr.schedulers.base import (
    LRPolicy,
    Observation,
    require_bool,
    require_in_range,
    require_int,
    require_positive,
)


def linear_between(start: float, end: float, fraction: float) -> float:
    """`start` at `fraction` 0, `end` at 1, on a straight line (the form torch's closed forms use)."""
    return start + (end - start) * fraction


def cosine_between(start: float, end: float, done: float, total: float = 1.0) -> float:
    """`start` at `done` 0, `end` at `done == total`, along half a cosine:
    `end + (start - end) * (1 + cos(pi * done / total)) / 2`, in the order of operations `Cosine` always used."""
    return end + (start - end) * ((1.0 + math.cos(math.pi * done / total)) / 2.0)


class Fixed(LRPolicy):
    """A constant LR: every group keeps its base LR, or, with `lr` given, every group uses that absolute LR."""

    def __init__(self, lr: float | None = None) -> None:
        super().__init__()
        self.lr = None if lr is None else require_positive("lr", lr)

    def _lrs_at_reset(self) -> list[float]:
        return list(self.base_lrs) if self.lr is None else [self.lr] * len(self.base_lrs)

    def _update(self, obs: Observation) -> list[float]:
        return list(self.lrs)


class ClosedForm(LRPolicy):
    """An open-loop schedule given as a closed form of the tick: subclasses implement `_lrs_at(t)`, the LR of
    every group at tick `t` (from `base_lrs`); observations are ignored, so `state_dict` needs only the tick."""

    def _lrs_at_reset(self) -> list[float]:
        return self._lrs_at(0)

    def _update(self, obs: Observation) -> list[float]:
        return self._lrs_at(self.tick)

    def _lrs_at(self, t: int) -> list[float]:
        raise NotImplementedError


class StepDecay(ClosedForm):
    """`lr_t = base * gamma ** (t // step_size)`, like `torch.optim.lr_scheduler.StepLR`."""

    def __init__(self, step_size: int = 10, gamma: float = 0.1) -> None:
        super().__init__()
        self.step_size = require_int("step_size", step_size, minimum=1)
        self.gamma = require_in_range("gamma", gamma, 0.0, 1.0, high_closed=True)

    def _lrs_at(self, t: int) -> list[float]:
        return [base * self.gamma ** (t // self.step_size) for base in self.base_lrs]


class Cosine(ClosedForm):
    """Cosine annealing from each base LR down to `eta_min` over `t_max` ticks, then held at `eta_min`.

    `lr_t = eta_min + (base - eta_min) * (1 + cos(pi * t / t_max)) / 2` for `t <= t_max`, `eta_min` after.
    Up to `t_max` this equals `torch.optim.lr_scheduler.CosineAnnealingLR(T_max=t_max, eta_min=eta_min)`; past
    `t_max` torch's schedule climbs back up (it is periodic with period `2 * T_max`) while this one holds
    `eta_min`, which is what a run longer than its budget wants. `periodic=True` keeps the formula for every `t`,
    i.e. torch's cycling.
    """

    def __init__(self, t_max: int, eta_min: float = 1e-6, periodic: bool = False) -> None:
        super().__init__()
        self.t_max = require_int("t_max", t_max, minimum=1)
        self.eta_min = require_in_range("eta_min", eta_min, 0.0, math.inf, low_closed=True)
        self.periodic = require_bool("periodic", periodic)

    def _lrs_at(self, t: int) -> list[float]:
        if t >= self.t_max and not self.periodic:
            return [self.eta_min] * len(self.base_lrs)
        return [cosine_between(base, self.eta_min, t, self.t_max) for base in self.base_lrs]
