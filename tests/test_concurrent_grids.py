"""Safe concurrent grids: cells are claimed in the MLflow store (atomically, a lease per live process), so runners
sharing a grid and a store run each cell exactly once; a runner's worker processes end with it."""

from __future__ import annotations

import os
import platform
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest

from adaptive_lr.experiment import claim_cell
from grid_support import cell_runs, write_grid
from store_support import tracking_uri

CELLS = [f"cell{i}" for i in range(8)]


_start = None  # in a claimant process: the barrier every claimant waits at, so that they race


def _ready(barrier) -> None:
    global _start
    _start = barrier


def claim_all(uri: str, artifact_root: str, seed: int) -> tuple[int, list[str]]:
    """In a separate process: once every claimant is ready, try to claim every cell, in a random order."""
    order = random.Random(seed).sample(CELLS, len(CELLS))
    _start.wait(timeout=120)
    return os.getpid(), [c for c in order if claim_cell(uri, "grid", c, Path(artifact_root)) is None]


def test_claims_are_atomic_exclusive_while_the_owner_lives_and_reclaimed_once_it_died(store):
    uri, artifacts = tracking_uri(store), store / "mlruns" / "artifacts"
    ctx, n = get_context("spawn"), 3
    with ProcessPoolExecutor(n, mp_context=ctx, initializer=_ready, initargs=(ctx.Barrier(n),)) as pool:
        claimed = dict(pool.map(claim_all, [uri] * n, [str(artifacts)] * n, range(n)))
        # 1) three processes racing for the same eight cells: each cell goes to exactly one of them
        assert len(claimed) == n
        assert Counter(c for cells in claimed.values() for c in cells) == Counter(CELLS)
        # 2) while its owner lives, a claim holds: no one else gets it (the claimant's own retry does)
        owner = next(pid for pid, cells in claimed.items() if cells)
        cell = claimed[owner][0]
        assert claim_cell(uri, "grid", cell, artifacts) == f"{platform.node()}:{owner}"
    # 3) the owners have ended: their cells are reclaimed, once
    assert [claim_cell(uri, "grid", c, artifacts) for c in CELLS] == [None] * len(CELLS)
    assert [claim_cell(uri, "grid", c, artifacts) for c in CELLS] == [None] * len(CELLS)  # this process's own
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    assert client.search_experiments(filter_string="name LIKE '.claims/%'") == []  # hidden from the UI
    held = client.get_experiment_by_name(f".claims/grid/{cell}/1")
    assert held.tags == {"claim_host": platform.node(), "claim_pid": str(os.getpid())}


def runner(home: Path, grid: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "ADAPTIVE_LR_HOME": str(home), "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "adaptive_lr.cli", "experiment", str(grid), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_two_runners_started_together_run_each_cell_exactly_once(store, tmp_path):
    grid = write_grid(tmp_path / "tiny.yaml", max_epochs=2)
    procs = [runner(store, grid), runner(store, grid)]
    outs = [p.communicate(timeout=300)[1] for p in procs]

    assert [p.returncode for p in procs] == [0, 0], outs
    finished = Counter(r.data.tags["cell"] for r in cell_runs(store, "FINISHED"))
    assert finished == Counter({f"xor_clean/{s}/seed{i}": 1 for s in ("fixed", "heuristic") for i in (0, 1)})
    assert len(cell_runs(store)) == 4  # no run started twice, none deleted or left behind
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri(store))
    parents = client.search_runs([client.get_experiment_by_name("tiny").experiment_id], "tags.grid_parent = 'true'")
    assert len(parents) == 1  # both runners grouped their cells under one parent run
    skipped = sum(out.count("skipped: ") for out in outs)
    ran = sum(out.count("test_acc=") for out in outs)
    assert ran == 4 and skipped + ran == 8, outs  # every runner saw every cell: ran it or found it claimed/done


def children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def test_a_killed_runner_leaves_no_worker_behind(store, tmp_path):
    grid = write_grid(tmp_path / "tiny.yaml", max_epochs=50)
    proc = runner(store, grid, "-j", "2")
    deadline = time.monotonic() + 120
    while len(workers := {p for p in children(proc.pid)
                          if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()}) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)

    os.kill(proc.pid, signal.SIGKILL)  # the runner alone, as an OOM killer or `kill -9 <pid>` would
    proc.wait(timeout=30)

    deadline = time.monotonic() + 30
    while not all(gone(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in workers if not gone(p)]
    for pid in left:  # never leave them running, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert left == []


@pytest.mark.slow
def test_cells_of_a_killed_runner_are_killed_with_it_and_resume_exactly_when_the_grid_restarts(store, tmp_path):
    import io

    from mlflow.tracking import MlflowClient

    from adaptive_lr.config import compose
    from adaptive_lr.experiment import run_grid
    from adaptive_lr.runner import run

    client = MlflowClient(tracking_uri(store))
    grid = write_grid(tmp_path / "tiny.yaml", max_epochs=40)
    proc = runner(store, grid, "-j", "2")
    deadline = time.monotonic() + 240
    while not (client.get_experiment_by_name("tiny") and  # both workers 3 epochs into a cell
               sum(len(client.get_metric_history(r.info.run_id, "val_acc")) >= 3
                   for r in cell_runs(store, "RUNNING")) == 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.2)
    workers = children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while not all(gone(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(gone(p) for p in workers)

    # the workers marked their own runs KILLED on the way out (SIGTERM), with their epochs stored
    killed = cell_runs(store, "KILLED")
    assert len(killed) == 2 and {r.data.tags["error"] for r in killed} == {"interrupted by SIGTERM"}
    kept = {r.info.run_id: client.get_metric_history(r.info.run_id, "val_acc") for r in killed}
    assert all(len(h) >= 3 for h in kept.values())

    out = io.StringIO()
    run_grid(str(grid), out=out)
    assert "2 interrupted cell(s) continue in their run" in out.getvalue()
    assert out.getvalue().count("(resumed)") == 2
    assert len(cell_runs(store)) == 4 and {r.info.status for r in cell_runs(store)} == {"FINISHED"}
    for r in killed:  # each resumed cell: the run an uninterrupted run of its config would have been
        cell = r.data.tags["cell"].split("/")
        straight = run(compose(["task=xor_clean", f"scheduler={cell[1]}", f"seed={cell[2][4:]}",
                                "trainer.max_epochs=40", "data.n_samples=80", "experiment=straight"]))
        for key in ("lr", "val_acc", "val_loss", "train_loss", "test_acc"):
            resumed = [(m.step, m.value) for m in client.get_metric_history(r.info.run_id, key)]
            assert sorted(resumed) == sorted((m.step, m.value) for m in
                                             client.get_metric_history(straight.run_id, key)), key
        assert all(m in client.get_metric_history(r.info.run_id, "val_acc") for m in kept[r.info.run_id])
