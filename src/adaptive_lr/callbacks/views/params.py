"""The parameter view: values, gradients, updates and per-parameter effective LRs, every N optimizer steps.

At a logging step (`global_step % every_n_steps == 0`, the count of updates done before this batch):
  1) `on_train_batch_start` copies every trainable parameter (only on logging steps: other steps cost one modulo);
  2) `on_before_optimizer_step` copies the gradients the optimizer is about to apply;
  3) `on_train_batch_end` reads the parameters after the update: `update = after - before`, the optimizer's
     per-element effective LR (`effective_lr`, after the step, i.e. the LR of the update just applied), and writes
       - TensorBoard histograms per tensor: `values/<name>` (after the update), `grads/<name>`,
         `update_ratio_log10/<name>` (log10 |update| / |value before|, over the elements where both are non-zero)
         and `effective_lr/<name>`;
       - TensorBoard scalars per tensor `norm/{values,grads,updates}/<name>`, `update_ratio/<name>`
         (||update|| / ||value before||), `effective_lr_mean/<name>`, and the global `norm/grads/total`;
       - one row per tensor in `viz/params/NNN/summary.csv` (the same numbers, for MLflow's artifact view);
       - every `panel_every_n_steps` steps a PNG panel of one small layer (`layer`; default the smallest weight
         matrix): its values before the update, the update just applied and the effective LR, per element
         (heatmaps for matrices, bars for vectors), as `step_XXXXXXX.png` and TensorBoard image `params/panel`.
Everything is logged at the step index of the update (0 for the first update). These are the only host syncs.
"""

from __future__ import annotations

import csv
from typing import Any

import lightning as L
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator
from torch.optim import SGD, Adagrad, Adam, AdamW, Optimizer

from adaptive_lr.callbacks.views.base import View, ViewConfigError, new_figure, positive_int, render, save_png

SUMMARY_FIELDS = ("step", "param", "numel", "value_norm", "grad_norm", "update_norm", "update_ratio",
                  "effective_lr_mean", "effective_lr_min", "effective_lr_max")


def effective_lr(optimizer: Optimizer, group: dict[str, Any], param: torch.Tensor) -> torch.Tensor | None:
    """The per-element LR of `param`'s last update (shaped like `param`), read after the optimizer's step; None
    for an optimizer without one defined here.

      1) An optimizer that records its own (`state[p]["effective_lr"]`, e.g. `optim.rescaled_sgd.RescaledSGD`).
      2) Adam / AdamW: `lr / (sqrt(v_hat) + eps)`, `v_hat = v / (1 - beta2^t)` (v = max_exp_avg_sq with
         amsgrad): the factor that multiplies the bias-corrected first moment `m_hat` in the update.
      3) Adagrad: `lr / (1 + (t - 1) * lr_decay) / (sqrt(sum) + eps)`.
      4) SGD: `lr` for every element.
    """
    state = optimizer.state.get(param, {})
    lr = float(group["lr"])
    if "effective_lr" in state:
        return state["effective_lr"]
    if isinstance(optimizer, (Adam, AdamW)) and "exp_avg_sq" in state:
        v = state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]
        v_hat = v / (1 - group["betas"][1] ** float(state["step"]))
        return lr / (v_hat.sqrt() + group["eps"])
    if isinstance(optimizer, Adagrad) and "sum" in state:
        clr = lr / (1 + (float(state["step"]) - 1) * group["lr_decay"])
        return clr / (state["sum"].sqrt() + group["eps"])
    if isinstance(optimizer, SGD):
        return torch.full_like(param, lr)
    return None


def _norm(t: torch.Tensor | None) -> float:
    return float("nan") if t is None else float(t.float().norm())


