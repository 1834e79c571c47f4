"""How a callback from config (configs/callbacks/*.yaml) gets the parts that exist only once its run does.

An entry with `_partial_: true` is instantiated to a partial that the runner calls with one argument, the run's
`RunParts`; the factories below are such entries' targets. Each returns a callback, a list of them, or None (off),
so that whether a callback exists is said by the config keys it reads (`live_control.enabled`,
`trainer.enable_checkpointing`, `checkpoint.every_n_*`), never by the runner.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from adaptive_lr.callbacks.lr_control import LRControl
from adaptive_lr.live_control import CONTROL_FILE, LiveOverride
from adaptive_lr.schedulers.base import LRPolicy
from adaptive_lr.tracking.checkpoint import CHECKPOINT_DIR, ResumeCheckpoint


@dataclass(frozen=True)
class RunParts:
    """What a `_partial_` callback entry is completed with."""

    policy: LRPolicy  # the scheduler's policy with its warmup (`scheduler.build`), built and checked by runner.build
    run_dir: Path  # the run's folder (a new one, or a resumed run's own)
    views: list[Callback] = field(default_factory=list)  # the views `viz=` selects, built and checked by runner.build


def lr_control(run: RunParts, *, interval: str, frequency: int, log_every_n_steps: int,
               live: Mapping[str, Any]) -> LRControl:
    """`LRControl` driving the run's policy; with `live.enabled` a person can steer it through the run folder's
    control file (`adaptive-lr set-lr`), within `[live.min_lr, live.max_lr]`, polled every `live.every_n_steps`."""
    override = LiveOverride(run.run_dir / CONTROL_FILE, live["min_lr"], live["max_lr"],
                            live["every_n_steps"]) if live["enabled"] else None
    return LRControl(run.policy, interval=interval, frequency=frequency, log_every_n_steps=log_every_n_steps,
                     live=override)


def views(run: RunParts) -> list[Callback]:
    """The views `viz=` selected (none by default)."""
    return list(run.views)


def every_epoch_checkpoint(run: RunParts, *, enabled: bool, **kwargs: Any) -> ModelCheckpoint | None:
    """With `enabled`, Lightning's `ModelCheckpoint(**kwargs)` writing into the run folder's checkpoints/."""
    return ModelCheckpoint(dirpath=run.run_dir / CHECKPOINT_DIR, **kwargs) if enabled else None


def resume_checkpoint(run: RunParts, *, every_n_epochs: int, every_n_steps: int) -> ResumeCheckpoint | None:
    """The checkpoint `adaptive-lr resume` continues from (tracking.checkpoint); None when both periods are 0."""
    if not (every_n_epochs or every_n_steps):
        return None
    return ResumeCheckpoint(run.run_dir / CHECKPOINT_DIR, every_n_epochs, every_n_steps)
