"""The `adaptive-lr` command line: bad input fails before training with one `error:` line and exit code 2,
reports are never overwritten, and `--help` answers at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adaptive_lr.cli import main
from store_support import tracking_uri

TINY = ["task=xor_clean", "trainer.max_epochs=2", "data.n_samples=80"]
ENTRY_POINT = Path(sys.executable).with_name("adaptive-lr")


def all_runs(home: Path) -> list:
    """Every run of every experiment in the home's store; [] when the store was never created."""
    if not (home / "mlruns" / "mlflow.db").exists():
        return []
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri(home))
    ids = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(ids, max_results=1000))


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ")
    assert captured.out == ""
    return lines[0]


@pytest.mark.parametrize(
    ("overrides", "must_name"),
    [
        (["scheduler=nope"], ["scheduler", "'nope'", "fixed", "step", "cosine", "heuristic"]),
        (["task=nope"], ["task", "'nope'", "digits", "xor_clean", "xor_noisy"]),
        (["lr=0"], ["lr", "positive", "0"]),
        (["lr=-1"], ["lr", "positive", "-1"]),
        (["task.threshold=1.5"], ["task.threshold", "(0, 1)", "1.5"]),
        (["task.threshold=0"], ["task.threshold", "(0, 1)"]),
        (["scheduler=heuristic", "scheduler.policy.monitor=val_bogus"],
         ["scheduler.policy.monitor", "val_bogus", "xor_clean", "val_loss", "val_acc", "train_loss"]),
        (["scheduler=step", "scheduler.policy.gamma=2"], ["gamma", "(0, 1]", "2"]),
        (["trainer.max_epochs=0"], ["trainer.max_epochs", "0"]),
    ],
    ids=["scheduler", "task", "lr=0", "lr<0", "threshold>1", "threshold=0", "monitor", "gamma", "max_epochs"],
)
def test_bad_train_input_fails_before_training(home, capsys, overrides, must_name):
    assert main(["train", *TINY, *overrides]) == 2

    line = one_error_line(capsys)
    for text in must_name:
        assert text in line, line
    assert not (home / "runs").exists()  # no run folder: nothing was trained
    assert all_runs(home) == []  # and nothing reached the MLflow store


def test_unknown_experiment_fails_naming_the_allowed_ones(home, capsys):
    assert main(["experiment", "nope", *TINY]) == 2
    line = one_error_line(capsys)
    assert "'nope'" in line and "allowed: " in line and "demo" in line

    assert main(["report", "nope"]) == 2
    assert "demo" in one_error_line(capsys)
    assert all_runs(home) == []


def test_report_without_runs_is_one_error_line(store, tmp_path, capsys):
    grid = tmp_path / "tiny.yaml"
    grid.write_text("name: tiny\ntasks: [xor_clean]\nschedulers: [fixed]\nseeds: [0]\n")

    assert main(["report", str(grid)]) == 2

    line = one_error_line(capsys)
    assert "'tiny'" in line
    assert not (store / "reports").exists()


def test_reports_are_never_overwritten(store, tmp_path, capsys):
    grid = tmp_path / "tiny.yaml"
    grid.write_text("name: tiny\ntasks: [xor_clean]\nschedulers: [fixed]\nseeds: [0]\n"
                    "overrides: [trainer.max_epochs=2, data.n_samples=80]\n")

    assert main(["experiment", str(grid), "--report"]) == 0
    assert main(["report", str(grid)]) == 0

    reports = [Path(line.removeprefix("report: ")) for line in capsys.readouterr().out.splitlines()
               if line.startswith("report: ")]
    assert len(reports) == 2
    assert reports[0].parent != reports[1].parent
    assert all(r.name == "report.md" and r.is_file() for r in reports)
    assert all(r.parent.parent == store / "reports" / "tiny" for r in reports)
    assert reports[0].read_text() != "" and "xor_clean" in reports[1].read_text()
    # both reports are also artifacts of the grid's parent run in MLflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store.resolve()}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name("tiny")
    (parent,) = client.search_runs([exp.experiment_id], "tags.grid_parent = 'true'")
    attached = {a.path for a in client.list_artifacts(parent.info.run_id, "reports")}
    assert attached == {f"reports/{r.parent.name}" for r in reports}
    assert "report.md" in {Path(a.path).name
                           for a in client.list_artifacts(parent.info.run_id, f"reports/{reports[0].parent.name}")}


def test_entry_point_exits_2_on_bad_input(home):
    proc = subprocess.run([str(ENTRY_POINT), "train", "task=xor_clean", "lr=0"], capture_output=True, text=True,
                          env={**os.environ, "ADAPTIVE_LR_HOME": str(home)}, timeout=120)

    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["error: lr must be a positive number, got 0"]
    assert not (home / "runs").exists() and not (home / "mlruns").exists()


def test_help_answers_at_once():
    t0 = time.perf_counter()
    proc = subprocess.run([str(ENTRY_POINT), "--help"], capture_output=True, text=True, timeout=60)
    seconds = time.perf_counter() - t0

    assert proc.returncode == 0
    assert all(cmd in proc.stdout for cmd in ("train", "experiment", "report"))
    assert seconds < 3.0  # the target is 2 s; slack for a loaded machine
