"""The policy interface every learning-rate scheduler implements.

A policy is a small pure object: it receives observations (step, epoch, losses, metrics) and returns one learning
rate per parameter group. It never sees a Trainer or an optimizer; the Lightning callback
(`adaptive_lr.callbacks.LRControl`) and the plain-PyTorch wrapper (`adaptive_lr.schedulers.PolicyLR`) both drive
it through `reset` and `observe`.

Gradient-aware policies (hypergradient, line search) also read parameters: the drivers hand them the optimizer
once through `bind(optimizer, probe)` (after `reset`, and again after a restored state), and the policy keeps a
handle to `optimizer.param_groups`. Such a policy is still pure: torch tensors in, learning rates out.

Time is counted in *ticks*: one tick per `observe` call. Whoever drives the policy decides whether a tick is an
optimizer step or an epoch, exactly like `torch.optim.lr_scheduler` where `step()` may be called per batch or per
epoch.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from adaptive_lr import checks
from adaptive_lr.errors import UserError

if TYPE_CHECKING:
    from torch.optim import Optimizer

Mode = Literal["min", "max"]

#: what a driver may count as a tick (`scheduler.interval`): an optimizer step or an epoch
INTERVALS: tuple[str, ...] = ("step", "epoch")


#: Every action name a policy may record in `Decision.action`, with a stable small code so that a logger can plot
#: decisions as a metric (`ACTIONS[decision.action]`). Append new names at the end and never renumber: logged runs
#: keep the old codes.
ACTIONS: dict[str, int] = {
    "hold": 0,  # no change (also the first observation, and a slow-but-real improvement)
    "raise": 1,  # the watched value improved fast: multiply the LR up
    "cut_rise": 2,  # the watched value got worse: cut the LR
    "cut_plateau": 3,  # no real improvement for `patience` ticks: cut the LR
    "cut_nonfinite": 4,  # NaN/inf observed: cut the LR
    "cooldown": 5,  # waiting after a cut before judging again: no change
    "scale_down": 6,  # a learned controller chose a multiplier < 1
    "scale_up": 7,  # a learned controller chose a multiplier > 1
    "keep": 8,  # a learned controller chose the multiplier 1
    "hypergradient": 9,  # the LR moved along its hypergradient
    "line_search": 10,  # the LR was set to the best of the probed candidates
    "human": 11,  # a person set the LR by hand (live control)
    "anneal": 12,  # the terminal anneal moved the LR along its cooldown (the controller no longer steers)
}


class PolicyConfigError(UserError, ValueError):
    """A policy was built with an invalid argument; the message names the argument and the allowed values."""


@dataclass(frozen=True)
class Observation:
    """What a policy may look at when it decides. `metrics` holds every scalar the task logged, by name."""

    step: int
    epoch: int
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """One controller decision, kept for logging: what it saw, what it did, and the LR before and after."""

    tick: int
    action: str
    lr_before: float
    lr_after: float
    value: float | None = None
    extra: Mapping[str, float] = field(default_factory=dict)

    @property
    def factor(self) -> float:
        return self.lr_after / self.lr_before if self.lr_before > 0 else 1.0


def require_positive(name: str, value: float) -> float:
    return checks.require_positive(name, value, error=PolicyConfigError)


def require_int(name: str, value: int, *, minimum: int) -> int:
    """An integer (bools refused) no smaller than `minimum`."""
    return checks.require_int(name, value, minimum=minimum, error=PolicyConfigError)


def require_bool(name: str, value: bool) -> bool:
    return checks.require_bool(name, value, error=PolicyConfigError)


def require_in_range(
    name: str, value: float, low: float, high: float, *, low_closed: bool = False, high_closed: bool = False
) -> float:
    """A finite number in the interval from `low` to `high`; the message writes the interval, e.g. `(0, 1]`."""
    interval = f"{'[' if low_closed else '('}{low:g}, {high:g}{']' if high_closed else ')'}"
    ok = (
        checks.is_number(value)
        and (value >= low if low_closed else value > low)
        and (value <= high if high_closed else value < high)
    )
    if not ok:
        raise PolicyConfigError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)


def require_lr_bounds(min_lr: float, max_lr: float) -> tuple[float, float]:
    """`(min_lr, max_lr)` with `0 < min_lr < max_lr`, both finite."""
    low = require_positive("min_lr", min_lr)
    return low, require_in_range("max_lr", max_lr, low, math.inf)


def require_mode(mode: str) -> Mode:
    return require_choice("mode", mode, ("min", "max"))  # type: ignore[return-value]


def require_choice(name: str, value: str, choices: Sequence[str]) -> str:
    """One of `choices`; the message lists them."""
    if value not in choices:
        raise PolicyConfigError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def require_monitor(monitor: str) -> str:
    """A non-empty metric name (the metric a feedback policy watches)."""
    if not isinstance(monitor, str) or not monitor:
        raise PolicyConfigError(f"monitor must be a non-empty metric name, got {monitor!r}")
    return monitor


def require_factor_bounds(min_factor: float, max_factor: float) -> tuple[float, float]:
    """`(min_factor, max_factor)` with `0 < min_factor <= 1 <= max_factor`: how far below and above its starting LR
    a controller may take a group's LR."""
    return (require_in_range("min_factor", min_factor, 0.0, 1.0, high_closed=True),
            require_in_range("max_factor", max_factor, 1.0, math.inf, low_closed=True))


