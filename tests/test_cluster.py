"""Grids across machines: claims that work through any store and survive dead attempts on other hosts (fast, on
an SQLite store), and, slow, a two-node Ray cluster on loopback writing to an MLflow tracking server (`cluster.py`):
every cell FINISHED once with its artifacts on the server, also when the worker node dies mid-grid."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from adaptive_lr.experiment import claim_cell, release_cell
from adaptive_lr.tracking.run import artifact_location
from grid_support import cell_runs
from store_support import tracking_uri


def held_elsewhere(uri: str, root: Path, cell: str, **tags: str) -> None:
    """Generation 0 of a cell's claim, held by a process of another machine (as `claim_cell` leaves it)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    claim = client.create_experiment(f".claims/grid/{cell}/0", artifact_location=root.as_uri(),
                                     tags={"claim_host": "elsewhere", "claim_pid": "123", **tags})
    client.delete_experiment(claim)


def test_a_lease_held_on_another_host_ends_only_by_release_retry_or_its_dead_runner(store):
    from mlflow.tracking import MlflowClient

    uri, root = tracking_uri(store), store / "mlruns" / "artifacts"
    client = MlflowClient(uri)
    exp = client.create_experiment("grid", artifact_location=root.as_uri())
    attempt = client.create_run(exp, tags={"host": "elsewhere", "pid": "123", "cell": "c"}).info.run_id
    other = client.create_run(exp, tags={"host": "elsewhere", "pid": "456"}).info.run_id
    dead_runner = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                                 text=True, check=True).stdout.strip()
    held_elsewhere(uri, root, "live", claim_token="t1", claim_runner=f"{platform.node()}:{os.getpid()}")
    held_elsewhere(uri, root, "retried", claim_token="t1")
    held_elsewhere(uri, root, "orphan", claim_runner=f"{platform.node()}:{dead_runner}")
    held_elsewhere(uri, root, "released")
    client.delete_experiment(client.create_experiment(".claims/grid/released/0/released",
                                                      artifact_location=root.as_uri()))

    # 1) alive as far as this host can tell: another submission (token), a live runner
    assert claim_cell(uri, "grid", "live", root, token="t2") == "elsewhere:123"
    assert client.get_run(attempt).info.status == "RUNNING"
    # 2) the retry of the same submission: the attempt it replaces died; its run is KILLED (resumable)
    assert claim_cell(uri, "grid", "retried", root, token="t1") is None
    assert client.get_run(attempt).info.status == "KILLED"
    assert "lease was taken over" in client.get_run(attempt).data.tags["error"]
    assert client.get_run(other).info.status == "RUNNING"  # another process's run is left alone
    # 3) its runner, on this host, has ended: so has every worker it started, wherever
    assert claim_cell(uri, "grid", "orphan", root) is None
    # 4) released by its owner (the cell ended unfinished)
    assert claim_cell(uri, "grid", "released", root) is None
    held = client.get_experiment_by_name(".claims/grid/retried/1")
    assert held.tags == {"claim_host": platform.node(), "claim_pid": str(os.getpid()), "claim_token": "t1"}

    # this process releases its claim: the next claimant (any host, any token) gets the next generation
    assert release_cell(uri, "grid", "retried", root) and not release_cell(uri, "grid", "never-claimed", root)
    assert client.get_experiment_by_name(".claims/grid/retried/1/released") is not None
    assert client.search_experiments(filter_string="name LIKE '.claims/%'") == []  # all hidden from the UI


def test_a_tracking_server_chooses_where_artifacts_go(tmp_path):
    for server in ("http://127.0.0.1:5000", "https://mlflow.example.org", "databricks"):
        assert artifact_location(server, tmp_path / "artifacts") is None
    for direct in (f"sqlite:///{tmp_path}/mlflow.db", "postgresql://u@db/mlflow"):
        assert artifact_location(direct, tmp_path / "artifacts") == (tmp_path / "artifacts").resolve().as_uri()


# -- a two-node Ray cluster and an MLflow server on loopback ---------------------------------------------------------
GRID = """name: {name}
tasks: [xor_clean]
schedulers: [fixed, {second}]
seeds: [0, 1]
{views}overrides: [trainer.max_epochs={epochs}, data.n_samples=80]
"""
CELLS = [f"xor_clean/{{}}/seed{seed}" for seed in (0, 1)]