class ParamView(View):
    """Histograms, norms and a per-element panel of parameters, gradients, updates and effective LRs.

    Args:
        every_n_steps: optimizer steps between snapshots (100). Positive int.
        panel_every_n_steps: steps between PNG panels (1000); a multiple of `every_n_steps`. 0: no panels.
        layer: parameter name (as in `pl_module.named_parameters()`, e.g. `model.head.weight`) of the panel;
            default the smallest parameter with >= 2 dimensions (the first on ties).
        histograms: write TensorBoard histograms (True); scalars and summary.csv are always written.
        dpi: resolution of the panels (100).
    """

    view = "params"

    def __init__(self, every_n_steps: int = 100, panel_every_n_steps: int = 1000, layer: str | None = None,
                 histograms: bool = True, dpi: int = 100) -> None:
        super().__init__(dpi)
        self.every_n_steps = positive_int("every_n_steps", every_n_steps)
        if not (isinstance(panel_every_n_steps, int) and panel_every_n_steps >= 0
                and panel_every_n_steps % every_n_steps == 0):
            raise ViewConfigError(f"panel_every_n_steps must be 0 or a multiple of every_n_steps={every_n_steps}, "
                                  f"got {panel_every_n_steps!r}")
        self.panel_every_n_steps = panel_every_n_steps
        self.layer = layer
        self.histograms = bool(histograms)
        self._names: dict[torch.Tensor, str] = {}
        self._step: int | None = None  # the logging step in progress (None: this batch is not one)
        self._before: dict[str, torch.Tensor] = {}
        self._grads: dict[str, torch.Tensor] = {}

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        named = [(n, p) for n, p in pl_module.named_parameters() if p.requires_grad]
        self._names = {p: n for n, p in named}
        if self.layer is None:
            matrices = [(p.numel(), i, n) for i, (n, p) in enumerate(named) if p.dim() >= 2]
            self.layer = min(matrices)[2] if matrices else (named[0][0] if named else None)
        elif self.layer not in dict(named):
            raise ViewConfigError(f"viz.params.layer={self.layer!r} is not a trainable parameter of "
                                  f"{type(pl_module).__name__}; allowed: {', '.join(n for n, _ in named)}")
        if self.active(trainer):
            with open(self.out_dir / "summary.csv", "w", newline="") as f:
                csv.writer(f).writerow(SUMMARY_FIELDS)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        step = trainer.global_step
        if not self.active(trainer) or step % self.every_n_steps:
            self._step = None
            return
        self._step = step
        self._before = {n: p.detach().clone() for p, n in self._names.items()}
        self._grads = {}

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        if self._step is not None:
            self._grads.update({n: p.grad.detach().clone() for p, n in self._names.items() if p.grad is not None})

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._step is None:
            return
        step, self._step = self._step, None
        lrs = {self._names[p]: lr for opt in trainer.optimizers for g in opt.param_groups for p in g["params"]
               if p in self._names and (lr := effective_lr(opt, g, p)) is not None}
        rows, panel = [], None
        for p, name in self._names.items():
            after, before, grad, lr = p.detach(), self._before[name], self._grads.get(name), lrs.get(name)
            update = after - before
            rows.append(self._summarise(step, name, after, before, update, grad, lr))
            if name == self.layer:
                panel = (before, update, lr)
        with open(self.out_dir / "summary.csv", "a", newline="") as f:
            csv.writer(f).writerows(rows)
        if self.writer is not None and self._names:
            grads = [r[4] for r in rows if np.isfinite(r[4])]  # per-tensor norms -> the global gradient norm
            self.writer.add_scalar("norm/grads/total", float(np.sqrt(np.sum(np.square(grads)))), step)
        if panel is not None and self.panel_every_n_steps and step % self.panel_every_n_steps == 0:
            self._panel(step, *panel)
        self._before, self._grads = {}, {}

    # -- output --------------------------------------------------------------------------------------------------
    def _summarise(self, step: int, name: str, after: torch.Tensor, before: torch.Tensor, update: torch.Tensor,
                   grad: torch.Tensor | None, lr: torch.Tensor | None) -> list[Any]:
        value_norm, update_norm = _norm(after), _norm(update)
        before_norm = _norm(before)
        ratio = update_norm / before_norm if before_norm > 0 else float("nan")
        lr_stats = (float("nan"),) * 3 if lr is None else (float(lr.mean()), float(lr.min()), float(lr.max()))
        row = [step, name, after.numel(), value_norm, _norm(grad), update_norm, ratio, *lr_stats]
        w = self.writer
        if w is None:
            return row
        for key, value in zip(("norm/values", "norm/grads", "norm/updates", "update_ratio", "effective_lr_mean"),
                              (value_norm, row[4], update_norm, ratio, lr_stats[0]), strict=True):
            if np.isfinite(value):
                w.add_scalar(f"{key}/{name}", value, step)
        if self.histograms:
            w.add_histogram(f"values/{name}", after.float().cpu(), step)
            if grad is not None:
                w.add_histogram(f"grads/{name}", grad.float().cpu(), step)
            nonzero = (update != 0) & (before != 0)
            if bool(nonzero.any()):
                ratios = (update[nonzero].abs() / before[nonzero].abs()).log10()
                w.add_histogram(f"update_ratio_log10/{name}", ratios.float().cpu(), step)
            if lr is not None:
                w.add_histogram(f"effective_lr/{name}", lr.float().cpu(), step)
        return row

    def _panel(self, step: int, before: torch.Tensor, update: torch.Tensor, lr: torch.Tensor | None) -> None:
        fig = new_figure(12.0, 3.6, self.dpi, layout=None)  # drawn every panel_every_n_steps: fixed margins
        fig.subplots_adjust(left=0.05, right=0.97, bottom=0.15, top=0.82, wspace=0.3)
        axes = fig.subplots(1, 3)
        panels = [("values (before the update)", before, "viridis"), ("update applied", update, "RdBu_r"),
                  ("effective LR", lr, "magma")]
        for ax, (title, tensor, cmap) in zip(axes, panels, strict=True):
            ax.set_title(title, fontsize=10)
            if tensor is None:
                ax.text(0.5, 0.5, "not defined\nfor this optimizer", ha="center", va="center",
                        transform=ax.transAxes)
                ax.set_axis_off()
                continue
            rows = tensor.shape[0] if tensor.dim() else 1
            data = tensor.detach().float().cpu().reshape(rows, -1).numpy()  # >2-D tensors: [out, rest]
            if data.shape[1] == 1:  # a vector (bias, norm scale): one bar per element
                ax.bar(np.arange(data.shape[0]), data[:, 0], color="tab:blue")
                ax.set_xlabel("element")
                continue
            if cmap == "RdBu_r":  # updates: symmetric around 0
                bound = float(np.abs(data).max()) or 1.0
                image = ax.imshow(data, cmap=cmap, vmin=-bound, vmax=bound, aspect="auto", interpolation="nearest")
            else:
                image = ax.imshow(data, cmap=cmap, aspect="auto", interpolation="nearest")
            ax.set_xlabel("input")
            ax.set_ylabel("output")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            fig.colorbar(image, ax=ax)
        fig.suptitle(f"{self.layer} {tuple(before.shape)} at step {step}", fontsize=11)
        rgb = render(fig)
        save_png(rgb, self.out_dir / f"step_{step:07d}.png")
        if self.writer is not None:
            self.writer.add_image("params/panel", rgb, step, dataformats="HWC")
