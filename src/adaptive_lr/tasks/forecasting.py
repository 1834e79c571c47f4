"""The LightningModule for multi-step forecasting; model, optimizer and loss are injected from config."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from adaptive_lr.tasks.base import EpochMeanTask, OptimizerFactory

TRAIN_METRICS = ("loss", "mse", "mae")
EVAL_METRICS = (
    *TRAIN_METRICS,
    "mse_orig",
    "mae_orig",
    "naive_mse",
    "naive_mae",
    "naive_mse_orig",
    "naive_mae_orig",
)


class ForecastTask(EpochMeanTask):
    """Regression of the next `horizon` values: batches (x [B, L, F], y [B, H], naive [B, H], scale [B]), plus
    future [B, H, K] when the data has known-future covariates, as `data.forecast.ForecastDataModule` yields them
    (a plain (x, y) batch is enough for training); the model gets x, and future when the batch has it.

    Publishes epoch means (machinery in `tasks.base`): every stage `{stage}_loss`, `{stage}_mse`, `{stage}_mae` in
    normalised units; val and test also `{stage}_mse_orig`/`{stage}_mae_orig` in the series' original units
    (errors times the batch's `scale`, the target's normalising std: the mean cancels in a difference), and the
    seasonal-naive forecast of the same targets, `{stage}_naive_mse`/`_mae` and their `_orig`, so a report can set
    the model beside the baseline it must beat (`test_naive_mse`). The naive scores need no gradient and cost one
    fused subtraction per eval batch; training batches compute only what they publish.
    """

    metric = "mse"
    metric_mode = "min"

    def __init__(self, model: nn.Module, optimizer: OptimizerFactory, loss: nn.Module | None = None) -> None:
        super().__init__(
            model,
            optimizer,
            loss if loss is not None else nn.MSELoss(),
            {"train": TRAIN_METRICS, "val": EVAL_METRICS, "test": EVAL_METRICS},
        )

    def predict(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        """The model's forecast of the batch: from x, and the horizon's known-future covariates (batch[4]) if any."""
        return self.model(batch[0], batch[4]) if len(batch) > 4 else self.model(batch[0])

    def batch_metrics(self, batch: Sequence[torch.Tensor], stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        y = batch[1]
        pred = self.predict(batch)
        loss = self.loss_fn(pred, y)
        with torch.no_grad():
            err = pred.detach() - y
            values = [loss.detach(), err.square().mean(), err.abs().mean()]
            if stage != "train":
                naive, scale = batch[2], batch[3][:, None]
                naive_err = naive - y
                values += [
                    (err * scale).square().mean(),
                    (err * scale).abs().mean(),
                    naive_err.square().mean(),
                    naive_err.abs().mean(),
                    (naive_err * scale).square().mean(),
                    (naive_err * scale).abs().mean(),
                ]
        return loss, torch.stack(values)
