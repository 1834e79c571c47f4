"""Hypergradient descent (Baydin et al. 2018, "Online learning rate adaptation with hypergradient descent").

The loss after an update depends on the LR through the parameters, so the LR has a gradient too. With `u` the
direction of the previous update (`theta_before - theta_after = lr * u`) and `g` the gradient about to be applied,
`d loss / d lr = -g . u`: when the new gradient still points along the last update a larger LR would have helped, so
the LR grows; when it points back (overshoot), the LR shrinks. This module records `hypergrad = g . u` (the
negative of `d loss / d lr`, so positive means "raise") and offers two rules, chosen once by `variant`:

  additive        lr <- lr + beta * (g . u)              SGD-HD / Adam-HD of the paper; beta is in LR units
  multiplicative  lr <- lr * (1 + beta * cos(g, u))      the paper's normalised variant; beta is scale-free

Design:
1) Generic over optimizers: `u` is not derived from the optimizer's formula but measured, as the displacement of
   the parameters since the previous decision divided by the LR in force: `u = (anchor - theta) / lr`. For plain
   SGD that is the previous gradient, for Adam `m_hat / (sqrt(v_hat) + eps)`: exactly the paper's SGD-HD and Adam-HD
   directions, and momentum or weight decay are included as they were applied. The policy keeps one param-sized
   `anchor`: the parameters at the last decision (or at `bind`, where the first decision then sees `u = 0` and
   keeps the LR, like the paper's `u_0 = 0`).
2) Timing: `g` must be the gradient of the update that the new LR scales, so the policy decides *before* each
   update (`decides_before_step = True`): `LRControl` calls `observe` from `on_before_optimizer_step`, and a plain
   loop calls `sched.step()` between `loss.backward()` and `optimizer.step()`. Deciding after the update (at
   `on_train_batch_end`, where the gradient is the one the update already used) would apply every hypergradient
   one step late, to a different gradient.
3) With a decision every k > 1 updates the anchor is k updates old and `u` is the sum of the last k directions.
4) Each param group has its own LR and hypergradient (sums over the group's parameters). The products run on the
   device; one host sync per decision reads every group's three sums at once.
5) Resume: the anchor is part of `state_dict` (cloned tensors), so a restored run computes the same next `u`;
   drivers call `bind` again after `load_state_dict`, which moves the anchor to the parameters' devices.

The shared part (bound param groups, the anchor and its persistence, LR bounds) is `anchored.AnchoredPolicy`, also
the base of `line_search.LineSearch`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch

from adaptive_lr.schedulers.anchored import AnchoredPolicy
from adaptive_lr.schedulers.base import (
    Decision,
    Observation,
    PolicyConfigError,
    require_in_range,
    require_positive,
)


def _additive(lr: float, beta: float, hypergrad: float, cos: float) -> float:
    return lr + beta * hypergrad


def _multiplicative(lr: float, beta: float, hypergrad: float, cos: float) -> float:
    return lr * (1.0 + beta * cos)


#: the LR rules by config name; looked up once in `__init__`, never on the hot path
VARIANTS: dict[str, Callable[[float, float, float, float], float]] = {
    "additive": _additive,
    "multiplicative": _multiplicative,
}


def _flat(tensors: list[torch.Tensor], scratch: dict[int, torch.Tensor], key: int) -> torch.Tensor:
    """`tensors` concatenated into one flat vector, written into a buffer kept in `scratch` under `key` and reused
    while the size and dtype stay the same (allocating the MNIST MLP's two 0.4 MB vectors afresh at every decision
    cost ~0.1 ms more per decision, timeit)."""
    flat = [t.reshape(-1) for t in tensors]
    numel, dtype = sum(t.numel() for t in flat), functools.reduce(torch.promote_types, (t.dtype for t in flat))
    buf = scratch.get(key)
    if buf is None or buf.numel() != numel or buf.dtype != dtype or buf.device != flat[0].device:
        buf = scratch[key] = torch.empty(numel, dtype=dtype, device=flat[0].device)
    return torch.cat(flat, out=buf)


def _products(anchor: list[torch.Tensor], params: list[torch.Tensor], grads: list[torch.Tensor | None],
              scratch: dict[int, torch.Tensor], group: int) -> torch.Tensor:
    """`[g.d, |g|^2, |d|^2]` (float64) summed over one group, with `d = anchor - theta`; the parameters become the
    anchor. A handful of kernel launches per group whatever its number of tensors (fused `_foreach` ops, then one
    flat vector each for `g` and `d`, in reused `scratch` buffers, and three dot products): the per-parameter
    version was slower; `benchmarks/controller_overhead.md` has what a decision at every step costs (row
    `hypergradient scheduler.frequency=1`). A parameter without gradient (frozen, unused) still moves the anchor
    but adds no product."""
    if not anchor:
        return torch.zeros(3, dtype=torch.float64)
    torch._foreach_sub_(anchor, params)  # anchor now holds d
    used = [(d, g) for d, g in zip(anchor, grads, strict=True) if g is not None]
    d_all = _flat(anchor, scratch, 3 * group)
    if used:
        d_used = d_all if len(used) == len(anchor) else _flat([d for d, _ in used], scratch, 3 * group + 1)
        g = _flat([g.detach() for _, g in used], scratch, 3 * group + 2)
        out = torch.stack([torch.dot(g, d_used), torch.dot(g, g), torch.dot(d_all, d_all)]).double()
    else:
        zero = d_all.new_zeros(())
        out = torch.stack([zero, zero, torch.dot(d_all, d_all)]).double()
    torch._foreach_copy_(anchor, params)
    return out


class Hypergradient(AnchoredPolicy):
    """Move each group's LR along its hypergradient before every update (see the module docstring).

    Args:
        variant: "additive" (`lr += beta * g.u`) or "multiplicative" (`lr *= 1 + beta * cos(g, u)`).
        beta: the hypergradient LR. Additive: in LR units per unit of `g.u` (the paper uses 1e-3 for SGD and 1e-7
            for Adam, whose `u` is O(1) per coordinate); > 0. Multiplicative: the largest relative LR change per
            decision (0.02: at most 2%); in (0, 1) so the LR stays positive.
        min_lr, max_lr, min_factor, max_factor: the LR bounds (`BoundedPolicy`): by default each group within
            [start x 1e-4, start x 100]; with min_lr and max_lr set, those (a start outside them is an error).

    `last_decision.extra` holds group 0's `hypergrad` (`g.u`) and `cos` (`cos(g, u)`, 0 while `u = 0`).
    """

    decides_before_step = True

    def __init__(
        self, variant: str = "multiplicative", beta: float = 0.02, min_lr: float | None = None, max_lr: float | None = None,
        min_factor: float = 1e-4,
        max_factor: float = 100.0,
    ) -> None:
        super().__init__(min_lr, max_lr, min_factor, max_factor)
        if variant not in VARIANTS:
            raise PolicyConfigError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        self.variant = variant
        self._rule = VARIANTS[variant]
        # the multiplicative factor 1 + beta * cos must stay positive
        multiplicative = variant == "multiplicative"
        self.beta = require_in_range("beta", beta, 0.0, 1.0) if multiplicative else require_positive("beta", beta)
        self._scratch: dict[int, torch.Tensor] = {}  # flat work buffers of `_products` (not state)

    def _update(self, obs: Observation) -> list[float]:
        groups = self._bound_groups()
        assert self.anchor is not None
        # 1) per group, on the device: d = anchor - theta (in the anchor's buffer), then g.d, |g|^2, |d|^2; the
        #    current parameters become the next anchor (`_products`)
        sums = []
        with torch.no_grad():
            for i, (group, g) in enumerate(zip(self.anchor, groups, strict=True)):
                sums.append(_products(group, [p.detach() for p in g["params"]], [p.grad for p in g["params"]],
                                      self._scratch, i))
            device = sums[0].device
            values = torch.stack([s.to(device) for s in sums]).tolist()  # host sync: once per decision
        # 2) per group on the host: u = d / lr, the LR the displacement was taken with (the group's, as applied)
        lrs, extras = [], []
        for i, (lr, g, (gd, gg, dd)) in enumerate(zip(self.lrs, groups, values, strict=True)):
            applied = float(g["lr"])
            hypergrad = gd / applied
            cos = max(-1.0, min(1.0, gd / math.sqrt(gg * dd))) if gg > 0 and dd > 0 else 0.0  # rounding: |cos| <= 1
            new = self._rule(lr, self.beta, hypergrad, cos)
            # 3) a non-finite gradient or product keeps the LR (the decision records "hold")
            finite = math.isfinite(new) and math.isfinite(gd) and math.isfinite(gg) and math.isfinite(dd)
            lrs.append(self._clamp(new, i) if finite else lr)
            extras.append((hypergrad, cos, finite))
        hypergrad, cos, finite = extras[0]
        self.last_decision = Decision(
            tick=self.tick,
            action="hypergradient" if finite else "hold",
            lr_before=self.lrs[0],
            lr_after=lrs[0],
            extra={"hypergrad": hypergrad, "cos": cos},
        )
        return lrs
