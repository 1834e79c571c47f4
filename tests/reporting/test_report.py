"""Reports written from the synthetic store (fake_store.py) and rebuilt from their bundles: numbers by hand,
verdicts by hand (scipy.stats.t, a hand-written Holm), byte-identical rebuilds, no machine paths, bad bundles."""

import json
import math
import re
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from by_hand import holm_by_hand
from fake_store import CURVES, EPOCH_SECONDS, FLAT_MARGIN, TIE_CURVES, TIE_MARGIN, TRAIN_EVAL, VERDICT_CURVES
from scipy import stats as sp

from adaptive_lr.errors import UserError
from adaptive_lr.reporting import (
    BundleError,
    NoRunsError,
    aggregate,
    collect,
    load_runs,
    out_of_range,
    per_run_metrics,
    read_bundle,
    write_report,
    write_report_from_bundle,
)
from adaptive_lr.reporting.metrics import COMPARISON_COLUMNS, SUMMARY_COLUMNS
from adaptive_lr.reporting.report import GENERATED_PREFIX, _new_folder
from adaptive_lr.tracking import schema

NOW = datetime(2025, 1, 2, 3, 4, 5)
NAN, INF = math.nan, math.inf
Z = sp.norm.ppf(0.975)


def per_seed_test(curves, task, scheduler):
    """Per-seed test metric of a cell: final val - 0.01 (fake_store.log_run)."""
    key = next(k for k in curves if k[:2] == (task, scheduler))
    return [val[-1] - 0.01 for val, _ in curves[key]]


def paired_by_hand(a, b, margin=NAN):
    d = np.subtract(a, b)
    se = d.std(ddof=1) / math.sqrt(len(d))
    p_eq = max(sp.t.sf((d.mean() + margin) / se, len(d) - 1), sp.t.cdf((d.mean() - margin) / se, len(d) - 1))
    return d.mean(), 2 * sp.t.sf(abs(d.mean()) / se, len(d) - 1), p_eq


def csv(report, name):
    return pd.read_csv(report.parent / name, keep_default_na=False, na_values=["nan"])


def section(text, title):
    """The body of the `## title` section of a report."""
    return text.split(f"## {title}\n")[1].split("\n## ")[0]


@pytest.fixture(scope="module")
def demo(store, tmp_path_factory):
    uri, _ = store
    return write_report("demo", uri, tmp_path_factory.mktemp("reports"), now=NOW)


@pytest.fixture(scope="module")
def verdicts(store, tmp_path_factory):
    uri, _ = store
    return write_report("verdicts", uri, tmp_path_factory.mktemp("verdicts"), now=NOW)


@pytest.fixture(scope="module")
def ties(store, tmp_path_factory):
    uri, _ = store
    return write_report("ties", uri, tmp_path_factory.mktemp("ties"), now=NOW)


# -- the demo experiment: numbers by hand -------------------------------------------------------------------
# epochs until the val metric first reaches the task's threshold (digits >= 0.9, xor_clean <= 0.1); None = never
THRESHOLD_EPOCHS = {
    ("digits", "cosine"): [3, 3, 3], ("digits", "fixed"): [None, 3, 2], ("digits", "heuristic"): [3, 2, 2],
    ("xor_clean", "fixed"): [None, 3, 2], ("xor_clean", "heuristic"): [2, 2, None],
}  # fmt: skip
# profile: target = the best baseline's median final val (digits: cosine 0.94; xor_clean: fixed 0.08); a
# scheduler's time = median over seeds of the epochs to the target, inf when the median seed misses
TARGET_EPOCHS = {
    ("digits", "cosine"): 5.0,  # [5, 5, 5]
    ("digits", "fixed"): INF,  # [never, never (0.92), 4]: misses on the median seed
    ("digits", "heuristic"): 3.0,  # [4, 3, 3]
    ("xor_clean", "fixed"): 4.0,  # [never, 4, 3]
    ("xor_clean", "heuristic"): 3.0,  # [3, 3, diverged]: reaches on the median seed
}
RATIO_EPOCHS = {("digits", "cosine"): 5 / 3, ("digits", "fixed"): INF, ("digits", "heuristic"): 1.0,
                ("xor_clean", "fixed"): 4 / 3, ("xor_clean", "heuristic"): 1.0}  # fmt: skip
