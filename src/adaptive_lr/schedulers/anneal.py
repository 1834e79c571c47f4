"""`TerminalAnneal`: warmup-stable-decay whose stable phase is steered by a feedback controller.

The open-loop `WSD` holds the base LR between its warmup and its cooldown; here an inner policy (e.g.
`PlateauFeedback`) sets the LR there instead, and the cooldown starts from whatever LR the controller had reached.
The warmup ramp and the cooldown shape are `WSD.factor_and_floor` itself, not a copy, so the ablation "feedback vs
an open-loop constant with the same cooldown" (`feedback_wsd` vs `wsd`) differs in the stable phase only: with an
inner `Fixed` policy this is `WSD` tick for tick.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adaptive_lr.schedulers.base import LRPolicy, Observation, PolicyConfigError
from adaptive_lr.schedulers.baselines import linear_between
from adaptive_lr.schedulers.schedules import WSD

#: WSD's argument names -> TerminalAnneal's
_OUR_NAMES = {"total_steps": "total", "cooldown_fraction": "fraction", "eta_min": "floor"}


def _inner(name: str) -> property:
    """A read-only attribute of the wrapped policy (what the drivers ask a policy about)."""
    return property(lambda self: getattr(self.policy, name), doc=f"The inner policy's `{name}`.")


class TerminalAnneal(LRPolicy):
    """An inner policy steers the LR until the last `fraction` of the budget, which anneals it to `floor`.

    With `T = total`, `s = (1 - fraction) * T` and `(f_t, floor_t) = WSD(T, warmup_fraction, fraction, shape,
    floor).factor_and_floor(t)`, the LRs of tick `t` are:
      1) `t < s`: the inner policy's LRs (it observes every tick as if it ran alone) times `f_t`, i.e. the WSD
         warmup ramp over the first `warmup_fraction` of the budget, then 1;
      2) from the first tick `t >= s` on the inner policy is no longer asked, so its LRs stay those it had reached
         (its last decision, unscaled): the anchor;
      3) `t >= s`: `floor_t + (anchor - floor_t) * f_t`, WSD's cooldown from the anchor instead of the base LR:
         with `p = (t - s) / (T - s)`, `f_t = 1 - sqrt(p)` (`shape="1-sqrt"`) or `1 - p` (`"linear"`); it equals
         `floor` exactly at tick `T` (the budget's end: the LR after the last decision of a run of `T` ticks) and
         stays there.
    During 1) `last_decision` is the inner policy's (its unscaled LRs); during 3) every tick records an `anneal`
    decision. `monitor`, `mode`, `needs_probe`, `decides_before_step`, `learns`, `save_learned` and `bind` are the
    inner policy's.

    Args:
        policy: the controller of the stable phase (any `LRPolicy`).
        total: the budget in ticks (epochs with `interval: epoch`; decisions, i.e. optimizer steps / frequency,
            with `interval: step`), int >= 1.
        fraction: the annealed last part of the budget, in (0, 1 - warmup_fraction].
        shape: "1-sqrt" (Hägele et al. 2024) or "linear".
        floor: the LR reached at the end (absolute, >= 0; keep it below the controller's lowest LR).
        warmup_fraction, start_factor: WSD's warmup (0: none), so that `feedback_wsd` and `wsd` share it too.
    """

    monitor = _inner("monitor")  # type: ignore[assignment]
    mode = _inner("mode")  # type: ignore[assignment]
    needs_probe = _inner("needs_probe")  # type: ignore[assignment]
    decides_before_step = _inner("decides_before_step")  # type: ignore[assignment]
    learns = _inner("learns")  # type: ignore[assignment]

    def __init__(
        self,
        policy: LRPolicy,
        total: int,
        fraction: float = 0.2,
        shape: str = "1-sqrt",
        floor: float = 0.0,
        warmup_fraction: float = 0.0,
        start_factor: float = 0.1,
    ) -> None:
        super().__init__()
        if not isinstance(policy, LRPolicy):
            raise PolicyConfigError(f"policy must be an LRPolicy, got {type(policy).__name__}")
        self.policy = policy
        try:  # the open-loop WSD's schedule; its validation names WSD's argument, renamed to ours
            self.schedule = WSD(total_steps=total, warmup_fraction=warmup_fraction, cooldown_fraction=fraction,
                                shape=shape, eta_min=floor, start_factor=start_factor)
        except PolicyConfigError as err:
            name, _, rest = str(err).partition(" must ")
            raise PolicyConfigError(f"{_OUR_NAMES.get(name, name)} must {rest}") from err
        self.start = (1.0 - self.schedule.cooldown_fraction) * self.schedule.total_steps  # `s` of the rule

    def save_learned(self, path: Any) -> None:
        self.policy.save_learned(path)

    def bind(self, optimizer: Any, probe: Any = None) -> None:
        self.policy.bind(optimizer, probe)

    def _lrs_at_reset(self) -> list[float]:
        self.policy.reset(self.base_lrs)
        return self._lrs()

    def _update(self, obs: Observation) -> list[float]:
        if self.tick < self.start:
            self.policy.observe(obs)
            self.last_decision = self.policy.last_decision
            return self._lrs()
        return self._decided("anneal", self._lrs())

    def _lrs(self) -> list[float]:
        """Steps 1-3 of the rule for the current tick, from the inner policy's current LRs (the anchor once the
        anneal has begun, since it no longer observes)."""
        f, floor = self.schedule.factor_and_floor(self.tick)
        if self.tick < self.start:
            return [lr * f for lr in self.policy.lrs]
        return [linear_between(floor, lr, f) for lr in self.policy.lrs]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "inner": self.policy.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.policy.load_state_dict(state["inner"])
