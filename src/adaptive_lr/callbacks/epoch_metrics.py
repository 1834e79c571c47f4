"""Per-epoch metric records: the contract the reports read (one value per epoch, on the global step, beside the
epoch number as its own metric `epoch`)."""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from adaptive_lr.tracking import schema
from adaptive_lr.tracking.loggers import MLflowRunLogger


class EpochMetrics(Callback):
    """At the end of every training epoch (after its validation) logs, at the global step (optimizer steps done,
    the step `lr` and the controller decisions use, so every metric shares one x axis in MLflow and TensorBoard):
    `epoch` (the epoch number, 1-based: MLflow's convention for an epoch axis), every metric the task logged
    (`train_loss`, `val_loss`, `train_<metric>`, `val_<metric>`, `nonfinite_steps`), `epoch_time_s` (wall-clock
    seconds since training started, controller overhead included) and `epoch_lr` (the LR of param group 0 when the
    epoch started, i.e. before that epoch's controller decision). Stores written before this convention used
    step = epoch number and no `epoch` metric; `reporting.collect.epoch_of_step` reads both.

    MLflow loggers are flushed right after (one store write per epoch, ~10-20 ms): this callback runs before any
    checkpoint callback, so a checkpoint never exists for an epoch whose metrics are not stored.

    This is the one host sync of the epoch. A non-finite training loss is recorded, never dropped: the epoch's
    `nonfinite_steps` is logged and, with `stop_on_nonfinite`, training stops and `diverged_epoch` is set.
    """

    def __init__(self, stop_on_nonfinite: bool = True) -> None:
        super().__init__()
        self.stop_on_nonfinite = stop_on_nonfinite
        self.diverged_epoch: int | None = None
        self._t0 = 0.0
        self._t_end: float | None = None
        self._epoch_lr = float("nan")
        self._elapsed_before = 0.0  # wall-clock of epochs run before a resume
        self.last_record: dict[str, float] = {}  # the last epoch's record (the final validation metrics)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0, self._t_end = time.perf_counter(), None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_lr = trainer.optimizers[0].param_groups[0]["lr"]

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t_end = time.perf_counter()

    @property
    def elapsed_s(self) -> float:
        """Wall-clock seconds of training (all epochs, validation and callbacks included), up to train end."""
        if not self._t0:
            return self._elapsed_before
        return self._elapsed_before + (self._t_end or time.perf_counter()) - self._t0

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        names = getattr(pl_module, "logged_metrics", tuple(trainer.callback_metrics))
        epoch = trainer.current_epoch + 1
        record: dict[str, float] = {schema.EPOCH: float(epoch)}
        for name in names:
            value = trainer.callback_metrics.get(name, getattr(pl_module, name, None))
            if isinstance(value, torch.Tensor):
                value = value.item()  # sync point: once per epoch
            if value is not None:
                record[name] = float(value)
        record[schema.EPOCH_TIME_S] = self.elapsed_s
        record[schema.EPOCH_LR] = self._epoch_lr
        if not math.isfinite(record.get(schema.TRAIN_LOSS, 0.0)) and self.diverged_epoch is None:
            self.diverged_epoch = epoch
            record["diverged_epoch"] = float(epoch)
            if self.stop_on_nonfinite:
                trainer.should_stop = True
        self.last_record = record
        for logger in trainer.loggers:
            logger.log_metrics(record, step=trainer.global_step)
            if isinstance(logger, MLflowRunLogger):  # crash safety: the epoch is in the store before its checkpoint
                logger.flush()

    def state_dict(self) -> dict[str, Any]:
        # epoch_lr: a run restored mid-epoch (a step checkpoint) does not start that epoch again
        return {"elapsed_s": self.elapsed_s, "diverged_epoch": self.diverged_epoch, "epoch_lr": self._epoch_lr,
                "last_record": self.last_record}  # the final validation values (HParams), also after a resume

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._elapsed_before = float(state_dict["elapsed_s"])
        self.diverged_epoch = state_dict["diverged_epoch"]
        self._epoch_lr = float(state_dict.get("epoch_lr", float("nan")))
        self.last_record = dict(state_dict.get("last_record", {}))  # checkpoints from before it was kept: none
