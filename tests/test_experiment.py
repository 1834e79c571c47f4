"""Experiment grids: every cell one tracked run, finished cells skipped, interrupted grids resume."""

from __future__ import annotations

import io
import re
from collections import Counter
from pathlib import Path

import pytest

from adaptive_lr import runner
from adaptive_lr.config import ConfigError
from adaptive_lr.experiment import load_grid, run_grid
from store_support import seed_store, tracking_uri

CELLS = {f"xor_clean/{s}/seed{seed}" for s in ("fixed", "heuristic") for seed in (0, 1)}


@pytest.fixture
def store(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    seed_store(home, tmp_path_factory)
    return home


def write_grid(path: Path, max_epochs: int = 2, extra: str = "", schedulers: str = "[fixed, heuristic]") -> Path:
    path.write_text(
        "name: tiny\n"
        "tasks: [xor_clean]\n"
        f"schedulers: {schedulers}\n"
        "seeds: [0, 1]\n"
        f"overrides: [trainer.max_epochs={max_epochs}, data.n_samples=80]\n" + extra
    )
    return path


def runs(home: Path, status: str | None = None) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri(home))
    exp = client.get_experiment_by_name("tiny")
    if exp is None:
        return []
    found = client.search_runs([exp.experiment_id], max_results=1000)
    return [r for r in found if status is None or r.info.status == status]


def finished_per_cell(home: Path) -> Counter:
    return Counter(r.data.tags["cell"] for r in runs(home, "FINISHED"))


def test_grid_runs_each_cell_then_skips_finished_ones(store, tmp_path):
    grid = write_grid(tmp_path / "tiny.yaml")
    out = io.StringIO()

    assert run_grid(str(grid), out=out).name == "tiny"

    assert finished_per_cell(store) == Counter(dict.fromkeys(CELLS, 1))
    assert {r.data.tags["max_epochs"] for r in runs(store)} == {"2"}
    lines = out.getvalue().splitlines()
    assert "4 cells: 0 already finished, 4 to run" in lines[0]
    progress = [line for line in lines if re.search(r"\] \d/4 ", line)]
    assert len(progress) == 4 and "4/4" in progress[-1]
    assert all(re.search(r"failed 0, elapsed \d+m\d\ds, ETA \d+m\d\ds", line) for line in progress)
    assert progress[-1].endswith("ETA 0m00s")

    out = io.StringIO()
    run_grid(str(grid), out=out)  # nothing new to run
    assert len(runs(store)) == 4
    assert "4 cells: 4 already finished, 0 to run" in out.getvalue()

    write_grid(grid, max_epochs=3)  # a changed config is a different cell
    out = io.StringIO()
    run_grid(str(grid), out=out)
    assert "4 cells: 0 already finished, 4 to run" in out.getvalue()
    assert Counter(r.data.tags["max_epochs"] for r in runs(store, "FINISHED")) == {"2": 4, "3": 4}


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
    assert "FAILED: RuntimeError: boom" in text and "failed 1" in text and "1 cell(s) failed" in text
    assert sum(finished_per_cell(store).values()) == 3
    assert len(runs(store, "FAILED")) == 1

    # 3) resumed again: only the failed cell runs
    out = io.StringIO()
    run_grid(grid, out=out)
    assert "4 cells: 3 already finished, 1 to run" in out.getvalue()
    assert finished_per_cell(store) == Counter(dict.fromkeys(CELLS, 1))
    assert len(runs(store, "FAILED")) == 1


def test_grid_config_errors_surface_before_any_run(home, tmp_path):
    grid = write_grid(tmp_path / "tiny.yaml", extra="lr: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown keys \['lr'\]; allowed: name, description, tasks, schedulers"):
        run_grid(str(grid), out=io.StringIO())

    grid = write_grid(tmp_path / "tiny.yaml", schedulers="[fixed, nope]")
    with pytest.raises(ConfigError, match=r"unknown scheduler 'nope'; allowed: cosine, fixed, heuristic, step"):
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
