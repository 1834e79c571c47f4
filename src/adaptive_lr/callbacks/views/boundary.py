"""The decision-boundary view for 2-D binary tasks (the XOR family: inputs [N, 2]).

Every `every_n_epochs` epochs (and at the last epoch) it draws, left, the predicted probability of class 1 over
the data's bounding box (filled contours), the 0.5 boundary (black line) and the training points coloured by
label; right, the training loss of every epoch so far on a log scale. Output in `viz/boundary/NNN/`:
`epoch_XXX.png` per image, `boundary.gif` (one frame per image, built with Pillow at train end), and each image
as TensorBoard image `views/boundary/epoch`.

The probability is `sigmoid(logit)` for one output, `softmax(logits)[:, 1]` for two; other tasks (inputs not
[N, 2], more than two outputs) are refused at fit start with a `ViewConfigError` naming the shape.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import numpy as np
import torch

from adaptive_lr.callbacks.views.base import (
    TRAIN,
    View,
    ViewConfigError,
    add_png_image,
    class_labels,
    metric,
    new_figure,
    positive_int,
    render,
    save_png,
    split_tensors,
    tb_tag,
    write_gif,
)
from adaptive_lr.callbacks.views.latent import seeded_subset


def probability_of_class_1(logits: torch.Tensor) -> torch.Tensor:
    """P(class 1) [N] from one logit [N, 1] (sigmoid) or two [N, 2] (softmax)."""
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    if logits.shape[1] == 2:
        return torch.softmax(logits, dim=1)[:, 1]
    raise ViewConfigError(f"viz.boundary needs a binary classifier (1 or 2 outputs), got {logits.shape[1]} outputs")


class DecisionBoundaryView(View):
    """Probability contours, the 0.5 boundary, the data and the loss curve of a 2-D binary task (module docstring).

    Args:
        every_n_epochs: epochs between images (5). Positive int.
        resolution: grid points per axis (120). Positive int.
        margin: border around the data's bounding box, as a fraction of its extent (0.15).
        max_points: at most this many training points drawn, a fixed seeded subset (1000).
        seed: seed of that subset (0).
        frame_ms: GIF frame duration (400).
        dpi: figure resolution (100).
    """

    view = "boundary"

    def __init__(self, every_n_epochs: int = 5, resolution: int = 120, margin: float = 0.15,
                 max_points: int = 1000, seed: int = 0, frame_ms: int = 400, dpi: int = 100) -> None:
        super().__init__(dpi)
        self.every_n_epochs = positive_int("every_n_epochs", every_n_epochs)
        self.resolution = positive_int("resolution", resolution)
        if not (isinstance(margin, (int, float)) and 0 <= margin < 10):
            raise ViewConfigError(f"margin must be a number in [0, 10), got {margin!r}")
        self.margin, self.seed = float(margin), seed
        self.max_points, self.frame_ms = positive_int("max_points", max_points), positive_int("frame_ms", frame_ms)
        self.losses: list[float] = []  # training loss per epoch (one float an epoch)
        self._images: list[str] = []
        self._drawn_epoch = 0
        self._points: tuple[torch.Tensor, torch.Tensor] | None = None
        self._grid: tuple[np.ndarray, np.ndarray] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.losses = []  # a new fit starts a new curve (a resume restores it afterwards, in load_state_dict)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if not self.active(trainer):
            return
        x, y = split_tensors(trainer, TRAIN, self.max_points)
        if x.dim() != 2 or x.shape[1] != 2:
            raise ViewConfigError(f"viz.boundary needs 2-D inputs [N, 2] (the XOR tasks); this task's inputs are "
                                  f"{list(x.shape)}")
        idx = seeded_subset(len(x), self.max_points, self.seed)
        x, y = x[idx].float(), class_labels(y[idx])
        probability_of_class_1(self.eval_forward(pl_module, x[:1], 1))  # refuses >2 outputs now, not mid-run
        lo, hi = x.min(0).values, x.max(0).values
        pad = (hi - lo).clamp_min(1e-3) * self.margin
        axes = [np.linspace(float(lo[i] - pad[i]), float(hi[i] + pad[i]), self.resolution) for i in range(2)]
        self._grid = tuple(np.meshgrid(*axes))
        self._points, self._images, self._drawn_epoch = (x, y), [], 0

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.active(trainer):
            return
        epoch = trainer.current_epoch + 1
        self.losses.append(metric(trainer, "train_loss"))  # host sync: once per epoch
        if epoch % self.every_n_epochs == 0 or epoch == trainer.max_epochs:
            self._draw(pl_module, epoch)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.active(trainer):
            return
        if self.losses and self._drawn_epoch < len(self.losses):  # stopped early: draw the final state too
            self._draw(pl_module, len(self.losses))
        write_gif([self.out_dir / name for name in self._images], self.out_dir / "boundary.gif", self.frame_ms)
        super().on_train_end(trainer, pl_module)

    def _draw(self, pl_module: L.LightningModule, epoch: int) -> None:
        gx, gy = self._grid
        grid = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], axis=1)).float()
        prob = probability_of_class_1(self.eval_forward(pl_module, grid, 65536)).reshape(gx.shape).numpy()
        x, y = self._points
        fig = new_figure(11.0, 4.8, self.dpi)
        left, right = fig.subplots(1, 2, width_ratios=[1.15, 1.0])
        filled = left.contourf(gx, gy, np.nan_to_num(prob, nan=0.5), levels=np.linspace(0, 1, 11), cmap="RdBu_r",
                               alpha=0.8)
        if np.nanmin(prob) < 0.5 < np.nanmax(prob):
            left.contour(gx, gy, prob, levels=[0.5], colors="black", linewidths=2.0)
        left.scatter(x[:, 0].numpy(), x[:, 1].numpy(), c=y.numpy(), cmap="RdBu_r", vmin=0, vmax=1, s=16,
                     edgecolors="black", linewidths=0.4)
        left.set_title("P(class 1), 0.5 boundary (black), training data", fontsize=10)
        left.set_xlim(gx.min(), gx.max())
        left.set_ylim(gy.min(), gy.max())
        fig.colorbar(filled, ax=left)
        epochs = np.arange(1, len(self.losses) + 1)
        losses = np.asarray(self.losses)
        ok = np.isfinite(losses) & (losses > 0)
        right.plot(epochs[ok], losses[ok], marker="o", markersize=3)
        right.set_yscale("log")
        right.set_xlim(0.5, max(len(self.losses), 1) + 0.5)
        right.set_xlabel("epoch")
        right.set_title("training loss (log scale)", fontsize=10)
        right.grid(True, which="both", alpha=0.3)
        loss = self.losses[epoch - 1] if len(self.losses) >= epoch else math.nan
        fig.suptitle(f"epoch {epoch}, train loss {loss:.4g}", fontsize=11)
        rgb = render(fig)
        name = f"epoch_{epoch:03d}.png"
        png = save_png(rgb, self.out_dir / name)
        self._images.append(name)
        self._drawn_epoch = epoch
        if self.writer is not None:
            add_png_image(self.writer, tb_tag("boundary/epoch"), png, rgb.shape, epoch)

    # -- persistence: the loss curve continues across a resume ---------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"losses": list(self.losses)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.losses = [float(v) for v in state_dict.get("losses", [])]
