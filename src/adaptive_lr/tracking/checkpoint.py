"""Crash-safe checkpoints: a run's last checkpoint, replaced atomically at every epoch end and holding every random
number generator's state, so that `adaptive-lr resume` continues exactly as the uninterrupted run would have.

What makes the continuation identical: Lightning's checkpoint holds the weights, optimizer, loop counters and every
callback's `state_dict` (the LR controller's policy with its own RNG, `EpochMetrics`); the data order and the
augmentation generator are pure functions of (seed, epoch) (`data/tensor_loader.py`); the rest, the global torch
(dropout, CUDA included), numpy and Python generators, is saved here and put back right before the first training
batch after the restore, the point in the uninterrupted run that follows the checkpoint.

Checkpoints are written at epoch ends only: a mid-epoch restore would also need the loader's position and its
augmentation generator's state within the epoch, so a run resumes from its last finished epoch.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint

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


class ResumeCheckpoint(Checkpoint):
    """Writes `<dirpath>/last.ckpt` every `every_n_epochs` epochs, after everything else of the epoch (Lightning runs
    `Checkpoint` callbacks after the module's `on_train_epoch_end`, and `EpochMetrics` has flushed the epoch's
    metrics by then). The file is replaced atomically: a kill mid-write leaves the previous checkpoint intact.

    Its own state is the RNG states at the moment of writing; after a restore they are applied at the next
    training batch's start, so nothing drawn between the restore and that batch shifts the random stream.
    """

    def __init__(self, dirpath: Path, every_n_epochs: int = 1) -> None:
        super().__init__()
        if not (isinstance(every_n_epochs, int) and every_n_epochs >= 1):
            raise ValueError(f"checkpoint.every_n_epochs must be a positive int, got {every_n_epochs!r}")
        self.dirpath, self.every_n_epochs = Path(dirpath), every_n_epochs
        self._restored_rng: dict[str, Any] | None = None

    @property
    def path(self) -> Path:
        return self.dirpath / LAST

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        partial = self.path.with_suffix(".partial")
        trainer.save_checkpoint(partial)
        if trainer.is_global_zero:
            os.replace(partial, self.path)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._restored_rng is not None:
            set_rng_states(self._restored_rng)
            self._restored_rng = None

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored_rng = state_dict["rng"]

    def remove(self) -> None:
        """Drop the checkpoint (a finished run needs none)."""
        self.path.unlink(missing_ok=True)
