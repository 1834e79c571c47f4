"""Experiment grids: every cell one tracked run, finished cells skipped, interrupted grids resume."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from adaptive_lr import runner
from adaptive_lr.config import ConfigError
from adaptive_lr.experiment import load_grid, run_grid
from grid_support import CELLS, cell_runs, write_grid
from store_support import tracking_uri


def parent(home: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri(home))
    exp = client.get_experiment_by_name("tiny")
    return [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("grid_parent") == "true"]


def finished_per_cell(home: Path) -> Counter:
    return Counter(r.data.tags["cell"] for r in cell_runs(home, "FINISHED"))


def test_grid_runs_each_cell_then_skips_finished_ones(store, tmp_path):
    grid = write_grid(tmp_path / "tiny.yaml")
    out = io.StringIO()

    assert run_grid(str(grid), out=out).name == "tiny"

    assert finished_per_cell(store) == Counter(dict.fromkeys(CELLS, 1))
    assert {r.data.tags["max_epochs"] for r in cell_runs(store)} == {"2"}
    lines = out.getvalue().splitlines()
    assert "4 cells: 0 already finished, 4 to run" in lines[0]
    progress = [line for line in lines if re.search(r"\] \d/4 done", line)]
    assert len(progress) == 4 and "4/4 done" in progress[-1]
    assert all(re.search(r"0 running, 0 failed \| xor_clean/\w+/seed\d test_acc=[\d.]+ \([\d.]+s\) \| "
                         r"elapsed \d+m\d\ds, ETA \d+m\d\ds$", line) for line in progress)
    assert progress[-1].endswith("ETA 0m00s")
    # one parent run groups the grid's cell runs in the MLflow UI
    (grid_run,) = parent(store)
    assert grid_run.info.status == "FINISHED" and grid_run.info.run_name == "grid:tiny"
    assert {r.data.tags["mlflow.parentRunId"] for r in cell_runs(store)} == {grid_run.info.run_id}
    assert {r.data.tags["phase"] for r in cell_runs(store)} == {"final"}

    out = io.StringIO()
    run_grid(str(grid), out=out)  # nothing new to run
    assert len(cell_runs(store)) == 4
    assert "4 cells: 4 already finished, 0 to run" in out.getvalue()

    write_grid(grid, max_epochs=3)  # a changed config is a different cell
    out = io.StringIO()
    run_grid(str(grid), out=out)
    assert "4 cells: 0 already finished, 4 to run" in out.getvalue()
    assert Counter(r.data.tags["max_epochs"] for r in cell_runs(store, "FINISHED")) == {"2": 4, "3": 4}


def test_interrupted_grid_resumes_until_every_cell_finished_once(store, tmp_path, monkeypatch):
    from adaptive_lr.tasks.classification import ClassificationTask

    grid = str(write_grid(tmp_path / "tiny.yaml"))
    real_run = runner.run
    calls = []

    def interrupt_third(cfg, tags=None, **kwargs):
        calls.append(tags["cell"])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_run(cfg, tags=tags, **kwargs)

    # 1) Ctrl+C during the third cell: the grid stops with two cells done
    with monkeypatch.context() as m:
        m.setattr(runner, "run", interrupt_third)
        with pytest.raises(KeyboardInterrupt):
            run_grid(grid, out=io.StringIO())
    assert sum(finished_per_cell(store).values()) == 2

    def crash(self, batch, batch_idx):
        raise RuntimeError("boom")

    def fail_first(cfg, tags=None, **kwargs):
        calls.append(tags["cell"])
        with monkeypatch.context() as m:
            if len(calls) == 4:
                m.setattr(ClassificationTask, "training_step", crash)
            return real_run(cfg, tags=tags, **kwargs)

    # 2) resumed: the two remaining cells run; one crashes, the grid goes on and reports it
    out = io.StringIO()
    with monkeypatch.context() as m:
        m.setattr(runner, "run", fail_first)
        run_grid(grid, out=out)
    text = out.getvalue()
    assert "4 cells: 2 already finished, 2 to run" in text
    assert calls == ["xor_clean/fixed/seed0", "xor_clean/fixed/seed1", "xor_clean/heuristic/seed0",
                     "xor_clean/heuristic/seed0", "xor_clean/heuristic/seed1"]  # resumed at the interrupted cell
    assert "FAILED: RuntimeError: boom" in text and "1 failed |" in text and "1 cell(s) failed" in text
    assert sum(finished_per_cell(store).values()) == 3
    assert len(cell_runs(store, "FAILED")) == 1

    # 3) resumed again: only the failed cell runs
    out = io.StringIO()
    run_grid(grid, out=out)
    assert "4 cells: 3 already finished, 1 to run" in out.getvalue()
    assert finished_per_cell(store) == Counter(dict.fromkeys(CELLS, 1))
    assert len(cell_runs(store, "FAILED")) == 1


def test_grid_config_errors_surface_before_any_run(home, tmp_path):
    grid = write_grid(tmp_path / "tiny.yaml", extra="lr: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown keys \['lr'\]; allowed: name, description, tasks, schedulers"):
        run_grid(str(grid), out=io.StringIO())

    grid = write_grid(tmp_path / "tiny.yaml", schedulers="[fixed, nope]")
    with pytest.raises(ConfigError, match=r"unknown scheduler 'nope'; allowed: .*cosine, .*fixed, heuristic"):
        run_grid(str(grid), out=io.StringIO())

    grid = write_grid(tmp_path / "tiny.yaml", extra="scheduler_overrides: {heuristic: [lr=0]}\n")
    with pytest.raises(ConfigError, match="lr must be a positive number"):
        run_grid(str(grid), out=io.StringIO())  # one bad cell stops the grid before the first (good) cell runs

    assert not (home / "mlruns").exists() and not (home / "runs").exists()


def test_grid_cells_are_the_product_of_tasks_schedulers_seeds(tmp_path):
    grid = load_grid(str(write_grid(tmp_path / "tiny.yaml", extra="task_overrides: {xor_clean: [lr=0.1]}\n")),
                     ["trainer.max_epochs=1"])

    assert {c.key for c in grid.cells} == CELLS
    for cell in grid.cells:
        assert cell.overrides[:4] == (f"task={cell.task}", f"scheduler={cell.scheduler}", f"seed={cell.seed}",
                                      "experiment=tiny")
        assert cell.overrides[4:] == ("lr=0.1", "trainer.max_epochs=2", "data.n_samples=80",
                                      "trainer.max_epochs=1")


def test_includes_join_other_grids_under_this_name(tmp_path):
    write_grid(tmp_path / "tiny.yaml")
    (tmp_path / "all.yaml").write_text(f"name: all\ninclude: [{tmp_path / 'tiny.yaml'}]\ntasks: [digits]\n"
                                       "schedulers: [cosine]\nseeds: [3]\n")
    grid = load_grid(str(tmp_path / "all.yaml"))
    assert grid.name == "all"
    assert {c.key for c in grid.cells} == CELLS | {"digits/cosine/seed3"}
    assert all("experiment=all" in c.overrides and "experiment=tiny" not in c.overrides for c in grid.cells)

    (tmp_path / "loop.yaml").write_text(f"include: [{tmp_path / 'loop.yaml'}]\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_grid(str(tmp_path / "loop.yaml"))
    (tmp_path / "twice.yaml").write_text(f"include: [{tmp_path / 'tiny.yaml'}, {tmp_path / 'tiny.yaml'}]\n")
    with pytest.raises(ConfigError, match="the same cell appears twice"):
        load_grid(str(tmp_path / "twice.yaml"))


def test_tuning_values_are_the_same_budget_for_every_scheduler(tmp_path):
    from adaptive_lr.experiment import Tuning, tune_cells

    assert Tuning.from_spec("g", {"low": 1e-4, "high": 1.0, "n": 5}).values == (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    random_values = Tuning.from_spec("g", {"low": 1e-3, "high": 1e-1, "n": 4, "method": "random"}).values
    assert len(random_values) == 4 and all(1e-3 <= v <= 1e-1 for v in random_values)
    assert random_values == Tuning.from_spec("g", {"low": 1e-3, "high": 1e-1, "n": 4, "method": "random"}).values
    with pytest.raises(ConfigError, match="tuning.method must be one of"):
        Tuning.from_spec("g", {"method": "grid"})
    with pytest.raises(ConfigError, match=r"unknown tuning keys \['budget'\]"):
        Tuning.from_spec("g", {"budget": 3})

    grid = load_grid(str(write_grid(tmp_path / "tiny.yaml", extra="tuning: {values: [0.01, 0.3], seeds: [7]}\n")))
    cells = tune_cells(grid)
    assert [(c.key, c.overrides[-1], c.phase) for c in cells] == [
        (f"xor_clean/{s}/seed7", f"lr={v}", "tune") for s in ("fixed", "heuristic") for v in (0.01, 0.3)
    ]
    assert grid.tuning.budget == "2 lr values (values) x 1 seed(s)"


def test_tuned_grid_reruns_each_schedulers_best_lr_with_the_grid_seeds(store, tmp_path):
    grid = str(write_grid(tmp_path / "tiny.yaml", schedulers="[fixed]", extra="tuning: {values: [0.003, 0.3]}\n"))
    out = io.StringIO()
    run_grid(grid, out=out)

    tune = cell_runs(store, "FINISHED")
    tuned = [r for r in tune if r.data.tags["phase"] == "tune"]
    final = [r for r in tune if r.data.tags["phase"] == "final"]
    assert sorted(r.data.params["lr"] for r in tuned) == ["0.003", "0.3"]
    best = max(tuned, key=lambda r: (r.data.metrics["val_acc"], float(r.data.params["lr"])))
    assert sorted(r.data.tags["seed"] for r in final) == ["0", "1"]
    assert {r.data.params["lr"] for r in final} == {best.data.params["lr"]}
    assert {r.data.tags["tuning_budget"] for r in final} == {"2 lr values (values) x 1 seed(s)"}
    assert f"tuned xor_clean/fixed: lr={float(best.data.params['lr']):g}" in out.getvalue()

    out = io.StringIO()
    run_grid(grid, out=out)  # resume: both phases already finished (the tune seed-0 run is not the final one)
    assert "tune phase: 2 cells: 2 already finished, 0 to run" in out.getvalue()
    assert "final phase: 2 cells: 2 already finished, 0 to run" in out.getvalue()


def test_runs_of_ended_processes_are_marked_killed_others_are_left_alone(store):
    import platform

    from mlflow.tracking import MlflowClient

    from adaptive_lr.experiment import mark_orphans
    from adaptive_lr.tracking.run import get_or_create_experiment

    client = MlflowClient(tracking_uri(store))
    exp_id = get_or_create_experiment(client, "tiny", store / "mlruns" / "artifacts")
    child = subprocess.Popen(["true"])
    child.wait()  # reaped: its pid names no process now
    dead_pid = str(child.pid)
    host = platform.node()
    cases = {"dead": {"host": host, "pid": dead_pid}, "alive": {"host": host, "pid": str(os.getpid())},
             "elsewhere": {"host": host + "-other", "pid": dead_pid}}
    ids = {name: client.create_run(exp_id, tags=tags).info.run_id for name, tags in cases.items()}

    assert mark_orphans("tiny", tracking_uri(store)) == 1
    status = {name: client.get_run(run_id).info.status for name, run_id in ids.items()}
    assert status == {"dead": "KILLED", "alive": "RUNNING", "elsewhere": "RUNNING"}
    assert client.get_run(ids["dead"]).data.tags["error"].startswith(f"orphaned: process {dead_pid}")


def both_workers_inside_a_cell(home: Path, last_epoch: int) -> bool:
    """Whether a cell has finished and two cells are RUNNING, each past its first epoch and at least ten short of
    `last_epoch`: a kill now leaves exactly two runs RUNNING, whatever the workers' relative speed."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri(home))
    epochs = [len(client.get_metric_history(r.info.run_id, "val_acc")) for r in cell_runs(home, "RUNNING")]
    return len(epochs) == 2 and all(1 <= e <= last_epoch - 10 for e in epochs) and bool(cell_runs(home, "FINISHED"))


