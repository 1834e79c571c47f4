"""The private internals of Lightning, torch and the standard library this project relies on, behind one door.

Each is one small function or constant here, and `tests/test_compat.py` has a test per attribute against the
installed versions (Lightning is pinned to its minor version in pyproject.toml), so an upgrade that moves one fails
loudly in one place instead of silently changing a training step:
- `_ManualOptimization._on_before_step` / `_on_after_step` (`trainer.fit_loop.epoch_loop.manual_optimization`):
  Lightning's step counter (`global_step`, the checkpointed `optim_step_progress`), which the direct training step
  (`tasks/base.py`) advances itself. Lightning hands these two methods to every `LightningOptimizer` (its
  `_on_before_step` / `_on_after_step`) around each `training_step` and puts no-ops back after it, so they are
  taken from the loop, once per fit, not from the optimizer;
- `LightningModule._current_fx_name`: the hook name Lightning sets around every hook call (`self.log` reads it);
- `Trainer.callback_metrics` being the logger connector's own dict, updated in place (there is no setter): a run
  restored from a checkpoint puts back the epoch metrics published before it (`tracking/checkpoint.py`);
- `SummaryWriter._get_file_writer`: the event-file writer `LeanTensorBoardLogger` hands batched summaries to;
- `ProcessPoolExecutor._processes`: a grid runner's worker processes, terminated when the runner stops.
"""

from __future__ import annotations

from typing import Any

#: LightningModule attribute: the hook being run, a str or None; a plain instance attribute, which the direct
#: training step sets around the hooks it calls itself (tasks/base.py)
HOOK_NAME = "_current_fx_name"


def step_counter(trainer: Any) -> tuple[Any, Any]:
    """(before, after): the callables Lightning's `LightningOptimizer.step` runs around the torch optimizer's step
    during a manual-optimisation `training_step` (the same two for the whole fit)."""
    loop = trainer.fit_loop.epoch_loop.manual_optimization
    return loop._on_before_step, loop._on_after_step


def publish_metrics(trainer: Any, metrics: dict[str, Any]) -> None:
    """Put `metrics` into `trainer.callback_metrics`, where the task's own `self.log(..., logger=False)` puts them
    (read by controllers and `EpochMetrics`); later logging of the same names replaces them as usual."""
    trainer.callback_metrics.update(metrics)


def event_file_writer(summary_writer: Any) -> Any:
    """The `FileWriter` under a torch `SummaryWriter` (created on first use)."""
    return summary_writer._get_file_writer()


def pool_processes(pool: Any) -> list[Any]:
    """The worker processes of a `concurrent.futures.ProcessPoolExecutor` (the pool exposes no public handle)."""
    return list((pool._processes or {}).values())
