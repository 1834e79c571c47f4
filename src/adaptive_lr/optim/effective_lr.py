"""The step size an optimizer applies to a parameter group, read from the group's own keys.

Learning-rate-free optimizers keep `group["lr"]` as a multiplier of a step size they estimate themselves, so
logging `group["lr"]` would plot a constant 1.0 beside other methods' learning rates. `effective_lr` returns the
rate that multiplies the update direction instead, recognising each optimizer by the keys its groups carry:
  1. DoG (`dog.DoG`, `adaptive_lr.optim.AveragedDoG`; key `reps_rel`): the eta = lr * rbar / sqrt(G) of its
     latest step (DoG computes each step's eta from that step's gradient), one tensor per parameter (all equal for
     DoG; the mean over the group's tensors for layer-wise LDoG); None before the first step;
  2. D-Adaptation and Prodigy (`dadaptation.*`, `prodigyopt.Prodigy`; key `d`): the next step's d * lr (the LR of
     the Adam update they apply), times Adam's bias correction sqrt(1 - beta2^(k+1)) / (1 - beta1^(k+1)) when
     `use_bias_correction` is on (off by default); before the first step, d is the initial estimate d0;
  3. Schedule-Free (`schedulefree.*`; keys `warmup_steps` and `train_mode`): the next step's lr times its
     built-in linear warmup min(1, (k+1) / warmup_steps);
  4. anything else: `group["lr"]`, the LR of the next step.
Reading a tensor (DoG's eta) is a host sync: call this at logging cadence, never every step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def effective_lr(group: Mapping[str, Any]) -> float | None:
    """The step size the group's updates apply (module docstring), or None where it is not known yet."""
    lr = float(group["lr"])
    k = int(group.get("k", 0))
    if "reps_rel" in group:  # 1) DoG: eta exists after the first step
        etas = group.get("eta")
        return float(torch.stack([torch.as_tensor(e) for e in etas]).mean()) if etas else None
    if "d" in group:  # 2) D-Adaptation / Prodigy
        bias_correction = 1.0
        if group.get("use_bias_correction"):
            beta1, beta2 = group["betas"]
            bias_correction = (1 - beta2 ** (k + 1)) ** 0.5 / (1 - beta1 ** (k + 1))
        return float(group["d"]) * lr * bias_correction
    if "warmup_steps" in group and "train_mode" in group:  # 3) Schedule-Free
        warmup = int(group["warmup_steps"])
        return lr * min(1.0, (k + 1) / warmup) if warmup > 0 else lr
    return lr  # 4)
