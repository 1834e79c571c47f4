"""Crash-safe checkpoints: a run's last checkpoint, replaced atomically at every epoch end (and, when configured,
every N optimizer steps inside an epoch) and holding every random number generator's state, so that
`adaptive-lr resume` continues exactly as the uninterrupted run would have.

What makes the continuation identical: Lightning's checkpoint holds the weights, optimizer, loop counters (the
batch position inside the epoch too) and every callback's `state_dict` (the LR controller's policy with its own
RNG, `EpochMetrics`); the task adds its running epoch sums (`tasks/base.py`); the data order and the augmentation
generator are pure functions of (seed, epoch), and the in-memory loader's position inside the epoch with its
augmentation generator's state is saved by Lightning's fit loop (`data/tensor_loader.py`); the rest is saved here:
  - the global torch (dropout, CUDA included), numpy and Python generators;
  - the epoch metrics published so far (`trainer.callback_metrics`: last validation's `val_loss`, ...), which a
    new process would otherwise lack until its first validation, while a step-interval controller reads them;
both are put back right before the first training batch after the restore, the point in the uninterrupted run that
follows the checkpoint.

Step checkpoints (`every_n_steps`) are written at the end of a training batch after the controller's decision,
once the metrics logged so far are flushed to MLflow; never at a batch that a validation follows (the epoch's last
one, or a `val_check_interval` point): Lightning skips the validation a restore would owe there.
"""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint

from adaptive_lr.compat import publish_metrics
from adaptive_lr.tracking.loggers import MLflowRunLogger

CHECKPOINT_DIR = "checkpoints"
LAST = "last.ckpt"


def last_checkpoint(run_dir: Path) -> Path | None:
    """The run's last complete checkpoint, if one was written."""
    path = run_dir / CHECKPOINT_DIR / LAST
    return path if path.is_file() else None


def rng_states() -> dict[str, Any]:
    """The state of every global generator a training step may draw from."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    # plain types and tensors only: Lightning loads checkpoints with torch.load(weights_only=True)
    numpy_state = (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)
    states = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def published_metrics(trainer: L.Trainer) -> dict[str, torch.Tensor]:
    """The scalar epoch metrics in `trainer.callback_metrics`, as CPU tensors (what a checkpoint can hold)."""
    return {k: torch.as_tensor(v).detach().cpu() for k, v in trainer.callback_metrics.items()
            if isinstance(v, (torch.Tensor, float, int)) and torch.as_tensor(v).numel() == 1}


def validation_follows(trainer: L.Trainer, batch_idx: int) -> bool:
    """Whether a validation may run right after this training batch: the epoch's last batch, a stop request, or a
    `val_check_interval` point (in batches; a time-based interval is never predictable, so always)."""
    every = trainer.val_check_batch
    return bool(trainer.is_last_batch or trainer.should_stop or every is None or not isinstance(every, int)
                or (batch_idx + 1) % every == 0)


class ResumeCheckpoint(Checkpoint):
    """Writes `<dirpath>/last.ckpt` every `every_n_epochs` epochs, after everything else of the epoch (Lightning runs
    `Checkpoint` callbacks after the module's `on_train_epoch_end`, and `EpochMetrics` has flushed the epoch's
    metrics by then), and every `every_n_steps` optimizer steps inside an epoch (module docstring; 0: never). The
    file is replaced atomically: a kill mid-write leaves the previous checkpoint intact.

    Its own state is the RNG states and the published epoch metrics at the moment of writing; after a restore they
    are applied at the next training batch's start, so nothing drawn between the restore and that batch shifts the
    random stream.
    """

    def __init__(self, dirpath: Path, every_n_epochs: int = 1, every_n_steps: int = 0) -> None:
        super().__init__()
        for name, value in (("every_n_epochs", every_n_epochs), ("every_n_steps", every_n_steps)):
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
                raise ValueError(f"checkpoint.{name} must be an int >= 0 (0: none), got {value!r}")
        if not (every_n_epochs or every_n_steps):
            raise ValueError("checkpoint.every_n_epochs and checkpoint.every_n_steps are both 0: nothing to write")
        self.dirpath, self.every_n_epochs, self.every_n_steps = Path(dirpath), every_n_epochs, every_n_steps
        self._restored: dict[str, Any] | None = None
        self._fit_trainer: L.Trainer | None = None

    @property
    def path(self) -> Path:
        return self.dirpath / LAST

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self.every_n_epochs or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        self._write(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if (not self.every_n_steps or trainer.sanity_checking or trainer.global_step % self.every_n_steps
                or validation_follows(trainer, batch_idx)):
            return
        for logger in trainer.loggers:  # crash safety: what was logged up to this step is stored before it
            if isinstance(logger, MLflowRunLogger):
                logger.flush()
        self._write(trainer)

    def _write(self, trainer: L.Trainer) -> None:
        partial = self.path.with_suffix(".partial")
        trainer.save_checkpoint(partial)
        if trainer.is_global_zero:
            os.replace(partial, self.path)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._restored is not None:
            restored, self._restored = self._restored, None
            set_rng_states(restored["rng"])
            publish_metrics(trainer, {k: v.to(pl_module.device) for k, v in restored.get("metrics", {}).items()})

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._fit_trainer = trainer  # `state_dict` takes no trainer, and reads its published metrics

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loader = trainer.train_dataloader
        if self.every_n_steps and not (callable(getattr(loader, "state_dict", None))
                                       and callable(getattr(loader, "load_state_dict", None))):
            warnings.warn(f"checkpoint.every_n_steps: the training loader ({type(loader).__name__}) does not save "
                          "its position, so a run resumed from a mid-epoch checkpoint sees other batches than an "
                          "uninterrupted one", stacklevel=2)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"rng": rng_states()}
        if self._fit_trainer is not None:
            state["metrics"] = published_metrics(self._fit_trainer)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = dict(state_dict)

    def remove(self) -> None:
        """Drop the checkpoint (a finished run needs none)."""
        self.path.unlink(missing_ok=True)