# wall-clock: EPOCH_SECONDS[scheduler] x epoch
RATIO_WALL = {("digits", "cosine"): 5 / 4.5, ("digits", "fixed"): INF, ("digits", "heuristic"): 1.0,
              ("xor_clean", "fixed"): 1.0, ("xor_clean", "heuristic"): 4.5 / 4}  # fmt: skip


def score(ratios, scheduler, tasks=("digits", "xor_clean"), tau_max=4.0):
    """Mean over tasks of clip((tau_max - r) / (tau_max - 1), 0, 1); a task the scheduler did not run: 0."""
    return sum(
        min(1.0, max(0.0, (tau_max - ratios.get((t, scheduler), INF)) / (tau_max - 1))) for t in tasks
    ) / len(tasks)


def test_summary_csv_numbers_by_hand_and_unfinished_runs_left_out(demo):
    table = csv(demo, "summary.csv")
    assert list(table.columns) == SUMMARY_COLUMNS
    assert list(zip(table.task, table.scheduler, strict=True)) == list(THRESHOLD_EPOCHS)
    assert (
        table["n_seeds"] == 3
    ).all()  # FAILED (digits/heuristic) and RUNNING (xor_clean/fixed) seed 3 left out
    for row in table.itertuples(index=False):
        key = (row.task, row.scheduler)
        finals = [val[-1] for val, _ in CURVES[next(k for k in CURVES if k[:2] == key)]]
        tests = [f - 0.01 for f in finals]
        if key == (
            "xor_clean",
            "heuristic",
        ):  # a diverged seed: the mean and its interval are NaN, not dropped
            assert math.isnan(row.final_mean) and math.isnan(row.test_mean) and math.isnan(row.test_ci_low)
            assert row.diverged_count == 1
            assert (row.diverged_rate_low, row.diverged_rate_high) == pytest.approx(
                ((1 / 3 + Z**2 / 6 - Z * math.sqrt(2 / 27 + Z**2 / 36)) / (1 + Z**2 / 3),
                 (1 / 3 + Z**2 / 6 + Z * math.sqrt(2 / 27 + Z**2 / 36)) / (1 + Z**2 / 3)), rel=1e-5)  # fmt: skip
        else:
            assert row.final_mean == pytest.approx(np.mean(finals), rel=1e-5), key
            assert row.test_mean == pytest.approx(np.mean(tests), rel=1e-5), key
            assert (
                min(tests) - 1e-9 <= row.test_ci_low <= row.test_mean <= row.test_ci_high <= max(tests) + 1e-9
            )
            assert row.test_spread == pytest.approx(np.std(tests, ddof=1), rel=1e-5, abs=1e-9)
            assert row.diverged_count == 0
            assert (row.diverged_rate_low, row.diverged_rate_high) == pytest.approx(
                (0, Z**2 / (3 + Z**2)), rel=1e-5
            )
        hits = [e for e in THRESHOLD_EPOCHS[key] if e is not None]
        assert row.epochs_to_threshold_reached == len(hits), key
        assert row.epochs_to_threshold_mean == pytest.approx(np.mean(hits), rel=1e-5), key
        assert min(hits) <= row.epochs_to_threshold_ci_low <= row.epochs_to_threshold_ci_high <= max(hits)
        wall = [EPOCH_SECONDS[row.scheduler] * e for e in hits]
        assert row.wall_to_threshold_mean == pytest.approx(np.mean(wall), rel=1e-5), key
        assert row.epochs_to_target == TARGET_EPOCHS[key], key
        assert row.perf_ratio_epochs == pytest.approx(RATIO_EPOCHS[key], rel=1e-5), key
        assert row.perf_ratio_wall == pytest.approx(RATIO_WALL[key], rel=1e-5), key
    # generalization gap: final train_eval_acc (eval mode) - final val_acc, never the running train_acc
    digits = table[table["task"] == "digits"]
    assert digits["gap_mean"].tolist() == pytest.approx([np.mean(TRAIN_EVAL["digits"])] * 3, rel=1e-5)
    # exact bootstrap: 1/27 of resamples are all-0.01 (> 2.5%), 1/27 all-0.02: the interval is [0.01, 0.02]
    assert digits["gap_ci_low"].tolist() == pytest.approx([0.01] * 3) and digits["gap_ci_high"].tolist() == (
        pytest.approx([0.02] * 3))  # fmt: skip
    assert table[table["task"] == "xor_clean"]["gap_mean"].isna().all()  # no train_eval_mse logged


