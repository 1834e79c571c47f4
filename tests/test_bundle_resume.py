"""A grid continued on another machine from a committed bundle: `adaptive-lr import <bundle>` recreates the finished
runs in a fresh store, the grid then runs only the cells the bundle lacks, and the report is unchanged."""

from __future__ import annotations

import filecmp
import io
import shutil
from pathlib import Path

import pytest

from adaptive_lr.cli import main
from adaptive_lr.experiment import run_grid
from adaptive_lr.reporting import write_report
from adaptive_lr.reporting.bundle import latest_covers
from store_support import seed_store, tracking_uri


def test_a_grid_continues_in_a_fresh_store_from_an_imported_bundle(home: Path, tmp_path_factory, monkeypatch,
                                                                    capsys):
    grid = home / "tiny.yaml"
    grid.write_text("name: tiny\ntasks: [xor_clean]\nschedulers: [fixed, heuristic]\nseeds: [0]\n"
                    "overrides: [trainer.max_epochs=2, data.n_samples=80, logger.tensorboard=false]\n")
    seed_store(home, tmp_path_factory)
    run_grid(str(grid), out=io.StringIO())
    first = write_report("tiny", tracking_uri(home), home / "reports").parent

    other = tmp_path_factory.mktemp("other_machine")  # a new home: no store, only the committed bundle
    monkeypatch.setenv("ADAPTIVE_LR_HOME", str(other))
    seed_store(other, tmp_path_factory)
    bundle = other / "bundle"
    shutil.copytree(first / "bundle", bundle)
    assert main(["import", str(bundle)]) == 0
    assert "imported 2 finished run(s)" in capsys.readouterr().out
    assert main(["import", str(bundle)]) == 0  # idempotent
    assert "imported 0 finished run(s)" in capsys.readouterr().out

    again = write_report("tiny", tracking_uri(other), other / "reports").parent
    for name in ("summary.csv", "comparisons.csv", "profile.csv"):
        assert filecmp.cmp(first / name, again / name, shallow=False), name

    assert latest_covers(other / "reports" / "tiny", tracking_uri(other), "tiny") == again  # nothing new ran

    out = io.StringIO()
    grid.write_text(grid.read_text().replace("seeds: [0]", "seeds: [0, 1]"))  # one more seed: 2 new cells
    run_grid(str(grid), out=out)
    assert "4 cells: 2 already finished, 2 to run" in out.getvalue()
    assert latest_covers(other / "reports" / "tiny", tracking_uri(other), "tiny") is None  # 2 runs not reported

    # `make study`: --report-changed reports a grid that ran something new, and only then
    capsys.readouterr()
    assert main(["experiment", str(grid), "--report-changed"]) == 0
    newest = sorted((other / "reports" / "tiny").iterdir())[-1]
    assert newest != again and f"report: {newest / 'report.md'}" in capsys.readouterr().out
    assert main(["experiment", str(grid), "--report-changed"]) == 0
    assert "report: up to date" in capsys.readouterr().out
    assert sorted((other / "reports" / "tiny").iterdir())[-1] == newest
    # `make study-save`: no partial bundle of a grid whose latest report holds every finished run
    assert main(["report", "tiny", f"paths.reports={other / 'partial'}", "--bundle-only",
                 "--unless-reported", str(other / "reports")]) == 0
    assert "bundle: not needed" in capsys.readouterr().out and not (other / "partial").exists()


def test_importing_a_folder_that_is_not_a_bundle_is_one_error_line(home: Path, capsys):
    assert main(["import", str(home)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "bundle.json" in err[0]


pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
