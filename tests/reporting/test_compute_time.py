"""The study's compute in its protocol: run end times are read, kept through a bundle and an import, and the busy
wall time counts parallel runs once and the idle time between sessions not at all."""

from __future__ import annotations

from datetime import datetime

import pytest
from mlflow.tracking import MlflowClient

from adaptive_lr.reporting import read_bundle, write_report
from adaptive_lr.reporting.bundle import import_bundle
from adaptive_lr.reporting.report import busy_seconds

NOW = datetime(2025, 1, 2, 3, 4, 5)


@pytest.mark.parametrize(("starts", "ends", "busy"), [
    ([0, 1, 10], [5, 3, 12], 7.0),  # [0, 5] holds [1, 3]; a gap, then [10, 12]
    ([0, 2], [4, 6], 6.0),  # two runs overlapping by 2 s (--jobs 2)
    ([5, 0], [6, 1], 2.0),  # order does not matter
    ([], [], 0.0),
])  # fmt: skip
def test_busy_seconds_is_the_length_of_the_union_of_the_intervals(starts, ends, busy):
    assert busy_seconds(starts, ends) == pytest.approx(busy)


def test_end_times_survive_a_bundle_and_an_import_and_reach_the_protocol(store, tmp_path):
    uri, _ = store
    report = write_report("verdicts", uri, tmp_path / "r", now=NOW)
    data = read_bundle(report.parent / "bundle")
    finished = data.runs[data.runs["status"] == "FINISHED"]
    assert finished["end_time"].notna().all() and (finished["end_time"] >= finished["start_time"]).all()
    assert "- Compute (every run of every phase" in report.read_text() and " h busy" in report.read_text()

    target = f"sqlite:///{tmp_path}/other.db"
    import_bundle(report.parent / "bundle", target)
    again = write_report("verdicts", target, tmp_path / "again", now=NOW)
    imported = read_bundle(again.parent / "bundle").runs
    # the original ends, not the moment of the import
    assert sorted(imported["end_time"]) == pytest.approx(sorted(finished["end_time"]))
    tags = [r.data.tags for r in MlflowClient(target).search_runs(
        [MlflowClient(target).get_experiment_by_name("verdicts").experiment_id])]
    assert all("source_end_time" in t for t in tags)