def test_demo_verdicts_welch_without_checksums_and_never_equivalent_without_a_margin(demo):
    c = csv(demo, "comparisons.csv")
    assert list(c.columns) == COMPARISON_COLUMNS
    c = c.set_index(["task", "scheduler"])
    assert list(c.index) == [("digits", "heuristic"), ("xor_clean", "heuristic")]
    digits = c.loc[("digits", "heuristic")]
    assert digits["baseline"] == "cosine" and not digits["paired"]  # no data_checksum tags: Welch
    a, b = per_seed_test(CURVES, "digits", "heuristic"), per_seed_test(CURVES, "digits", "cosine")
    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 3
    dof = (va + vb) ** 2 / (va**2 / 2 + max(vb, 1e-300) ** 2 / 2)  # cosine has no spread: dof 2
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    assert dof == pytest.approx(2.0) and t == pytest.approx(0.03 / (0.01 / math.sqrt(3)), rel=1e-6)
    assert digits["p_difference"] == pytest.approx(2 * sp.t.sf(t, dof), rel=1e-5)
    assert digits["p_difference_holm"] == digits["p_difference"]  # the only finite p: a family of one
    assert math.isnan(digits["margin"]) and math.isnan(digits["p_equivalence"])
    assert digits["verdict"] == "better"
    xor = c.loc[("xor_clean", "heuristic")]
    assert xor["verdict"] == "untested" and xor["verdict_note"].startswith(
        "1 seed(s) with a non-finite value"
    )
    assert math.isnan(xor["mean"]) and math.isnan(xor["p_difference_holm"])
    summary = csv(demo, "summary.csv").set_index(["task", "scheduler"])
    assert summary["verdict"].to_dict() == {
        ("digits", "cosine"): "best baseline", ("digits", "fixed"): "baseline", ("digits", "heuristic"): "better",
        ("xor_clean", "fixed"): "best baseline", ("xor_clean", "heuristic"): "untested",
    }  # fmt: skip


def test_profile_csv_scores_by_hand_with_a_miss_on_the_median_seed(demo):
    profile = csv(demo, "profile.csv")
    for clock, ratios in (("epochs", RATIO_EPOCHS), ("wall", RATIO_WALL)):
        rows = profile[profile["clock"] == clock].set_index("scheduler")
        expected = {s: score(ratios, s) for s in ("cosine", "fixed", "heuristic")}
        assert rows["score"].to_dict() == pytest.approx(expected, rel=1e-5)
        assert list(rows.index) == sorted(expected, key=lambda s: (-expected[s], s))  # best score first
        assert (rows["score_low"] <= rows["score"] + 1e-9).all() and (
            rows["score"] <= rows["score_high"] + 1e-9
        ).all()
        assert (rows["n_tasks"] == 2).all() and (rows["tau_max"] == 4).all()
    epochs = profile[profile["clock"] == "epochs"].set_index("scheduler")
    assert epochs.loc["fixed", "score"] == pytest.approx(
        (0 + (4 - 4 / 3) / 3) / 2, rel=1e-5
    )  # digits: inf -> 0
    assert epochs["rho_at_1"].to_dict() == {"heuristic": 1.0, "fixed": 0.0, "cosine": 0.0}


