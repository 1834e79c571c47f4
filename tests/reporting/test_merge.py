"""A study report merged from its parts' bundles: each part's tasks keep their own verdicts (labelled with the
part), and the merged report's own bundle rebuilds it byte for byte."""

from __future__ import annotations

import filecmp
from datetime import datetime

import pandas as pd
import pytest

from adaptive_lr.cli import main
from adaptive_lr.reporting import BundleError, write_report, write_report_from_bundle

NOW = datetime(2025, 1, 2, 3, 4, 5)


def test_bundles_of_several_experiments_merge_into_one_report_with_tasks_labelled_by_part(store, tmp_path):
    uri, _ = store
    parts = [write_report(name, uri, tmp_path / "parts", now=NOW).parent / "bundle" for name in ("demo", "verdicts")]
    merged = write_report_from_bundle(parts, tmp_path / "study", now=NOW, name="study").parent
    assert merged.parent.name == "study"
    summary = pd.read_csv(merged / "summary.csv")
    singles = {name: pd.read_csv(p.parent / "summary.csv") for name, p in zip(("demo", "verdicts"), parts,
                                                                                strict=True)}
    assert set(summary["task"]) == {f"{t} ({name})" for name, s in singles.items() for t in s["task"]}
    assert len(summary) == sum(len(s) for s in singles.values())
    # a part's numbers do not change by being merged (verdicts' Holm family grows, so compare the descriptives)
    mine = summary[summary["task"] == "flat (verdicts)"].reset_index(drop=True)
    alone = singles["verdicts"][singles["verdicts"]["task"] == "flat"].reset_index(drop=True)
    for column in ("test_mean", "test_ci_low", "test_ci_high", "final_mean", "gap_mean", "diverged_count"):
        assert mine[column].tolist() == pytest.approx(alone[column].tolist(), nan_ok=True), column

    assert main(["report", "--from", str(merged / "bundle"), f"paths.root={tmp_path / 'again'}"]) == 0
    again = next((tmp_path / "again" / "reports" / "study").iterdir())
    for name in ("summary.csv", "comparisons.csv", "profile.csv"):
        assert filecmp.cmp(merged / name, again / name, shallow=False), name


def test_the_same_experiment_twice_is_refused(store, tmp_path):
    uri, _ = store
    bundle = write_report("verdicts", uri, tmp_path / "parts", now=NOW).parent / "bundle"
    with pytest.raises(BundleError, match="the same experiment twice"):
        write_report_from_bundle([bundle, bundle], tmp_path / "study", name="study")


def test_a_bundle_written_before_later_columns_existed_still_reads(store, tmp_path):
    from adaptive_lr.reporting import read_bundle
    from adaptive_lr.reporting.bundle import ADDED_COLUMNS

    uri, _ = store
    bundle = write_report("verdicts", uri, tmp_path / "parts", now=NOW).parent / "bundle"
    runs = pd.read_csv(bundle / "runs.csv", dtype=str, keep_default_na=False)
    runs.drop(columns=list(ADDED_COLUMNS)).to_csv(bundle / "runs.csv", index=False)
    data = read_bundle(bundle)
    assert data.runs["lr_bounds"].eq("").all() and data.runs["budget_fraction"].isna().all()


def test_a_large_frame_is_written_compressed_and_reads_back_the_same(store, tmp_path, monkeypatch):
    from adaptive_lr.reporting import bundle, read_bundle

    uri, _ = store
    plain = write_report("verdicts", uri, tmp_path / "plain", now=NOW).parent / "bundle"
    monkeypatch.setattr(bundle, "GZIP_ABOVE", 100)  # every frame counts as large
    packed = write_report("verdicts", uri, tmp_path / "packed", now=NOW).parent / "bundle"
    assert (packed / "epochs.csv.gz").is_file() and not (packed / "epochs.csv").exists()
    a, b = read_bundle(plain), read_bundle(packed)
    for frame in ("runs", "epochs", "lr", "actions"):
        pd.testing.assert_frame_equal(getattr(a, frame), getattr(b, frame))