def _recording_init_args(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap a policy's `__init__` so that the outermost call (the built class's) records `init_args`."""
    signature = inspect.signature(init)
    kinds = {p.name: p.kind for p in signature.parameters.values()}

    @functools.wraps(init)
    def recording_init(self: LRPolicy, *args: Any, **kwargs: Any) -> None:
        try:
            bound = None if "init_args" in self.__dict__ else signature.bind(self, *args, **kwargs)
        except TypeError:
            bound = None  # a call that does not fit: `init` raises its own error below
        if bound is not None:
            bound.apply_defaults()
            named: dict[str, Any] | None = {}
            for name, value in list(bound.arguments.items())[1:]:  # [0] is self
                if kinds[name] is inspect.Parameter.VAR_POSITIONAL:
                    named = None if value else named
                elif kinds[name] is inspect.Parameter.VAR_KEYWORD:
                    named = None if named is None else {**named, **value}
                elif named is not None:
                    named[name] = value
            self.init_args = named
        init(self, *args, **kwargs)

    return recording_init


class LRPolicy:
    """Base class. Subclasses implement `_lrs_at_reset` and `_update`, and extend `state_dict` with their counters.

    Attributes a logger may read cheaply after each `observe`:
      - `lrs`: the current learning rate of each parameter group;
      - `last_decision`: the `Decision` of the last observe for feedback controllers, else None.
    """

    #: name of the metric the policy watches (None: the policy needs no feedback, e.g. a fixed schedule)
    monitor: str | None = None
    #: whether larger or smaller values of `monitor` are better
    mode: Mode = "min"
    #: True: `bind` must receive a `probe` (loss of the current parameters on a fixed held-out batch)
    needs_probe: bool = False
    #: True: the policy reads the gradient of the update about to be taken, so a step-interval driver calls
    #: `observe` just before each optimizer update (gradients present) instead of just after it; such a policy
    #: needs `interval: step` (checked when a run config is composed, and by `LRControl`)
    decides_before_step: bool = False
    #: True: the policy learns something worth keeping after the run (`save_learned(path)`, for warm starts)
    learns: bool = False

    #: the arguments the policy was built with, by name (defaults included, `**kwargs` flattened), recorded by
    #: the outermost `__init__`; None when they cannot be named (a `*args` constructor). `PolicyLR.state_dict`
    #: saves them so that a restored policy gets the saved hyperparameters.
    init_args: dict[str, Any] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None:
            cls.__init__ = _recording_init_args(init)  # type: ignore[method-assign]

    def __init__(self) -> None:
        self.base_lrs: list[float] = []
        self.lrs: list[float] = []
        self.tick = 0
        self.last_decision: Decision | None = None

    def _watch(self, monitor: str, mode: str) -> None:
        """A feedback policy's constructor sets the metric it watches and its direction here, both checked."""
        self.monitor, self.mode = require_monitor(monitor), require_mode(mode)

    @property
    def needs_metrics(self) -> bool:
        """False for open-loop schedules: the driver then skips collecting (and syncing) metrics entirely."""
        return self.monitor is not None

    # -- driving -------------------------------------------------------------------------------------------------
    def bind(self, optimizer: Optimizer, probe: Callable[[], float] | None = None) -> None:
        """Hand the policy the optimizer whose parameters it may read (anything with `param_groups` will do).

        Drivers call it after `reset` and again after `load_state_dict`, so a policy moves restored tensors to its
        parameters' devices here. `probe()` returns the loss (float) of the current parameters on a fixed held-out
        batch; drivers pass one when `needs_probe`. Open-loop and metric-only policies ignore both: no-op.
        """

    def save_learned(self, path: str | os.PathLike[str]) -> None:
        """Write what the policy learned to `path` (only policies that `learns`; see `rl.LearnedController`)."""
        raise NotImplementedError(f"{type(self).__name__} learns nothing to save (learns=False)")

    def reset(self, base_lrs: Sequence[float]) -> list[float]:
        """Start a fresh trajectory from the optimizer's initial LRs; returns the LRs for tick 0."""
        self.base_lrs = [require_positive("base lr", lr) for lr in base_lrs]
        self.tick = 0
        self.last_decision = None
        self.lrs = self._lrs_at_reset()
        return list(self.lrs)

    def observe(self, obs: Observation) -> list[float]:
        """Advance one tick with what was observed and return the LRs for the next tick."""
        if not self.base_lrs:
            raise RuntimeError(f"{type(self).__name__}.observe called before reset(base_lrs)")
        self.tick += 1
        self.last_decision = None
        self.lrs = self._update(obs)
        return list(self.lrs)

    def monitored_value(self, obs: Observation) -> float:
        """The watched metric, sign-normalised so that lower is always better (NaN stays NaN)."""
        assert self.monitor is not None
        if self.monitor not in obs.metrics:
            raise KeyError(
                f"{type(self).__name__} watches {self.monitor!r} but the observation only has {sorted(obs.metrics)}"
            )
        value = float(obs.metrics[self.monitor])
        return value if self.mode == "min" else -value

    def _lrs_at_reset(self) -> list[float]:
        return list(self.base_lrs)

    def _decided(self, action: str, lrs: list[float], value: float | None = None,
                 extra: Mapping[str, float] | None = None) -> list[float]:
        """Record this tick's `last_decision` (group 0's LR before and after) and return `lrs`, for `_update`."""
        self.last_decision = Decision(tick=self.tick, action=action, lr_before=self.lrs[0], lr_after=lrs[0],
                                      value=value, extra=dict(extra or {}))
        return lrs

    def _update(self, obs: Observation) -> list[float]:
        raise NotImplementedError

    # -- persistence ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"base_lrs": list(self.base_lrs), "lrs": list(self.lrs), "tick": self.tick}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.base_lrs = list(state["base_lrs"])
        self.lrs = list(state["lrs"])
        self.tick = int(state["tick"])
        self.last_decision = None


