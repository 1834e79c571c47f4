"""`RescaledSGD`: SGD whose per-element LR is rescaled by the inverse of the recent gradient magnitude.

Each step, for every parameter group (all arithmetic on the device, no host sync):
  1) `g = grad + weight_decay * p` (coupled L2, as in `torch.optim.SGD`).
  2) `a = beta * a + (1 - beta) * |g|`, bias-corrected `a_hat = a / (1 - beta ** t)`: a running gradient magnitude,
     per element (default) or per tensor (`per_tensor=True`: the mean of `|g|` over the tensor).
  3) `raw = 1 / (a_hat + eps)`, normalised over the group: `s = raw / mean(raw)`, the mean taken over every element
     of the group's parameters that have a gradient, so the mean of `s` is exactly 1.
  4) "Retain a minimum scaling": `scale = min_scale + (1 - min_scale) * s`. Every element keeps at least
     `min_scale` of plain SGD's LR, and the mean scale stays exactly 1 (min_scale = 1 is plain SGD).
  5) `effective_lr = lr * scale` (kept in `state[p]["effective_lr"]`, shaped like `p`: mean over the group = `lr`);
     with momentum, `buf = momentum * buf + g` (like SGD, dampening 0), else `buf = g`; `p -= effective_lr * buf`.

Small gradients get large steps and large gradients small ones, like Adam's per-element normalisation but with the
overall step size pinned to `lr`, so an LR schedule or controller keeps its meaning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from adaptive_lr.checks import is_number, require_bool


def _check(name: str, value: Any, ok: Callable[[float], bool], allowed: str) -> float:
    good = is_number(value) and ok(value)
    if not good:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return float(value)


class RescaledSGD(Optimizer):
    """SGD with per-element (or per-tensor) LRs `lr * scale(|grad| EMA)` whose mean is `lr` (module docstring).

    Args:
        params: parameters or param groups.
        lr: the mean effective LR. > 0.
        beta: EMA factor of the gradient magnitude (0.9); 0 rescales by the current gradient alone. In [0, 1).
        eps: added to the magnitude before inverting (1e-8); bounds the scale of all-zero gradients. > 0.
        min_scale: the fraction of plain SGD's LR every element keeps (0.1). In [0, 1].
        momentum: heavy-ball momentum on the gradient (0). In [0, 1).
        weight_decay: coupled L2 penalty (0). >= 0.
        per_tensor: one scale per tensor (from its mean |grad|) instead of one per element (False).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-2,
        beta: float = 0.9,
        eps: float = 1e-8,
        min_scale: float = 0.1,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        per_tensor: bool = False,
    ) -> None:
        _check("lr", lr, lambda v: v > 0, "a positive finite number")
        _check("beta", beta, lambda v: 0 <= v < 1, "a number in [0, 1)")
        _check("eps", eps, lambda v: v > 0, "a positive finite number")
        _check("min_scale", min_scale, lambda v: 0 <= v <= 1, "a number in [0, 1]")
        _check("momentum", momentum, lambda v: 0 <= v < 1, "a number in [0, 1)")
        _check("weight_decay", weight_decay, lambda v: v >= 0, "a number >= 0")
        require_bool("per_tensor", per_tensor)
        defaults = {"lr": lr, "beta": beta, "eps": eps, "min_scale": min_scale, "momentum": momentum,
                    "weight_decay": weight_decay, "per_tensor": per_tensor}
        super().__init__(params, defaults)

    def effective_lr(self, param: torch.Tensor) -> torch.Tensor:
        """The per-element LR `param` was updated with in the last step (shaped like `param`)."""
        state = self.state.get(param, {})
        if "effective_lr" not in state:
            raise KeyError("no step has updated this parameter yet")
        return state["effective_lr"]

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _step_group(self, group: dict[str, Any]) -> None:
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        beta, wd, per_tensor = group["beta"], group["weight_decay"], group["per_tensor"]
        grads, raws = [], []
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["abs_avg"] = p.new_zeros(()) if per_tensor else torch.zeros_like(p)
                state["effective_lr"] = torch.zeros_like(p)
            state["step"] += 1
            # 1) the gradient, with coupled weight decay
            g = p.grad if wd == 0 else p.grad.add(p, alpha=wd)
            grads.append(g)
            # 2) bias-corrected running magnitude
            magnitude = g.abs().mean() if per_tensor else g.abs()
            state["abs_avg"].mul_(beta).add_(magnitude, alpha=1 - beta)
            # 3) the unnormalised scale, in one new buffer
            raws.append(torch.div(state["abs_avg"], 1 - beta ** state["step"]).add_(group["eps"]).reciprocal_())
        # 3) normalise over every element of the group: a per-tensor scale counts once per element
        total = torch.stack([raw.sum() if raw.dim() else raw * p.numel() for raw, p in zip(raws, params, strict=True)])
        mean = total.sum() / sum(p.numel() for p in params)
        lr, min_scale = group["lr"], group["min_scale"]
        coef = (1 - min_scale) * lr / mean  # a 0-dim tensor: no host sync
        for p, g, raw in zip(params, grads, raws, strict=True):
            state = self.state[p]
            # 4) keep at least min_scale of SGD's LR; 5) the effective LR (lr * scale, written in place) and the update
            eff = state["effective_lr"]
            eff.copy_(raw * coef).add_(min_scale * lr)  # copy_ broadcasts a per-tensor scale over the tensor
            if group["momentum"] > 0:
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = g.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(g)
                g = state["momentum_buffer"]
            p.addcmul_(eff, g, value=-1)
