"""Running a grid (`run_grid`): one cell (`run_cell`) in this process, in local worker processes (`LocalEngine`) or as
Ray tasks (`RayEngine`), with progress lines."""

from __future__ import annotations

import math
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TextIO

from adaptive_lr.compat import pool_processes
from adaptive_lr.config import ConfigError, compose
from adaptive_lr.errors import UserError
from adaptive_lr.grids.format import Cell, Grid, load_grid, tune_cells
from adaptive_lr.grids.store import (
    _client,
    best_sweep_points,
    best_values,
    claim_cell,
    finished_cells,
    interrupted_cells,
    parent_run,
    release_cell,
)
from adaptive_lr.tracking import schema
from adaptive_lr.tracking.run import mark_orphans as mark_store_orphans

PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h): the signal a process gets when its parent dies
WATCHDOG_S = 1.0  # how often a grid worker checks that its runner still exists
WORKER_GRACE_S = 10.0  # a worker whose runner died gets this long to mark its cell's run KILLED
RAY_MAX_RETRIES = 3  # times Ray runs a cell again after the worker or node running it died
AUTH_MODE, AUTH_TOKEN = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"  # Ray's token authentication (Ray >= 2.52)


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
    phase = tags.get(schema.PHASE, "final")
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
        tags = {c: {schema.CELL: c.key, schema.PHASE: c.phase, "mlflow.parentRunId": parent, "grid_jobs": engine.jobs,
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
