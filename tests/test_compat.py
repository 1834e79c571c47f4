"""One test per private internal in `adaptive_lr.compat` (and the public signal that replaced one), against the
installed Lightning and torch: an upgrade that moves any of them fails here, by name."""

from __future__ import annotations

import functools
import os
from concurrent.futures import ProcessPoolExecutor

import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.tensorboard import SummaryWriter

from adaptive_lr.compat import HOOK_NAME, event_file_writer, pool_processes, publish_metrics, step_counter
from adaptive_lr.data.xor import XORDataModule
from adaptive_lr.models.mlp import MLP
from adaptive_lr.tasks import ClassificationTask
from trainer_support import bare_trainer

SGD = functools.partial(torch.optim.SGD, lr=0.1)


tiny_trainer = bare_trainer


class CountedByHand(ClassificationTask):
    """Steps the torch optimizer itself and advances Lightning's counter only through `compat.step_counter`,
    taken once at train start; records whether the LightningOptimizer holds the same two callables inside every
    training_step (what its own `step()` would run)."""

    def on_train_start(self) -> None:
        self.counter = step_counter(self.trainer)
        self.same_as_optimizers: list[bool] = []

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        self.same_as_optimizers.append((opt._on_before_step, opt._on_after_step) == self.counter)
        opt.optimizer.zero_grad()
        loss = self.loss_fn(self.model(batch[0]), batch[1])
        loss.backward()
        before, after = self.counter
        before()
        opt.optimizer.step()
        after()
        return loss.detach()


def test_step_counter_is_what_advances_global_step_and_what_the_optimizer_runs():
    dm = XORDataModule(variant="clean", n_samples=100, batch_size=20)  # 60 train rows: 3 batches
    task = CountedByHand(MLP(2, [4], 1, "tanh"), SGD, torch.nn.BCEWithLogitsLoss())
    trainer = tiny_trainer(max_epochs=2)
    trainer.fit(task, datamodule=dm)
    assert trainer.global_step == 6
    assert trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress.total.completed == 6
    assert task.same_as_optimizers == [True] * 6


class HookNames(Callback):
    def __init__(self) -> None:
        self.seen: list[tuple[str | None, bool]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.seen.append((getattr(pl_module, HOOK_NAME), HOOK_NAME in vars(pl_module)))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.seen.append((getattr(pl_module, HOOK_NAME), HOOK_NAME in vars(pl_module)))


def test_the_hook_name_is_a_plain_attribute_set_by_lightning_and_by_the_direct_step():
    """Lightning sets it around its hook calls; the direct training step (tasks/base.py) sets it on the instance
    around the `on_before_optimizer_step` hooks it calls itself (60 train rows in 2 batches: 2 steps)."""
    names = HookNames()
    task = ClassificationTask(MLP(2, [4], 1, "tanh"), SGD, torch.nn.BCEWithLogitsLoss())
    dm = XORDataModule(variant="clean", n_samples=100, batch_size=30)
    tiny_trainer(max_epochs=1, callbacks=[names]).fit(task, datamodule=dm)
    assert task._direct is not None
    assert names.seen == [("on_train_epoch_start", True), *[("on_before_optimizer_step", True)] * 2]


class LastBatch(Callback):
    def __init__(self) -> None:
        self.seen: list[bool] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        self.seen.append(trainer.is_last_batch)


def test_is_last_batch_tells_an_epochs_validation_from_a_mid_epoch_one():
    """The public signal LRControl decides per-epoch policies on, with two validations per epoch."""
    seen = LastBatch()
    task = ClassificationTask(MLP(2, [4], 1, "tanh"), SGD, torch.nn.BCEWithLogitsLoss())
    dm = XORDataModule(variant="clean", n_samples=100, batch_size=15)  # 60 train rows: 4 batches
    tiny_trainer(max_epochs=2, val_check_interval=0.5, callbacks=[seen]).fit(task, datamodule=dm)
    assert seen.seen == [False, True, False, True]


class Publishes(Callback):
    """Publishes a metric at the first batch of every epoch, and records what the module's logging left."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            publish_metrics(trainer, {"restored_metric": torch.tensor(float(trainer.current_epoch))})

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        metrics = trainer.callback_metrics
        self.seen.append((float(metrics["restored_metric"]), float(metrics["train_loss"])))


def test_published_metrics_stay_in_callback_metrics_beside_the_modules_own():
    seen = Publishes()
    task = ClassificationTask(MLP(2, [4], 1, "tanh"), SGD, torch.nn.BCEWithLogitsLoss())
    trainer = tiny_trainer(max_epochs=2, callbacks=[seen])
    trainer.fit(task, datamodule=XORDataModule(variant="clean", n_samples=60))
    assert [epoch for epoch, _ in seen.seen] == [0.0, 1.0]
    assert all(loss == loss for _, loss in seen.seen)  # the task's epoch means were published beside it
    assert float(trainer.callback_metrics["restored_metric"]) == 1.0


def test_event_file_writer_is_the_summary_writers_file_writer(tmp_path):
    writer = SummaryWriter(str(tmp_path))
    file_writer = event_file_writer(writer)
    assert hasattr(file_writer, "add_summary") and file_writer is event_file_writer(writer)
    writer.close()


def _pid() -> int:
    return os.getpid()


def test_pool_processes_are_the_pools_live_workers():
    with ProcessPoolExecutor(max_workers=1) as pool:
        assert pool_processes(pool) == []  # none before the first job
        pid = pool.submit(_pid).result()
        assert [p.pid for p in pool_processes(pool)] == [pid]
