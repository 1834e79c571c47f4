"""The LightningModule for classification tasks; model, optimizer and loss are injected from config."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from adaptive_lr.tasks.base import STAGES, EpochMeanTask, OptimizerFactory


class ClassificationTask(EpochMeanTask):
    """Multi-class (cross-entropy, logits [B, C]) or binary (BCE with logits, logits [B, 1]) classification.

    Publishes `{stage}_loss` and `{stage}_acc` epoch means into `trainer.callback_metrics` (machinery in
    `tasks.base`: device-side sums, one publish per epoch and stage, manual optimisation, `nonfinite_steps`).
    """

    metric = "acc"
    metric_mode = "max"

    def __init__(self, model: nn.Module, optimizer: OptimizerFactory, loss: nn.Module | None = None) -> None:
        super().__init__(model, optimizer, loss if loss is not None else nn.CrossEntropyLoss(),
                         {stage: ("loss", self.metric) for stage in STAGES})
        self.binary = isinstance(self.loss_fn, (nn.BCEWithLogitsLoss, nn.BCELoss))

    def batch_metrics(self, batch: Sequence[torch.Tensor], stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self.model(x)
        loss = self.loss_fn(logits, y)
        with torch.no_grad():
            preds = (logits > 0).to(y.dtype) if self.binary else logits.argmax(dim=1)
            acc = (preds == y).float().mean()
        return loss, torch.stack([loss.detach(), acc])
