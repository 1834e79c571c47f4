"""More open-loop schedules as closed forms of the tick: torch's remaining schedulers and budgeted contenders.

- `MultiStep`, `Exponential`, `Polynomial`, `CosineWarmRestarts`, `OneCycle`: the LRs of their
  `torch.optim.lr_scheduler` namesakes, tick for tick (tests compare them over 100+ ticks).
- `LinearDecay` (linear decay to zero, or to a floor) and `WSD` (warmup, stable, decay): the budgeted schedules
  the literature compares against; both end at their floor at tick `total_steps` and hold it after.

A schedule's budget (`total_steps`, `total_iters`) counts ticks: epochs with `interval: epoch`, optimizer steps
with `interval: step` (the configs take it from `${trainer.max_epochs}`, as `cosine.yaml` does).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from adaptive_lr.schedulers.base import (
    PolicyConfigError,
    require_bool,
    require_choice,
    require_in_range,
    require_int,
    require_positive,
)
from adaptive_lr.schedulers.baselines import ClosedForm, cosine_between, linear_between


def _require_non_negative(name: str, value: float) -> float:
    return require_in_range(name, value, 0.0, math.inf, low_closed=True)


class MultiStep(ClosedForm):
    """`lr_t = base * gamma ** (number of milestones <= t)`, like `torch.optim.lr_scheduler.MultiStepLR`
    (a milestone listed twice decays twice, as there)."""

    def __init__(self, milestones: Sequence[int], gamma: float = 0.1) -> None:
        super().__init__()
        if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Sequence) or not milestones:
            raise PolicyConfigError(f"milestones must be a non-empty list of ticks, got {milestones!r}")
        self.milestones = sorted(require_int("milestones", m, minimum=0) for m in milestones)
        self.gamma = require_positive("gamma", gamma)

    def _lrs_at(self, t: int) -> list[float]:
        return [base * self.gamma ** bisect.bisect_right(self.milestones, t) for base in self.base_lrs]


class Exponential(ClosedForm):
    """`lr_t = base * gamma ** t`, like `torch.optim.lr_scheduler.ExponentialLR`."""

    def __init__(self, gamma: float) -> None:
        super().__init__()
        self.gamma = require_positive("gamma", gamma)

    def _lrs_at(self, t: int) -> list[float]:
        return [base * self.gamma**t for base in self.base_lrs]


class Polynomial(ClosedForm):
    """`lr_t = base * (1 - min(t, total_iters) / total_iters) ** power`, like `torch.optim.lr_scheduler.PolynomialLR`
    (zero from `total_iters` on when `power > 0`)."""

    def __init__(self, total_iters: int = 5, power: float = 1.0) -> None:
        super().__init__()
        self.total_iters = require_int("total_iters", total_iters, minimum=1)
        self.power = _require_non_negative("power", power)

    def _lrs_at(self, t: int) -> list[float]:
        return [base * (1.0 - min(self.total_iters, t) / self.total_iters) ** self.power for base in self.base_lrs]


class CosineWarmRestarts(ClosedForm):
    """Cosine annealing restarted every cycle (SGDR), like `torch.optim.lr_scheduler.CosineAnnealingWarmRestarts`.

    The first cycle lasts `t_0` ticks and each next one `t_mult` times longer. Within a cycle, at `t_cur` ticks
    since its restart: `lr = eta_min + (base - eta_min) * (1 + cos(pi * t_cur / t_i)) / 2`.
    """

    def __init__(self, t_0: int, t_mult: int = 1, eta_min: float = 0.0) -> None:
        super().__init__()
        self.t_0 = require_int("t_0", t_0, minimum=1)
        self.t_mult = require_int("t_mult", t_mult, minimum=1)
        self.eta_min = _require_non_negative("eta_min", eta_min)

    def _lrs_at(self, t: int) -> list[float]:
        # walk the cycles: one subtraction per restart so far (t_mult > 1 makes them few)
        t_cur, t_i = t, self.t_0
        while t_cur >= t_i:
            t_cur, t_i = t_cur - t_i, t_i * self.t_mult
        return [cosine_between(base, self.eta_min, t_cur, t_i) for base in self.base_lrs]


class OneCycle(ClosedForm):
    """The 1cycle policy with `torch.optim.lr_scheduler.OneCycleLR`'s LRs; each group's base LR is its peak.

    With `peak = base`, `start = peak / div_factor` and `floor = start / final_div_factor`, over `total_steps` ticks:
      1) up from `start` to `peak` until tick `pct_start * total_steps - 1`;
      2) (`three_phase` only) back down to `start` until tick `2 * pct_start * total_steps - 2`;
      3) down to `floor` at tick `total_steps - 1`, then held there (torch raises past `total_steps` instead).
    Each phase anneals along half a cosine (`anneal_strategy="cos"`) or a straight line (`"linear"`). Momentum is
    not cycled (a policy sets LRs only): compare with torch's `OneCycleLR(..., cycle_momentum=False)`.
    """

    def __init__(
        self,
        total_steps: int,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
    ) -> None:
        super().__init__()
        self.total_steps = require_int("total_steps", total_steps, minimum=1)
        self.pct_start = require_in_range("pct_start", pct_start, 0.0, 1.0, low_closed=True, high_closed=True)
        self.anneal_strategy = require_choice("anneal_strategy", anneal_strategy, ("cos", "linear"))
        self.div_factor = require_positive("div_factor", div_factor)
        self.final_div_factor = require_positive("final_div_factor", final_div_factor)
        self.three_phase = require_bool("three_phase", three_phase)
        # (end tick, LR at the start, LR at the end) per phase, LRs named as in the docstring; torch's boundaries
        warm = float(self.pct_start * self.total_steps) - 1
        if three_phase:
            back = float(2 * self.pct_start * self.total_steps) - 2
            self._phases = [(warm, "start", "peak"), (back, "peak", "start"), (self.total_steps - 1, "start", "floor")]
        else:
            self._phases = [(warm, "start", "peak"), (self.total_steps - 1, "peak", "floor")]
        ends = [0.0] + [end for end, _, _ in self._phases]
        if any(a == b for a, b in zip(ends, ends[1:], strict=False)):
            raise PolicyConfigError(
                f"pct_start * total_steps gives a phase of zero length (pct_start={pct_start!r}, "
                f"total_steps={total_steps!r}): change either"
            )

    def _lrs_at(self, t: int) -> list[float]:
        t = min(t, self.total_steps - 1)
        anneal = cosine_between if self.anneal_strategy == "cos" else linear_between
        lrs = []
        for base in self.base_lrs:
            start = base / self.div_factor
            named = {"peak": base, "start": start, "floor": start / self.final_div_factor}
            begin = 0.0
            for i, (end, first, last) in enumerate(self._phases):
                if t <= end or i == len(self._phases) - 1:
                    lrs.append(anneal(named[first], named[last], (t - begin) / (end - begin)))
                    break
                begin = end
        return lrs


class LinearDecay(ClosedForm):
    """Linear decay from each base LR to `eta_min` (default zero) at tick `total_steps`, held after:
    `lr_t = eta_min + (base - eta_min) * (1 - min(t, total_steps) / total_steps)`.

    With `eta_min=0` this is `torch.optim.lr_scheduler.LinearLR(start_factor=1, end_factor=0,
    total_iters=total_steps)`. With a tick per epoch and `total_steps` the epoch budget, the last epoch trains at
    `base / total_steps` and the LR reaches the floor when the budget ends.
    """

    def __init__(self, total_steps: int, eta_min: float = 0.0) -> None:
        super().__init__()
        self.total_steps = require_int("total_steps", total_steps, minimum=1)
        self.eta_min = _require_non_negative("eta_min", eta_min)

    def _lrs_at(self, t: int) -> list[float]:
        remaining = 1.0 - min(t, self.total_steps) / self.total_steps
        return [linear_between(self.eta_min, base, remaining) for base in self.base_lrs]


class WSD(ClosedForm):
    """Warmup-stable-decay: a linear warmup, the base LR held, then a cooldown over the last part of the budget.

    With `T = total_steps`, `w = warmup_fraction * T` and the cooldown starting at `s = (1 - cooldown_fraction) * T`:
      1) `t < w`: `base * (start_factor + (1 - start_factor) * t / w)` (the `Warmup` ramp);
      2) `w <= t < s`: `base`;
      3) `s <= t < T`: with `p = (t - s) / (T - s)`, `eta_min + (base - eta_min) * (1 - p)` for `shape="linear"`,
         or `* (1 - sqrt(p))` for `shape="1-sqrt"` (Hägele et al. 2024, whose best cooldown is 1-sqrt over 20%);
      4) `t >= T`: `eta_min`.
    """

    def __init__(
        self,
        total_steps: int,
        warmup_fraction: float = 0.0,
        cooldown_fraction: float = 0.2,
        shape: str = "linear",
        eta_min: float = 0.0,
        start_factor: float = 0.1,
    ) -> None:
        super().__init__()
        self.total_steps = require_int("total_steps", total_steps, minimum=1)
        self.warmup_fraction = require_in_range("warmup_fraction", warmup_fraction, 0.0, 1.0, low_closed=True)
        self.cooldown_fraction = require_in_range(
            "cooldown_fraction", cooldown_fraction, 0.0, 1.0 - self.warmup_fraction, high_closed=True
        )
        self.shape = require_choice("shape", shape, ("linear", "1-sqrt"))
        self.eta_min = _require_non_negative("eta_min", eta_min)
        self.start_factor = require_in_range("start_factor", start_factor, 0.0, 1.0, high_closed=True)

    def factor_and_floor(self, t: int) -> tuple[float, float]:
        """`(f, floor)` with `lr_t = floor + (base - floor) * f`: the rule's steps 1-4 for one tick."""
        warmup = self.warmup_fraction * self.total_steps
        cooldown_start = (1.0 - self.cooldown_fraction) * self.total_steps
        if t < warmup:
            return linear_between(self.start_factor, 1.0, t / warmup), 0.0
        if t < cooldown_start:
            return 1.0, 0.0
        if t < self.total_steps:
            p = (t - cooldown_start) / (self.total_steps - cooldown_start)
            return (1.0 - p if self.shape == "linear" else 1.0 - math.sqrt(p)), self.eta_min
        return 0.0, self.eta_min

    def _lrs_at(self, t: int) -> list[float]:
        f, floor = self.factor_and_floor(t)
        return [linear_between(floor, base, f) for base in self.base_lrs]
