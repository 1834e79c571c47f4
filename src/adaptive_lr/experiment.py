"""Experiment grids (experiments/<name>.yaml): tasks x schedulers x seeds, each cell one tracked run.

A grid file has `tasks`, `schedulers`, `seeds` and optional `overrides`, `task_overrides`, `scheduler_overrides`,
`include` (other grids whose cells join this one, under this grid's name), `tuning` (the fair tuning protocol) or
`sweep` (the learning-rate sweep, `Sweep`).

- **Resume**: a cell whose identical config (and phase) already has a FINISHED run in the grid's MLflow experiment
  is skipped, so an interrupted grid finishes where it stopped; runs left RUNNING by a process that no longer
  exists on this host are marked KILLED first, so every cell ends with exactly one FINISHED run. A cell whose run
  was KILLED continues in that run from its last checkpoint (`adaptive-lr resume`), not from scratch.
- **Concurrent runners**: any number of runners may share one grid and store: each cell is claimed in the store
  before it runs (`claim_cell`, a lease held by the running process, taken over once that process or its runner is
  dead, or released when the cell ends unfinished), so each runs exactly once. A runner's worker processes end with
  it, however it ends.
- **Clusters**: `RayEngine` runs cells on a Ray cluster's nodes, all writing to the runner's store (across machines
  an MLflow tracking server, artifacts included); a cell whose node dies runs again on another and continues the
  dead attempt's run (README, "Grids on a cluster with a tracking server"; `cluster.py` starts one on loopback).
- **Parallel**: `jobs > 1` runs cells in that many worker processes (spawned, each imports Lightning once and runs
  many cells); `jobs == 1` runs them in this process. Progress lines show cells done, running, failed and the ETA.
- **MLflow**: one experiment per grid, with a parent run (`grid:<name>`) whose children are the cell runs (tags
  task/scheduler/seed/phase); reports are attached to the parent.
- **Fair tuning** (after DeepOBS and Schmidt et al. 2021, "Descending through a crowded valley"): with a `tuning`
  block every scheduler first gets the same budget of base-LR trials (phase `tune`, on the validation split), then
  the best LR by final validation metric is rerun with the grid's seeds (phase `final`); reports use the final runs.

The code lives in `adaptive_lr.grids`: `grids.format` (the grid file and its cells, no store), `grids.store` (the
grid's side of the MLflow store: finished and interrupted cells, claims, the parent run, tuning and sweep choices)
and `grids.engines` (running cells: `run_cell`, `LocalEngine`, `RayEngine`, `run_grid`). This module keeps the
public names of all three, so `from adaptive_lr.experiment import run_grid` goes on working.
"""

from __future__ import annotations

from adaptive_lr.grids.engines import (
    AUTH_MODE,
    AUTH_TOKEN,
    ENGINES,
    PR_SET_PDEATHSIG,
    RAY_MAX_RETRIES,
    WATCHDOG_S,
    WORKER_GRACE_S,
    LocalEngine,
    Progress,
    RayEngine,
    run_cell,
    run_grid,
)
from adaptive_lr.grids.format import (
    GRID_KEYS,
    MULTIPLIER,
    SWEEP_KEYS,
    TUNING_KEYS,
    Cell,
    Grid,
    Sweep,
    Tuning,
    grid_path,
    load_grid,
    tune_cells,
)
from adaptive_lr.grids.store import (
    CLAIMS,
    RELEASED,
    attach_report,
    best_sweep_points,
    best_values,
    claim_cell,
    end_attempt,
    finished_cells,
    interrupted_cells,
    mark_orphans,
    parent_run,
    release_cell,
)

__all__ = [
    "AUTH_MODE",
    "AUTH_TOKEN",
    "CLAIMS",
    "Cell",
    "ENGINES",
    "GRID_KEYS",
    "Grid",
    "LocalEngine",
    "MULTIPLIER",
    "PR_SET_PDEATHSIG",
    "Progress",
    "RAY_MAX_RETRIES",
    "RELEASED",
    "RayEngine",
    "SWEEP_KEYS",
    "Sweep",
    "TUNING_KEYS",
    "Tuning",
    "WATCHDOG_S",
    "WORKER_GRACE_S",
    "attach_report",
    "best_sweep_points",
    "best_values",
    "claim_cell",
    "end_attempt",
    "finished_cells",
    "grid_path",
    "interrupted_cells",
    "load_grid",
    "mark_orphans",
    "parent_run",
    "release_cell",
    "run_cell",
    "run_grid",
    "tune_cells",
]
