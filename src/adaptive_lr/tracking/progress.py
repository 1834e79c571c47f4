"""Feedback while a single run trains (`adaptive-lr train`, `adaptive-lr resume`): on a terminal Lightning's tqdm
progress bar, refreshed about 20 times an epoch; when stdout is not a terminal (a log file, a pipe, CI) one line per
epoch. Grid cells show neither: their runner prints one line per cell.

Both read only what the run already computed: the bar its step counter (no metric is read per step: the task
keeps its batch metrics on the device), the epoch line the record `EpochMetrics` has just logged (its one host
sync of the epoch).
"""

from __future__ import annotations

import math
import sys
from typing import Any, TextIO

import lightning as L
from lightning.pytorch.callbacks import Callback, TQDMProgressBar

from adaptive_lr.callbacks.epoch_metrics import EpochMetrics

BAR_UPDATES_PER_EPOCH = 20
SHOWN = ("train_loss", "val_loss")  # then the task's metric(s): train_<m>, val_<m>


class RunProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar without the logger version (an MLflow run ID) in its postfix."""

    is_bar = True

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


class EpochLines(Callback):
    """One line per epoch on `stream` (default stdout), after the epoch's metrics are logged:

        epoch 3/20 · train_loss 0.2114 · val_loss 0.1932 · train_acc 0.9402 · val_acc 0.9499 · lr 0.01 · 1.2 s
    """

    is_bar = False

    def __init__(self, epoch_metrics: EpochMetrics, stream: TextIO | None = None) -> None:
        super().__init__()
        self.epoch_metrics, self.stream = epoch_metrics, stream

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        record = self.epoch_metrics.last_record
        if not record:
            return
        print(epoch_line(record, trainer.max_epochs, trainer.optimizers[0].param_groups[0]["lr"]),
              file=self.stream or sys.stdout, flush=True)


def epoch_line(record: dict[str, float], max_epochs: int | None, lr: float) -> str:
    """`epoch E/N · train_loss ... · val_loss ... · <the task's metrics> · lr ... · <elapsed> s` from one
    `EpochMetrics` record (`lr`: the LR after the epoch's decision)."""
    names = [*SHOWN, *sorted(k for k in record if k.startswith(("train_", "val_")) and k not in SHOWN)]
    epoch = int(record.get("epoch", 0))
    parts = [f"epoch {epoch}/{max_epochs}" if max_epochs and max_epochs > 0 else f"epoch {epoch}"]
    parts += [f"{k} {record[k]:.4g}" for k in names if k in record]
    parts += [f"lr {lr:.4g}", f"{record.get('epoch_time_s', math.nan):.1f} s"]
    return " · ".join(parts)


def progress_callback(epoch_metrics: EpochMetrics, steps_per_epoch: int, stream: TextIO | None = None) -> Callback:
    """A bar when `stream` (stdout) is a terminal, else the epoch lines."""
    stream_ = stream or sys.stdout
    if stream_.isatty():
        return RunProgressBar(refresh_rate=max(1, steps_per_epoch // BAR_UPDATES_PER_EPOCH))
    return EpochLines(epoch_metrics, stream)
