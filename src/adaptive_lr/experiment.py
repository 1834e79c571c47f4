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
"""

from __future__ import annotations

import itertools
import math
import os
import platform
import random
import signal
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TextIO

from omegaconf import DictConfig, OmegaConf

from adaptive_lr.checks import is_int, is_number, require_int
from adaptive_lr.compat import pool_processes
from adaptive_lr.config import EXPERIMENTS_DIR, ConfigError, available, compose
from adaptive_lr.errors import UserError, one_line
from adaptive_lr.tracking.run import PARENT_TAG, process_alive, search_all
from adaptive_lr.tracking.run import mark_orphans as mark_store_orphans

GRID_KEYS = ("name", "description", "tasks", "schedulers", "seeds", "overrides", "task_overrides",
             "scheduler_overrides", "variants", "views", "include", "tuning", "extends", "sweep", "anytime")
TUNING_KEYS = ("param", "values", "low", "high", "n", "method", "seeds", "sample_seed")
SWEEP_KEYS = ("param", "center", "decades", "points", "seeds")
MULTIPLIER = "lr_multiplier"  # the global key learning-rate-free optimizer configs read as their LR multiplier
PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h): the signal a process gets when its parent dies
WATCHDOG_S = 1.0  # how often a grid worker checks that its runner still exists
WORKER_GRACE_S = 10.0  # a worker whose runner died gets this long to mark its cell's run KILLED
CLAIMS = ".claims"  # experiments named .claims/<grid>/<cell>/<generation>: who runs which cell (`claim_cell`)
RELEASED = "released"  # `<claim>/released`: that generation's lease ended (`release_cell`)
RAY_MAX_RETRIES = 3  # times Ray runs a cell again after the worker or node running it died
AUTH_MODE, AUTH_TOKEN = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"  # Ray's token authentication (Ray >= 2.52)


@dataclass(frozen=True)
class Cell:
    task: str
    scheduler: str
    seed: int
    overrides: tuple[str, ...]
    phase: str = "final"
    point: str = ""  # a sweep cell's swept setting (`lr=0.001`), part of its key
    tags: tuple[tuple[str, str], ...] = ()  # run tags of the cell beyond task/scheduler/seed/phase

    @property
    def key(self) -> str:
        return f"{self.task}/{self.scheduler}/seed{self.seed}" + (f"/{self.point}" if self.point else "")


@dataclass(frozen=True)
class Tuning:
    """The same base-LR budget for every scheduler: `values` (explicit), or `n` points in [low, high] on a log grid
    (`method: log_grid`) or drawn log-uniformly (`method: random`, seeded by `sample_seed`), each run with `seeds`."""

    param: str
    values: tuple[float, ...]
    seeds: tuple[int, ...]
    method: str

    @classmethod
    def from_spec(cls, grid: str, spec: dict[str, Any]) -> Tuning:
        unknown = set(spec) - set(TUNING_KEYS)
        if unknown:
            raise ConfigError(f"experiment {grid!r}: unknown tuning keys {sorted(unknown)}; "
                              f"allowed: {', '.join(TUNING_KEYS)}")
        method = spec.get("method", "log_grid")
        if "values" in spec:
            values, method = [float(v) for v in spec["values"]], "values"
        else:
            low, high, n = float(spec.get("low", 1e-4)), float(spec.get("high", 1.0)), int(spec.get("n", 5))
            if not (0 < low < high and n >= 1):
                raise ConfigError(f"experiment {grid!r}: tuning needs 0 < low < high and n >= 1, "
                                  f"got low={low}, high={high}, n={n}")
            if method == "log_grid":
                values = [low * (high / low) ** (i / max(n - 1, 1)) for i in range(n)] if n > 1 else [low]
            elif method == "random":
                rng = random.Random(int(spec.get("sample_seed", 0)))
                values = sorted(math.exp(rng.uniform(math.log(low), math.log(high))) for _ in range(n))
            else:
                raise ConfigError(f"experiment {grid!r}: tuning.method must be one of ['log_grid', 'random'], "
                                  f"got {method!r}")
        if not values or any(not (math.isfinite(v) and v > 0) for v in values):
            raise ConfigError(f"experiment {grid!r}: tuning values must be positive numbers, got {values}")
        seeds = tuple(int(s) for s in spec.get("seeds", [0]))
        return cls(str(spec.get("param", "lr")), tuple(float(f"{v:.6g}") for v in values), seeds, method)

    @property
    def budget(self) -> str:
        return f"{len(self.values)} {self.param} values ({self.method}) x {len(self.seeds)} seed(s)"


def _positive_number(value: Any) -> bool:
    return is_number(value) and value > 0


@dataclass(frozen=True)
class Sweep:
    """The learning-rate sweep (issue 14): every task x scheduler x seed of the grid runs at the same `points`
    initial LRs, log-spaced over `decades` decades and centred on the task's usual rate: `center` (one value for
    every task, or a map from task to value; tasks it leaves out use their default), by default the `lr` that the
    task's config sets under this grid's `overrides` and `task_overrides`. A cell whose config defines
    `lr_multiplier` (the learning-rate-free optimizers' configs) sweeps that multiplier over the same factors around
    1.0, the packages' recommended value, instead of the LR.

    Sweep cells have phase `sweep`, the swept override last (it wins over any other setting of the LR), and tags
    `sweep_lr` or `sweep_multiplier` (the value) and `sweep_factor` (value / centre, shared by both kinds), so a
    report can draw every method on one axis; like tuning runs, they are never results. A sweep applies to the
    grid's own cells (an included grid brings its own), and a grid with a sweep has no `tuning`.

    With `seeds` (the sweep's own seeds) the sweep is the tuned track's first phase: every point runs with those
    seeds, then every task x scheduler runs once per grid seed (phase `final`) at its best point, the one with the
    best mean final validation metric over the sweep seeds (a point with a non-finite value never wins); those final
    runs are the results a report judges on test. Without `seeds`, the grid's seeds run every point and nothing else.
    """

    param: str
    decades: float
    points: int
    center: float | None = None
    centers: tuple[tuple[str, float], ...] = ()  # per task, over `center`
    seeds: tuple[int, ...] = ()  # the sweep's own seeds: then a final phase at the best point (class docstring)

    @classmethod
    def from_spec(cls, grid: str, spec: Any) -> Sweep:
        where = f"experiment {grid!r}: sweep"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where} must be a mapping with keys among {', '.join(SWEEP_KEYS)}, got {spec!r}")
        unknown = set(spec) - set(SWEEP_KEYS)
        if unknown:
            raise ConfigError(f"{where} has unknown keys {sorted(unknown)}; allowed: {', '.join(SWEEP_KEYS)}")
        param, decades, points = spec.get("param", "lr"), spec.get("decades", 4), spec.get("points", 9)
        if not (isinstance(param, str) and param):
            raise ConfigError(f"{where}.param must be a config key such as lr, got {param!r}")
        if not _positive_number(decades):
            raise ConfigError(f"{where}.decades must be a positive number, got {decades!r}")
        require_int(f"{where}.points", points, minimum=2, error=ConfigError)
        seeds = spec.get("seeds", [])
        if not (isinstance(seeds, list) and all(is_int(x) for x in seeds)):
            raise ConfigError(f"{where}.seeds must be a list of ints, got {seeds!r}")
        center = spec.get("center")
        values = center.values() if isinstance(center, dict) else [] if center is None else [center]
        if not all(_positive_number(v) for v in values):
            raise ConfigError(f"{where}.center must be a positive number or a map from task to positive number, "
                              f"got {center!r}")
        if isinstance(center, dict):
            return cls(param, float(decades), points, None, tuple((str(t), float(v)) for t, v in center.items()),
                       tuple(seeds))
        return cls(param, float(decades), points, None if center is None else float(center), (), tuple(seeds))

    @property
    def factors(self) -> tuple[float, ...]:
        """10^(decades * (i / (points - 1) - 1/2)) for i = 0 .. points - 1: the same for every method and task."""
        return tuple(10 ** (self.decades * (i / (self.points - 1) - 0.5)) for i in range(self.points))

    def expand(self, grid: str, cells: Sequence[Cell], task_overrides: dict[str, tuple[str, ...]]) -> list[Cell]:
        """Every cell at every sweep point (class docstring); `task_overrides[task]` set the task's default centre.
        Composes one config per task x scheduler (which optimizer it uses) and per task without a given centre."""
        unknown = {t for t, _ in self.centers} - {c.task for c in cells}
        if unknown:
            raise ConfigError(f"experiment {grid!r}: sweep.center names tasks {sorted(unknown)} that the grid does "
                              f"not run; its tasks: {', '.join(dict.fromkeys(c.task for c in cells))}")
        centers, lr_free = dict(self.centers), {}
        swept = []
        for cell in cells:
            if (cell.task, cell.scheduler) not in lr_free:
                lr_free[cell.task, cell.scheduler] = MULTIPLIER in compose(cell.overrides)
            if lr_free[cell.task, cell.scheduler]:
                param, tag, center = MULTIPLIER, "sweep_multiplier", 1.0
            else:
                if cell.task not in centers:
                    centers[cell.task] = self.center or float(compose(task_overrides[cell.task]).lr)
                param, tag, center = self.param, "sweep_lr", centers[cell.task]
            for factor in self.factors:
                value = float(f"{center * factor:.6g}")
                swept.append(replace(cell, overrides=(*cell.overrides, f"{param}={value}"), phase="sweep",
                                     point=f"{param}={value}",
                                     tags=((tag, f"{value:g}"), ("sweep_factor", f"{factor:.6g}"))))
        return swept


@dataclass
class Grid:
    name: str
    description: str
    cells: list[Cell]
    tuning: Tuning | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    sweep: Sweep | None = None
    sweep_cells: list[Cell] = field(default_factory=list)  # phase 1 of a sweep with its own seeds


def grid_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    path = EXPERIMENTS_DIR / f"{name}.yaml"
    if not path.exists():
        names = sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown experiment {name!r}; allowed: {', '.join(names)}")
    return path


def _spec_cells(name: str, spec: dict[str, Any], grid_name: str, extra: Sequence[str]) -> list[Cell]:
    unknown = set(spec) - set(GRID_KEYS)
    if unknown:
        raise ConfigError(f"experiment {name!r} has unknown keys {sorted(unknown)}; allowed: {', '.join(GRID_KEYS)}")
    # a variant is a named column of the comparison built from a scheduler config plus overrides, e.g. an
    # optimizer under the fixed schedule: {rescaled_sgd: [scheduler=fixed, optimizer=rescaled_sgd]}
    variants = {v: _variant(name, v, o) for v, o in spec.get("variants", {}).items()}
    for choice in spec.get("tasks", []):
        if choice not in available("task"):
            raise ConfigError(f"experiment {name!r}: unknown task {choice!r}; allowed: {', '.join(available('task'))}")
    for choice in spec.get("schedulers", []):
        if choice not in variants and choice not in available("scheduler"):
            raise ConfigError(f"experiment {name!r}: unknown scheduler {choice!r}; allowed: "
                              f"{', '.join(available('scheduler'))} or a variant ({', '.join(variants) or 'none'})")
    common = [*spec.get("overrides", []), *extra]
    # views (configs/viz) to switch on for the first seed of every task x scheduler: one watched run per column
    views = spec.get("views", {})
    seeds = spec.get("seeds", [])
    if not isinstance(seeds, list) or not all(is_int(s) for s in seeds):
        raise ConfigError(f"experiment {name!r}: seeds must be a list of ints, got {seeds!r}")

    def shown(task: str, seed: int) -> tuple[str, ...]:
        return (f"viz=[{','.join(views[task])}]",) if task in views and seeds and seed == seeds[0] else ()

    return [
        Cell(task, sched, int(seed),
             (f"task={task}", *variants.get(sched, (f"scheduler={sched}",)), f"seed={seed}",
              f"experiment={grid_name}", *spec.get("task_overrides", {}).get(task, []),
              *spec.get("scheduler_overrides", {}).get(sched, []), *shown(task, seed), *common))
        for task in spec.get("tasks", []) for sched in spec.get("schedulers", []) for seed in seeds
    ]


def _variant(grid: str, name: str, overrides: Sequence[str]) -> tuple[str, ...]:
    """`scheduler=<base>` first, then the variant's overrides, then its name as the scheduler label."""
    base = [o for o in overrides if o.startswith("scheduler=")]
    if len(base) != 1 or base[0].removeprefix("scheduler=") not in available("scheduler"):
        raise ConfigError(f"experiment {grid!r}: variant {name!r} needs exactly one `scheduler=<config>` override "
                          f"naming one of {', '.join(available('scheduler'))}; got {list(overrides)}")
    if name in available("scheduler"):
        raise ConfigError(f"experiment {grid!r}: variant {name!r} shadows the scheduler config of that name")
    rest = [o for o in overrides if o not in base]
    return (base[0], *rest, f"scheduler.name={name}")


def load_grid(name: str, extra_overrides: Sequence[str] = (), _seen: tuple[str, ...] = ()) -> Grid:
    """The grid's cells (its own, then those of each `include`d grid, renamed into this grid's experiment)."""
    path = grid_path(name)
    if path.stem in _seen:
        raise ConfigError(f"experiment {name!r} includes itself (through {' -> '.join(_seen)})")
    import yaml
    from omegaconf.errors import OmegaConfBaseException

    try:
        spec = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except (yaml.YAMLError, OmegaConfBaseException) as err:  # a YAML syntax error, a bad interpolation
        raise ConfigError(f"{path} is not a valid grid file: {one_line(err)}") from err
    if not isinstance(spec, dict):
        raise ConfigError(f"experiment {name!r}: {path} is not a mapping")
    spec = _extended(name, spec, (*_seen, path.stem))
    grid_name = spec.get("name", path.stem)
    cells = _spec_cells(name, spec, grid_name, extra_overrides)
    sweep = Sweep.from_spec(name, spec["sweep"]) if "sweep" in spec else None
    if sweep is not None:
        if spec.get("tuning"):
            raise ConfigError(f"experiment {name!r}: a grid has either a sweep or tuning, not both")
        if not spec.get("seeds"):
            raise ConfigError(f"experiment {name!r}: a sweep needs at least one seed per point; seeds is empty")
        defaults = {t: (f"task={t}", *spec.get("task_overrides", {}).get(t, []), *spec.get("overrides", []),
                        *extra_overrides) for t in spec.get("tasks", [])}  # fmt: skip
        if sweep.seeds:  # sweep with its own seeds first, then the grid's seeds at each column's best point
            sweep_cells = sweep.expand(name, _reseeded(cells, sweep.seeds), defaults)
        else:
            cells = sweep.expand(name, cells, defaults)
    for included in spec.get("include", []):
        sub = load_grid(included, extra_overrides, (*_seen, path.stem))
        cells += [replace(c, overrides=tuple(f"experiment={grid_name}" if o.startswith("experiment=") else o
                                             for o in c.overrides)) for c in sub.cells]
    keys = [c.overrides for c in cells]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"experiment {name!r}: the same cell appears twice (check includes)")
    tuning = Tuning.from_spec(name, spec["tuning"]) if spec.get("tuning") else None
    cells += _anytime_cells(name, spec.get("anytime", []), [c for c in cells if c.phase == "final"])
    return Grid(grid_name, spec.get("description", ""), cells, tuning, sweep=sweep,
                sweep_cells=sweep_cells if sweep is not None and sweep.seeds else [])


def _extended(name: str, spec: dict[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
    """`extends: <grid>`: the named grid's keys, each replaced by this file's value of it (null removes the key), so
    the parts of one study share one list of methods and budget instead of copies."""
    base = spec.get("extends")
    if base is None:
        return spec
    if not isinstance(base, str) or Path(base).stem in seen:
        raise ConfigError(f"experiment {name!r}: extends must name another grid file, got {base!r}")
    import yaml
    from omegaconf.errors import OmegaConfBaseException

    try:
        parent = OmegaConf.to_container(OmegaConf.load(grid_path(base)), resolve=True)
    except (yaml.YAMLError, OmegaConfBaseException) as err:
        raise ConfigError(f"experiment {name!r}: extends {base!r}, which cannot be read: {one_line(err)}") from err
    merged = {**_extended(base, parent, (*seen, Path(base).stem)), **spec}
    merged.pop("extends")
    return {k: v for k, v in merged.items() if v is not None}


def _anytime_cells(name: str, fractions: Any, cells: Sequence[Cell]) -> list[Cell]:
    """`anytime: [0.25, 0.5]`: every final cell again as a real run with that fraction of its epoch budget
    (`trainer.max_epochs` = the rounded fraction, at least 1), so a schedule that needs its horizon (cosine, the
    cooldowns) gets the shorter one, not a truncated curve of the longer run. Phase `anytime`, tag
    `budget_fraction`; tuned grids run them at the same chosen setting as the final cells; never results."""
    if not isinstance(fractions, list) or not all(_positive_number(f) and f < 1 for f in fractions):
        raise ConfigError(f"experiment {name!r}: anytime must be a list of budget fractions in (0, 1), got "
                          f"{fractions!r}")
    epochs: dict[tuple[str, str], int] = {}
    extra = []
    for cell in cells:
        if (cell.task, cell.scheduler) not in epochs:
            epochs[cell.task, cell.scheduler] = int(compose(cell.overrides).trainer.max_epochs)
        for fraction in sorted(set(fractions)):
            budget = max(1, round(epochs[cell.task, cell.scheduler] * fraction))
            extra.append(replace(cell, overrides=(*cell.overrides, f"trainer.max_epochs={budget}"), phase="anytime",
                                 point=f"budget={fraction:g}", tags=(*cell.tags, ("budget_fraction", f"{fraction:g}"))))
    return extra


def _reseeded(cells: Sequence[Cell], seeds: Sequence[int]) -> list[Cell]:
    """One cell per task x scheduler x `seeds` (the grid's seeds replaced), in the cells' order."""
    columns = dict.fromkeys((c.task, c.scheduler, tuple(o for o in c.overrides if o != f"seed={c.seed}"))
                            for c in cells)  # fmt: skip
    return [Cell(task, sched, seed, (*rest, f"seed={seed}")) for (task, sched, rest) in columns for seed in seeds]


def best_sweep_points(grid: Grid, tracking_uri: str) -> dict[tuple[str, str], str]:
    """Per (task, scheduler): the sweep point (`param=value` override) with the best mean final validation metric
    over the sweep seeds, from the FINISHED sweep runs (a point with a missing or non-finite value never wins)."""
    assert grid.sweep is not None
    points = {(c.task, c.scheduler, c.point) for c in grid.sweep_cells}
    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(grid.name)
    scores: dict[tuple[str, str, str], list[float]] = {}
    modes: dict[tuple[str, str], str] = {}
    for r in _search(client, exp.experiment_id, "attributes.status = 'FINISHED' and tags.phase = 'sweep'"):
        # the point a run ran at, from its params (also for runs imported from a bundle, which have no cell tag)
        tags, params = r.data.tags, r.data.params
        param = MULTIPLIER if MULTIPLIER in params else grid.sweep.param
        try:
            key = (tags.get("task", ""), tags.get("scheduler", ""), f"{param}={float(params.get(param, 'nan'))}")
        except ValueError:
            continue
        if key not in points:  # a run of another sweep definition
            continue
        modes[key[:2]] = tags.get("metric_mode", "max")
        scores.setdefault(key, []).append(r.data.metrics.get(f"val_{tags.get('metric', '')}", math.nan))
    best: dict[tuple[str, str], str] = {}
    for (task, sched) in dict.fromkeys((c.task, c.scheduler) for c in grid.sweep_cells):
        sign = 1.0 if modes.get((task, sched), "max") == "max" else -1.0
        order = dict.fromkeys(c.point for c in grid.sweep_cells if (c.task, c.scheduler) == (task, sched))
        ranked = [(sign * sum(v) / len(v), point) for point in order if (v := scores.get((task, sched, point)))
                  and all(math.isfinite(x) for x in v)]
        if not ranked:
            raise RuntimeError(f"sweep: no finished, finite sweep run for {task}/{sched}; cannot pick its point")
        best[(task, sched)] = max(ranked, key=lambda r: r[0])[1]  # ties: the first point (lowest value)
    return best


def tune_cells(grid: Grid) -> list[Cell]:
    """Phase 1 of the tuning protocol: every (task, scheduler) x tuning value x tuning seed."""
    assert grid.tuning is not None
    t = grid.tuning
    def without_seed(cell: Cell) -> tuple[str, ...]:
        return tuple(o for o in cell.overrides if o != f"seed={cell.seed}")

    pairs = dict.fromkeys((c.task, c.scheduler, without_seed(c)) for c in grid.cells
                          if c.phase == "final")  # keep order, drop seeds (anytime cells reuse the choice)
    return [
        Cell(task, sched, seed, (*rest, f"seed={seed}", f"{t.param}={value}"), phase="tune")
        for (task, sched, rest) in pairs for value in t.values for seed in t.seeds
    ]


# -- the MLflow side -----------------------------------------------------------------------------------------------
def _client(tracking_uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri)


def _search(client: Any, experiment_id: str, filter_string: str = "") -> Iterable[Any]:
    return search_all(client, [experiment_id], filter_string)


def _cell_runs(cfgs: dict[Cell, DictConfig], experiment: str, tracking_uri: str, status: str) -> dict[Cell, Any]:
    """Per cell, the latest run in `status` whose exact config (by hash) and phase are the cell's."""
    from adaptive_lr.runner import config_hash

    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    found = {}
    for r in sorted(_search(client, exp.experiment_id, f"attributes.status = '{status}'"),
                    key=lambda r: r.info.start_time):
        found[(r.data.tags.get("config_hash", ""), r.data.tags.get("phase", "final"))] = r
    return {cell: found[key] for cell, cfg in cfgs.items() if (key := (config_hash(cfg), cell.phase)) in found}


def finished_cells(cfgs: dict[Cell, DictConfig], experiment: str, tracking_uri: str) -> set[Cell]:
    """Cells whose exact config (by hash) and phase already have a FINISHED run in the experiment."""
    return set(_cell_runs(cfgs, experiment, tracking_uri, "FINISHED"))


def interrupted_cells(cfgs: dict[Cell, DictConfig], experiment: str, tracking_uri: str) -> dict[Cell, str]:
    """Cells whose latest KILLED run (a process that died or was interrupted) can be resumed: run ID per cell."""
    return {cell: r.info.run_id for cell, r in _cell_runs(cfgs, experiment, tracking_uri, "KILLED").items()
            if Path(r.data.tags.get("run_dir", "")).is_dir()}


def mark_orphans(experiment: str, tracking_uri: str) -> int:
    """Mark KILLED the RUNNING cell runs of this experiment whose process (on this host) no longer exists."""
    return mark_store_orphans(tracking_uri, experiment)


def claim_cell(tracking_uri: str, experiment: str, cell_id: str, artifact_root: Path,
               token: str | None = None, runner: str | None = None) -> str | None:
    """Claim a cell for this process, so that it runs exactly once however many runners share the store. Returns
    None when claimed, else who holds it (`host:pid`, a live process).

    A claim is an MLflow experiment named `.claims/<experiment>/<cell_id>/<generation>`, created with the owner's
    host and pid as tags and then deleted (hidden from the UI; the name stays taken). Experiment names are unique
    in every MLflow backend, so `create_experiment` is an atomic test-and-set, on SQLite, on any SQL database and
    through a tracking server alike, with no clock or lock file involved (runs have no unique field: a claim run
    "checked after creation" depends on clocks and commit order, and a lock file next to the store only works for a
    local file store). Only MLflow client calls that a tracking server serves are used (create, get by name and
    delete of experiments; search and update of runs). The lease of a generation ends, and the next generation
    (which again only one claimant can create) is free, when
    1) its owner released it (`release_cell`: the cell ended unfinished, FAILED or interrupted);
    2) its owner died: a process on this host that no longer exists;
    3) its owner's `runner` (`host:pid`, the grid process that started it) is a process on this host that no
       longer exists: a runner's workers end with it (LocalEngine's, and Ray's, which kills a job's workers when
       its driver ends), wherever they ran;
    4) this claimant retries the owner's attempt (the same `token`, an engine's id of one submission of the cell):
       Ray runs a task again, with the same arguments, only once the worker or node running it died.
    An owner found dead has its RUNNING run marked KILLED (`end_attempt`), so the cell continues in that run (from
    its last checkpoint) where the run folder is reachable, else in a new run. Otherwise a lease held on another
    host is never taken over.
    """
    from mlflow.exceptions import MlflowException

    from adaptive_lr.tracking.run import artifact_location

    client = _client(tracking_uri)
    host, pid = platform.node(), str(os.getpid())
    tags = {"claim_host": host, "claim_pid": pid, **({"claim_token": token} if token else {}),
            **({"claim_runner": runner} if runner else {})}
    location = artifact_location(tracking_uri, artifact_root / CLAIMS)  # a claim has no artifacts: only a name
    for generation in itertools.count():
        name = f"{CLAIMS}/{experiment}/{cell_id}/{generation}"
        try:
            claim = client.create_experiment(name, artifact_location=location, tags=tags)
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            held = client.get_experiment_by_name(name)
            if held is None:  # removed for good (`mlflow gc`) meanwhile: try this generation again
                continue
            owner = (held.tags.get("claim_host", ""), held.tags.get("claim_pid", ""))
            if owner == (host, pid):
                return None
            if client.get_experiment_by_name(f"{name}/{RELEASED}") is not None:  # 1)
                continue
            dead = (_ended(host, owner) or _ended(host, tuple(held.tags.get("claim_runner", "").rpartition(":")[::2]))
                    or (token is not None and held.tags.get("claim_token") == token))  # 2) 3) 4)
            if not dead:
                return ":".join(owner)
            end_attempt(tracking_uri, experiment, *owner)
            continue  # the next generation is free to claim
        client.delete_experiment(claim)
        return None
    raise AssertionError("unreachable")


def _ended(host: str, process: tuple[str, ...]) -> bool:
    """Whether `(host, pid)` names a process of this host (`host`) that no longer exists."""
    return len(process) == 2 and process[0] == host and process[1].isdigit() and not process_alive(int(process[1]))


def release_cell(tracking_uri: str, experiment: str, cell_id: str, artifact_root: Path) -> bool:
    """Release this process's claim of a cell (it ended unfinished), so that the next claimant, on any machine,
    may take it: a marker experiment `<claim>/released`, created and deleted like a claim. Returns whether this
    process held a claim of the cell."""
    from mlflow.exceptions import MlflowException

    from adaptive_lr.tracking.run import artifact_location

    client = _client(tracking_uri)
    mine = (platform.node(), str(os.getpid()))
    for generation in itertools.count():
        name = f"{CLAIMS}/{experiment}/{cell_id}/{generation}"
        held = client.get_experiment_by_name(name)
        if held is None:
            return False
        if (held.tags.get("claim_host", ""), held.tags.get("claim_pid", "")) != mine:
            continue
        try:
            marker = client.create_experiment(f"{name}/{RELEASED}",
                                              artifact_location=artifact_location(tracking_uri, artifact_root / CLAIMS))
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return True
        client.delete_experiment(marker)
        return True
    raise AssertionError("unreachable")


def end_attempt(tracking_uri: str, experiment: str, host: str, pid: str) -> int:
    """Mark KILLED the RUNNING runs of `experiment` owned by process `pid` on `host`, a cell's attempt found dead
    (its lease taken over); its metrics stay as they were flushed. Returns how many were marked."""
    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None or not pid:
        return 0
    n = 0
    for r in _search(client, exp.experiment_id, f"attributes.status = 'RUNNING' and tags.pid = '{pid}'"):
        if r.data.tags.get("host") != host or r.data.tags.get(PARENT_TAG):
            continue
        client.set_tag(r.info.run_id, "error", f"orphaned: process {pid} on {host} ended mid-run (its cell's "
                                                "lease was taken over)")
        client.set_terminated(r.info.run_id, "KILLED")
        n += 1
    return n


def parent_run(experiment: str, tracking_uri: str, artifact_root: Path, description: str) -> str:
    """The grid's parent run (created once, reused on resume) and marked RUNNING while the grid runs. Two runners
    starting together may both create one: the earliest is kept, the other deleted."""
    from adaptive_lr.tracking.run import get_or_create_experiment

    client = _client(tracking_uri)
    exp_id = get_or_create_experiment(client, experiment, artifact_root)

    def parents() -> list[Any]:
        found = _search(client, exp_id, f"tags.{PARENT_TAG} = 'true'")
        return sorted(found, key=lambda r: (r.info.start_time, r.info.run_id))

    existing = parents()
    if existing:
        client.update_run(existing[0].info.run_id, status="RUNNING")
        return existing[0].info.run_id
    run = client.create_run(exp_id, run_name=f"grid:{experiment}",
                            tags={PARENT_TAG: "true", "mlflow.note.content": description})
    kept = parents()[0].info.run_id
    if kept != run.info.run_id:
        client.delete_run(run.info.run_id)
    return kept


def best_values(grid: Grid, cells: Sequence[Cell], tracking_uri: str) -> dict[tuple[str, str], float]:
    """Per (task, scheduler): the tuning value with the best mean final validation metric over tuning seeds."""
    assert grid.tuning is not None
    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(grid.name)
    scores: dict[tuple[str, str, float], list[float]] = {}
    modes: dict[tuple[str, str], str] = {}
    for r in _search(client, exp.experiment_id, "attributes.status = 'FINISHED' and tags.phase = 'tune'"):
        tags, metric = r.data.tags, r.data.tags.get("metric", "")
        value = float(r.data.params.get(grid.tuning.param, "nan"))
        final = r.data.metrics.get(f"val_{metric}", math.nan)
        key = (tags.get("task", ""), tags.get("scheduler", ""))
        modes[key] = tags.get("metric_mode", "max")
        scores.setdefault((*key, value), []).append(final if math.isfinite(final) else math.nan)
    best: dict[tuple[str, str], float] = {}
    for task, sched in dict.fromkeys((c.task, c.scheduler) for c in cells):
        sign = 1.0 if modes.get((task, sched), "max") == "max" else -1.0
        ranked = [(sign * (sum(v) / len(v)), value) for (t, s, value), v in scores.items()
                  if (t, s) == (task, sched) and all(math.isfinite(x) for x in v)]
        if not ranked:
            raise RuntimeError(f"tuning: no finished, finite tuning run for {task}/{sched}; cannot pick {grid.tuning.param}")
        best[(task, sched)] = max(ranked)[1]  # ties: the larger value
    return best


# -- running -------------------------------------------------------------------------------------------------------
def _fmt_s(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s" if math.isfinite(seconds) else "?"


def run_cell(overrides: Sequence[str], tags: dict[str, Any], tracking_uri: str | None = None,
             token: str | None = None) -> dict[str, Any]:
    """Run one cell (in this process or a worker); never raises for a training failure (the run is FAILED).

    The cell is first claimed in the store (`claim_cell`, with the engine's `token` for this submission): a cell
    another live runner holds, or one finished meanwhile, is SKIPPED. A cell whose last run was KILLED (its process
    died or was interrupted) is resumed in that run from its last checkpoint (`runner.resume_run`), exactly as if it
    had never stopped. A cell that ends unfinished (FAILED, interrupted) releases its claim (`release_cell`).
    `tracking_uri` (the runner's store) wins over the store this process's config and environment name: a worker on
    another machine has an environment of its own.
    """
    from adaptive_lr.runner import config_hash, resume_run, run
    from adaptive_lr.tracking.run import resolve_tracking_uri

    if _runner_pid is not None and os.getppid() != _runner_pid:  # a worker whose runner died starts no cell
        os._exit(1)  # (the pool's call queue may still hold some); nothing of this worker is open
    cfg = compose(overrides)
    if tracking_uri is not None:
        cfg.logger.tracking_uri = tracking_uri
    metric = cfg.task.metric
    tracking_uri = resolve_tracking_uri(cfg.logger.tracking_uri, Path(cfg.paths.mlruns))
    phase = tags.get("phase", "final")
    cell = {Cell(cfg.task.name, cfg.scheduler.name, cfg.seed, tuple(overrides), phase): cfg}
    cell_id, artifact_root = f"{config_hash(cfg)}-{phase}", Path(cfg.paths.mlruns) / "artifacts"
    holder = claim_cell(tracking_uri, cfg.experiment, cell_id, artifact_root, token=token,
                        runner=tags.get("grid_runner"))
    if holder is not None:
        return {"status": "SKIPPED", "reason": f"claimed by runner {holder}"}
    finished = False
    try:
        if finished_cells(cell, cfg.experiment, tracking_uri):
            finished = True
            return {"status": "SKIPPED", "reason": "finished by another runner"}
        interrupted = next(iter(interrupted_cells(cell, cfg.experiment, tracking_uri).values()), None)
        try:
            result = run(cfg, tags=tags) if interrupted is None else resume_run(interrupted, tracking_uri, tags)
        except UserError:  # bad config or data: the whole grid stops with one `error:` line
            raise
        except Exception as err:  # the run is already marked FAILED in MLflow; the grid goes on
            return {"status": "FAILED",
                    "error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}
        finished = True
        return {"status": "FINISHED", "value": result.metrics.get(f"test_{metric}", math.nan), "metric": metric,
                "seconds": result.seconds, "resumed": interrupted is not None}
    finally:
        if not finished:  # the next claimant, on any machine, may run it (a FINISHED cell keeps its claim)
            try:
                release_cell(tracking_uri, cfg.experiment, cell_id, artifact_root)
            except Exception:  # the store is unreachable: the lease ends with this process instead (same host)
                pass


_runner_pid: int | None = None  # in a LocalEngine worker: the runner process that spawned it


def _worker_init(threads: int, runner_pid: int) -> None:
    import torch

    global _runner_pid
    _runner_pid = runner_pid
    _die_with(runner_pid)
    torch.set_num_threads(threads)


def _die_with(runner_pid: int) -> None:
    """End this worker when its runner ends, however it ends (SIGKILL included). On Linux the kernel sends SIGTERM
    when the parent dies (PR_SET_PDEATHSIG); everywhere a watchdog thread checks the parent's pid every
    `WATCHDOG_S` and sends the same SIGTERM. SIGTERM marks a running cell's run KILLED, its metrics flushed
    (`TrackedRun`); after `WORKER_GRACE_S` the watchdog ends the worker regardless."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    def watch() -> None:
        while os.getppid() == runner_pid:  # also right away if the runner died before the prctl
            time.sleep(WATCHDOG_S)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(WORKER_GRACE_S)
        os._exit(1)

    threading.Thread(target=watch, name="runner-watchdog", daemon=True).start()


class Progress:
    """One line per finished cell: done/total, running, failed, elapsed and ETA (from the mean cell rate)."""

    def __init__(self, grid: str, total: int, out: TextIO) -> None:
        self.grid, self.total, self.out = grid, total, out
        self.done = self.failed = 0
        self.failures: list[tuple[str, str]] = []
        self.t0 = time.perf_counter()

    def update(self, cell: Cell, outcome: dict[str, Any], running: int) -> None:
        self.done += 1
        if outcome["status"] == "FINISHED":
            summary = f"test_{outcome['metric']}={outcome['value']:.4f} ({outcome['seconds']:.1f}s)"
            summary += " (resumed)" if outcome.get("resumed") else ""
        elif outcome["status"] == "SKIPPED":
            summary = f"skipped: {outcome['reason']}"
        else:
            self.failed += 1
            self.failures.append((cell.key, outcome["error"]))
            summary = f"FAILED: {outcome['error']}"
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / self.done * (self.total - self.done)
        phase = "" if cell.phase == "final" else f" [{cell.phase}]"
        print(f"[{self.grid}] {self.done}/{self.total} done, {running} running, {self.failed} failed | "
              f"{cell.key}{phase} {summary} | elapsed {_fmt_s(elapsed)}, ETA {_fmt_s(eta)}",
              file=self.out, flush=True)


class LocalEngine:
    """Cells in this process (`jobs == 1`) or in `jobs` spawned worker processes on this machine."""

    def __init__(self, jobs: int = 1) -> None:
        self.jobs = jobs

    def execute(self, cells: Sequence[Cell], tags: dict[Cell, dict[str, Any]], progress: Progress,
                tracking_uri: str | None = None) -> None:
        """`tracking_uri` is unused: the workers share this process's configuration and environment."""
        if self.jobs <= 1:
            for cell in cells:
                progress.update(cell, run_cell(cell.overrides, tags[cell]), running=0)
            return
        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        with ProcessPoolExecutor(self.jobs, mp_context=get_context("spawn"), initializer=_worker_init,
                                 initargs=(threads, os.getpid())) as pool:
            try:
                pending: dict[Future, Cell] = {pool.submit(run_cell, c.overrides, tags[c]): c for c in cells}
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        cell = pending.pop(future)
                        progress.update(cell, _outcome(future.result), running=min(self.jobs, len(pending)))
            except BaseException:  # Ctrl-C, a config error: running cells stop too (their runs are marked KILLED)
                pool.shutdown(wait=False, cancel_futures=True)
                for worker in pool_processes(pool):
                    worker.terminate()
                raise


class RayEngine:
    """Cells as Ray tasks (one CPU each): on a local Ray instance with `jobs` CPUs bound to 127.0.0.1, or on an
    existing cluster (`address`: the head's GCS address `host:port`, "ray://head:10001" or "auto"). Every node needs
    the same project checkout (and the data); the MLflow store is the runner's (its resolved `tracking_uri` is given
    to every cell), which across machines must be a tracking server (`http://host:port`, started with
    `--serve-artifacts`: artifacts go through it too). A cell whose worker or node dies is run again on another
    node (`max_retries`); its retry takes over the dead attempt's claim (`claim_cell`'s token) and continues its run
    from the last checkpoint when the run folder is reachable (a shared disk), else starts a new run."""

    def __init__(self, jobs: int = 1, address: str | None = None, max_retries: int = RAY_MAX_RETRIES) -> None:
        self.jobs, self.address, self.max_retries = jobs, address, max_retries

    def execute(self, cells: Sequence[Cell], tags: dict[Cell, dict[str, Any]], progress: Progress,
                tracking_uri: str | None = None) -> None:
        try:
            import ray
        except ImportError as err:
            raise ConfigError("engine 'ray' needs Ray: `uv sync --group scale` (or pip install 'ray>=2.40')") from err
        import uuid

        from adaptive_lr.tracking.run import is_server

        if self.address is not None and tracking_uri is not None and not is_server(tracking_uri):
            print(f"note: cells on other machines reach the MLflow store {tracking_uri} only through a shared "
                  "filesystem; across machines give a tracking server (MLFLOW_TRACKING_URI=http://host:port)",
                  file=progress.out, flush=True)
        started = not ray.is_initialized()
        saved: dict[str, str | None] = {}
        if started:
            # a local instance: loopback only, and workers at normal priority (Ray nices them to 15 by default, so
            # any other load on the machine starved a grid's cells: a 4-cell grid sat 15 min in its imports)
            local = {"num_cpus": self.jobs, "_node_ip_address": "127.0.0.1", "object_store_memory": 100 * 2**20,
                     "_system_config": {"worker_niceness": 0}} if self.address is None else {}
            if self.address is None and not {AUTH_MODE, AUTH_TOKEN} & set(os.environ):
                # Ray 2.60 turns token authentication on for a local instance and, given no token, writes one to
                # ~/.ray/auth_token: given this one, it writes nothing outside the project (restored afterwards)
                saved = {k: os.environ.get(k) for k in (AUTH_MODE, AUTH_TOKEN)}
                os.environ[AUTH_TOKEN] = _local_ray_token()
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, **local)
        try:
            slots = self.jobs if self.address is None else max(1, int(ray.cluster_resources().get("CPU", 1)))
            remote = ray.remote(num_cpus=1, max_retries=self.max_retries)(_ray_cell)
            # one token per submission: a retry (same arguments) takes over the claim of the attempt it replaces
            pending = {remote.remote(c.overrides, tags[c], tracking_uri, uuid.uuid4().hex): c for c in cells}
            while pending:
                finished, _ = ray.wait(list(pending), num_returns=1)
                for ref in finished:
                    cell = pending.pop(ref)
                    progress.update(cell, _outcome(lambda ref=ref: ray.get(ref)), running=min(slots, len(pending)))
        finally:
            if started:
                ray.shutdown()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


_ray_token: list[str] = []  # this process's token for the local Ray instances it starts (Ray caches the first)


def _local_ray_token() -> str:
    if not _ray_token:
        import secrets

        _ray_token.append(secrets.token_hex(32))
    return _ray_token[0]


def _ray_cell(overrides: Sequence[str], tags: dict[str, Any], tracking_uri: str | None, token: str) -> dict[str, Any]:
    """`run_cell` as a Ray task, its run tagged with the Ray node that ran it (`ray_node`, the node ID)."""
    import ray

    return run_cell(overrides, {**tags, "ray_node": ray.get_runtime_context().get_node_id()}, tracking_uri, token)


#: `adaptive-lr experiment --engine NAME`: where cells run
ENGINES = {"local": LocalEngine, "ray": RayEngine}


def _outcome(result: Any) -> dict[str, Any]:
    """A worker's outcome; a worker that died (e.g. out of memory) leaves its run RUNNING, marked KILLED on resume."""
    try:
        return result()
    except UserError:
        raise
    except Exception as err:
        return {"status": "FAILED", "error": f"worker: {type(err).__name__}: {err}"}


def run_grid(name: str, extra_overrides: Sequence[str] = (), out: TextIO | None = None, jobs: int = 1,
             engine: LocalEngine | RayEngine | None = None) -> Grid:
    """Run every unfinished cell of a grid (tuning phase first, if any) on `engine` (default: `LocalEngine(jobs)`),
    printing progress to `out` (default: the current `sys.stderr`, looked up at call time so redirections apply)."""
    from adaptive_lr.tracking.run import resolve_tracking_uri

    out = out if out is not None else sys.stderr
    engine = engine or LocalEngine(jobs)
    if not (isinstance(engine.jobs, int) and engine.jobs >= 1):
        raise ConfigError(f"jobs must be a positive int, got {engine.jobs!r}")
    grid = load_grid(name, extra_overrides)
    if not grid.cells:
        raise ConfigError(f"experiment {name!r} has no cells (tasks x schedulers x seeds is empty)")
    phases = [tune_cells(grid), grid.cells] if grid.tuning else [grid.sweep_cells, grid.cells] if grid.sweep_cells \
        else [grid.cells]
    cfgs = {cell: compose(cell.overrides) for cell in phases[0]}  # every config error before the first run
    first = next(iter(cfgs.values()))
    tracking_uri = resolve_tracking_uri(first.logger.tracking_uri, Path(first.paths.mlruns))
    orphans = mark_store_orphans(tracking_uri)
    parent = parent_run(grid.name, tracking_uri, Path(first.paths.mlruns) / "artifacts", grid.description)
    if orphans:
        print(f"[{grid.name}] marked {orphans} run(s) of ended processes KILLED", file=out, flush=True)
    for i, cells in enumerate(phases):
        if grid.tuning and i == 1:  # 2) rerun the best tuning value of each (task, scheduler) with the grid's seeds
            best = best_values(grid, cells, tracking_uri)
            param = grid.tuning.param
            cells = [replace(c, overrides=(*c.overrides, f"{param}={best[(c.task, c.scheduler)]}")) for c in cells]
            for (task, sched), value in best.items():
                print(f"[{grid.name}] tuned {task}/{sched}: {param}={value:g}", file=out, flush=True)
            cfgs = {cell: compose(cell.overrides) for cell in cells}
        if grid.sweep_cells and i == 1:  # 2) the grid's seeds at each column's best sweep point
            best_point = best_sweep_points(grid, tracking_uri)
            cells = [replace(c, overrides=(*c.overrides, best_point[(c.task, c.scheduler)]),
                             tags=(*c.tags, ("tuned_from_sweep", best_point[(c.task, c.scheduler)]))) for c in cells]
            for (task, sched), point in best_point.items():
                print(f"[{grid.name}] best sweep point {task}/{sched}: {point}", file=out, flush=True)
            cfgs = {cell: compose(cell.overrides) for cell in cells}
        skip = finished_cells(cfgs, grid.name, tracking_uri)
        todo = [c for c in cells if c not in skip]
        label = f" {cells[0].phase} phase:" if grid.tuning or grid.sweep_cells else ""
        print(f"[{grid.name}]{label} {len(cells)} cells: {len(skip)} already finished, {len(todo)} to run "
              f"({type(engine).__name__} jobs={engine.jobs}, MLflow: {tracking_uri})", file=out, flush=True)
        resumable = interrupted_cells({c: cfgs[c] for c in todo}, grid.name, tracking_uri)
        if resumable:
            print(f"[{grid.name}] {len(resumable)} interrupted cell(s) continue in their run from its last checkpoint",
                  file=out, flush=True)
        budget = {"tuning_budget": grid.tuning.budget} if grid.tuning else {}
        tags = {c: {"cell": c.key, "phase": c.phase, "mlflow.parentRunId": parent, "grid_jobs": engine.jobs,
                    "grid_runner": f"{platform.node()}:{os.getpid()}", **budget, **dict(c.tags)} for c in todo}
        progress = Progress(grid.name, len(todo), out)
        engine.execute(todo, tags, progress, tracking_uri=tracking_uri)
        if progress.failures:
            print(f"[{grid.name}] {len(progress.failures)} cell(s) failed (marked FAILED in MLflow, left out of "
                  "reports):", file=out)
            for key, message in progress.failures:
                print(f"  {key}: {message}", file=out)
    _client(tracking_uri).set_terminated(parent, "FINISHED")
    return grid


def attach_report(experiment: str, tracking_uri: str, folder: Path) -> str | None:
    """Log a report folder (report.md, summary.csv, PNGs) as artifacts of the grid's parent run, if it has one."""
    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    for r in _search(client, exp.experiment_id, f"tags.{PARENT_TAG} = 'true'"):
        client.log_artifacts(r.info.run_id, str(folder), artifact_path=f"reports/{folder.name}")
        return r.info.run_id
    return None
