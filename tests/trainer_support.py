"""A bare Lightning Trainer for unit tests of tasks and callbacks: CPU, no logger, checkpoint, bar or summary."""

from __future__ import annotations

import lightning as L


def bare_trainer(max_epochs: int = 1, **kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", max_epochs=max_epochs, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                     use_distributed_sampler=False, **kwargs)
