import math
import re
from datetime import datetime

import pandas as pd
import pytest
from fake_store import CURVES, VERDICT_CURVES
from scipy import stats as sp

from adaptive_lr.reporting import NoRunsError, aggregate, collect, load_runs, per_run_metrics, write_report
from adaptive_lr.reporting.metrics import SUMMARY_COLUMNS
from adaptive_lr.reporting.report import GENERATED_PREFIX, _new_folder

NOW = datetime(2025, 1, 2, 3, 4, 5)
LATER = datetime(2025, 1, 2, 4, 4, 5)
COLUMNS = [
    "task", "scheduler", "adaptive", "metric", "mode",
    "final_mean", "final_std", "final_ci_low", "final_ci_high", "best_mean",
    "test_mean", "test_ci_low", "test_ci_high", "test_baseline_mean",
    "epochs_to_threshold_mean", "epochs_to_threshold_ci_low", "epochs_to_threshold_ci_high", "reached",
    "wall_to_threshold_mean", "wall_to_threshold_ci_low", "wall_to_threshold_ci_high",
    "generalization_gap", "stability",
    "baseline", "p_value", "verdict", "verdict_note", "perf_ratio",
    "n_seeds", "n_diverged",  # last, as before these columns grew: counts of result runs
]  # fmt: skip
NAN = math.nan
# Hand-computed from the curves in conftest.py (std = sample std over the 3 seeds).
EXPECTED = {
    # key: (final_mean, final_std, best_mean, ett_mean, reached, gap, stability, test_mean, n_diverged)
    ("digits", "cosine"): (0.94, 0.0, 0.94, 3.0, 3, 0.05, 0.0707107, 0.93, 0),
    ("digits", "fixed"): (0.916667, 0.0305505, 0.92, 10 / 3, 2, 0.05, 0.0707107, 0.906667, 0),
    ("digits", "heuristic"): (0.97, 0.01, 0.97, 7 / 3, 3, 0.05, 0.170783, 0.96, 0),
    ("xor_clean", "fixed"): (0.09, 0.0556776, 0.09, 3.0, 2, -0.02, 0.190941, 0.08, 0),
    ("xor_clean", "heuristic"): (NAN, NAN, 0.35 / 3, 8 / 3, 2, NAN, NAN, NAN, 1),
}
# Per-seed wall-clock to threshold: EPOCH_SECONDS[scheduler] * first epoch at the threshold; a seed that never
# reached it counts with its budget time (last epoch_time_s * max_epochs / last epoch = seconds * max_epochs
# here).
WALL = {
    ("digits", "cosine"): [3.0, 3.0, 3.0],
    ("digits", "fixed"): [5.0, 3.0, 2.0],  # seed 0 never reached 0.9 in 5 epochs of 1 s
    ("digits", "heuristic"): [4.5, 3.0, 3.0],  # 1.5 s per epoch
    ("xor_clean", "fixed"): [4.0, 3.0, 2.0],
    ("xor_clean", "heuristic"): [3.0, 3.0, 6.0],  # seed 2 diverged: budget time 4 epochs * 1.5 s
}
# time to target / fastest on the task; cosine did not run on xor_clean
RATIOS = {
    ("digits", "cosine"): 1.0, ("digits", "fixed"): 10 / 9, ("digits", "heuristic"): 3.5 / 3,
    ("xor_clean", "fixed"): 1.0, ("xor_clean", "heuristic"): 4 / 3,
}  # fmt: skip
# score = mean over tasks of max(0, (4 - ratio) / 3)
SCORES = {
    "fixed": ((4 - 10 / 9) / 3 + 1) / 2,
    "heuristic": ((4 - 7 / 6) / 3 + (4 - 4 / 3) / 3) / 2,
    "cosine": 0.5,
}


def ci(values):
    """95% Student-t interval by hand."""
    s = pd.Series(values, dtype=float)
    half = sp.t.ppf(0.975, len(s) - 1) * s.std(ddof=1) / math.sqrt(len(s))
    return s.mean() - half, s.mean() + half


def finals(curves, task, scheduler):
    key = next(k for k in curves if k[:2] == (task, scheduler))
    return [val[-1] for val, _ in curves[key]]


