"""DoG with the iterate averaging its authors require, evaluated through the optimizer's train/eval modes.

The `dog-optimizer` README: "For best performance (and for fair comparison to other methods) DoG/L-DoG must be
combined with iterate averaging!", recommending its `PolynomialDecayAverager` (Shamir & Zhang 2013) whose default
(gamma=8) "should work well out of the box". That averager keeps a second copy of the model; here the same average
lives in the optimizer state, so the task's train/eval switch (`tasks/base.py`, the one Schedule-Free needs)
validates, tests and checkpoints the averaged weights with no extra code:
  1. after every step t = 1, 2, ...: average <- (1 - w) * average + w * x_t with w = (1 + gamma) / (t + gamma), so
     the first average is x_1 (w = 1): `PolynomialDecayAverager.step`'s rule, tested step by step against it;
  2. `eval()` swaps every parameter with its average (the parameters then hold the average and the state the
     training iterate), `train()` swaps back: plain copies, so a switch never perturbs training; `step()` refuses
     to run in eval mode, as Schedule-Free's does; a new optimizer starts in train mode;
  3. only parameters are averaged: buffers (BatchNorm statistics) keep the training iterate's values, where the
     package's averager averages floating-point buffers too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from dog import DoG


class AveragedDoG(DoG):
    """`dog.DoG` (same arguments and defaults) plus the polynomial-decay iterate average of power `gamma`."""

    def __init__(self, params: Iterable[Any], reps_rel: float = 1e-6, lr: float = 1.0, weight_decay: float = 0.0,
                 eps: float = 1e-8, init_eta: float | None = None, gamma: float = 8.0) -> None:
        if not gamma >= 0:
            raise ValueError(f"gamma must be >= 0, got {gamma!r}")
        super().__init__(params, reps_rel=reps_rel, lr=lr, weight_decay=weight_decay, eps=eps, init_eta=init_eta)
        extra = {"gamma": float(gamma), "averaged_steps": 0, "train_mode": True}
        self.defaults.update(extra)
        for group in self.param_groups:
            for key, value in extra.items():
                group.setdefault(key, value)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        if not all(group["train_mode"] for group in self.param_groups):
            raise RuntimeError("AveragedDoG.step() called in eval mode: call optimizer.train() before training")
        loss = super().step(closure)
        for group in self.param_groups:  # 1) the average of the iterates
            t = group["averaged_steps"] = group["averaged_steps"] + 1
            weight = (1 + group["gamma"]) / (t + group["gamma"])
            for p in group["params"]:
                state = self.state[p]
                if "average" not in state:  # w = 1 at t = 1, and a parameter that never moved is its own average
                    state["average"] = p.detach().clone()
                else:
                    state["average"].mul_(1 - weight).add_(p, alpha=weight)
        return loss

    def eval(self) -> None:
        """Put the averaged weights into the parameters (2)."""
        self._swap(train_mode=False)

    def train(self) -> None:
        """Put the training iterate back into the parameters (2)."""
        self._swap(train_mode=True)

    @torch.no_grad()
    def _swap(self, train_mode: bool) -> None:
        for group in self.param_groups:
            if group["train_mode"] == train_mode:
                continue
            for p in group["params"]:
                other = self.state[p].get("average")  # the average in train mode, the training iterate in eval
                if other is not None:
                    held = p.detach().clone()
                    p.copy_(other)
                    other.copy_(held)
            group["train_mode"] = train_mode