class BoundedPolicy(LRPolicy):
    """A policy whose LRs stay within bounds, from `reset` on: the base of every feedback controller (heuristic,
    learned, hypergradient, line search). Each side is relative to the starting LR unless set explicitly, and the
    start is never clamped silently:
    - relative (the default, `min_lr` / `max_lr` unset): each group's LR stays within
      `[start * min_factor, start * max_factor]` of its own starting LR (defaults 1e-4 and 100: at the plan's
      starting LR 0.01 that is [1e-6, 1.0]), so every starting LR of a sweep gets the same room to move;
    - explicit (`min_lr` and/or `max_lr` set, `0 < min_lr < max_lr`): that side is the number; a starting LR outside
      an explicit bound is a `PolicyConfigError` at reset.
    `bounds` says which, for the run's tags and the report."""

    def __init__(self, min_lr: float | None = None, max_lr: float | None = None, min_factor: float = 1e-4,
                 max_factor: float = 100.0) -> None:
        super().__init__()
        self.min_lr = None if min_lr is None else require_positive("min_lr", min_lr)
        self.max_lr = None if max_lr is None else require_positive("max_lr", max_lr)
        if self.min_lr is not None and self.max_lr is not None:
            require_lr_bounds(self.min_lr, self.max_lr)
        self.min_factor, self.max_factor = require_factor_bounds(min_factor, max_factor)

    @property
    def bounds(self) -> str:
        """The bounds in words, e.g. `[1e-06, 1]` or `[start x 0.0001, start x 100]`."""
        low = f"{self.min_lr:g}" if self.min_lr is not None else f"start x {self.min_factor:g}"
        high = f"{self.max_lr:g}" if self.max_lr is not None else f"start x {self.max_factor:g}"
        return f"[{low}, {high}]"

    def _limits(self, group: int) -> tuple[float, float]:
        start = self.base_lrs[group]
        low = self.min_lr if self.min_lr is not None else start * self.min_factor
        high = self.max_lr if self.max_lr is not None else start * self.max_factor
        return low, high

    def _clamp(self, lr: float, group: int = 0) -> float:
        low, high = self._limits(group)
        return min(max(lr, low), high)

    def _lrs_at_reset(self) -> list[float]:
        for group, lr in enumerate(self.base_lrs):
            low, high = self._limits(group)
            if not low <= lr <= high:
                raise PolicyConfigError(
                    f"{type(self).__name__}: starting LR {lr:g} is outside its bounds {self.bounds}; widen min_lr/"
                    "max_lr, or unset them for bounds relative to the starting LR (min_factor, max_factor)")
        return list(self.base_lrs)