def test_killed_parallel_grid_restarts_and_runs_every_cell_exactly_once(store, tmp_path):
    grid = write_grid(tmp_path / "tiny.yaml", max_epochs=60)
    env = {**os.environ, "ADAPTIVE_LR_HOME": str(store), "PYTHONWARNINGS": "ignore"}
    # 1) two worker processes; once a cell has finished and both workers are inside another, the whole process
    # group is killed (SIGKILL): one or two cells finished, two RUNNING
    log = tmp_path / "runner.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "adaptive_lr.cli", "experiment", str(grid), "-j", "2"],
                                env=env, stderr=stderr, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while not both_workers_inside_a_cell(store, 60):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert "jobs=2" in log.read_text(), log.read_text()
    finished = sum(finished_per_cell(store).values())
    assert finished in (1, 2) and len(cell_runs(store, "RUNNING")) == 2

    # 2) restarted: the two runs left RUNNING by the killed workers are marked KILLED and continue in the same run,
    # every other cell runs once: one run per cell in all
    out = io.StringIO()
    run_grid(str(grid), out=out)
    assert f"4 cells: {finished} already finished, {4 - finished} to run (LocalEngine jobs=1" in out.getvalue()
    assert finished_per_cell(store) == Counter(dict.fromkeys(CELLS, 1))
    assert cell_runs(store, "RUNNING") == [] and cell_runs(store, "KILLED") == []
    assert len(cell_runs(store)) == 4
    assert "marked 2 run(s) of ended processes KILLED" in out.getvalue()
    assert "2 interrupted cell(s) continue in their run" in out.getvalue()
    assert out.getvalue().count("(resumed)") == 2
    # every finished run logged its whole history: no metric lost between parallel writers of one SQLite store
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri(store))
    for r in cell_runs(store, "FINISHED"):
        assert len(client.get_metric_history(r.info.run_id, "val_acc")) == 60