@pytest.fixture(scope="module")
def reports(store, tmp_path_factory):
    uri, _ = store
    root = tmp_path_factory.mktemp("reports")
    return write_report("demo", uri, root, now=NOW), write_report("demo", uri, root, now=LATER)


@pytest.fixture(scope="module")
def verdicts(store, tmp_path_factory):
    uri, _ = store
    return write_report("verdicts", uri, tmp_path_factory.mktemp("verdicts"), now=NOW)


def test_summary_csv_has_exact_numbers_and_excludes_unfinished_runs(reports):
    table = pd.read_csv(reports[0].parent / "summary.csv")
    assert list(table.columns) == COLUMNS == SUMMARY_COLUMNS
    assert list(zip(table.task, table.scheduler, strict=False)) == list(EXPECTED)
    for row in table.itertuples(index=False):
        key = (row.task, row.scheduler)
        got = (row.final_mean, row.final_std, row.best_mean, row.epochs_to_threshold_mean, row.reached,
               row.generalization_gap, row.stability, row.test_mean, row.n_diverged)  # fmt: skip
        assert got == pytest.approx(EXPECTED[key], rel=1e-5, nan_ok=True), key
        assert row.n_seeds == 3  # FAILED (digits/heuristic) and RUNNING (xor_clean/fixed) seed 3 left out
        wall = WALL[key]
        assert row.wall_to_threshold_mean == pytest.approx(sum(wall) / 3, rel=1e-5), key
        assert (row.wall_to_threshold_ci_low, row.wall_to_threshold_ci_high) == pytest.approx(
            ci(wall), rel=1e-5
        )
        assert row.perf_ratio == pytest.approx(RATIOS[key], rel=1e-5), key
        if key != ("xor_clean", "heuristic"):  # the diverged seed makes its mean and interval NaN
            vals = finals(CURVES, *key)
            assert (row.final_ci_low, row.final_ci_high) == pytest.approx(ci(vals), rel=1e-5, abs=1e-9), key
            assert (row.test_ci_low, row.test_ci_high) == pytest.approx(
                ci([v - 0.01 for v in vals]), rel=1e-5, abs=1e-9
            )
    assert table.set_index("scheduler").loc["heuristic", "adaptive"].all()
    assert set(table["mode"]) == {"max", "min"}


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy, on cosine's identical finals
def test_p_values_and_verdicts_against_the_best_baseline(reports):
    table = pd.read_csv(reports[0].parent / "summary.csv", keep_default_na=False).set_index(
        ["task", "scheduler"]
    )
    expected_p = sp.ttest_ind(finals(CURVES, "digits", "heuristic"), finals(CURVES, "digits", "cosine"),
                              equal_var=False).pvalue  # fmt: skip
    assert float(table.loc[("digits", "heuristic"), "p_value"]) == pytest.approx(expected_p, rel=1e-5)
    assert table["verdict"].to_dict() == {
        ("digits", "cosine"): "best baseline", ("digits", "fixed"): "baseline",
        ("digits", "heuristic"): "beat",
        ("xor_clean", "fixed"): "best baseline", ("xor_clean", "heuristic"): "untested",
    }  # fmt: skip
    assert table.loc[("xor_clean", "heuristic"), "verdict_note"] == "1 seed(s) with a non-finite final value"
    assert set(table["baseline"]) == {"cosine", "fixed"}
    profile = pd.read_csv(reports[0].parent / "profile.csv")
    assert list(profile["scheduler"]) == ["fixed", "heuristic", "cosine"]  # best score first
    assert profile.set_index("scheduler")["score"].to_dict() == pytest.approx(SCORES, rel=1e-5)
    assert profile.set_index("scheduler")["rho_at_1"].to_dict() == {
        "fixed": 0.5,
        "heuristic": 0.0,
        "cosine": 0.5,
    }


