"""The LightningModule for classification tasks; model, optimizer and loss are injected from config."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch
from torch import nn

from adaptive_lr.tasks.epoch_mean import EpochMeans

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


class ClassificationTask(L.LightningModule):
    """Multi-class (cross-entropy, logits [B, C]) or binary (BCE with logits, logits [B, 1]) classification.

    Puts `{stage}_loss` and `{stage}_acc` epoch means into `trainer.callback_metrics` (where controllers and the
    tracking callbacks read them). Batch values are summed on the device (`EpochMeans`): no per-step `self.log`,
    host sync or cross-rank reduction; one all-reduce per epoch and stage. Train means are published when the
    epoch's validation ends (so callbacks' `on_train_epoch_end` sees them), or at `on_train_epoch_end` when no
    validation ran. Non-finite training losses are counted on the device and surface as `nonfinite_steps`.
    """

    metric = "acc"
    metric_mode = "max"

    def __init__(self, model: nn.Module, optimizer: OptimizerFactory, loss: nn.Module | None = None) -> None:
        super().__init__()
        self.model = model
        self.optimizer_factory = optimizer
        self.loss_fn = loss if loss is not None else nn.CrossEntropyLoss()
        self.binary = isinstance(self.loss_fn, (nn.BCEWithLogitsLoss, nn.BCELoss))
        self.automatic_optimization = False  # see training_step
        self.register_buffer("nonfinite_steps", torch.zeros((), dtype=torch.long), persistent=True)
        names = ("loss", self.metric)
        self._means = {stage: EpochMeans(names) for stage in ("train", "val", "test")}

    @property
    def logged_metrics(self) -> tuple[str, ...]:
        """Every metric name this task puts into `trainer.callback_metrics` (a controller may watch any)."""
        return tuple(f"{s}_{m}" for s in ("train", "val") for m in ("loss", self.metric)) + ("nonfinite_steps",)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # batches of in-memory tensors usually live on the device already: skip Lightning's recursive move
        if isinstance(batch, (tuple, list)) and all(isinstance(t, torch.Tensor) and t.device == device for t in batch):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        logits = self.model(x)
        loss = self.loss_fn(logits, y)
        with torch.no_grad():
            preds = (logits > 0).to(y.dtype) if self.binary else logits.argmax(dim=1)
            acc = (preds == y).float().mean()
        self._means[stage].add(torch.stack([loss.detach(), acc]), len(y))
        return loss

    def _publish(self, stage: str) -> None:
        reduce = None
        if self.trainer.world_size > 1:
            reduce = lambda t: self.trainer.strategy.reduce(t, reduce_op="sum")
        for name, value in self._means[stage].compute(reduce).items():
            self.log(f"{stage}_{name}", value, logger=False)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.state.fn == "fit":
            self._publish("train")
        self._publish("val")

    def on_train_epoch_end(self) -> None:
        self._publish("train")  # no-op when validation already published this epoch's train means

    def on_test_epoch_end(self) -> None:
        self._publish("test")

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        # Manual optimization: the same zero_grad/backward/step as Lightning's automatic loop, through the
        # LightningOptimizer (precision scaling and DDP sync intact), minus its per-step closure and hook chain,
        # which measured ~0.15 ms of a ~2 ms MNIST-MLP step here (`make bench`). Consequence: Trainer's
        # gradient_clip_val and accumulate_grad_batches do not apply to this task.
        optimizer = self.optimizers()
        optimizer.zero_grad()
        loss = self._shared_step(batch, "train")
        self.manual_backward(loss)
        optimizer.step()
        self.nonfinite_steps += (~torch.isfinite(loss.detach())).long()  # device-side count, read once per epoch
        return loss.detach()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.model.parameters())