@pytest.mark.slow
def test_eight_parallel_cells_on_one_sqlite_store_lose_no_run_and_no_metric(store, tmp_path):
    from mlflow.tracking import MlflowClient

    grid = write_grid(tmp_path / "tiny.yaml", max_epochs=20).read_text().replace("seeds: [0, 1]",
                                                                                "seeds: [0, 1, 2, 3]")
    (tmp_path / "tiny.yaml").write_text(grid)
    out = io.StringIO()
    run_grid(str(tmp_path / "tiny.yaml"), out=out, jobs=8)

    assert "8/8 done" in out.getvalue() and "0 failed" in out.getvalue()
    finished = cell_runs(store, "FINISHED")
    assert len(finished) == 8 and len(cell_runs(store)) == 8
    client = MlflowClient(tracking_uri(store))
    for r in finished:
        spe = int(r.data.tags["steps_per_epoch"])  # epoch metrics are on the global step of each epoch's end
        for key in ("epoch", "train_loss", "val_loss", "train_acc", "val_acc", "epoch_time_s", "epoch_lr"):
            assert [m.step for m in sorted(client.get_metric_history(r.info.run_id, key), key=lambda m: m.step)] \
                == [e * spe for e in range(1, 21)], key
        assert "test_acc" in r.data.metrics