def test_report_opens_with_the_verdict_and_states_results_plainly(reports, store):
    _, special = store
    text = reports[0].read_text()
    sections = re.findall(r"^## (.+)$", text, flags=re.M)
    assert sections == [
        "Summary verdict", "Results per task", "Performance profile", "Failed or incomplete runs", "Protocol",
        "Links",
    ]  # fmt: skip
    verdict = text.split("## Summary verdict")[1].split("## Results per task")[0]
    assert (
        "when its mean final val metric is better AND Welch's t-test on the per-seed final values gives "
        "p < 0.05" in verdict
    )
    assert "**Adaptive schedulers beat the best baseline on 1 of 2 task(s)**: digits (heuristic)." in verdict
    assert (
        "- **digits** (val acc, higher is better): best baseline **cosine** 0.94 [0.94, 0.94] over 3 seed(s)."
        in verdict
    )
    assert (
        "  - heuristic: **beat** (0.97 [0.9452, 0.9948], difference +0.03, p = 0.0351; 3 vs 3 seeds)."
        in verdict
    )
    assert (
        "  - heuristic: **untested** (1 seed(s) with a non-finite final value): nan [nan, nan], "
        "difference nan; 3 vs 3 seeds." in verdict
    )
    assert "Best scheduler per task by mean final val metric: digits: heuristic; xor_clean: fixed." in verdict
    assert "tau_max 4; 1 = fastest on every task): fixed 0.9815, heuristic 0.9167, cosine 0.5." in verdict

    assert (
        "| fixed | 0.9167 [0.8408, 0.9926] | 0.92 | 0.9067 [0.8308, 0.9826] | 3.333 [-0.4612, 7.128] | "
        "3.333 [-0.4612, 7.128] | 2/3 | — | baseline | +0.05 | 0.07071 | 3 | 0 |" in text
    )
    assert (
        "| heuristic (adaptive) | nan [nan, nan] | 0.1167 | nan [nan, nan] | 2.667 [-0.2018, 5.535] | "
        "4 [-0.3027, 8.303] | 2/3 | nan | untested | nan | nan | 3 | 1 |" in text
    )
    assert "| fixed | 1.111 | 1 | 0.9815 |" in text and "| cosine | 1 | inf | 0.5 |" in text  # profile ratios

    unfinished = text.split("## Failed or incomplete runs")[1].split("## Protocol")[0]
    assert (
        f"| {special['failed']} | digits | heuristic | 3 | FAILED | CUDA out of memory \\| at step 12 |"
        in unfinished
    )
    assert f"| {special['running']} | xor_clean | fixed | 3 | RUNNING | (no error tag) |" in unfinished
    results = text.split("## Results per task")[1].split("## Failed")[0]
    assert special["failed"] not in results and special["running"] not in results
    assert "17 runs: 15 finished results, 2 failed or incomplete." in text


def test_protocol_and_links_without_provenance_tags(reports, store):
    _, special = store
    text = reports[0].read_text()
    protocol = text.split("## Protocol")[1].split("## Links")[0]
    assert (
        "- digits: val acc (max), threshold 0.9, max epochs 5, seeds 0, 1, 2, schedulers cosine, fixed, "
        "heuristic; steps per epoch 4, budget 20 optimizer steps per run." in protocol
    )
    assert "- Tuning: no run carries a `phase` tag, so no tuning phase is recorded" in protocol
    assert (
        "- Hardware: not recorded by the runs (no `host`/`device`/`torch_version` tags); the process that "
        "wrote this report ran on " in protocol
    )
    assert "- Code: no run carries a `git_commit` tag." in protocol
    assert (
        "- Data checksums (tag `data_checksum`): digits: not recorded; xor_clean: not recorded." in protocol
    )
    links = text.split("## Links")[1]
    assert links.count("<details>") == 1 and "</details>" in links
    assert (
        f"| {special['failed']} | digits | heuristic | 3 | FAILED | /runs/{special['failed']}/tensorboard |"
        in links
    )
    assert len(re.findall(r"^\| [0-9a-f]{32} \|", links, flags=re.M)) == 17  # every run, finished or not