def grid_on_cluster(cluster, home: Path, grid: Path, *args: str) -> subprocess.Popen:
    """`adaptive-lr experiment <grid> --engine ray --address <head>` with the cluster's environment (the server's
    URI, Ray's token), in a process group of its own."""
    env = {**os.environ, **cluster.env, "ADAPTIVE_LR_HOME": str(home), "PYTHONWARNINGS": "ignore",
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "adaptive_lr.cli", "experiment", str(grid), "--engine", "ray",
                             "--address", cluster.address, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def each_cell_finished_once(returncode: int, out: str, uri: str, experiment: str, second: str) -> list:
    """The grid (fixed and `second` x seeds 0, 1) exited cleanly and each cell has one FINISHED run; its runs."""
    assert returncode == 0, out
    assert "4/4 done" in out and "0 failed" in out, out
    runs = cell_runs(uri, experiment=experiment)
    assert Counter(r.data.tags["cell"] for r in runs if r.info.status == "FINISHED") == Counter(
        c.format(s) for c in CELLS for s in ("fixed", second))
    return runs


def parent_process(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def artifacts(client, run_id: str, folder: Path) -> set[str]:
    """Every artifact of a run, downloaded through the tracking server into `folder`: their relative paths."""
    root = Path(client.download_artifacts(run_id, "", str(folder)))
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_grid_on_a_two_node_ray_cluster_lands_on_the_tracking_server_and_survives_a_dead_node(home, tmp_path,
                                                                                                 monkeypatch):
    pytest.importorskip("ray")  # the `scale` group; `make test-slow` installs it
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow.tracking import MlflowClient

    from adaptive_lr.cluster import group_members, marked, start, stop
    from adaptive_lr.reporting.collect import load_runs

    t0 = time.monotonic()
    cluster = start(tmp_path / "cluster", workers=1, cpus=1,
                    env={"ADAPTIVE_LR_HOME": str(home), "PYTHONWARNINGS": "ignore"})
    timings = {"start": time.monotonic() - t0}
    drivers: list[subprocess.Popen] = []
    try:
        client = MlflowClient(cluster.tracking_uri)
        # 1) a grid with a learning controller (policy artifacts), views (viz/) and a report on its parent run
        grid = tmp_path / "on-cluster.yaml"
        grid.write_text(GRID.format(name="on-cluster", second="rl_bandit", epochs=2,
                                    views="views: {xor_clean: [boundary]}\n"))
        t = time.monotonic()
        drivers.append(proc := grid_on_cluster(cluster, home, grid, "--report"))
        out = proc.communicate(timeout=900)[0]
        timings["grid"] = time.monotonic() - t
        runs = each_cell_finished_once(proc.returncode, out, cluster.tracking_uri, "on-cluster", "rl_bandit")
        assert len(runs) == 4  # nothing else: no RUNNING, KILLED or FAILED run beside them
        assert len({r.data.tags["ray_node"] for r in runs}) == 2  # cells ran on both nodes
        for r in runs:
            assert r.info.artifact_uri.startswith("mlflow-artifacts:/")  # the server's artifact root
            got = artifacts(client, r.info.run_id, tmp_path / "download" / r.info.run_id)
            assert {"config.json", "git_commit.txt"} <= got
            stored = json.loads((tmp_path / "download" / r.info.run_id / "config.json").read_text())
            assert (stored["scheduler"]["name"], stored["seed"]) == (r.data.tags["scheduler"], int(r.data.tags["seed"]))
            assert ("policy_learned.pt" in got) == (r.data.tags["scheduler"] == "rl_bandit")
            assert any(p.startswith("viz/boundary/") for p in got) == (r.data.tags["seed"] == "0")
        (parent,) = client.search_runs([client.get_experiment_by_name("on-cluster").experiment_id],
                                       "tags.grid_parent = 'true'")
        assert parent.info.status == "FINISHED"
        report = artifacts(client, parent.info.run_id, tmp_path / "download" / "parent")
        assert any(p.startswith("reports/") and p.endswith("report.md") for p in report)
        assert not (home / "mlruns").exists()  # nothing went to a local store
        assert any((Path(cluster.folder) / "artifacts").rglob("policy_learned.pt"))  # it went to the server's

        # 2) the same kind of grid, longer cells; the worker node's raylet is killed while it runs a cell
        grid = tmp_path / "dead-node.yaml"
        grid.write_text(GRID.format(name="dead-node", second="heuristic", epochs=30, views=""))
        raylet = next(pid for pid, name in group_members(cluster.groups["worker1"]).items() if name == "raylet")
        t = time.monotonic()
        drivers.append(proc := grid_on_cluster(cluster, home, grid))
        victim = None
        while victim is None:
            assert proc.poll() is None and time.monotonic() - t < 600, proc.communicate()[0]
            exp = client.get_experiment_by_name("dead-node")
            running = client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'") if exp else []
            for r in running:
                if (parent_process(int(r.data.tags.get("pid", 0))) == raylet
                        and len(client.get_metric_history(r.info.run_id, "val_acc")) >= 2):
                    os.kill(raylet, signal.SIGKILL)  # the node dies: its raylet and, with it, its workers
                    victim = r
                    break
            time.sleep(0.2)
        timings["kill_after"] = time.monotonic() - t
        out = proc.communicate(timeout=900)[0]
        timings["grid_with_dead_node"] = time.monotonic() - t
        runs = each_cell_finished_once(proc.returncode, out, cluster.tracking_uri, "dead-node", "heuristic")
        assert [r.info.status for r in runs if r.info.status != "FINISHED"] in ([], ["KILLED"])
        # on loopback the run folder is on a disk both nodes share: the retry continued the killed run itself
        resumed = client.get_run(victim.info.run_id)
        assert resumed.info.status == "FINISHED" and resumed.data.tags["resumed"] == "1"
        assert resumed.data.tags["ray_node"] != victim.data.tags["ray_node"]
        steps = [m.step for m in client.get_metric_history(victim.info.run_id, "val_acc")]
        straight = next(r for r in runs if r.info.run_id != victim.info.run_id)
        assert sorted(steps) == sorted(m.step for m in client.get_metric_history(straight.info.run_id, "val_acc"))
        assert len(set(steps)) == len(steps)  # every epoch once, none twice
        assert group_members(cluster.groups["worker1"]) == {}  # the node is gone, all of it
        # reports take one result per cell, and never the killed attempt
        data = load_runs("dead-node", cluster.tracking_uri)
        assert len(data.finished) == 4 and len(data.superseded) == 0
    finally:
        for proc in drivers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        t = time.monotonic()
        left = stop(cluster)
        timings["stop"] = time.monotonic() - t
        print(f"cluster test timings (s): { {k: round(v, 1) for k, v in timings.items()} }")
    assert left == {} and marked(cluster.marker) == {}  # every process it started has ended
    assert all(not group_members(g) for g in cluster.groups.values())
