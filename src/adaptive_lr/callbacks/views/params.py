"""The parameter view: values, gradients, updates and per-parameter effective LRs, every N optimizer steps.

At a logging step (`global_step % every_n_steps == 0`, the count of updates done before this batch):
  1) `on_train_batch_start` copies every trainable parameter (only on logging steps: other steps cost one modulo);
  2) `on_before_optimizer_step` copies the gradients the optimizer is about to apply;
  3) `on_train_batch_end` reads the parameters after the update: `update = after - before`, the optimizer's
     per-element effective LR (`effective_lr`, after the step, i.e. the LR of the update just applied), and writes
       - TensorBoard scalars per tensor `views/norm/{values,grads,updates}/<name>`, `views/update_ratio/<name>`
         (||update|| / ||value before||), `views/effective_lr_mean/<name>`, and the global
         `views/norm/grads/total`;
       - one row per tensor in `viz/params/NNN/summary.csv` (the same numbers, for MLflow's artifact view);
       - every `histogram_every_n_steps` steps, TensorBoard histograms per tensor: `views/values/<name>` (after the
         update), `views/grads/<name>`, `views/update_ratio_log10/<name>` (log10 |update| / |value before|, over
         the elements where both are non-zero) and `views/effective_lr/<name>`;
       - while an `adaptive-lr watch` page is open on the run (`watch.layer_file`: one `stat` per logging step),
         `layer.npz`: that step's values, update and effective LR of the panel layer (below), replaced;
       - every `panel_every_n_steps` steps a PNG panel of one small layer (`layer`; default the smallest weight
         matrix): its values before the update, the update just applied and the effective LR, per element
         (heatmaps for matrices, bars for vectors), as `step_XXXXXXX.png` and TensorBoard image
         `views/params/panel`.
Everything is logged at the step index of the update (0 for the first update).

What it costs (`benchmarks/viz_overhead.py`): every statistic (norms, effective-LR range, histogram buckets) is
computed on the parameters' device, and all of one snapshot come to the host in one transfer, the snapshot's one
host sync (histograms: a second one); histogram buckets are counted on the device (`torch.bincount` over 64 equal
buckets between the tensor's min and max, written with `add_histogram_raw`) instead of by TensorBoard's numpy
`add_histogram` (~2 ms per tensor on the MNIST MLP); a snapshot's scalars are one TensorBoard event; the panel is
drawn with numpy and Pillow (`views.panel`), and its PNG is encoded once for the file and TensorBoard.
"""

from __future__ import annotations

import csv
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.optim import SGD, Adagrad, Adam, AdamW, Optimizer

from adaptive_lr.callbacks.views.base import (
    View,
    ViewConfigError,
    add_png_image,
    add_scalars_event,
    encode_png,
    positive_int,
    tb_tag,
)
from adaptive_lr.callbacks.views.panel import Heatmap, render_panel
from adaptive_lr.watch.layer_file import LAYER_FILE, watched, write_layer

SUMMARY_FIELDS = ("step", "param", "numel", "value_norm", "grad_norm", "update_norm", "update_ratio",
                  "effective_lr_mean", "effective_lr_min", "effective_lr_max")
HISTOGRAM_BUCKETS = 64  # equal-width buckets between a tensor's min and max (TensorBoard re-bins to ~30 to draw)
SCALARS = ("norm/values", "norm/grads", "norm/updates", "update_ratio", "effective_lr_mean")


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


def tensor_stats(after: torch.Tensor, before: torch.Tensor, update: torch.Tensor, grad: torch.Tensor | None,
                 lr: torch.Tensor | None) -> torch.Tensor:
    """[value_norm, grad_norm, update_norm, before_norm, lr_mean, lr_min, lr_max] of one tensor, on its device
    (NaN where the gradient or the effective LR is not defined); nothing is read to the host here."""
    nan = torch.full((), float("nan"), device=after.device)
    norms = [t.float().norm() if t is not None else nan for t in (after, grad, update, before)]
    lrs = [nan, nan, nan] if lr is None else [lr.float().mean(), lr.float().min(), lr.float().max()]
    return torch.stack([*norms, *lrs])


