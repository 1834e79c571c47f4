"""`Plateau`: PyTorch's `ReduceLROnPlateau` as a policy, the standard reference feedback controller.

Its LRs equal `torch.optim.lr_scheduler.ReduceLROnPlateau`'s on any metric sequence (tests step both side by side
on a real optimizer with two param groups), so "plateau" in a comparison is what people actually run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from adaptive_lr.schedulers.base import (
    LRPolicy,
    Observation,
    PolicyConfigError,
    require_choice,
    require_in_range,
    require_int,
)


class Plateau(LRPolicy):
    """Cut every group's LR by `factor` once the watched metric has not improved for more than `patience` ticks.

    Each observation, with `best` the best value so far (starting at the worst possible, so the first finite
    value is always an improvement):
      1) it improves when it beats `best` by more than `threshold`: `rel` mode compares with
         `best * (1 - threshold)` (`mode="min"`) or `best * (1 + threshold)` (`"max"`), `abs` mode with
         `best - threshold` or `best + threshold`; an improvement becomes `best` and clears the bad count, anything
         else (NaN included) adds one bad tick;
      2) during a cooldown (the `cooldown` ticks after a cut) the cooldown counts down and bad ticks are forgotten;
      3) more than `patience` bad ticks: every group's LR becomes `max(lr * factor, min_lr)`, skipped for a group
         whose LR would move by `eps` or less; the cooldown starts and the bad count clears.

    Args:
        monitor: metric name to watch (from config, e.g. "val_loss").
        mode: "min" if lower is better, "max" if higher is better.
        factor: multiplier on a cut. In (0, 1).
        patience: bad ticks tolerated before a cut (0: cut on the first). int >= 0.
        threshold: how much better than `best` counts as an improvement. >= 0.
        threshold_mode: "rel" (relative to `best`) or "abs".
        cooldown: ticks after a cut in which bad ticks are not counted. int >= 0.
        min_lr: floor of every group's LR (a number), or one floor per group (a list). >= 0.
        eps: smallest LR change applied. >= 0.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | Sequence[float] = 0.0,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        self._watch(monitor, mode)
        self.factor = require_in_range("factor", factor, 0.0, 1.0)
        self.patience = require_int("patience", patience, minimum=0)
        self.threshold = require_in_range("threshold", threshold, 0.0, math.inf, low_closed=True)
        self.threshold_mode = require_choice("threshold_mode", threshold_mode, ("rel", "abs"))
        self.cooldown = require_int("cooldown", cooldown, minimum=0)
        if isinstance(min_lr, Sequence) and not isinstance(min_lr, str):
            self.min_lr: float | list[float] = [self._floor(value) for value in min_lr]
        else:
            self.min_lr = self._floor(min_lr)
        self.eps = require_in_range("eps", eps, 0.0, math.inf, low_closed=True)
        # counters (all in state_dict)
        self.best = self._worst
        self.num_bad = 0  # bad ticks since the last improvement (or cut, or cooldown tick)
        self.cooldown_left = 0

    @staticmethod
    def _floor(value: float) -> float:
        return require_in_range("min_lr", value, 0.0, math.inf, low_closed=True)

    @property
    def _worst(self) -> float:
        return math.inf if self.mode == "min" else -math.inf

    def _min_lrs(self) -> list[float]:
        if isinstance(self.min_lr, list):
            return list(self.min_lr)
        return [self.min_lr] * len(self.base_lrs)

    def is_better(self, value: float, best: float) -> bool:
        """Step 1 of the rule: `value` improves on `best` by more than the threshold (False for NaN)."""
        if self.mode == "min":
            return value < (best * (1.0 - self.threshold) if self.threshold_mode == "rel" else best - self.threshold)
        return value > (best * (self.threshold + 1.0) if self.threshold_mode == "rel" else best + self.threshold)

    def _lrs_at_reset(self) -> list[float]:
        if isinstance(self.min_lr, list) and len(self.min_lr) != len(self.base_lrs):
            raise PolicyConfigError(
                f"min_lr has {len(self.min_lr)} values but the optimizer has {len(self.base_lrs)} param groups"
            )
        self.best, self.num_bad, self.cooldown_left = self._worst, 0, 0
        return list(self.base_lrs)

    def _update(self, obs: Observation) -> list[float]:
        self.monitored_value(obs)  # raises KeyError naming the available metrics if the monitor is missing
        value = float(obs.metrics[self.monitor])
        # 1) improvement over the best so far, or one more bad tick
        if self.is_better(value, self.best):
            self.best, self.num_bad = value, 0
        else:
            self.num_bad += 1
        # 2) cooldown: count it down, forget bad ticks
        action = "hold"
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.num_bad = 0
            action = "cooldown"
        # 3) out of patience: cut each group to its floor at most, unless the change is within eps
        lrs = list(self.lrs)
        if self.num_bad > self.patience:
            for i, (lr, floor) in enumerate(zip(self.lrs, self._min_lrs(), strict=True)):
                cut = max(lr * self.factor, floor)
                if lr - cut > self.eps:
                    lrs[i] = cut
            self.cooldown_left, self.num_bad = self.cooldown, 0
            action = "cut_plateau"
        extra = {"best": self.best, "bad_count": float(self.num_bad), "cooldown_left": float(self.cooldown_left)}
        return self._decided(action, lrs, value, extra)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "best": self.best, "num_bad": self.num_bad,
                "cooldown_left": self.cooldown_left}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.best = float(state["best"])
        self.num_bad = int(state["num_bad"])
        self.cooldown_left = int(state["cooldown_left"])