def test_every_plot_exists_and_is_linked_with_actions_where_logged(reports):
    folder = reports[0].parent
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", reports[0].read_text())
    assert sorted(links) == [
        "digits_actions.png",
        "digits_lr.png",
        "digits_val_acc.png",
        "performance_profile.png",
        "xor_clean_actions.png",
        "xor_clean_lr.png",
        "xor_clean_val_mse.png",
    ]
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(links)
    assert all((folder / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for link in links)


def test_rerun_writes_a_new_folder_with_identical_tables(reports):
    first, second = reports
    assert first.parent.name == "20250102-030405" and second.parent.name == "20250102-040405"
    assert first.parent.parent.name == second.parent.parent.name == "demo"
    for name in ("summary.csv", "profile.csv"):
        assert (first.parent / name).read_bytes() == (second.parent / name).read_bytes()
    a, b = first.read_text().splitlines(), second.read_text().splitlines()
    changed = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
    assert len(changed) == 1 and all(line.startswith(GENERATED_PREFIX) for line in changed[0])


def test_new_folder_never_overwrites(tmp_path):
    assert [_new_folder(tmp_path, "20250102-030405").name for _ in range(3)] == [
        "20250102-030405", "20250102-030405-1", "20250102-030405-2",
    ]  # fmt: skip


def test_tuned_grid_reports_final_runs_only_and_every_verdict(verdicts, store):
    _, special = store
    table = pd.read_csv(verdicts.parent / "summary.csv", keep_default_na=False).set_index(
        ["task", "scheduler"]
    )
    flat = table.loc["flat"]
    assert flat["n_seeds"].tolist() == [3, 3, 3]  # the tune runs (one with 0.99) are not results
    assert float(flat.loc["fixed", "final_mean"]) == pytest.approx(0.82)
    fixed = finals(VERDICT_CURVES, "flat", "fixed")
    for name in ("heuristic", "bandit"):
        p = sp.ttest_ind(finals(VERDICT_CURVES, "flat", name), fixed, equal_var=False).pvalue
        assert float(flat.loc[name, "p_value"]) == pytest.approx(p, rel=1e-5)
    assert flat["verdict"].to_dict() == {"bandit": "worse", "fixed": "best baseline",
                                         "heuristic": "no significant difference"}  # fmt: skip
    solo = table.loc[("solo", "fixed")]
    assert (solo["final_ci_low"], solo["final_ci_high"]) == ("nan", "nan")  # one seed: no interval

    text = verdicts.read_text()
    assert "**No adaptive scheduler beat the best baseline on any task** (2 task(s))." in text
    assert (
        "  - bandit: **worse** (0.61 [0.5852, 0.6348], difference -0.21, p = 0.0005651; 3 vs 3 seeds)."
        in text
    )
    assert (
        "  - heuristic: **no significant difference** (0.8333 [0.7708, 0.8958], difference +0.01333, "
        "p = 0.5141; 3 vs 3 seeds)." in text
    )
    assert (
        "- **solo** (val mse, lower is better): best baseline **fixed** 0.4 [nan, nan] over 1 seed(s). "
        "No adaptive scheduler ran on this task." in text
    )
    assert (
        "12 runs: 10 finished results, 1 failed or incomplete (any phase), 2 of the tuning phase (never "
        "results)." in text
    )
    assert "(No `controller_action` logged for this task, so no controller-actions plot.)" in text
    assert not list(verdicts.parent.glob("*_actions.png"))

    protocol = text.split("## Protocol")[1].split("## Links")[0]
    assert (
        "- Tuning: 2 tune-phase runs (1 finished; tuning budget 2 per task x scheduler, tag `tuning_budget`) "
        "chose each scheduler's setting; tables, plots and statistics use only the 10 finished phase=final "
        "runs." in protocol
    )
    assert (
        "- Hardware: 10 run(s) on host node-a, device cpu (x86_64), 2 CPUs, torch 2.14.0, Python 3.12.1."
        in protocol
    )
    assert "- Code: `abc1234` (10 runs)." in protocol
    assert (
        "- Data checksums (tag `data_checksum`): flat: `md5:flat01` (9 runs); solo: `md5:solo01` (1 run)."
        in protocol
    )
    results = text.split("## Results per task")[1].split("## Links")[0]
    assert special["tune_finished"] not in results
    assert (
        f"| {special['tune_failed']} | flat | fixed | 1 | tune | FAILED | boom |" in results
    )  # unfinished list
    assert f"| {special['tune_finished']} | flat | fixed | 0 | tune | FINISHED |" in text.split("## Links")[1]
    assert "| heuristic | 1.312 | inf | 0.4479 |" in text  # flat: 3.5 s / (8/3 s); solo: did not run


def test_load_runs_pages_through_search_and_decodes_histories(store, monkeypatch):
    uri, special = store
    monkeypatch.setattr(collect, "_PAGE_SIZE", 4)
    data = load_runs("demo", uri)
    assert len(data.runs) == 17 and len(data.finished) == 15
    assert set(data.epochs["run_id"]) == set(
        data.finished["run_id"]
    )  # no histories fetched for unfinished runs
    heuristic = data.finished.query(
        "task == 'digits' and scheduler == 'heuristic' and seed == 0"
    ).run_id.iloc[0]
    actions = data.actions[data.actions["run_id"] == heuristic]
    assert list(actions["action"]) == ["hold", "cut_plateau", "unknown(99)"]
    assert list(actions["factor"]) == [1.0, 0.5, 1.0]
    lr = data.lr[data.lr["run_id"] == heuristic]
    assert list(lr["step"]) == list(range(1, 21, 2))
    val = data.epochs.query("run_id == @heuristic and name == 'val_acc'")
    assert list(val["epoch"]) == [1, 2, 3, 4, 5]
    per_run = per_run_metrics(data)
    assert per_run["diverged"].sum() == 1
    assert aggregate(per_run).shape == (5, len(COLUMNS))

    tuned = load_runs("verdicts", uri)
    assert len(tuned.runs) == 12 and len(tuned.finished) == 10 and len(tuned.tune) == 2 and tuned.has_phases
    assert special["tune_finished"] not in set(tuned.epochs["run_id"])  # tune histories are never fetched
    assert set(tuned.finished["git_commit"]) == {"abc1234"} and set(tuned.finished["tuning_budget"]) == {"2"}


@pytest.mark.parametrize("experiment", ["empty", "only_failed", "missing", "only_tune"])
def test_no_finished_runs_raises_naming_experiment_and_store(store, tmp_path, experiment):
    uri, _ = store
    with pytest.raises(NoRunsError, match=re.escape(f"experiment '{experiment}'")) as err:
        write_report(experiment, uri, tmp_path, now=NOW)
    assert uri in str(err.value)
    if experiment == "only_tune":
        assert "1 tune-phase runs" in str(err.value)
    assert not (tmp_path / experiment).exists()  # nothing written


def test_a_cell_run_again_after_a_config_change_reports_only_its_latest_run(store, tmp_path):
    from fake_store import log_run
    from mlflow.tracking import MlflowClient

    uri, _ = store
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("rerun", artifact_location=(tmp_path / "rerun").as_uri())
    t0 = 1_700_000_000_000
    old = log_run(client, exp, "digits", "heuristic", True, 0, [0.5, 0.6], [1.0, 0.9], start_time=t0)
    new = log_run(client, exp, "digits", "heuristic", True, 0, [0.8, 0.95], [0.6, 0.3], start_time=t0 + 60_000)
    other = log_run(client, exp, "digits", "heuristic", True, 1, [0.7, 0.9], [0.7, 0.4], start_time=t0 + 1)
    base = log_run(client, exp, "digits", "fixed", False, 0, [0.6, 0.9], [0.8, 0.4], start_time=t0 + 2)

    data = load_runs("rerun", uri)

    assert set(data.finished["run_id"]) == {new, other, base}
    assert list(data.superseded["run_id"]) == [old]
    assert old not in set(data.epochs["run_id"]) | set(data.actions["run_id"])  # its histories are not even read
    summary = aggregate(per_run_metrics(data))
    heuristic = summary[summary["scheduler"] == "heuristic"].iloc[0]
    assert heuristic["n_seeds"] == 2 and heuristic["final_mean"] == pytest.approx((0.95 + 0.9) / 2)
    text = write_report("rerun", uri, tmp_path / "reports").read_text()
    assert "1 superseded by a later run of the same cell (never results: digits/heuristic)" in text