def histogram_stats(x: torch.Tensor, valid: torch.Tensor | None = None,
                    buckets: int = HISTOGRAM_BUCKETS) -> torch.Tensor:
    """[min, max, count, sum, sum of squares, bucket counts...] of the elements of `x` (where `valid`), with
    `buckets` equal-width buckets between min and max, computed on `x`'s device without a host sync."""
    x = x.detach().float().reshape(-1)
    if x.numel() == 0:
        return torch.zeros(5 + buckets, device=x.device)
    if valid is None:  # every element: no masking passes
        lo, hi = torch.aminmax(x)
        kept, count = x, torch.tensor(float(x.numel()), device=x.device)
    else:
        ok = valid.reshape(-1)
        lo = torch.where(ok, x, torch.full_like(x, float("inf"))).min()
        hi = torch.where(ok, x, torch.full_like(x, float("-inf"))).max()
        kept, count = torch.where(ok, x, torch.zeros_like(x)), ok.sum().float()
    width = (hi - lo).clamp_min(torch.finfo(torch.float32).tiny)
    index = (kept - lo).mul_(buckets / width).nan_to_num_(0.0).clamp_(0, buckets - 1).long()  # in place: 1 copy
    counts = torch.bincount(index, weights=None if valid is None else ok.float(), minlength=buckets)[:buckets]
    head = torch.stack([lo, hi, count, kept.sum(), (kept * kept).sum()])
    return torch.cat([head, counts.to(head.dtype)])


def write_histogram(writer: Any, tag: str, stats: list[float], step: int) -> None:
    """One TensorBoard histogram from `histogram_stats` (read to the host); nothing for an empty selection."""
    lo, hi, num, total, squares, *counts = stats
    if num <= 0 or not (np.isfinite(lo) and np.isfinite(hi)):
        return
    if hi <= lo:  # every element equal: one bucket
        limits, counts = [hi], [num]
    else:
        limits = [lo + (hi - lo) * (i + 1) / len(counts) for i in range(len(counts))]
    writer.add_histogram_raw(tag, min=lo, max=hi, num=int(num), sum=total, sum_squares=squares,
                             bucket_limits=limits, bucket_counts=counts, global_step=step)