def test_report_sections_verdicts_name_the_rule_and_results_are_plain(demo, store):
    _, special = store
    text = demo.read_text()
    sections = re.findall(r"^## (.+)$", text, flags=re.M)
    assert sections[:3] == ["Verdicts", "Results per task", "Performance profiles"]
    assert sections[-3:] == ["Failed or incomplete runs", "Protocol", "Links"]
    verdict = section(text, "Verdicts")
    assert "Holm" in verdict and "TOST" in verdict and "margin" in verdict
    for outcome in ("better", "worse", "equivalent", "inconclusive", "untested"):
        assert f"**{outcome}**" in verdict
    assert "equivalence margin not declared" in verdict
    assert re.search(r"heuristic: \*\*better\*\*.*Welch", verdict)
    assert re.search(r"heuristic: \*\*untested\*\* \(1 seed\(s\) with a non-finite value", verdict)
    unfinished = section(text, "Failed or incomplete runs")
    assert f"| {special['failed']} | digits | heuristic | 3 |" in unfinished
    assert "CUDA out of memory \\| at step 12" in unfinished  # a pipe in a cell does not break the table
    assert f"| {special['running']} | xor_clean | fixed | 3 |" in unfinished and "RUNNING" in unfinished
    results = section(text, "Results per task")
    assert special["failed"] not in results and special["running"] not in results
    assert "17 runs: 15 finished results, 2 failed or incomplete" in text
    assert "| heuristic (adaptive) |" in results and "| 2/3 [0.21, 0.94]:" in results  # reached k/n, Wilson
    protocol = section(text, "Protocol")
    assert "digits: not recorded" in protocol and "no run carries a `git_commit` tag" in protocol
    links = section(text, "Links")
    assert len(re.findall(r"^\| [0-9a-f]{32} \|", links, flags=re.M)) == 17  # every run, finished or not


