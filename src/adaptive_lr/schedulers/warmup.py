"""`Warmup`: a linear warmup in front of any policy, feedback controllers included.

A scheduler config composes it (configs/scheduler/_base_.yaml): `scheduler.build` is `with_warmup` around
`scheduler.policy` with `scheduler.warmup`'s ticks and start factor, so the runner builds one object whatever the
policy, and a config with `warmup.ticks: 0` gets the bare policy (its checkpointed state and its driver's state key
are the policy's own).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adaptive_lr.schedulers.base import (
    LRPolicy,
    Observation,
    PolicyConfigError,
    require_in_range,
    require_int,
)


def with_warmup(policy: LRPolicy, ticks: int = 0, start_factor: float = 0.1) -> LRPolicy:
    """`policy` behind a linear warmup over its first `ticks` ticks (`Warmup`); `policy` itself when `ticks` is 0."""
    if require_int("ticks", ticks, minimum=0) == 0:
        return policy
    return Warmup(policy, warmup=ticks, start_factor=start_factor)


class Warmup(LRPolicy):
    """Linear warmup in front of any policy: the inner policy's LRs times a factor that climbs to 1.

    `factor_t = start_factor + (1 - start_factor) * min(t, warmup) / warmup`, which is
    `torch.optim.lr_scheduler.LinearLR(start_factor, end_factor=1.0, total_iters=warmup)`.

    The inner policy sees every observation, from tick 1, as if it ran alone; only its output is scaled, so a
    feedback controller's clamping bounds apply before the warmup factor. `monitor`, `mode`, `needs_metrics`,
    `needs_probe`, `decides_before_step`, `learns`, `save_learned`, `bind` and `last_decision` are the inner
    policy's (its `Decision` keeps the inner, unscaled LRs; the applied ones are in `lrs`).
    """

    def __init__(self, policy: LRPolicy, warmup: int, start_factor: float = 0.1) -> None:
        super().__init__()
        if not isinstance(policy, LRPolicy):
            raise PolicyConfigError(f"policy must be an LRPolicy, got {type(policy).__name__}")
        self.policy = policy
        self.warmup = require_int("warmup", warmup, minimum=1)
        self.start_factor = require_in_range("start_factor", start_factor, 0.0, 1.0, high_closed=True)

    @property
    def monitor(self) -> str | None:  # type: ignore[override]
        return self.policy.monitor

    @property
    def mode(self):  # type: ignore[override]
        return self.policy.mode

    @property
    def needs_probe(self) -> bool:  # type: ignore[override]
        return self.policy.needs_probe

    @property
    def decides_before_step(self) -> bool:  # type: ignore[override]
        return self.policy.decides_before_step

    @property
    def learns(self) -> bool:  # type: ignore[override]
        return self.policy.learns

    def save_learned(self, path: Any) -> None:
        self.policy.save_learned(path)

    def bind(self, optimizer: Any, probe: Any = None) -> None:
        self.policy.bind(optimizer, probe)

    def factor(self, t: int) -> float:
        return self.start_factor + (1.0 - self.start_factor) * min(t, self.warmup) / self.warmup

    def _lrs_at_reset(self) -> list[float]:
        return self._scaled(self.policy.reset(self.base_lrs))

    def _update(self, obs: Observation) -> list[float]:
        lrs = self.policy.observe(obs)
        self.last_decision = self.policy.last_decision
        return self._scaled(lrs)

    def _scaled(self, lrs: list[float]) -> list[float]:
        factor = self.factor(self.tick)
        return [lr * factor for lr in lrs]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "inner": self.policy.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.policy.load_state_dict(state["inner"])
