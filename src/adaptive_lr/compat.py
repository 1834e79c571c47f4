"""The private internals of Lightning, torch and the standard library this project relies on, behind one door.

Each is one small function or constant here, and `tests/test_compat.py` has a test per attribute against the
installed versions (Lightning is pinned to its minor version in pyproject.toml), so an upgrade that moves one fails
loudly in one place instead of silently changing a training step:
- `LightningOptimizer._on_before_step` / `_on_after_step`: Lightning's step counter (`global_step`, the
  checkpointed `optim_step_progress`), which the direct training step (`tasks/base.py`) advances itself;
- `LightningModule._current_fx_name`: the hook name Lightning sets around every hook call (`self.log` reads it);
- `SummaryWriter._get_file_writer`: the event-file writer `LeanTensorBoardLogger` hands batched summaries to;
- `ProcessPoolExecutor._processes`: a grid runner's worker processes, terminated when the runner stops.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

HOOK_NAME = "_current_fx_name"  # LightningModule attribute: the hook being run, a str or None


def step_counter(lightning_optimizer: Any) -> tuple[Any, Any]:
    """(before, after): the callables Lightning's `LightningOptimizer.step` runs around the torch optimizer's step."""
    return lightning_optimizer._on_before_step, lightning_optimizer._on_after_step


@contextmanager
def running_hook(module: Any, name: str) -> Iterator[None]:
    """Set the module's current hook name around a hook call made outside Lightning, as Lightning's own calls do."""
    caller = getattr(module, HOOK_NAME)
    setattr(module, HOOK_NAME, name)
    try:
        yield
    finally:
        setattr(module, HOOK_NAME, caller)


def event_file_writer(summary_writer: Any) -> Any:
    """The `FileWriter` under a torch `SummaryWriter` (created on first use)."""
    return summary_writer._get_file_writer()


def pool_processes(pool: Any) -> list[Any]:
    """The worker processes of a `concurrent.futures.ProcessPoolExecutor` (the pool exposes no public handle)."""
    return list((pool._processes or {}).values())