def test_every_plot_exists_and_is_linked_relatively(demo):
    folder = demo.parent
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", demo.read_text())
    assert {"digits_val_acc.png", "digits_lr.png", "digits_actions.png", "xor_clean_val_mse.png",
            "performance_profile_epochs.png", "performance_profile_wall.png"} <= set(links)  # fmt: skip
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(links)
    assert all((folder / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for link in links)


def test_a_report_holds_no_absolute_path_of_the_store(demo, store):
    uri, _ = store
    store_dir = uri.removeprefix("sqlite:///").rsplit("/", 1)[0]
    home = str(Path(store_dir).parent)
    text = demo.read_text()
    assert store_dir not in text and home not in text and "sqlite" not in text
    assert "from local MLflow store" in text
    manifest = (demo.parent / "bundle" / "bundle.json").read_text()
    assert store_dir not in manifest and json.loads(manifest)["source"] == "local MLflow store"
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert links and not [link for link in links if link.startswith(("/", "file:")) or ":\\" in link]


def test_out_of_range_is_empty_for_every_report_and_catches_a_planted_value(demo, verdicts, ties):
    for report in (demo, verdicts, ties):
        assert out_of_range(csv(report, "summary.csv"), csv(report, "comparisons.csv")) == [], report
    summary, comparisons = csv(demo, "summary.csv"), csv(demo, "comparisons.csv")
    summary.loc[2, "final_ci_high"] = 1.01  # an accuracy above 1
    comparisons.loc[0, "difference_ci_high"] = 1.5
    found = out_of_range(summary, comparisons)
    assert len(found) == 2 and "digits/heuristic final_ci_high = 1.01 outside [0.0, 1.0]" in found[0]
    assert "digits/heuristic vs cosine difference bound 1.5" in found[1]


# -- the verdicts experiment: paired by seed, an absolute margin, Holm ---------------------------------------
def test_tuned_grid_verdicts_paired_with_margin_and_holm_by_hand(verdicts):
    c = csv(verdicts, "comparisons.csv").set_index("scheduler")
    base = per_seed_test(VERDICT_CURVES, "flat", "fixed")
    margin = float(FLAT_MARGIN)
    expected = {name: paired_by_hand(per_seed_test(VERDICT_CURVES, "flat", name), base, margin)
                for name in ("bandit", "heuristic")}  # fmt: skip
    assert c["paired"].all() and (c["margin"] == margin).all() and (c["baseline"] == "fixed").all()
    for name, (difference, p_diff, p_eq) in expected.items():
        assert c.loc[name, "difference"] == pytest.approx(difference, rel=1e-5)
        assert c.loc[name, "p_difference"] == pytest.approx(p_diff, rel=1e-5)
        assert c.loc[name, "p_equivalence"] == pytest.approx(p_eq, rel=1e-5, abs=1e-9)
    names = list(c.index)
    for i, raw in ((1, "p_difference"), (2, "p_equivalence")):
        adjusted = holm_by_hand([expected[n][i] for n in names])
        assert c[f"{raw}_holm"].tolist() == pytest.approx(adjusted, rel=1e-5)
    assert c["verdict"].to_dict() == {"bandit": "worse", "heuristic": "equivalent"}
    assert (
        expected["heuristic"][1] > 0.05 and expected["heuristic"][2] < 0.05
    )  # no difference shown, TOST rejects

    text = verdicts.read_text()
    verdict = section(text, "Verdicts")
    assert "equivalence margin 0.05" in verdict and "Holm" in verdict and "2 comparisons" in verdict
    assert re.search(r"bandit: \*\*worse\*\*.*paired", verdict)
    assert re.search(r"heuristic: \*\*equivalent\*\*.*paired", verdict)
    assert "solo" not in verdict or "no adaptive" in verdict.lower()
    protocol = section(text, "Protocol")
    assert "equivalence margin 0.05 (absolute)" in protocol
    assert "`md5:flat01` (9 runs)" in protocol and "`abc1234` (10 runs)" in protocol
    assert "Machine sharing: runs ran 2 at a time on 2 CPUs" in section(text, "Performance profiles")


def test_tuned_grid_reports_final_runs_only(verdicts, store):
    _, special = store
    table = csv(verdicts, "summary.csv").set_index(["task", "scheduler"])
    assert table.loc["flat", "n_seeds"].tolist() == [3, 3, 3]  # the tune runs (one with 0.99) are not results
    assert table.loc[("flat", "fixed"), "final_mean"] == pytest.approx(0.82)
    solo = table.loc[("solo", "fixed")]
    assert solo["n_seeds"] == 1 and math.isnan(solo["final_ci_low"]) and solo["verdict"] == "best baseline"
    text = verdicts.read_text()
    assert "12 runs: 10 finished results, 1 failed or incomplete" in text
    assert special["tune_finished"] not in section(text, "Results per task")
    assert f"| {special['tune_failed']} | flat | fixed | 1 | tune | FAILED | boom |" in text
    assert "(No `controller_action` logged for this task, so no controller-actions plot.)" in text
    assert not list(verdicts.parent.glob("*_actions.png"))


# -- the ties experiment: a three-way tie among baselines, a relative margin -------------------------------
def test_a_three_way_tie_is_named_and_each_tied_baseline_gets_a_comparison(ties):
    c = csv(ties, "comparisons.csv").set_index("baseline")
    assert list(c.index) == ["cosine", "fixed", "step"] and c["tie"].all()
    assert set(c["scheduler"]) == {"heuristic"}
    margin = float(TIE_MARGIN) * 0.25  # relative to the tied baselines' mean final val MSE, 0.25
    mine = per_seed_test(TIE_CURVES, "tie", "heuristic")
    p_values = {}
    for name in ("cosine", "fixed", "step"):
        difference, p_diff, p_eq = paired_by_hand(mine, per_seed_test(TIE_CURVES, "tie", name), margin)
        assert c.loc[name, "paired"] and c.loc[name, "margin"] == pytest.approx(margin)
        assert c.loc[name, "difference"] == pytest.approx(difference, rel=1e-5, abs=1e-9)
        assert c.loc[name, "p_difference"] == pytest.approx(p_diff, rel=1e-5)
        assert c.loc[name, "p_equivalence"] == pytest.approx(p_eq, rel=1e-5)
        p_values[name] = p_diff
    assert len({round(p, 6) for p in p_values.values()}) == 3  # three different pairings, not one copied
    assert c["p_difference_holm"].tolist() == pytest.approx(holm_by_hand(list(p_values.values())), rel=1e-5)

    summary = csv(ties, "summary.csv").set_index("scheduler")
    assert summary.loc[["cosine", "fixed", "step"], "verdict"].tolist() == ["best baseline (tie)"] * 3
    assert summary.loc["cosine", "baseline"] == "cosine, fixed, step"
    text = ties.read_text()
    verdict = section(text, "Verdicts")
    assert "a tie of cosine = fixed = step" in verdict
    for name in ("cosine", "fixed", "step"):
        assert f"heuristic vs {name}: **" in verdict
    assert "equivalence margin 0.025" in verdict and "Holm" in verdict
    assert "equivalence margin 0.1 (relative)" in section(text, "Protocol")


# -- bundles: a report rebuilt elsewhere is identical -------------------------------------------------------
def csv_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).glob("*.csv"))}


