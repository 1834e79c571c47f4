"""A rule-based feedback controller: raise the LR while the watched loss falls fast, cut it on a rise or plateau.

The rule compares each observation with the previous one through the relative change
`rel = (prev - v) / |prev|` (positive means better, after `mode` normalisation), so the thresholds are scale-free.
Cuts are followed by `cooldown` ticks in which nothing changes, so the model gets to respond to the new LR before
it is judged again. Every LR is clamped to `[min_lr, max_lr]`, so the controller cannot run away.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from adaptive_lr.schedulers.base import BoundedPolicy, Observation, require_in_range, require_int

#: guard against dividing by a watched value of exactly zero
_REL_EPS = 1e-12


class Heuristic(BoundedPolicy):
    """Raise / cut / hold controller on the relative change of one watched metric.

    Args (defaults assume one observation per validation epoch):
        monitor: metric name to watch (from config, e.g. "val_loss").
        mode: "min" if lower is better, "max" if higher is better (e.g. accuracy).
        raise_threshold: relative improvement per tick above which the LR is raised (0.05: a 5% drop per
            epoch means the LR is working and may be pushed). In (0, 1).
        up_factor: multiplier on a raise (1.1: gentle, so several fast epochs are needed to double the LR). > 1.
        down_factor: multiplier on a cut (0.5: halve, decisive but recoverable by raises). In (0, 1).
        rise_tolerance: relative worsening tolerated without a cut (0.0: any rise cuts; use ~0.01 for noisy,
            per-step losses). >= 0.
        plateau_threshold: relative improvement at or below which a tick counts as "no progress"
            (1e-3: 0.1%). In [0, raise_threshold).
        patience: consecutive no-progress ticks before a plateau cut (2). int >= 1.
        cooldown: ticks after any cut in which the controller only waits (1). int >= 0.
        min_lr, max_lr, min_factor, max_factor: the LR bounds (`BoundedPolicy`): by default each group within
            [start x 1e-4, start x 100]; with min_lr and max_lr set, those (a start outside them is an error).
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "min",
        raise_threshold: float = 0.05,
        up_factor: float = 1.1,
        down_factor: float = 0.5,
        rise_tolerance: float = 0.0,
        plateau_threshold: float = 1e-3,
        patience: int = 2,
        cooldown: int = 1,
        min_lr: float | None = None,
        max_lr: float | None = None,
        min_factor: float = 1e-4,
        max_factor: float = 100.0,
    ) -> None:
        super().__init__(min_lr, max_lr, min_factor, max_factor)
        self._watch(monitor, mode)
        self.raise_threshold = require_in_range("raise_threshold", raise_threshold, 0.0, 1.0)
        self.up_factor = require_in_range("up_factor", up_factor, 1.0, math.inf)
        self.down_factor = require_in_range("down_factor", down_factor, 0.0, 1.0)
        self.rise_tolerance = require_in_range("rise_tolerance", rise_tolerance, 0.0, math.inf, low_closed=True)
        self.plateau_threshold = require_in_range(
            "plateau_threshold", plateau_threshold, 0.0, self.raise_threshold, low_closed=True
        )
        self.patience = require_int("patience", patience, minimum=1)
        self.cooldown = require_int("cooldown", cooldown, minimum=0)
        # counters (all in state_dict)
        self.prev: float | None = None  # last finite watched value, sign-normalised (lower is better)
        self.bad_count = 0  # consecutive no-progress ticks
        self.cooldown_left = 0  # ticks still to wait after the last cut

    def _lrs_at_reset(self) -> list[float]:
        self.prev, self.bad_count, self.cooldown_left = None, 0, 0
        return super()._lrs_at_reset()

    def _update(self, obs: Observation) -> list[float]:
        v = self.monitored_value(obs)  # raises KeyError naming the available metrics if the monitor is missing
        raw = float(obs.metrics[self.monitor])
        rel = math.nan
        factor = 1.0
        if not math.isfinite(v):
            # 1) NaN/inf: cut and wait; keep `prev` so the next finite value is judged against the last good one
            factor, action = self.down_factor, "cut_nonfinite"
            self.cooldown_left, self.bad_count = self.cooldown, 0
        elif self.prev is None:
            # 2) first finite value: nothing to compare with yet
            action = "hold"
        else:
            # 3) relative improvement, positive = better
            rel = (self.prev - v) / max(abs(self.prev), _REL_EPS)
            if self.cooldown_left > 0:
                # 4) waiting after a cut: change nothing, count nothing
                self.cooldown_left -= 1
                action, self.bad_count = "cooldown", 0
            elif rel > self.raise_threshold:
                # 5) falling fast: push the LR
                factor, action, self.bad_count = self.up_factor, "raise", 0
            elif rel < -self.rise_tolerance:
                # 6) got worse: cut and wait
                factor, action, self.bad_count = self.down_factor, "cut_rise", 0
                self.cooldown_left = self.cooldown
            else:
                # 7) plateau band: count no-progress ticks, cut once there are `patience` in a row
                self.bad_count = self.bad_count + 1 if rel <= self.plateau_threshold else 0
                if self.bad_count >= self.patience:
                    factor, action, self.bad_count = self.down_factor, "cut_plateau", 0
                    self.cooldown_left = self.cooldown
                else:
                    action = "hold"
        # 8) remember the last finite value; apply the factor to every group within [min_lr, max_lr]
        if math.isfinite(v):
            self.prev = v
        lrs = [self._clamp(lr * factor, i) for i, lr in enumerate(self.lrs)]
        extra = {"rel_change": rel, "bad_count": float(self.bad_count), "cooldown_left": float(self.cooldown_left)}
        return self._decided(action, lrs, raw, extra)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "prev": self.prev,
            "bad_count": self.bad_count,
            "cooldown_left": self.cooldown_left,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.prev = None if state["prev"] is None else float(state["prev"])
        self.bad_count = int(state["bad_count"])
        self.cooldown_left = int(state["cooldown_left"])