def test_variants_are_named_columns_built_from_a_scheduler_and_overrides(tmp_path):
    from adaptive_lr.config import compose

    extra = "variants: {sgd_fixed: [scheduler=fixed, optimizer=sgd, scheduler.adaptive=false]}\n"
    grid = load_grid(str(write_grid(tmp_path / "tiny.yaml", schedulers="[heuristic, sgd_fixed]", extra=extra)))
    variant = [c for c in grid.cells if c.scheduler == "sgd_fixed"]
    assert [c.key for c in variant] == ["xor_clean/sgd_fixed/seed0", "xor_clean/sgd_fixed/seed1"]
    cfg = compose(variant[0].overrides)
    assert (cfg.scheduler.name, cfg.optimizer._target_, cfg.scheduler.policy._target_) == (
        "sgd_fixed", "torch.optim.SGD", "adaptive_lr.schedulers.baselines.Fixed")

    for bad, message in [("{v: [optimizer=sgd]}", "needs exactly one `scheduler=<config>`"),
                         ("{fixed: [scheduler=fixed]}", "shadows the scheduler config")]:
        write_grid(tmp_path / "bad.yaml", extra=f"variants: {bad}\n")
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_grid(str(tmp_path / "bad.yaml"))


@pytest.mark.slow
def test_ray_engine_runs_the_grid_on_a_local_two_cpu_instance_and_resumes(store, tmp_path):
    import ray  # the `scale` dependency group; `make test-slow` installs it

    from adaptive_lr.experiment import RayEngine

    grid = str(write_grid(tmp_path / "tiny.yaml"))
    out = io.StringIO()
    run_grid(grid, out=out, engine=RayEngine(jobs=2))

    assert "RayEngine jobs=2" in out.getvalue() and "4/4 done" in out.getvalue() and "0 failed" in out.getvalue()
    assert finished_per_cell(store) == Counter({cell: 1 for cell in CELLS})
    assert len(cell_runs(store)) == 4  # no stray RUNNING/FAILED run beside the finished ones
    # the cells ran in Ray's worker processes, not in the driver
    assert str(os.getpid()) not in {r.data.tags["pid"] for r in cell_runs(store)}
    assert [r.info.status for r in parent(store)] == ["FINISHED"]
    assert not ray.is_initialized()  # the engine shuts down the instance it started

    again = io.StringIO()
    run_grid(grid, out=again, engine=RayEngine(jobs=2))
    assert "4 already finished, 0 to run" in again.getvalue()
    assert finished_per_cell(store) == Counter({cell: 1 for cell in CELLS})