def test_a_report_rebuilt_from_its_bundle_is_byte_identical(demo, tmp_path):
    bundle = demo.parent / "bundle"
    rebuilt = write_report_from_bundle(bundle, tmp_path / "elsewhere", now=NOW)
    assert rebuilt.parent.parent.name == "demo" and rebuilt.parent.name == "20250102-030405"
    original = csv_bytes(demo.parent)
    assert {"summary.csv", "comparisons.csv", "profile.csv"} <= set(original)
    assert csv_bytes(rebuilt.parent) == original
    assert rebuilt.read_text() == demo.read_text()  # same time stamp: the whole report.md too
    assert csv_bytes(rebuilt.parent / "bundle") == csv_bytes(bundle)  # and its own bundle
    assert sorted(p.name for p in rebuilt.parent.glob("*.png")) == sorted(
        p.name for p in demo.parent.glob("*.png")
    )


def test_the_cli_rebuilds_a_report_from_a_bundle_without_the_store(ties, tmp_path, capsys, monkeypatch):
    from adaptive_lr.cli import main
    from adaptive_lr.reporting import report as report_module

    def no_store(*args, **kwargs):
        raise AssertionError("a report from a bundle must not read a store")

    monkeypatch.setattr(report_module, "load_runs", no_store)
    monkeypatch.setattr(collect, "load_runs", no_store)
    copy = shutil.copytree(ties.parent / "bundle", tmp_path / "shipped" / "bundle")
    assert main(["report", "--from", str(copy), f"paths.root={tmp_path}"]) == 0
    out = capsys.readouterr().out
    [report] = (tmp_path / "reports" / "ties").glob("*/report.md")
    assert f"report: {report}" in out
    assert csv_bytes(report.parent) == csv_bytes(ties.parent)
    for name in ("summary.csv", "comparisons.csv", "profile.csv"):
        assert (report.parent / name).read_bytes() == (ties.parent / name).read_bytes()
    # written now, not at NOW: the one line of report.md that depends on when it was written
    changed = [(x, y) for x, y in zip(ties.read_text().splitlines(), report.read_text().splitlines(), strict=True)
               if x != y]  # fmt: skip
    assert len(changed) == 1 and all(line.startswith(GENERATED_PREFIX) for line in changed[0])


def test_a_bundle_reads_back_the_dtypes_the_store_gives(store, demo):
    uri, _ = store
    from_store, from_bundle = load_runs("demo", uri), read_bundle(demo.parent / "bundle")
    columns = [c for c in from_store.runs.columns if c not in ("superseded",)]
    pd.testing.assert_frame_equal(from_bundle.runs[columns], from_store.runs[columns], check_dtype=False)
    for name in ("epochs", "lr", "actions"):
        pd.testing.assert_frame_equal(
            getattr(from_bundle, name), getattr(from_store, name), check_dtype=False
        )


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: (b / "bundle.json").unlink(), "bundle.json: not a report bundle"),
        (lambda b: (b / "epochs.csv").unlink(), "epochs.csv: missing from the bundle"),
        (
            lambda b: (b / "bundle.json").write_text('{"format": 99, "experiment": "demo"}'),
            "bundle format 99",
        ),
        (lambda b: (b / "bundle.json").write_text("{not json"), "bundle.json: not valid JSON"),
        (lambda b: (b / "runs.csv").write_text("run_id,task\nr,t\n"), "runs.csv: missing columns"),
    ],
    ids=["no-manifest", "no-epochs", "format", "json", "columns"],
)
def test_a_bad_bundle_is_a_user_error_naming_the_file(demo, tmp_path, damage, message):
    bundle = shutil.copytree(demo.parent / "bundle", tmp_path / "bundle")
    damage(bundle)
    with pytest.raises(BundleError, match=re.escape(message)) as err:
        write_report_from_bundle(bundle, tmp_path / "reports", now=NOW)
    assert isinstance(err.value, UserError) and str(bundle) in str(err.value)
    assert not (tmp_path / "reports").exists() or not any(
        (tmp_path / "reports").rglob("*.md")
    )  # nothing written


