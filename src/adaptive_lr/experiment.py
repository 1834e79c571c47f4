"""Experiment grids (experiments/<name>.yaml): tasks x schedulers x seeds, each cell one tracked run.

A grid file has `tasks`, `schedulers`, `seeds` and optional `overrides`, `task_overrides`, `scheduler_overrides`,
`include` (other grids whose cells join this one, under this grid's name) and `tuning` (the fair tuning protocol).

- **Resume**: a cell whose identical config (and phase) already has a FINISHED run in the grid's MLflow experiment
  is skipped, so an interrupted grid finishes where it stopped; runs left RUNNING by a process that no longer
  exists on this host are marked KILLED first, so every cell ends with exactly one FINISHED run.
- **Parallel**: `jobs > 1` runs cells in that many worker processes (spawned, each imports Lightning once and runs
  many cells); `jobs == 1` runs them in this process. Progress lines show cells done, running, failed and the ETA.
- **MLflow**: one experiment per grid, with a parent run (`grid:<name>`) whose children are the cell runs (tags
  task/scheduler/seed/phase); reports are attached to the parent.
- **Fair tuning** (after DeepOBS and Schmidt et al. 2021, "Descending through a crowded valley"): with a `tuning`
  block every scheduler first gets the same budget of base-LR trials (phase `tune`, on the validation split), then
  the best LR by final validation metric is rerun with the grid's seeds (phase `final`); reports use the final runs.
"""

from __future__ import annotations

import math
import os
import platform
import random
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TextIO

from omegaconf import DictConfig, OmegaConf

from adaptive_lr.config import EXPERIMENTS_DIR, ConfigError, available, compose

GRID_KEYS = ("name", "description", "tasks", "schedulers", "seeds", "overrides", "task_overrides",
             "scheduler_overrides", "variants", "views", "include", "tuning")
TUNING_KEYS = ("param", "values", "low", "high", "n", "method", "seeds", "sample_seed")
PARENT_TAG = "grid_parent"


@dataclass(frozen=True)
class Cell:
    task: str
    scheduler: str
    seed: int
    overrides: tuple[str, ...]
    phase: str = "final"

    @property
    def key(self) -> str:
        return f"{self.task}/{self.scheduler}/seed{self.seed}"


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


@dataclass
class Grid:
    name: str
    description: str
    cells: list[Cell]
    tuning: Tuning | None = None
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
    spec = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if not isinstance(spec, dict):
        raise ConfigError(f"experiment {name!r}: {path} is not a mapping")
    grid_name = spec.get("name", path.stem)
    cells = _spec_cells(name, spec, grid_name, extra_overrides)
    for included in spec.get("include", []):
        sub = load_grid(included, extra_overrides, (*_seen, path.stem))
        cells += [replace(c, overrides=tuple(f"experiment={grid_name}" if o.startswith("experiment=") else o
                                             for o in c.overrides)) for c in sub.cells]
    keys = [c.overrides for c in cells]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"experiment {name!r}: the same cell appears twice (check includes)")
    tuning = Tuning.from_spec(name, spec["tuning"]) if spec.get("tuning") else None
    return Grid(grid_name, spec.get("description", ""), cells, tuning)


def tune_cells(grid: Grid) -> list[Cell]:
    """Phase 1 of the tuning protocol: every (task, scheduler) x tuning value x tuning seed."""
    assert grid.tuning is not None
    t = grid.tuning
    def without_seed(cell: Cell) -> tuple[str, ...]:
        return tuple(o for o in cell.overrides if o != f"seed={cell.seed}")

    pairs = dict.fromkeys((c.task, c.scheduler, without_seed(c)) for c in grid.cells)  # keep order, drop seeds
    return [
        Cell(task, sched, seed, (*rest, f"seed={seed}", f"{t.param}={value}"), phase="tune")
        for (task, sched, rest) in pairs for value in t.values for seed in t.seeds
    ]


# -- the MLflow side -----------------------------------------------------------------------------------------------
def _client(tracking_uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri)


def _search(client: Any, experiment_id: str, filter_string: str = "") -> Iterable[Any]:
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=1000, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def finished_cells(cfgs: dict[Cell, DictConfig], experiment: str, tracking_uri: str) -> set[Cell]:
    """Cells whose exact config (by hash) and phase already have a FINISHED run in the experiment."""
    from adaptive_lr.runner import config_hash

    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return set()
    done = {(r.data.tags.get("config_hash", ""), r.data.tags.get("phase", "final"))
            for r in _search(client, exp.experiment_id, "attributes.status = 'FINISHED'")}
    return {cell for cell, cfg in cfgs.items() if (config_hash(cfg), cell.phase) in done}


