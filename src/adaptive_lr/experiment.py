"""Experiment grids (experiments/<name>.yaml): tasks x schedulers x seeds, each cell one tracked run.

All cells run in this one process (Lightning and MLflow are imported once). A cell whose identical config already
has a FINISHED run in the grid's MLflow experiment is skipped, so an interrupted grid resumes where it stopped.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from omegaconf import DictConfig, OmegaConf

from adaptive_lr.config import EXPERIMENTS_DIR, ConfigError, available, compose


@dataclass(frozen=True)
class Cell:
    task: str
    scheduler: str
    seed: int
    overrides: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.task}/{self.scheduler}/seed{self.seed}"


@dataclass
class Grid:
    name: str
    description: str
    cells: list[Cell]
    extra: dict[str, Any] = field(default_factory=dict)


def grid_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    path = EXPERIMENTS_DIR / f"{name}.yaml"
    if not path.exists():
        names = sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown experiment {name!r}; allowed: {', '.join(names)}")
    return path


def load_grid(name: str, extra_overrides: Sequence[str] = ()) -> Grid:
    spec = OmegaConf.to_container(OmegaConf.load(grid_path(name)), resolve=True)
    assert isinstance(spec, dict)
    keys = ("name", "description", "tasks", "schedulers", "seeds", "overrides", "task_overrides",
            "scheduler_overrides")
    unknown = set(spec) - set(keys)
    if unknown:
        raise ConfigError(f"experiment {name!r} has unknown keys {sorted(unknown)}; allowed: {', '.join(keys)}")
    for group, key in (("task", "tasks"), ("scheduler", "schedulers")):
        for choice in spec.get(key, []):
            if choice not in available(group):
                raise ConfigError(f"experiment {name!r}: unknown {group} {choice!r}; allowed: "
                                  f"{', '.join(available(group))}")
    grid_name = spec.get("name", Path(name).stem)
    common = [*spec.get("overrides", []), *extra_overrides]
    cells = [
        Cell(task, sched, int(seed),
             (f"task={task}", f"scheduler={sched}", f"seed={seed}", f"experiment={grid_name}",
              *spec.get("task_overrides", {}).get(task, []),
              *spec.get("scheduler_overrides", {}).get(sched, []), *common))
        for task in spec["tasks"] for sched in spec["schedulers"] for seed in spec["seeds"]
    ]
    return Grid(grid_name, spec.get("description", ""), cells)


def finished_cells(cfgs: dict[Cell, DictConfig], experiment: str, tracking_uri: str) -> set[Cell]:
    """Cells whose exact config (by hash) already has a FINISHED run in the experiment."""
    from mlflow.tracking import MlflowClient

    from adaptive_lr.runner import config_hash

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return set()
    done: set[str] = set()
    token = None
    while True:
        page = client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'", max_results=1000,
                                  page_token=token)
        done.update(r.data.tags.get("config_hash", "") for r in page)
        token = page.token
        if not token:
            break
    return {cell for cell, cfg in cfgs.items() if config_hash(cfg) in done}


def _fmt_s(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def run_grid(name: str, extra_overrides: Sequence[str] = (), out: TextIO | None = None) -> Grid:
    """Run every unfinished cell of a grid in this process, printing progress (done/failed/ETA) to `out`
    (default: the current `sys.stderr`, looked up at call time so redirections apply)."""
    from adaptive_lr.runner import run
    from adaptive_lr.tracking.run import resolve_tracking_uri

    out = out if out is not None else sys.stderr

    grid = load_grid(name, extra_overrides)
    cfgs = {cell: compose(cell.overrides) for cell in grid.cells}  # every config error before the first run
    first = next(iter(cfgs.values()))
    tracking_uri = resolve_tracking_uri(first.logger.tracking_uri, Path(first.paths.mlruns))
    skip = finished_cells(cfgs, grid.name, tracking_uri)
    todo = [c for c in grid.cells if c not in skip]
    print(f"[{grid.name}] {len(grid.cells)} cells: {len(skip)} already finished, {len(todo)} to run "
          f"(MLflow: {tracking_uri})", file=out, flush=True)
    failed: list[tuple[Cell, str]] = []
    t0 = time.perf_counter()
    for i, cell in enumerate(todo, 1):
        try:
            result = run(cfgs[cell], tags={"cell": cell.key})
            metric = cfgs[cell].task.metric
            summary = f"test_{metric}={result.metrics.get(f'test_{metric}', float('nan')):.4f} ({result.seconds:.1f}s)"
        except ConfigError:
            raise
        except Exception as err:  # the run is already marked FAILED in MLflow; keep going with the grid
            failed.append((cell, f"{type(err).__name__}: {err}"))
            summary = f"FAILED: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        elapsed = time.perf_counter() - t0
        eta = elapsed / i * (len(todo) - i)
        print(f"[{grid.name}] {i}/{len(todo)} {cell.key:<32} {summary}  | failed {len(failed)}, "
              f"elapsed {_fmt_s(elapsed)}, ETA {_fmt_s(eta)}", file=out, flush=True)
    if failed:
        print(f"[{grid.name}] {len(failed)} cell(s) failed (marked FAILED in MLflow, left out of reports):",
              file=out)
        for cell, message in failed:
            print(f"  {cell.key}: {message}", file=out)
    return grid
