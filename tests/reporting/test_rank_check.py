"""The budget check (issue 14): two bundles of one design at two budgets, their rankings compared by hand."""

from __future__ import annotations

import json
from datetime import datetime

import pandas as pd
import pytest
from scipy import stats

from adaptive_lr.cli import main
from adaptive_lr.reporting import write_report
from adaptive_lr.reporting.bundle import read_bundle
from adaptive_lr.reporting.rank_check import compare_budgets

NOW = datetime(2025, 1, 2, 3, 4, 5)


@pytest.fixture(scope="module")
def quick_bundle(store, tmp_path_factory):
    uri, _ = store
    return write_report("verdicts", uri, tmp_path_factory.mktemp("rank") / "parts", now=NOW).parent / "bundle"


def relabelled(bundle, tmp_path, name, change):
    """A copy of `bundle` as experiment `name`, its runs' test metric changed by `change(runs)`."""
    out = tmp_path / name
    out.mkdir()
    for f in bundle.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    manifest = json.loads((out / "bundle.json").read_text())
    manifest["experiment"] = name
    (out / "bundle.json").write_text(json.dumps(manifest))
    runs = pd.read_csv(out / "runs.csv", dtype=str, keep_default_na=False)
    change(runs)
    runs.to_csv(out / "runs.csv", index=False)
    return out


def test_the_same_results_at_both_budgets_agree_perfectly(quick_bundle, tmp_path):
    same = relabelled(quick_bundle, tmp_path, "long", lambda runs: None)
    methods, agreements = compare_budgets(read_bundle(quick_bundle), read_bundle(same))
    ranked = [ag for ag in agreements if methods.loc[methods["task"] == ag.task, "quick_test"].nunique() > 1]
    assert ranked  # the fixture has tasks whose methods differ (and one where every method ties: tau undefined)
    for ag in ranked:
        assert ag.kendall_tau == pytest.approx(1.0) and ag.quick_best == ag.long_best
    assert all(ag.verdicts_same == ag.verdicts_compared for ag in agreements)
    assert sum(ag.verdicts_compared for ag in agreements) > 0
    assert (methods["quick_rank"] == methods["long_rank"]).all()
    assert (methods["lr_decades_apart"].dropna() == 0).all()


def test_a_reversed_ranking_is_measured_as_such_and_matches_scipy(quick_bundle, tmp_path):
    def reverse(runs):  # test metric -> 1 - test metric: the order of every task's methods flips
        finite = runs["test_metric"].astype(float)
        runs["test_metric"] = (1.0 - finite).map(repr)

    flipped = relabelled(quick_bundle, tmp_path, "long", reverse)
    quick = read_bundle(quick_bundle)
    methods, agreements = compare_budgets(quick, read_bundle(flipped))
    strict = 0
    for ag in (ag for ag in agreements if ag.n_methods > 1):
        rows = methods[methods["task"] == ag.task]
        expected = stats.kendalltau(rows["quick_test"], rows["long_test"]).statistic
        assert ag.kendall_tau == pytest.approx(expected, nan_ok=True)
        if rows["quick_test"].nunique() == ag.n_methods:  # no ties: a strict reversal
            strict += 1
            assert ag.kendall_tau == pytest.approx(-1.0)
            assert ag.quick_best != ag.long_best
    assert strict
    by_hand = quick.finished.groupby(["task", "scheduler"])["test_metric"].mean()
    for r in methods.itertuples(index=False):
        assert r.quick_test == pytest.approx(by_hand[r.task, r.scheduler])
        assert r.long_test == pytest.approx(1.0 - by_hand[r.task, r.scheduler])


def test_the_cli_writes_the_report_and_refuses_bundles_without_a_shared_task(quick_bundle, tmp_path, capsys):
    same = relabelled(quick_bundle, tmp_path, "long", lambda runs: None)
    assert main(["rank-check", str(quick_bundle), str(same), f"paths.reports={tmp_path / 'out'}"]) == 0
    report = next((tmp_path / "out" / "verdicts-vs-long").iterdir()) / "rank_check.md"
    assert "Kendall tau-b **1.000**" in report.read_text()

    def other_task(runs):
        runs["task"] = "elsewhere"

    other = relabelled(quick_bundle, tmp_path, "other", other_task)
    capsys.readouterr()
    assert main(["rank-check", str(quick_bundle), str(other), f"paths.reports={tmp_path / 'bad'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "share no task" in err
    assert not (tmp_path / "bad").exists()