def _alive(pid: int) -> bool:
    """Whether a process runs; a zombie (ended, not yet reaped: e.g. a killed worker whose parent died) has not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def mark_orphans(experiment: str, tracking_uri: str) -> int:
    """Mark KILLED the RUNNING cell runs of this experiment whose process (on this host) no longer exists."""
    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return 0
    host, n = platform.node(), 0
    for r in _search(client, exp.experiment_id, "attributes.status = 'RUNNING'"):
        tags = r.data.tags
        if tags.get(PARENT_TAG) or tags.get("host") != host or not tags.get("pid", "").isdigit():
            continue
        if not _alive(int(tags["pid"])):
            client.set_tag(r.info.run_id, "error", f"orphaned: process {tags['pid']} on {host} ended mid-run")
            client.set_terminated(r.info.run_id, "KILLED")
            n += 1
    return n


def parent_run(experiment: str, tracking_uri: str, artifact_root: Path, description: str) -> str:
    """The grid's parent run (created once, reused on resume) and marked RUNNING while the grid runs."""
    from adaptive_lr.tracking.run import get_or_create_experiment

    client = _client(tracking_uri)
    exp_id = get_or_create_experiment(client, experiment, artifact_root)
    for r in _search(client, exp_id, f"tags.{PARENT_TAG} = 'true'"):
        client.update_run(r.info.run_id, status="RUNNING")
        return r.info.run_id
    run = client.create_run(exp_id, run_name=f"grid:{experiment}",
                            tags={PARENT_TAG: "true", "mlflow.note.content": description})
    return run.info.run_id


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


def run_cell(overrides: Sequence[str], tags: dict[str, Any]) -> dict[str, Any]:
    """Run one cell (in this process or a worker); never raises for a training failure (the run is FAILED)."""
    from adaptive_lr.runner import run

    cfg = compose(overrides)
    metric = cfg.task.metric
    try:
        result = run(cfg, tags=tags)
    except ConfigError:
        raise
    except Exception as err:  # the run is already marked FAILED in MLflow; the grid goes on
        return {"status": "FAILED", "error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}
    return {"status": "FINISHED", "value": result.metrics.get(f"test_{metric}", math.nan), "metric": metric,
            "seconds": result.seconds}


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


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

    def execute(self, cells: Sequence[Cell], tags: dict[Cell, dict[str, Any]], progress: Progress) -> None:
        if self.jobs <= 1:
            for cell in cells:
                progress.update(cell, run_cell(cell.overrides, tags[cell]), running=0)
            return
        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        with ProcessPoolExecutor(self.jobs, mp_context=get_context("spawn"), initializer=_worker_init,
                                 initargs=(threads,)) as pool:
            pending: dict[Future, Cell] = {pool.submit(run_cell, c.overrides, tags[c]): c for c in cells}
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    cell = pending.pop(future)
                    progress.update(cell, _outcome(future.result), running=min(self.jobs, len(pending)))


class RayEngine:
    """Cells as Ray tasks (one CPU each): on a local Ray instance with `jobs` CPUs bound to 127.0.0.1, or on an
    existing cluster (`address`, e.g. "ray://head:10001" or "auto"). Every worker must see the same project
    checkout and MLflow store (a server URI via `logger.tracking_uri` when the workers are on other machines)."""

    def __init__(self, jobs: int = 1, address: str | None = None) -> None:
        self.jobs, self.address = jobs, address

    def execute(self, cells: Sequence[Cell], tags: dict[Cell, dict[str, Any]], progress: Progress) -> None:
        try:
            import ray
        except ImportError as err:
            raise ConfigError("engine 'ray' needs Ray: `uv sync --group scale` (or pip install 'ray>=2.40')") from err
        started = not ray.is_initialized()
        if started:
            # a local instance: loopback only, and workers at normal priority (Ray nices them to 15 by default, so
            # any other load on the machine starved a grid's cells: a 4-cell grid sat 15 min in its imports)
            local = {"num_cpus": self.jobs, "_node_ip_address": "127.0.0.1", "object_store_memory": 100 * 2**20,
                     "_system_config": {"worker_niceness": 0}} if self.address is None else {}
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, **local)
        try:
            remote = ray.remote(num_cpus=1)(run_cell)
            pending = {remote.remote(c.overrides, tags[c]): c for c in cells}
            while pending:
                finished, _ = ray.wait(list(pending), num_returns=1)
                for ref in finished:
                    cell = pending.pop(ref)
                    progress.update(cell, _outcome(lambda ref=ref: ray.get(ref)), running=min(self.jobs, len(pending)))
        finally:
            if started:
                ray.shutdown()


#: `adaptive-lr experiment --engine NAME`: where cells run
ENGINES = {"local": LocalEngine, "ray": RayEngine}


def _outcome(result: Any) -> dict[str, Any]:
    """A worker's outcome; a worker that died (e.g. out of memory) leaves its run RUNNING, marked KILLED on resume."""
    try:
        return result()
    except ConfigError:
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
    phases = [tune_cells(grid), grid.cells] if grid.tuning else [grid.cells]
    cfgs = {cell: compose(cell.overrides) for cell in phases[0]}  # every config error before the first run
    first = next(iter(cfgs.values()))
    tracking_uri = resolve_tracking_uri(first.logger.tracking_uri, Path(first.paths.mlruns))
    orphans = mark_orphans(grid.name, tracking_uri)
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
        skip = finished_cells(cfgs, grid.name, tracking_uri)
        todo = [c for c in cells if c not in skip]
        label = f" {cells[0].phase} phase:" if grid.tuning else ""
        print(f"[{grid.name}]{label} {len(cells)} cells: {len(skip)} already finished, {len(todo)} to run "
              f"({type(engine).__name__} jobs={engine.jobs}, MLflow: {tracking_uri})", file=out, flush=True)
        budget = {"tuning_budget": grid.tuning.budget} if grid.tuning else {}
        tags = {c: {"cell": c.key, "phase": c.phase, "mlflow.parentRunId": parent, "grid_jobs": engine.jobs,
                    **budget} for c in todo}
        progress = Progress(grid.name, len(todo), out)
        engine.execute(todo, tags, progress)
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
