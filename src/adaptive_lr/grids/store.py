"""A grid's side of the MLflow store: which cells are finished or interrupted, cell claims (`claim_cell`), the grid's
parent run, and what tuning and sweep runs chose."""

from __future__ import annotations

import itertools
import math
import os
import platform
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from adaptive_lr.grids.format import MULTIPLIER, Cell, Grid
from adaptive_lr.tracking import schema
from adaptive_lr.tracking.run import mark_orphans as mark_store_orphans
from adaptive_lr.tracking.run import process_alive

CLAIMS = ".claims"  # experiments named .claims/<grid>/<cell>/<generation>: who runs which cell (`claim_cell`)
RELEASED = "released"  # `<claim>/released`: that generation's lease ended (`release_cell`)


# -- the MLflow side -----------------------------------------------------------------------------------------------
def _client(tracking_uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri)


def _cell_runs(cfgs: dict[Cell, DictConfig], experiment: str, tracking_uri: str, status: str) -> dict[Cell, Any]:
    """Per cell, the latest run in `status` whose exact config (by hash) and phase are the cell's."""
    from adaptive_lr.runner import config_hash

    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    found = {}
    for r in sorted(schema.search_all(client, [exp.experiment_id], f"attributes.status = '{status}'"),
                    key=lambda r: r.info.start_time):
        found[(r.data.tags.get(schema.CONFIG_HASH, ""), r.data.tags.get(schema.PHASE, "final"))] = r
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
    owned = f"attributes.status = 'RUNNING' and tags.{schema.PID} = '{pid}'"
    for r in schema.search_all(client, [exp.experiment_id], owned):
        if r.data.tags.get(schema.HOST) != host or r.data.tags.get(schema.PARENT_TAG):
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
        found = schema.search_all(client, [exp_id], f"tags.{schema.PARENT_TAG} = 'true'")
        return sorted(found, key=lambda r: (r.info.start_time, r.info.run_id))

    existing = parents()
    if existing:
        client.update_run(existing[0].info.run_id, status="RUNNING")
        return existing[0].info.run_id
    run = client.create_run(exp_id, run_name=f"grid:{experiment}",
                            tags={schema.PARENT_TAG: "true", "mlflow.note.content": description})
    kept = parents()[0].info.run_id
    if kept != run.info.run_id:
        client.delete_run(run.info.run_id)
    return kept


def _finished_runs(grid: Grid, tracking_uri: str, phase: str) -> Iterator[Any]:
    """The FINISHED runs of one phase (`tune`, `sweep`) in the grid's experiment."""
    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(grid.name)
    finished = f"attributes.status = 'FINISHED' and tags.{schema.PHASE} = '{phase}'"
    return schema.search_all(client, [exp.experiment_id], finished)


def best_values(grid: Grid, cells: Sequence[Cell], tracking_uri: str) -> dict[tuple[str, str], float]:
    """Per (task, scheduler): the tuning value with the best mean final validation metric over tuning seeds."""
    assert grid.tuning is not None
    scores: dict[tuple[str, str, float], list[float]] = {}
    modes: dict[tuple[str, str], str] = {}
    for r in _finished_runs(grid, tracking_uri, "tune"):
        tags, metric = r.data.tags, r.data.tags.get("metric", "")
        value = float(r.data.params.get(grid.tuning.param, "nan"))
        final = r.data.metrics.get(f"val_{metric}", math.nan)
        key = (tags.get(schema.TASK, ""), tags.get(schema.SCHEDULER, ""))
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


def best_sweep_points(grid: Grid, tracking_uri: str) -> dict[tuple[str, str], str]:
    """Per (task, scheduler): the sweep point (`param=value` override) with the best mean final validation metric
    over the sweep seeds, from the FINISHED sweep runs (a point with a missing or non-finite value never wins)."""
    assert grid.sweep is not None
    points = {(c.task, c.scheduler, c.point) for c in grid.sweep_cells}
    scores: dict[tuple[str, str, str], list[float]] = {}
    modes: dict[tuple[str, str], str] = {}
    for r in _finished_runs(grid, tracking_uri, "sweep"):
        # the point a run ran at, from its params (also for runs imported from a bundle, which have no cell tag)
        tags, params = r.data.tags, r.data.params
        param = MULTIPLIER if MULTIPLIER in params else grid.sweep.param
        try:
            key = (tags.get(schema.TASK, ""), tags.get(schema.SCHEDULER, ""),
                   f"{param}={float(params.get(param, 'nan'))}")
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


def attach_report(experiment: str, tracking_uri: str, folder: Path) -> str | None:
    """Log a report folder (report.md, summary.csv, PNGs) as artifacts of the grid's parent run, if it has one."""
    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    for r in schema.search_all(client, [exp.experiment_id], f"tags.{schema.PARENT_TAG} = 'true'"):
        client.log_artifacts(r.info.run_id, str(folder), artifact_path=f"reports/{folder.name}")
        return r.info.run_id
    return None