def test_a_bad_bundle_through_the_cli_is_one_error_line(tmp_path, capsys):
    from adaptive_lr.cli import main

    (tmp_path / "empty").mkdir()
    assert main(["report", "--from", str(tmp_path / "empty"), f"paths.root={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bundle.json" in err and str(tmp_path / "empty") in err
    assert not (tmp_path / "reports").exists()


# -- loading the store ---------------------------------------------------------------------------------------
def test_new_folder_never_overwrites(tmp_path):
    assert [_new_folder(tmp_path, "20250102-030405").name for _ in range(3)] == [
        "20250102-030405", "20250102-030405-1", "20250102-030405-2",
    ]  # fmt: skip


def test_load_runs_pages_through_search_and_decodes_histories(store, monkeypatch):
    uri, special = store
    monkeypatch.setattr(schema, "PAGE_SIZE", 4)
    data = load_runs("demo", uri)
    assert len(data.runs) == 17 and len(data.finished) == 15
    assert set(data.epochs["run_id"]) == set(data.finished["run_id"])  # no histories of unfinished runs
    heuristic = data.finished.query(
        "task == 'digits' and scheduler == 'heuristic' and seed == 0"
    ).run_id.iloc[0]
    actions = data.actions[data.actions["run_id"] == heuristic]
    assert list(actions["action"]) == ["hold", "cut_plateau", "unknown(99)"]
    assert list(actions["factor"]) == [1.0, 0.5, 1.0]
    assert list(data.lr[data.lr["run_id"] == heuristic]["step"]) == list(range(1, 21, 2))
    names = set(data.epochs.loc[data.epochs["run_id"] == heuristic, "name"])
    assert {"val_acc", "train_acc", "train_eval_acc", "epoch_time_s"} <= names
    assert list(data.epochs.query("run_id == @heuristic and name == 'val_acc'")["epoch"]) == [1, 2, 3, 4, 5]
    per_run = per_run_metrics(data)
    assert per_run["diverged"].sum() == 1
    summary, comparisons = aggregate(per_run, data.runs)
    assert summary.shape == (5, len(SUMMARY_COLUMNS)) and len(comparisons) == 2

    tuned = load_runs("verdicts", uri)
    assert len(tuned.runs) == 12 and len(tuned.finished) == 10 and len(tuned.tune) == 2 and tuned.has_phases
    assert special["tune_finished"] not in set(tuned.epochs["run_id"])  # tune histories are never fetched
    assert set(tuned.finished["git_commit"]) == {"abc1234"} and set(tuned.finished["grid_jobs"]) == {"2"}
    flat = tuned.finished[tuned.finished["task"] == "flat"]
    assert (flat["equivalence_margin"] == 0.05).all() and not flat["margin_relative"].any()
    assert tuned.finished[tuned.finished["task"] == "solo"]["equivalence_margin"].isna().all()


@pytest.mark.parametrize("experiment", ["empty", "only_failed", "missing", "only_tune"])
def test_no_finished_runs_raises_naming_experiment_and_store(store, tmp_path, experiment):
    uri, _ = store
    with pytest.raises(NoRunsError, match=re.escape(f"experiment '{experiment}'")) as err:
        write_report(experiment, uri, tmp_path, now=NOW)
    assert uri in str(err.value) and isinstance(err.value, UserError)
    if experiment == "only_tune":
        assert "1 tune-phase runs" in str(err.value)
    assert not (tmp_path / experiment).exists()  # nothing written


def test_a_bundle_without_results_raises_no_runs_and_writes_nothing(demo, tmp_path):
    bundle = shutil.copytree(demo.parent / "bundle", tmp_path / "bundle")
    runs = pd.read_csv(bundle / "runs.csv", dtype=str, keep_default_na=False)
    runs.assign(status="FAILED").to_csv(bundle / "runs.csv", index=False)
    with pytest.raises(NoRunsError, match="experiment 'demo'"):
        write_report_from_bundle(bundle, tmp_path / "reports", now=NOW)
    assert not (tmp_path / "reports").exists()


def test_a_cell_run_again_after_a_config_change_reports_only_its_latest_run(store, tmp_path):
    from fake_store import log_run
    from mlflow.tracking import MlflowClient

    uri, _ = store
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("rerun", artifact_location=(tmp_path / "rerun").as_uri())
    t0 = 1_700_000_000_000
    old = log_run(client, exp, "digits", "heuristic", True, 0, [0.5, 0.6], [1.0, 0.9], start_time=t0)
    new = log_run(
        client, exp, "digits", "heuristic", True, 0, [0.8, 0.95], [0.6, 0.3], start_time=t0 + 60_000
    )
    other = log_run(client, exp, "digits", "heuristic", True, 1, [0.7, 0.9], [0.7, 0.4], start_time=t0 + 1)
    base = log_run(client, exp, "digits", "fixed", False, 0, [0.6, 0.9], [0.8, 0.4], start_time=t0 + 2)

    data = load_runs("rerun", uri)

    assert set(data.finished["run_id"]) == {new, other, base}
    assert list(data.superseded["run_id"]) == [old]
    assert old not in set(data.epochs["run_id"]) | set(
        data.actions["run_id"]
    )  # its histories are not even read
    summary, _ = aggregate(per_run_metrics(data), data.runs)
    heuristic = summary[summary["scheduler"] == "heuristic"].iloc[0]
    assert heuristic["n_seeds"] == 2 and heuristic["final_mean"] == pytest.approx((0.95 + 0.9) / 2)
    report = write_report("rerun", uri, tmp_path / "reports")
    assert (
        "1 superseded by a later run of the same cell (never results: digits/heuristic)" in report.read_text()
    )
    assert read_bundle(report.parent / "bundle").superseded["run_id"].tolist() == [old]  # kept in the bundle


def test_a_report_lists_its_commits_flags_dirty_trees_and_differing_training_code(ties, tmp_path):
    bundle = shutil.copytree(ties.parent / "bundle", tmp_path / "bundle")
    runs = pd.read_csv(bundle / "runs.csv", dtype=str, keep_default_na=False)
    runs["git_commit"] = runs["seed"].map({"0": "aaa1111", "1": "ccc3333", "2": "bbb2222-dirty"})
    runs.to_csv(bundle / "runs.csv", index=False)
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["code"] = {
        "aaa1111": {"src": "tree-src-1", "configs": "tree-cfg"},
        "ccc3333": {"src": "tree-src-2", "configs": "tree-cfg"},  # training code changed between the commits
        "bbb2222-dirty": {"src": "", "configs": ""},  # uncommitted changes: what ran is unknown
    }
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    text = write_report_from_bundle(bundle, tmp_path / "reports", now=NOW).read_text()
    protocol = section(text, "Protocol")
    assert "`aaa1111` (4 runs), `bbb2222-dirty` (4 runs), `ccc3333` (4 runs)" in protocol
    assert "a `-dirty` commit had uncommitted changes" in protocol
    assert "DIFFERS between commits" in protocol and "`bbb2222-dirty` unknown to this repository" in protocol
    results = section(text, "Results per task")
    assert "Note: these runs come from 3 commits" in results and "differs between them" in results


def test_a_large_report_lists_its_runs_in_links_csv_instead_of_inline(demo, tmp_path, monkeypatch):
    import adaptive_lr.reporting.report as report_module

    assert not (demo.parent / "links.csv").exists()  # 17 runs: listed in report.md, in one place only
    inline = re.findall(r"^\| ([0-9a-f]{32}) \|", section(demo.read_text(), "Links"), flags=re.M)
    monkeypatch.setattr(report_module, "LINKS_INLINE_MAX", 16)
    rebuilt = write_report_from_bundle(demo.parent / "bundle", tmp_path, now=NOW)
    links = section(rebuilt.read_text(), "Links")
    assert "[`links.csv`](links.csv)" in links and not re.findall(r"^\| [0-9a-f]{32} \|", links, flags=re.M)
    listed = csv(rebuilt, "links.csv")
    assert list(listed.columns) == report_module.LINK_COLUMNS and list(listed["run id"]) == inline
