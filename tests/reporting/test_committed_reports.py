"""Every committed report (reports/<experiment>/<timestamp>/) is one a reviewer accepts: it carries its per-run
bundle, its verdicts use the four outcomes and name the margins and the correction, no interval leaves its
quantity's range, and the bundle rebuilds its tables byte for byte."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pandas as pd
import pytest

from adaptive_lr.reporting import out_of_range, write_report_from_bundle
from adaptive_lr.reporting.stats import VERDICTS

ROOT = Path(__file__).resolve().parents[2]
REPORTS = sorted(p.parent for p in (ROOT / "reports").glob("*/*/report.md"))
TABLES = ("summary.csv", "comparisons.csv", "profile.csv")


def _id(folder: Path) -> str:
    return f"{folder.parent.name}/{folder.name}"


@pytest.mark.parametrize("folder", REPORTS, ids=_id)
def test_committed_report_has_four_outcome_verdicts_in_range_with_margins_and_correction(folder):
    assert (folder / "bundle" / "bundle.json").is_file(), "a committed report carries its per-run bundle"
    summary = pd.read_csv(folder / "summary.csv")
    comparisons = pd.read_csv(folder / "comparisons.csv", keep_default_na=False, na_values=["nan"])
    assert out_of_range(summary, comparisons) == []
    assert set(comparisons["verdict"]) <= set(VERDICTS)
    text = (folder / "report.md").read_text(encoding="utf-8")
    verdicts = text.split("## Verdicts", 1)[1].split("\n## ", 1)[0]
    assert "Holm" in verdicts and "margin" in verdicts and "TOST" in verdicts
    assert "/work/" not in text and "/tmp/" not in text and "/root/" not in text  # no machine-local paths


@pytest.mark.slow
@pytest.mark.parametrize("folder", REPORTS, ids=_id)
def test_committed_report_is_rebuilt_byte_for_byte_from_its_bundle(folder, tmp_path):
    rebuilt = write_report_from_bundle(folder / "bundle", tmp_path).parent
    for name in TABLES:
        assert filecmp.cmp(folder / name, rebuilt / name, shallow=False), name
