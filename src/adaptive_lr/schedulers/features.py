"""State features for learned LR controllers, computed from the observation stream alone.

A learned controller (`adaptive_lr.schedulers.rl`) sees the run only through the observations it is driven with,
so its state is a handful of scale-free numbers about the recent past, always in the same order:

  slope       relative change of the watched metric since the last tick, sign-normalised so that lower is better
              (negative = improving), clipped to [-clip, clip]; a non-finite value counts as +clip (worst)
  noise       root of an EMA of the squared relative change: how much the watched value jumps per tick
  val_trend   EMA of the relative change of a validation loss (`val_key`, lower is better); 0 while absent
  grad_trend  relative change of a gradient-norm metric (`grad_norm_key`), clipped; 0 when not configured/absent
  log_lr      log(lr / base_lr): how far the controller has moved the LR from where the run started
  progress    tick / horizon, clipped to 1

Relative changes make the features independent of the loss scale, so one learned policy can be carried from one
run (or task) to another (`warm_start`). The extractor keeps only the previous values and two EMAs: O(1) state,
all of it in `state_dict`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from adaptive_lr.schedulers.base import (
    Observation,
    PolicyConfigError,
    require_in_range,
    require_int,
    require_mode,
    require_positive,
)

#: the feature vector's order; `FeatureExtractor.names` returns it, loggers and saved policies rely on it
FEATURE_NAMES: tuple[str, ...] = ("slope", "noise", "val_trend", "grad_trend", "log_lr", "progress")

#: guard against dividing by a value of exactly zero
_REL_EPS = 1e-12


def relative_change(prev: float, value: float) -> float:
    """`(value - prev) / |prev|` (positive = the value grew); NaN when either is non-finite."""
    if not (math.isfinite(prev) and math.isfinite(value)):
        return math.nan
    return (value - prev) / max(abs(prev), _REL_EPS)


def _clip(x: float, bound: float) -> float:
    return min(max(x, -bound), bound)


class FeatureExtractor:
    """Turns each observation into the fixed-order feature vector `FEATURE_NAMES` (see the module docstring).

    Args:
        monitor: the watched metric (the controller's `monitor`).
        mode: "min" or "max" for `monitor`; values are negated in "max" mode so that lower is better.
        horizon: ticks of a full run (e.g. `trainer.max_epochs` for per-epoch decisions); int >= 1.
        val_key: a validation loss (lower is better) for `val_trend`, or None.
        grad_norm_key: a gradient-norm metric for `grad_trend`, or None (the feature is then always 0).
        beta: EMA factor of `noise` and `val_trend`, in [0, 1) (0.8: about the last 5 ticks).
        clip: bound of the relative changes (1.0: a doubling counts as much as any larger jump); > 0.
    """

    def __init__(
        self,
        monitor: str,
        mode: str = "min",
        horizon: int = 100,
        val_key: str | None = "val_loss",
        grad_norm_key: str | None = None,
        beta: float = 0.8,
        clip: float = 1.0,
    ) -> None:
        for name, key in (("monitor", monitor), ("val_key", val_key), ("grad_norm_key", grad_norm_key)):
            if key is not None and not (isinstance(key, str) and key):
                raise PolicyConfigError(f"{name} must be a non-empty metric name, got {key!r}")
        if monitor is None:
            raise PolicyConfigError("monitor must be a non-empty metric name, got None")
        self.monitor, self.val_key, self.grad_norm_key = monitor, val_key, grad_norm_key
        self.mode = require_mode(mode)
        self.horizon = require_int("horizon", horizon, minimum=1)
        self.beta = require_in_range("beta", beta, 0.0, 1.0, low_closed=True)
        self.clip = require_positive("clip", clip)
        self.reset()

    @property
    def names(self) -> tuple[str, ...]:
        return FEATURE_NAMES

    def reset(self) -> None:
        self.prev: float | None = None  # last finite watched value (sign-normalised)
        self.prev_val: float | None = None  # last finite validation loss
        self.prev_grad: float | None = None  # last finite gradient norm
        self.noise_sq = 0.0  # EMA of the squared (clipped) relative change of the watched value
        self.val_trend = 0.0  # EMA of the (clipped) relative change of the validation loss
        self.last_change = math.nan  # unclipped relative change of the watched value at the last update
        self.trend = 0.0  # EMA of the (clipped) relative change of the watched value
        self.trend_before = 0.0  # `trend` before the last update: what the last change is compared with

    def update(self, obs: Observation, lr: float, base_lr: float, tick: int) -> list[float]:
        """The features after `obs`; `lr` is the LR the observed interval ran with, `tick` the controller's tick."""
        raw = float(obs.metrics[self.monitor])
        value = raw if self.mode == "min" else -raw
        # 1) watched value: relative change vs the last finite value; non-finite = worst, and not remembered
        if not math.isfinite(value):
            self.last_change, slope = math.nan, self.clip
        elif self.prev is None:
            self.last_change, slope = math.nan, 0.0
        else:
            self.last_change = relative_change(self.prev, value)
            slope = _clip(self.last_change, self.clip)
        if math.isfinite(value):
            self.prev = value
        # 2) noise: RMS of recent changes, and their trend (the first tick carries no change and leaves both alone)
        self.trend_before = self.trend
        if not math.isfinite(value) or not math.isnan(self.last_change):
            self.noise_sq = self.beta * self.noise_sq + (1.0 - self.beta) * slope * slope
            self.trend = self.beta * self.trend + (1.0 - self.beta) * slope
        # 3) validation trend and gradient-norm change, each only from finite values that are present
        self.prev_val, val_change = self._change(self.val_key, obs, self.prev_val)
        if val_change is not None:
            self.val_trend = self.beta * self.val_trend + (1.0 - self.beta) * val_change
        self.prev_grad, grad_change = self._change(self.grad_norm_key, obs, self.prev_grad)
        # 4) where the LR stands and how far the run is
        log_lr = math.log(lr / base_lr)
        progress = min(tick / self.horizon, 1.0)
        return [slope, math.sqrt(self.noise_sq), self.val_trend, grad_change or 0.0, log_lr, progress]

    def _change(self, key: str | None, obs: Observation, prev: float | None) -> tuple[float | None, float | None]:
        """(new previous value, clipped relative change or None) for an optional metric."""
        if key is None or key not in obs.metrics:
            return prev, None
        value = float(obs.metrics[key])
        if not math.isfinite(value):
            return prev, self.clip
        change = None if prev is None else _clip(relative_change(prev, value), self.clip)
        return value, change

    # -- persistence ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "prev": self.prev,
            "prev_val": self.prev_val,
            "prev_grad": self.prev_grad,
            "noise_sq": self.noise_sq,
            "val_trend": self.val_trend,
            "last_change": self.last_change,
            "trend": self.trend,
            "trend_before": self.trend_before,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        def opt(x: Any) -> float | None:
            return None if x is None else float(x)

        self.prev, self.prev_val, self.prev_grad = opt(state["prev"]), opt(state["prev_val"]), opt(state["prev_grad"])
        self.noise_sq = float(state["noise_sq"])
        self.val_trend = float(state["val_trend"])
        self.last_change = float(state["last_change"])
        self.trend = float(state["trend"])
        self.trend_before = float(state["trend_before"])
