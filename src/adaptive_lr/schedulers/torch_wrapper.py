"""`PolicyLR`: drive any `LRPolicy` from a plain PyTorch loop, as a drop-in `torch.optim.lr_scheduler`.

    sched = PolicyLR(optimizer, Heuristic(monitor="val_loss"))
    for epoch in range(n):
        train(...)
        sched.step(validate(...))      # a float is the value of `policy.monitor`, like ReduceLROnPlateau
        # or sched.step({"val_loss": ..., "val_acc": ...}), or sched.step() for open-loop policies

It behaves like torch's chainable schedulers: it composes multiplicatively with other schedulers on the same
optimizer, runs inside `SequentialLR` and `ChainedScheduler`, takes `last_epoch` to resume on a restored optimizer,
saves everything (hyperparameters included) in `state_dict`, and warns when stepped before the optimizer.

A policy that reads parameters or gradients (`Hypergradient`, `LineSearch`) is bound to the optimizer at
construction, with `probe` (a zero-argument callable returning the held-out probe loss) when it `needs_probe`:

    sched = PolicyLR(optimizer, LineSearch(), probe=lambda: float(loss_fn(model(x_probe), y_probe)))

A policy that `decides_before_step` (hypergradient) needs the gradient of the update its LR will scale, so it
is stepped between `backward` and the update (and is not warned about that order):

    loss.backward(); sched.step(); optimizer.step()

Lightning runs go through the `LRControl` callback instead; both call the same `reset` / `bind` / `observe`. A
`PolicyLR` returned from `configure_optimizers` also works: one whose policy watches a metric is an instance of
`ReduceLROnPlateau` (see `MonitoredPolicyLR`), which is how Lightning decides to pass it the `monitor` value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, SupportsFloat

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau, _update_param_group_val

from adaptive_lr.schedulers.base import LRPolicy, Observation

_PLAIN = (bool, int, float, str, type(None))


def _encode_args(policy: LRPolicy) -> dict[str, Any] | None:
    """`policy.init_args` as plain values (a nested policy as `{"class", "args"}`); None if any is not plain."""
    if policy.init_args is None:
        return None
    encoded: dict[str, Any] = {}
    for name, value in policy.init_args.items():
        if isinstance(value, LRPolicy):
            encoded[name] = {"class": type(value).__qualname__, "args": _encode_args(value)}
        elif isinstance(value, _PLAIN):
            encoded[name] = value
        elif isinstance(value, Sequence) and all(isinstance(v, _PLAIN) for v in value):
            encoded[name] = list(value)  # a tuple, or a list from a config (ListConfig)
        else:
            return None
    return encoded


def _rebuilt(live: LRPolicy, saved_class: str, saved_args: Mapping[str, Any] | None) -> LRPolicy:
    """`live` itself if it was built with `saved_args`, else a new policy of its class built with them.

    Nested policies are rebuilt the same way, each with its live counterpart's class, which must be the saved
    class: a state is never loaded into a policy of another kind.
    """
    if type(live).__qualname__ != saved_class:
        raise ValueError(f"state_dict holds a {saved_class} policy, this PolicyLR drives a {type(live).__qualname__}")
    if saved_args is None or saved_args == _encode_args(live):
        return live
    assert live.init_args is not None  # encodable, since the saved one was
    args = {}
    for name, value in saved_args.items():
        nested = live.init_args.get(name)
        args[name] = _rebuilt(nested, value["class"], value["args"]) if isinstance(nested, LRPolicy) else value
    return type(live)(**args)


class PolicyLR(LRScheduler):
    """A `torch.optim.lr_scheduler.LRScheduler` whose LRs come from an `LRPolicy`.

    The policy's LRs are turned into group LRs the way torch's chainable schedulers do it:
      1) at construction (or when `SequentialLR` reaches this scheduler's milestone) the policy is reset from each
         group's `initial_lr` (set to the group's `lr` when absent, as torch does) and bound to the optimizer;
         a group's LR is multiplied by `policy_lr / initial_lr` (so a fresh optimizer gets exactly the policy's
         LRs, and another scheduler's factor on the same optimizer is kept), while at a `SequentialLR` milestone it
         restarts from the policy's LRs, like torch's closed forms;
      2) each `step()` advances the policy one tick and multiplies each group's LR by the policy's change,
         `new_lr = policy_new * (group_lr / policy_old)`: exactly the policy's LR when nothing else touched the
         group, and the product with any other scheduler's factor when something did. A group whose policy LR
         was 0 keeps its last measured factor;
      3) groups added with `add_param_group` after construction follow the first group's relative change (what
         torch's chainable schedulers do to every group);
      4) built with `last_epoch >= 0` (resuming on a restored optimizer, which must hold `initial_lr`), the group
         LRs are kept; an open-loop policy is fast-forwarded to `last_epoch`, a feedback one starts its counters
         afresh from the restored LRs (load the scheduler's `state_dict` to continue them).
    Like torch it never clamps an LR itself; a bounded policy keeps its own LRs within its bounds.
    `last_epoch` counts `step()` calls, i.e. ticks.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> PolicyLR:
        # a policy that watches a metric gets the ReduceLROnPlateau flavour (Lightning passes it the monitor value)
        policy = kwargs.get("policy", args[1] if len(args) > 1 else None)
        if cls is PolicyLR and isinstance(policy, LRPolicy) and policy.needs_metrics:
            cls = MonitoredPolicyLR
        return super().__new__(cls)

    def __init__(
        self,
        optimizer: Optimizer,
        policy: LRPolicy,
        probe: Callable[[], float] | None = None,
        last_epoch: int = -1,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        if not isinstance(policy, LRPolicy):
            raise TypeError(f"{type(policy).__name__} is not an LRPolicy")
        if policy.needs_probe and probe is None:
            raise ValueError(f"{type(policy).__name__} needs a probe: PolicyLR(optimizer, policy, probe=...)")
        self.policy = policy
        self.probe = probe
        self._metrics: dict[str, float] = {}  # what the current step() observes
        self._scales: list[float] = []  # per policy group: its LR over the policy's (other schedulers' factor)
        self._written: list[float] | None = None  # the LRs of the initial step, until the first real step
        LRScheduler.__init__(self, optimizer, last_epoch)  # sets initial_lr and base_lrs, then takes step 1)
        self.base_lrs = [float(lr) for lr in self.base_lrs]

    # -- stepping ------------------------------------------------------------------------------------------------
    def step(  # type: ignore[override]
        self, metrics: SupportsFloat | Mapping[str, SupportsFloat] | None = None
    ) -> None:
        """End one tick: `metrics` is the monitored value, a dict of named metrics, or None (open-loop only).

        A tensor value is read with `float()`, which synchronises with the device: call this per epoch, or per
        N steps, in a hot loop.
        """
        monitor = self.policy.monitor
        if metrics is None:
            if self.policy.needs_metrics and not self._is_initial:
                raise ValueError(
                    f"{type(self.policy).__name__} watches {monitor!r}: "
                    f"call step(value) or step({{{monitor!r}: value}})"
                )
            self._metrics = {}
        elif isinstance(metrics, Mapping):
            self._metrics = {name: float(value) for name, value in metrics.items()}
        else:
            # a bare value is the monitored metric; an open-loop policy ignores it
            self._metrics = {} if monitor is None else {monitor: float(metrics)}
        if self.policy.decides_before_step:
            # stepped before the optimizer on purpose: torch's order warning does not apply
            self._step_count += 1
            self._update_lr()
        else:
            LRScheduler.step(self)  # torch's order warning, _step_count, then `get_lr` through `_update_lr`

    def get_lr(self) -> list[float]:
        """The new group LRs for the tick `last_epoch` (called by `LRScheduler._update_lr`); see the class doc."""
        lrs = self._lrs_for_this_tick()
        self._written = lrs if self._is_initial else None
        return lrs

    def _lrs_for_this_tick(self) -> list[float]:
        current = [float(group["lr"]) for group in self.optimizer.param_groups]
        initial = [float(lr) for lr in self.base_lrs]
        if self.last_epoch == 0:
            # 1) a start: reset and bind; at a SequentialLR milestone restart from the initial LRs
            new = self.policy.reset(initial)
            self.policy.bind(self.optimizer, self.probe)
            self._scales = [1.0] * len(new)
            start = current if self._is_initial else initial + current[len(initial):]
            return self._composed(start, initial, new)
        if self._is_initial:
            # 4) resuming with last_epoch > 0: keep the restored LRs, bring an open-loop policy to this tick
            self.policy.reset(initial)
            if self._is_open_loop():
                for tick in range(1, self.last_epoch + 1):
                    self.policy.observe(Observation(step=tick, epoch=tick))
            self.policy.bind(self.optimizer, self.probe)
            self._scales = [1.0] * len(self.policy.lrs)
            return self._composed(current, self.policy.lrs, self.policy.lrs)
        # 2) one tick of the policy, composed with whatever else changed the groups
        old = list(self.policy.lrs)
        obs = Observation(step=self.last_epoch, epoch=self.last_epoch, metrics=self._metrics)
        return self._composed(current, old, self.policy.observe(obs))

    def _is_open_loop(self) -> bool:
        policy = self.policy
        return not (policy.needs_metrics or policy.needs_probe or policy.decides_before_step)

    def _composed(self, current: list[float], old: list[float], new: list[float]) -> list[float]:
        """Steps 1), 2) and 3): each policy group's `new * (current / old)`, extra groups times group 0's change."""
        lrs = []
        for i, lr in enumerate(new):
            if old[i] != 0:
                self._scales[i] = current[i] / old[i]  # exactly 1.0 when nothing else touched the group
            lrs.append(lr * self._scales[i])
        change = new[0] / old[0] if old[0] != 0 else 1.0
        lrs += [lr * change for lr in current[len(new):]]
        return lrs

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    # -- persistence ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Policy state, hyperparameters and counters, like torch's; the optimizer is saved on its own."""
        return {
            "policy": self.policy.state_dict(),
            "policy_class": type(self.policy).__qualname__,
            "policy_args": _encode_args(self.policy),
            "last_epoch": self.last_epoch,
            "base_lrs": list(self.base_lrs),
            "_step_count": self._step_count,
            "_last_lr": [float(lr) for lr in self._last_lr],
            "_scales": list(self._scales),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the policy (rebuilt with the saved hyperparameters when they differ) and the counters.

        Like torch's schedulers it leaves the group LRs alone (they come back with the optimizer's state), so the
        optimizer and the scheduler may be loaded in either order; except that groups still holding this
        scheduler's own construction LRs (it was built on a restored optimizer, whose LRs its tick 0 rescaled, or
        the optimizer's state is not loaded) get the saved LRs back. A state saved before hyperparameters and
        torch's counters were saved (`policy`, `last_epoch`, `base_lrs` only) keeps the live ones.
        """
        groups = self.optimizer.param_groups
        current, saved_lrs = [float(g["lr"]) for g in groups], state_dict.get("_last_lr")
        if saved_lrs is not None and self._written == current and len(saved_lrs) == len(current):
            for group, lr in zip(groups, saved_lrs, strict=True):
                _update_param_group_val(group, "lr", lr)
        self._written = None
        if "policy_class" in state_dict:
            self.policy = _rebuilt(self.policy, state_dict["policy_class"], state_dict["policy_args"])
        self.policy.load_state_dict(state_dict["policy"])
        self.policy.bind(self.optimizer, self.probe)
        self.last_epoch = int(state_dict["last_epoch"])
        self.base_lrs = list(state_dict["base_lrs"])
        self._step_count = int(state_dict.get("_step_count", self._step_count))
        self._last_lr = list(state_dict.get("_last_lr", self.policy.lrs))
        self._scales = list(state_dict.get("_scales", [1.0] * len(self.policy.lrs)))


class MonitoredPolicyLR(PolicyLR, ReduceLROnPlateau):
    """The `PolicyLR` of a policy that watches a metric (`PolicyLR(...)` returns one when `policy.needs_metrics`).

    It is a `ReduceLROnPlateau` only so that Lightning, which recognises plateau schedulers by that type, passes
    it the `monitor` value from `configure_optimizers`; every method is `PolicyLR`'s (and, like torch's plateau
    scheduler, `SequentialLR` and `ChainedScheduler` refuse it: it needs a metric at every step).
    """

