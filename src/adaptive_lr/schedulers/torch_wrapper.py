"""`PolicyLR`: drive any `LRPolicy` from a plain PyTorch loop, like a `torch.optim.lr_scheduler`.

    sched = PolicyLR(optimizer, Heuristic(monitor="val_loss"))
    for epoch in range(n):
        train(...)
        sched.step(validate(...))      # a float is the value of `policy.monitor`, like ReduceLROnPlateau
        # or sched.step({"val_loss": ..., "val_acc": ...}), or sched.step() for open-loop policies

A policy that reads parameters or gradients (`Hypergradient`, `LineSearch`) is bound to the optimizer at
construction, with `probe` (a zero-argument callable returning the held-out probe loss) when it `needs_probe`:

    sched = PolicyLR(optimizer, LineSearch(), probe=lambda: float(loss_fn(model(x_probe), y_probe)))

A policy that `decides_before_step` (hypergradient) needs the gradient of the update its LR will scale, so it
is stepped between `backward` and the update:

    loss.backward(); sched.step(); optimizer.step()

Lightning runs go through the `LRControl` callback instead; both call the same `reset` / `bind` / `observe`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, SupportsFloat

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from adaptive_lr.schedulers.base import LRPolicy, Observation


def _set_lr(group: dict[str, Any], lr: float) -> None:
    # a tensor LR (capturable / compiled optimizers) is filled in place so that graphs holding it stay valid
    if isinstance(group["lr"], torch.Tensor):
        group["lr"].fill_(lr)
    else:
        group["lr"] = lr


class PolicyLR(LRScheduler):
    """A `torch.optim.lr_scheduler.LRScheduler` whose LRs come from an `LRPolicy`.

    Like `ReduceLROnPlateau` it does not run `LRScheduler.__init__` (no initial `step()`, no optimizer patching).
    Construction resets the policy from each group's `initial_lr` (set to the group's `lr` when absent, as torch
    schedulers do), binds it to the optimizer (and `probe`) and writes the tick-0 LRs into the groups. `last_epoch`
    counts `step()` calls, i.e. ticks. `load_state_dict` binds again, so a restored policy sees these parameters.
    """

    def __init__(self, optimizer: Optimizer, policy: LRPolicy, probe: Callable[[], float] | None = None) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        if not isinstance(policy, LRPolicy):
            raise TypeError(f"{type(policy).__name__} is not an LRPolicy")
        self.optimizer = optimizer
        self.policy = policy
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", float(group["lr"]))
        self.base_lrs = [float(group["initial_lr"]) for group in optimizer.param_groups]
        if policy.needs_probe and probe is None:
            raise ValueError(f"{type(policy).__name__} needs a probe: PolicyLR(optimizer, policy, probe=...)")
        self.probe = probe
        self.last_epoch = 0
        lrs = policy.reset(self.base_lrs)
        policy.bind(optimizer, probe)
        self._apply(lrs)

    def _apply(self, lrs: list[float]) -> None:
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            _set_lr(group, lr)
        self._last_lr = list(lrs)

    def step(  # type: ignore[override]
        self, metrics: SupportsFloat | Mapping[str, SupportsFloat] | None = None
    ) -> None:
        """End one tick: `metrics` is the monitored value, a dict of named metrics, or None (open-loop only).

        A tensor value is read with `float()`, which synchronises with the device: call this per epoch, or per
        N steps, in a hot loop.
        """
        monitor = self.policy.monitor
        if metrics is None:
            if self.policy.needs_metrics:
                raise ValueError(
                    f"{type(self.policy).__name__} watches {monitor!r}: "
                    f"call step(value) or step({{{monitor!r}: value}})"
                )
            named: dict[str, float] = {}
        elif isinstance(metrics, Mapping):
            named = {name: float(value) for name, value in metrics.items()}
        else:
            # a bare value is the monitored metric; an open-loop policy ignores it
            named = {} if monitor is None else {monitor: float(metrics)}
        self.last_epoch += 1
        # the wrapper cannot tell batches from epochs: both fields carry the tick count
        obs = Observation(step=self.last_epoch, epoch=self.last_epoch, metrics=named)
        self._apply(self.policy.observe(obs))

    def get_lr(self) -> list[float]:
        return list(self.policy.lrs)

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Policy state and tick counter; the optimizer is saved on its own, as with every torch scheduler."""
        return {
            "policy": self.policy.state_dict(),
            "last_epoch": self.last_epoch,
            "base_lrs": list(self.base_lrs),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the policy and write its LRs into the groups (so optimizer and scheduler load in any order)."""
        self.policy.load_state_dict(state_dict["policy"])
        self.policy.bind(self.optimizer, self.probe)
        self.last_epoch = int(state_dict["last_epoch"])
        self.base_lrs = list(state_dict["base_lrs"])
        self._apply(list(self.policy.lrs))