class ParamView(View):
    """Histograms, norms and a per-element panel of parameters, gradients, updates and effective LRs.

    Args:
        every_n_steps: optimizer steps between snapshots (100). Positive int.
        panel_every_n_steps: steps between PNG panels (1000); a multiple of `every_n_steps`. 0: no panels.
        histogram_every_n_steps: steps between histograms (500); a multiple of `every_n_steps`.
        layer: parameter name (as in `pl_module.named_parameters()`, e.g. `model.head.weight`) of the panel;
            default the smallest parameter with >= 2 dimensions (the first on ties).
        histograms: write TensorBoard histograms (True); scalars and summary.csv are always written.
        dpi: resolution of the panels (100).
    """

    view = "params"

    def __init__(self, every_n_steps: int = 100, panel_every_n_steps: int = 1000, layer: str | None = None,
                 histograms: bool = True, dpi: int = 100, histogram_every_n_steps: int = 500) -> None:
        super().__init__(dpi)
        self.every_n_steps = positive_int("every_n_steps", every_n_steps)
        if not (isinstance(panel_every_n_steps, int) and panel_every_n_steps >= 0
                and panel_every_n_steps % every_n_steps == 0):
            raise ViewConfigError(f"panel_every_n_steps must be 0 or a multiple of every_n_steps={every_n_steps}, "
                                  f"got {panel_every_n_steps!r}")
        self.panel_every_n_steps = panel_every_n_steps
        if not (isinstance(histogram_every_n_steps, int) and histogram_every_n_steps >= 1
                and histogram_every_n_steps % every_n_steps == 0):
            raise ViewConfigError(f"histogram_every_n_steps must be a positive multiple of every_n_steps="
                                  f"{every_n_steps}, got {histogram_every_n_steps!r}")
        self.histogram_every_n_steps = histogram_every_n_steps
        self._summary: Any | None = None  # summary.csv, open during a fit
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
        if self.active(trainer):  # kept open for the fit (flushed at every snapshot, closed at train end)
            self._close_summary()
            self._summary = open(self.out_dir / "summary.csv", "w", newline="")
            csv.writer(self._summary).writerow(SUMMARY_FIELDS)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close_summary()
        super().on_train_end(trainer, pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._close_summary()

    def _close_summary(self) -> None:
        if self._summary is not None:
            self._summary.close()
            self._summary = None

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
        names = list(self._names.values())
        afters = [p.detach() for p in self._names]
        updates = [a - self._before[n] for a, n in zip(afters, names, strict=True)]
        grads, effective = [self._grads.get(n) for n in names], [lrs.get(n) for n in names]
        # host sync point: every tensor's statistics of this snapshot, in one transfer
        stats = torch.stack([tensor_stats(a, self._before[n], u, g, lr) for a, n, u, g, lr
                             in zip(afters, names, updates, grads, effective, strict=True)]).tolist() if names else []
        rows, scalars = [], {}
        for name, after, (value_norm, grad_norm, update_norm, before_norm, *lr_stats) in zip(names, afters, stats,
                                                                                              strict=True):
            ratio = update_norm / before_norm if before_norm > 0 else float("nan")
            rows.append([step, name, after.numel(), value_norm, grad_norm, update_norm, ratio, *lr_stats])
            for key, value in zip(SCALARS, (value_norm, grad_norm, update_norm, ratio, lr_stats[0]), strict=True):
                if np.isfinite(value):
                    scalars[tb_tag(f"{key}/{name}")] = value
        csv.writer(self._summary).writerows(rows)
        self._summary.flush()  # readable while the run goes on
        if self.writer is not None and names:
            grad_norms = [r[4] for r in rows if np.isfinite(r[4])]  # per-tensor norms -> the global gradient norm
            scalars[tb_tag("norm/grads/total")] = float(np.sqrt(np.sum(np.square(grad_norms))))
            add_scalars_event(self.writer, scalars, step)
            if self.histograms and step % self.histogram_every_n_steps == 0:
                self._histograms(step, names, afters, updates, grads, effective)
        panel = next(((self._before[n], updates[i], effective[i]) for i, n in enumerate(names) if n == self.layer),
                     None)
        if panel is not None and watched(self.out_dir.parents[2]):  # bars for an open `adaptive-lr watch` page
            write_layer(self.out_dir / LAYER_FILE, step, self.layer, *panel)
        if panel is not None and self.panel_every_n_steps and step % self.panel_every_n_steps == 0:
            self._panel(step, *panel)
        self._before, self._grads = {}, {}

    # -- output --------------------------------------------------------------------------------------------------
    def _histograms(self, step: int, names: list[str], afters: list[torch.Tensor], updates: list[torch.Tensor],
                    grads: list[torch.Tensor | None], effective: list[torch.Tensor | None]) -> None:
        """Values, gradients, log10 update ratios and effective LRs of every tensor, bucketed on the device and
        read to the host in one transfer (a second host sync, at this cadence only)."""
        tags, rows = [], []
        for name, after, update, grad, lr in zip(names, afters, updates, grads, effective, strict=True):
            before = self._before[name]
            nonzero = (update != 0) & (before != 0)
            ratio = (update.abs() / before.abs().where(nonzero, torch.ones_like(before))).log10()
            for key, x, valid in (("values", after, None), ("grads", grad, None),
                                  ("update_ratio_log10", ratio, nonzero), ("effective_lr", lr, None)):
                if x is not None:
                    tags.append(tb_tag(f"{key}/{name}"))
                    rows.append(histogram_stats(x, valid))
        if rows:
            for tag, stats in zip(tags, torch.stack(rows).tolist(), strict=True):
                write_histogram(self.writer, tag, stats, step)

    def _panel(self, step: int, before: torch.Tensor, update: torch.Tensor, lr: torch.Tensor | None) -> None:
        """Values before the update, the update and the effective LR of the panel layer, per element
        (`views.panel`: drawn with numpy and Pillow, a few ms)."""
        panels = [Heatmap(title, self._panel_data(t), cmap) for title, t, cmap in (
            ("values (before the update)", before, "viridis"), ("update applied", update, "RdBu_r"),
            ("effective LR", lr, "magma"))]
        rgb = render_panel(f"{self.layer} {tuple(before.shape)} at step {step}", panels, round(12.0 * self.dpi),
                           round(3.6 * self.dpi))
        png = encode_png(rgb)
        (self.out_dir / f"step_{step:07d}.png").write_bytes(png)
        if self.writer is not None:
            add_png_image(self.writer, tb_tag("params/panel"), png, rgb.shape, step)

    @staticmethod
    def _panel_data(tensor: torch.Tensor | None) -> np.ndarray | None:
        if tensor is None:
            return None
        rows = tensor.shape[0] if tensor.dim() else 1
        return tensor.detach().float().cpu().reshape(rows, -1).numpy()  # >2-D tensors: [out, rest]
