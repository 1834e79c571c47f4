"""`PlateauFeedback`: a feedback controller that judges progress against the best value so far, on a smoothed signal.

It keeps the old `Heuristic` (which compares each value with the previous one and cuts on any rise) for
comparison, and fixes what made that one fire on noise:
  - progress is judged against the BEST smoothed value so far under a threshold (ReduceLROnPlateau's
    `threshold_mode`), so a slow steady gain keeps registering as progress and a bounce after a new best is not
    mistaken for one;
  - the signal is an exponential moving average (bias-corrected) of every observed value, so it can watch the
    noisy step-level training loss (`train_loss_step`, added by `LRControl` on step decisions) as well as an epoch
    metric such as `val_loss`;
  - it decides every `decide_every` ticks, so with `interval: step` the EMA takes in every observed step while
    decisions come at a coarser step interval; with `interval: epoch` and `decide_every: 1` it decides per epoch;
  - it raises the LR only after `raise_patience` improving decisions in a row;
  - its bounds are multiples of the starting LR (`min_factor <= 1 <= max_factor`), so the start is never clamped.

Every group's LR is its base LR times one shared `scale`, so the groups keep their ratios.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from adaptive_lr.schedulers.base import (
    LRPolicy,
    Observation,
    require_choice,
    require_factor_bounds,
    require_in_range,
    require_int,
)


class PlateauFeedback(LRPolicy):
    """Cut on a plateau of the smoothed signal, raise on sustained improvement, both judged against the best so far.

    Each tick (one `observe`), with `v` the watched value sign-normalised so that lower is better:
      1) non-finite `v`: cut now (`cut_nonfinite`, on any tick), start the cooldown, clear both streaks; `v` is not
         smoothed in, so the signal stays finite;
      2) otherwise smooth it: `ema = smoothing * ema + (1 - smoothing) * v`, `signal = ema / (1 - smoothing ** n)`
         after `n` finite values (Adam's bias correction: `signal == v` when `smoothing` is 0);
      3) ticks that are not a multiple of `decide_every` stop here: no decision, the LR is unchanged; so do ticks
         before the EMA has taken in its window, `ceil(1 / (1 - smoothing))` finite values (1 without smoothing),
         so that an early lucky value does not become a `best` the average can never beat again;
      4) the first decision only records `best = signal` (`hold`);
      5) the signal improves when `signal < best - threshold * |best|` (`rel`) or `signal < best - threshold`
         (`abs`); an improvement becomes `best` (also during the cooldown);
      6) during the cooldown (the `cooldown` decisions after a cut) the cooldown counts down and both streaks clear
         (`cooldown`);
      7) an improvement clears the bad streak and extends the improving streak; at `raise_patience` improving
         decisions in a row the scale is multiplied by `up_factor`, at most `max_factor` (`raise`), and the
         improving streak clears (0 disables raising). Otherwise `hold`;
      8) no improvement clears the improving streak and extends the bad streak; at `patience` bad decisions in a
         row the scale is multiplied by `factor`, at least `min_factor` (`cut_plateau`), the bad streak clears and
         the cooldown starts. Otherwise `hold`.
    A decision is recorded (`last_decision`) on decision ticks and on non-finite values only; its action names
    what the rule decided even when a bound left the LR where it was (`Decision.factor` is then 1).

    Args:
        monitor: metric to watch (from config): `train_loss_step` with `interval: step`, or an epoch metric such as
            `val_loss` with `interval: epoch`.
        mode: "min" if lower is better, "max" if higher is better.
        smoothing: EMA coefficient in [0, 1) (0: judge the raw values).
        decide_every: ticks per decision (int >= 1).
        threshold: how much better than `best` counts as an improvement (>= 0).
        threshold_mode: "rel" (a fraction of `|best|`) or "abs".
        factor: multiplier on a cut, in (0, 1).
        patience: bad decisions in a row that trigger a cut (int >= 1).
        cooldown: decisions after a cut in which nothing is judged (int >= 0).
        up_factor: multiplier on a raise (> 1).
        raise_patience: improving decisions in a row that trigger a raise (int >= 0; 0: never raise).
        min_factor, max_factor: the LR stays within `[min_factor, max_factor]` times the starting LR;
            `0 < min_factor <= 1 <= max_factor`.
    """

    def __init__(
        self,
        monitor: str = "train_loss_step",
        mode: str = "min",
        smoothing: float = 0.9,
        decide_every: int = 1,
        threshold: float = 1e-2,
        threshold_mode: str = "rel",
        factor: float = 0.5,
        patience: int = 3,
        cooldown: int = 1,
        up_factor: float = 1.25,
        raise_patience: int = 4,
        min_factor: float = 1e-3,
        max_factor: float = 4.0,
    ) -> None:
        super().__init__()
        self._watch(monitor, mode)
        self.smoothing = require_in_range("smoothing", smoothing, 0.0, 1.0, low_closed=True)
        self.decide_every = require_int("decide_every", decide_every, minimum=1)
        self.window = math.ceil(1.0 / (1.0 - self.smoothing) - 1e-9)  # values the EMA takes in before a decision
        self.threshold = require_in_range("threshold", threshold, 0.0, math.inf, low_closed=True)
        self.threshold_mode = require_choice("threshold_mode", threshold_mode, ("rel", "abs"))
        self.factor = require_in_range("factor", factor, 0.0, 1.0)
        self.patience = require_int("patience", patience, minimum=1)
        self.cooldown = require_int("cooldown", cooldown, minimum=0)
        self.up_factor = require_in_range("up_factor", up_factor, 1.0, math.inf)
        self.raise_patience = require_int("raise_patience", raise_patience, minimum=0)
        self.min_factor, self.max_factor = require_factor_bounds(min_factor, max_factor)
        self._clear()

    def _clear(self) -> None:
        # counters (all in state_dict)
        self.scale = 1.0  # every group's LR over its base LR
        self.ema = 0.0  # biased EMA of the finite watched values (sign-normalised)
        self.n_values = 0  # finite values smoothed in so far (for the bias correction)
        self.best: float | None = None  # best smoothed signal at a decision so far (sign-normalised)
        self.bad_count = 0  # decisions in a row without improvement
        self.good_count = 0  # improving decisions in a row
        self.cooldown_left = 0  # decisions still to wait after the last cut

    def _lrs_at_reset(self) -> list[float]:
        self._clear()
        return list(self.base_lrs)

    def improves(self, signal: float, best: float) -> bool:
        """Step 5 of the rule: `signal` (lower is better) beats `best` by more than the threshold."""
        margin = self.threshold * abs(best) if self.threshold_mode == "rel" else self.threshold
        return signal < best - margin

    def _update(self, obs: Observation) -> list[float]:
        v = self.monitored_value(obs)  # raises KeyError naming the available metrics if the monitor is missing
        if not math.isfinite(v):
            # 1) NaN/inf: cut at once, wait, forget both streaks
            self.bad_count = self.good_count = 0
            self.cooldown_left = self.cooldown
            return self._act("cut_nonfinite", self.factor, float(obs.metrics[self.monitor]))
        # 2) smooth
        self.n_values += 1
        self.ema = self.smoothing * self.ema + (1.0 - self.smoothing) * v
        signal = self.ema / (1.0 - self.smoothing**self.n_values)
        # 3) not a decision tick, or the EMA has not filled its window yet
        if self.tick % self.decide_every or self.n_values < self.window:
            return list(self.lrs)
        shown = signal if self.mode == "min" else -signal  # in the metric's own sign, for logging
        if self.best is None:
            # 4) first decision: nothing to compare with yet
            self.best = signal
            return self._act("hold", 1.0, shown)
        # 5) improvement over the best so far
        improved = self.improves(signal, self.best)
        if improved:
            self.best = signal
        if self.cooldown_left > 0:
            # 6) waiting after a cut: judge nothing
            self.cooldown_left -= 1
            self.bad_count = self.good_count = 0
            return self._act("cooldown", 1.0, shown)
        if improved:
            # 7) progress: raise only after raise_patience improving decisions in a row
            self.bad_count, self.good_count = 0, self.good_count + 1
            if self.raise_patience and self.good_count >= self.raise_patience:
                self.good_count = 0
                return self._act("raise", self.up_factor, shown)
            return self._act("hold", 1.0, shown)
        # 8) no progress: cut after patience bad decisions in a row
        self.good_count, self.bad_count = 0, self.bad_count + 1
        if self.bad_count >= self.patience:
            self.bad_count, self.cooldown_left = 0, self.cooldown
            return self._act("cut_plateau", self.factor, shown)
        return self._act("hold", 1.0, shown)

    def _act(self, action: str, multiplier: float, value: float) -> list[float]:
        """Scale by `multiplier` within `[min_factor, max_factor]`, record the decision, return the LRs."""
        self.scale = min(max(self.scale * multiplier, self.min_factor), self.max_factor)
        lrs = [base * self.scale for base in self.base_lrs]
        best = math.nan if self.best is None else (self.best if self.mode == "min" else -self.best)
        extra = {"best": best, "bad_count": float(self.bad_count), "good_count": float(self.good_count),
                 "cooldown_left": float(self.cooldown_left)}
        return self._decided(action, lrs, value, extra)

    # -- persistence ---------------------------------------------------------------------------------------------
    _COUNTERS = ("scale", "ema", "n_values", "best", "bad_count", "good_count", "cooldown_left")

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **{name: getattr(self, name) for name in self._COUNTERS}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.scale, self.ema = float(state["scale"]), float(state["ema"])
        self.best = None if state["best"] is None else float(state["best"])
        self.n_values, self.bad_count, self.good_count, self.cooldown_left = (
            int(state[name]) for name in ("n_values", "bad_count", "good_count", "cooldown_left")
        )
