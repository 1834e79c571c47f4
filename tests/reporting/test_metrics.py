"""Per-run metric rows, best baselines and ties, verdicts with pairing, margins and Holm across the report, checked
by hand (scipy.stats.t, a hand-written Holm)."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from by_hand import holm_by_hand
from scipy import stats as sp

from adaptive_lr.reporting import (
    METRIC_ROWS,
    SUMMARY_COLUMNS,
    MetricModeError,
    RunData,
    action_name,
    aggregate,
    best_baselines,
    compare_to_baselines,
    out_of_range,
    per_run_metrics,
)
from adaptive_lr.reporting.collect import RUN_COLUMNS, _run_row
from adaptive_lr.reporting.metrics import (
    COMPARISON_COLUMNS,
    best_value,
    describe,
    final_value,
    first_epoch_reaching,
)

NAN, INF = math.nan, math.inf


def curve(values):
    return pd.Series(values, index=range(1, len(values) + 1), dtype=float)


def paired_p(a, b):
    d = np.subtract(a, b)
    return 2 * sp.t.sf(abs(d.mean()) / (d.std(ddof=1) / math.sqrt(len(d))), len(d) - 1)


def welch_p(a, b):
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return 2 * sp.t.sf(abs(np.mean(a) - np.mean(b)) / math.sqrt(va + vb), dof)


def paired_tost_p(a, b, margin):
    d = np.subtract(a, b)
    se = d.std(ddof=1) / math.sqrt(len(d))
    return max(sp.t.sf((d.mean() + margin) / se, len(d) - 1), sp.t.cdf((d.mean() - margin) / se, len(d) - 1))


# -- per-run values ------------------------------------------------------------------------------------------
def test_first_epoch_reaching_is_mode_aware_inclusive_and_inf_when_never():
    assert first_epoch_reaching(curve([0.5, 0.9, 0.95]), 0.9, "max") == 2
    assert first_epoch_reaching(curve([0.5, 0.2, 0.1]), 0.1, "min") == 3
    assert first_epoch_reaching(curve([0.5, 0.6]), 0.9, "max") == INF
    assert first_epoch_reaching(curve([NAN, NAN]), 0.1, "min") == INF
    assert first_epoch_reaching(curve([]), 0.1, "min") == INF
    assert first_epoch_reaching(curve([0.5, 0.95]), NAN, "max") == INF  # no target: never reached


def test_final_and_best_tolerate_non_finite_values():
    assert math.isnan(final_value(curve([0.3, NAN])))  # NaN stays NaN
    assert math.isnan(final_value(curve([])))
    assert best_value(curve([0.3, NAN, 0.1]), "min") == 0.1
    assert best_value(curve([0.3, INF, 0.5]), "max") == 0.5
    assert math.isnan(best_value(curve([NAN]), "max"))


def test_unknown_controller_action_codes_are_named_not_fatal():
    assert [action_name(c) for c in (0, 1, 2, 3, 4, 5)] == [
        "hold", "raise", "cut_rise", "cut_plateau", "cut_nonfinite", "cooldown",
    ]  # fmt: skip
    assert action_name(99) == "unknown(99)"
    assert action_name(NAN) == "unknown(nan)"
    assert action_name(2.5) == "unknown(2.5)"


def fake_run(tags, metrics):
    return SimpleNamespace(
        info=SimpleNamespace(run_id="r", run_name="n", status="FINISHED", start_time=1_700_000_000_000,
                             end_time=1_700_000_060_000),
        data=SimpleNamespace(tags=tags, metrics=metrics, params={}),
    )


def test_run_rows_label_warm_started_controllers_and_read_margins_and_provenance():
    tags = {"task": "electricity", "scheduler": "rl_bandit", "metric": "mse", "metric_mode": "min"}
    cold = _run_row(fake_run(tags, {"test_mse": 0.2, "test_naive_mse": 0.5}))
    assert cold["scheduler"] == "rl_bandit" and cold["warm_start"] == ""
    assert (cold["test_metric"], cold["test_baseline"]) == (0.2, 0.5)
    assert math.isnan(cold["equivalence_margin"]) and cold["margin_relative"] is False  # none declared
    assert cold["grid_jobs"] == cold["load_avg_start"] == cold["config_hash"] == ""
    warm = _run_row(fake_run({**tags, "warm_start": "/runs/a/policy_learned.pt"}, {"test_mse": 0.2}))
    assert warm["scheduler"] == "rl_bandit +warm" and warm["warm_start"] == "/runs/a/policy_learned.pt"
    assert math.isnan(warm["test_baseline"])  # the task logged no baseline
    declared = _run_row(fake_run({**tags, "equivalence_margin": "0.02", "margin_relative": "True",
                                  "grid_jobs": "4", "load_avg_start": "3.5", "load_avg_end": "2.0",
                                  "config_hash": "c0ffee"}, {}))  # fmt: skip
    assert declared["equivalence_margin"] == 0.02 and declared["margin_relative"] is True
    assert (declared["grid_jobs"], declared["load_avg_start"], declared["load_avg_end"], declared["config_hash"]) == (
        "4", "3.5", "2.0", "c0ffee")  # fmt: skip
    assert math.isnan(_run_row(fake_run({**tags, "equivalence_margin": ""}, {}))["equivalence_margin"])
    assert set(cold) == set(RUN_COLUMNS)
    assert cold["end_time"] == 1_700_000_060_000  # a run's own end; an imported run's is its tag, or unknown
    imported = {**tags, "imported_from": "abc"}
    assert math.isnan(_run_row(fake_run(imported, {}))["end_time"])
    assert _run_row(fake_run({**imported, "source_end_time": "1700000030000"}, {}))["end_time"] == 1_700_000_030_000


NUMBERS = ("threshold", "test_loss", "test_metric", "test_baseline", "equivalence_margin", "lr", "final_val")


def runs_frame(runs):
    """A `RunData.runs` frame from run dicts: missing columns get neutral values ("" text, NaN numbers)."""
    defaults = {c: "" for c in RUN_COLUMNS} | {c: NAN for c in NUMBERS if c in RUN_COLUMNS} | {
        "status": "FINISHED", "adaptive": False, "diverged_tag": False, "start_time": 0, "superseded": False,
        "margin_relative": False, "max_epochs": 3, "steps_per_epoch": 1, "seed": 0,
    }  # fmt: skip
    return pd.DataFrame([defaults | r for r in runs], columns=RUN_COLUMNS)


def run_data(runs, curves):
    """RunData from run dicts and {run_id: {metric name: values}}."""
    frame = runs_frame(runs)
    epochs = pd.DataFrame(
        [(run_id, e, name, v) for run_id, by_name in curves.items() for name, values in by_name.items()
         for e, v in enumerate(values, start=1)], columns=["run_id", "epoch", "name", "value"])  # fmt: skip
    empty = pd.DataFrame(columns=["run_id", "step", "value"])
    return RunData("exp", "local MLflow store", frame, epochs, empty, empty)


ACC = {"task": "t", "metric": "acc", "mode": "max", "threshold": 0.9}
PER_RUN_DATA = run_data(
    [
        {**ACC, "run_id": "r1", "scheduler": "fixed", "seed": 0, "test_metric": 0.94},
        {**ACC, "run_id": "r2", "scheduler": "fixed", "seed": 1, "test_metric": 0.69},
        {**ACC, "run_id": "r4", "scheduler": "fixed", "seed": 2, "test_metric": 0.91, "diverged_tag": True},
        {**ACC, "run_id": "r3", "scheduler": "heuristic", "seed": 0, "adaptive": True},
        {**ACC, "run_id": "tune", "scheduler": "fixed", "seed": 0, "phase": "tune", "test_metric": 0.99},
        {**ACC, "run_id": "sweep", "scheduler": "fixed", "seed": 1, "phase": "sweep", "test_metric": 0.99},
        {"task": "m", "metric": "mse", "mode": "min", "threshold": 0.1, "run_id": "r5", "scheduler": "fixed",
         "seed": 0, "test_metric": 0.06},
    ],
    {
        # train_acc is the running train-mode mean (dropout on): the gap never reads it
        "r1": {"val_acc": [0.5, 0.9, 0.95], "train_acc": [0.6, 0.99, 1.0], "train_eval_acc": [0.55, 0.93, 0.97],
               "epoch_time_s": [1.5, 3.0, 4.5]},
        "r2": {"val_acc": [0.5, 0.6, 0.7], "train_acc": [0.5, 0.6, 0.7], "nonfinite_steps": [0, 2, 0],
               "epoch_time_s": [1.0, 2.0, 3.0]},
        "r4": {"val_acc": [0.6, 0.8, 0.92], "train_eval_acc": [0.6, 0.8, 0.9], "epoch_time_s": [2.0, 4.0, 6.0]},
        "r3": {"val_acc": [0.5, NAN], "epoch_time_s": [1.0, 2.0]},
        "tune": {"val_acc": [0.99, 0.99, 0.99]},
        "sweep": {"val_acc": [0.99, 0.99, 0.99]},
        "r5": {"val_mse": [0.5, 0.2, 0.1, 0.05]},  # no epoch_time_s logged
    },
)  # fmt: skip


def test_per_run_metrics_by_hand():
    rows = per_run_metrics(PER_RUN_DATA).set_index("run_id")
    assert list(rows.index) == ["r1", "r2", "r4", "r3", "r5"]  # tuning and sweep runs are never results
    r1, r2, r3, r4, r5 = (rows.loc[r] for r in ("r1", "r2", "r3", "r4", "r5"))
    assert (r1["test"], r1["final"], r1["best"]) == (0.94, 0.95, 0.95)
    assert (r1["epochs_to_threshold"], r1["wall_to_threshold"]) == (2.0, 3.0)
    assert r1["gap"] == pytest.approx(0.97 - 0.95)  # train_eval minus val, not train_acc (1.0) minus val
    assert r1["diverged"] == 0.0
    assert math.isnan(r2["epochs_to_threshold"]) and math.isnan(r2["wall_to_threshold"])  # never reached
    assert math.isnan(r2["gap"])  # no train_eval_acc logged
    assert r2["diverged"] == 1.0  # non-finite training steps
    assert r4["diverged"] == 1.0 and r4["gap"] == pytest.approx(0.9 - 0.92)  # the runner's diverged tag
    assert r3["diverged"] == 1.0 and math.isnan(r3["final"]) and r3["best"] == 0.5 and math.isnan(r3["test"])
    assert (r5["epochs_to_threshold"], r5["best"], r5["final"]) == (3.0, 0.05, 0.05)  # "min", inclusive
    assert math.isnan(r5["wall_to_threshold"])  # reached, but no seconds logged
    # profile target of t: the best baseline's (fixed, the only one) median final val 0.92
    assert [rows.loc[r, "epochs_to_target"] for r in ("r1", "r2", "r4", "r3")] == [3.0, INF, 3.0, INF]
    assert [rows.loc[r, "wall_to_target"] for r in ("r1", "r2", "r4", "r3")] == [4.5, INF, 6.0, INF]
    assert rows.loc["r5", "epochs_to_target"] == 4.0 and math.isnan(rows.loc["r5", "wall_to_target"])


def test_describe_aggregates_each_declared_row_inside_its_range():
    summary = describe(per_run_metrics(PER_RUN_DATA)).set_index(["task", "scheduler"])
    fixed = summary.loc[("t", "fixed")]
    assert fixed["n_seeds"] == 3 and fixed["test_mean"] == pytest.approx((0.94 + 0.69 + 0.91) / 3)
    assert (
        0.69 <= fixed["test_ci_low"] < fixed["test_ci_high"] <= 0.94
    )  # percentile bootstrap: inside the data
    assert fixed["test_spread"] == pytest.approx(np.std([0.94, 0.69, 0.91], ddof=1))
    assert fixed["epochs_to_threshold_reached"] == 2  # reached 2/3, mean over those two: (2 + 3) / 2
    assert fixed["epochs_to_threshold_mean"] == 2.5
    assert 2.0 <= fixed["epochs_to_threshold_ci_low"] <= fixed["epochs_to_threshold_ci_high"] <= 3.0
    assert fixed["wall_to_threshold_mean"] == pytest.approx((3.0 + 6.0) / 2)
    assert math.isnan(fixed["gap_mean"])  # one seed without train_eval: never dropped silently
    z = sp.norm.ppf(0.975)
    assert fixed["diverged_count"] == 2
    centre, half = 2 / 3 + z**2 / 6, z * math.sqrt(2 / 9 / 3 + z**2 / 36)
    assert (fixed["diverged_rate_low"], fixed["diverged_rate_high"]) == pytest.approx(
        ((centre - half) / (1 + z**2 / 3), (centre + half) / (1 + z**2 / 3)))  # fmt: skip
    heuristic = summary.loc[("t", "heuristic")]
    assert heuristic["n_seeds"] == 1 and math.isnan(heuristic["test_spread"])
    assert heuristic["epochs_to_threshold_reached"] == 0 and math.isnan(heuristic["epochs_to_threshold_mean"])


def test_a_metric_mode_other_than_max_or_min_is_a_user_error_naming_the_run():
    bad = run_data([{**ACC, "mode": "maximize", "run_id": "rx", "scheduler": "fixed", "seed": 0}],
                   {"rx": {"val_acc": [0.5]}})  # fmt: skip
    with pytest.raises(
        MetricModeError, match="run rx: metric_mode must be one of \\['max', 'min'\\], got 'maximize'"
    ):
        per_run_metrics(bad)


def test_every_declared_row_has_its_summary_columns():
    assert len({r.name for r in METRIC_ROWS}) == len(METRIC_ROWS)
    for row in METRIC_ROWS:
        assert any(c.startswith(row.name) for c in SUMMARY_COLUMNS), row.name
    assert "diverged_count" in SUMMARY_COLUMNS and "n_diverged" not in SUMMARY_COLUMNS


# -- best baselines and verdicts -----------------------------------------------------------------------------
def rows(
    task, scheduler, adaptive, tests, finals=None, mode="max", metric="acc", seeds=None, checksum="md5:a"
):
    finals = tests if finals is None else finals
    seeds = list(range(len(tests))) if seeds is None else seeds
    checksums = checksum if isinstance(checksum, list) else [checksum] * len(tests)
    return [{"task": task, "scheduler": scheduler, "seed": s, "adaptive": adaptive, "metric": metric,
             "mode": mode, "data_checksum": c, "run_id": f"{task}-{scheduler}-{s}", "test": t, "final": f}
            for s, t, f, c in zip(seeds, tests, finals, checksums, strict=True)]  # fmt: skip


def frame(*groups):
    """A per-run frame; the rows a verdict does not read get neutral values."""
    per_run = pd.DataFrame([r for g in groups for r in g])
    return per_run.assign(best=per_run["final"], epochs_to_threshold=2.0, wall_to_threshold=3.0, gap=0.01,
                          diverged=0.0, epochs_to_target=2.0, wall_to_target=3.0)  # fmt: skip


def margins(**tasks):
    """A runs frame declaring each task's margin: task=(margin, relative)."""
    return runs_frame(
        [{"task": t, "equivalence_margin": m, "margin_relative": rel} for t, (m, rel) in tasks.items()]
    )


def test_best_baseline_is_mode_aware_ignores_adaptive_and_nan_and_names_exact_ties():
    per_run = frame(
        rows("acc", "fixed", False, [0.8, 0.9]), rows("acc", "cosine", False, [0.7, 0.8]),
        rows("acc", "heuristic", True, [0.99, 0.99]),  # the best mean, but adaptive: never a baseline
        rows("loss", "fixed", False, [0.3, 0.2], mode="min"), rows("loss", "cosine", False, [0.2, 0.1], mode="min"),
        rows("nan", "fixed", False, [0.5, NAN]), rows("nan", "cosine", False, [0.4, 0.4]),
        rows("none", "fixed", False, [NAN, NAN]),
        rows("tie", "fixed", False, [0.125, 0.375, 0.25]), rows("tie", "cosine", False, [0.375, 0.25, 0.125]),
        rows("tie", "step", False, [0.25, 0.125, 0.375]), rows("tie", "worse", False, [0.1, 0.1, 0.1]),
    )  # fmt: skip
    assert best_baselines(per_run) == {
        "acc": ["fixed"], "loss": ["cosine"], "nan": ["cosine"], "none": [], "tie": ["cosine", "fixed", "step"],
    }  # fmt: skip


# acc (max, absolute margin 0.02): fixed is the best baseline on val; every adaptive scheduler ran the same seeds
#   good:      +0.01 on every seed (+-0.001): paired, a clear difference
#   close:     +-0.001 per seed: paired, equivalent within 0.02
#   otherdata: good's numbers, but seed 2 ran on other data (checksum): Welch, the seed spread swamps it
#   otherseed: good's numbers on seeds 0, 1, 3: Welch
#   nochecksum: good's numbers, no data checksum recorded on either side: Welch
# mse (min, relative margin 0.1 x mean final val of fixed 0.3 = 0.03): lower has p ~ 0.019 raw, over 0.05 after Holm
BASE = [0.80, 0.85, 0.90]
GOOD = [0.811, 0.859, 0.911]
CLOSE = [0.801, 0.849, 0.901]
LOWER = [0.16, 0.25, 0.335]
PER_RUN = frame(
    rows("acc", "fixed", False, BASE), rows("acc", "cosine", False, [0.7, 0.75, 0.8]),
    rows("acc", "good", True, GOOD), rows("acc", "close", True, CLOSE),
    rows("acc", "otherdata", True, GOOD, checksum=["md5:a", "md5:a", "md5:b"]),
    rows("acc", "otherseed", True, GOOD, seeds=[0, 1, 3]),
    rows("mse", "fixed", False, [0.2, 0.3, 0.4], mode="min", metric="mse"),
    rows("mse", "lower", True, LOWER, mode="min", metric="mse"),
    rows("nock", "fixed", False, BASE, checksum=""), rows("nock", "nochecksum", True, GOOD, checksum=""),
)  # fmt: skip
RUNS = margins(acc=(0.02, False), mse=(0.1, True), nock=(NAN, False))


def test_pairing_is_chosen_by_seeds_and_data_checksum_and_tested_by_hand():
    c = compare_to_baselines(PER_RUN, RUNS).set_index(["task", "scheduler"])
    assert list(c.reset_index().columns) == COMPARISON_COLUMNS
    assert c["paired"].to_dict() == {
        ("acc", "close"): True, ("acc", "good"): True, ("acc", "otherdata"): False, ("acc", "otherseed"): False,
        ("mse", "lower"): True, ("nock", "nochecksum"): False,
    }  # fmt: skip
    assert set(c["baseline"]) == {"fixed"} and not c["tie"].any()
    assert c.loc[("acc", "good"), "p_difference"] == pytest.approx(paired_p(GOOD, BASE), rel=1e-9)
    assert c.loc[("acc", "close"), "p_difference"] == pytest.approx(paired_p(CLOSE, BASE), rel=1e-9)
    for name in ("otherdata", "otherseed"):
        assert c.loc[("acc", name), "p_difference"] == pytest.approx(welch_p(GOOD, BASE), rel=1e-9)
    assert c.loc[("nock", "nochecksum"), "p_difference"] == pytest.approx(welch_p(GOOD, BASE), rel=1e-9)
    assert c.loc[("mse", "lower"), "p_difference"] == pytest.approx(
        paired_p(LOWER, [0.2, 0.3, 0.4]), rel=1e-9
    )
    d = np.subtract(GOOD, BASE)
    half = sp.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    good = c.loc[("acc", "good")]
    assert (good["difference"], good["difference_ci_low"], good["difference_ci_high"]) == pytest.approx(
        (d.mean(), d.mean() - half, d.mean() + half), rel=1e-9)  # fmt: skip
    assert (good["mean"], good["baseline_mean"], good["n_seeds"], good["baseline_n_seeds"]) == pytest.approx(
        (np.mean(GOOD), np.mean(BASE), 3, 3))  # fmt: skip


def test_paired_comparisons_match_seeds_not_row_order():
    shuffled = frame(
        rows("acc", "fixed", False, BASE[::-1], seeds=[2, 1, 0]), rows("acc", "good", True, GOOD)
    )
    c = compare_to_baselines(shuffled, RUNS).iloc[0]
    assert c["paired"] and c["p_difference"] == pytest.approx(paired_p(GOOD, BASE), rel=1e-9)


def test_margins_absolute_and_relative_and_holm_across_every_comparison():
    c = compare_to_baselines(PER_RUN, RUNS).set_index(["task", "scheduler"])
    assert c.loc["acc", "margin"].tolist() == [0.02] * 4
    assert c.loc[("mse", "lower"), "margin"] == pytest.approx(0.1 * 0.3)  # relative to fixed's mean final val
    assert "0.1 x |best baseline's mean final val| = 0.03" in c.loc[("mse", "lower"), "verdict_note"]
    assert "0.02 (absolute)" in c.loc[("acc", "good"), "verdict_note"]
    assert math.isnan(c.loc[("nock", "nochecksum"), "margin"])
    assert c.loc[("nock", "nochecksum"), "verdict_note"] == "no margin declared"
    assert c.loc[("acc", "close"), "p_equivalence"] == pytest.approx(
        paired_tost_p(CLOSE, BASE, 0.02), rel=1e-9
    )
    assert c.loc[("mse", "lower"), "p_equivalence"] == pytest.approx(
        paired_tost_p(LOWER, [0.2, 0.3, 0.4], 0.03), rel=1e-9)  # fmt: skip
    # Holm runs across all six comparisons of the report (three tasks), separately per test
    for raw, adjusted in (("p_difference", "p_difference_holm"), ("p_equivalence", "p_equivalence_holm")):
        p = c[raw].to_numpy(dtype=float)
        finite = np.isfinite(p)
        expected = np.full(len(p), NAN)
        expected[finite] = holm_by_hand(list(p[finite]))
        assert c[adjusted].to_numpy(dtype=float) == pytest.approx(expected, rel=1e-9, nan_ok=True)
    assert np.isfinite(c["p_difference"]).sum() == 6 and np.isfinite(c["p_equivalence"]).sum() == 5


def test_verdicts_are_drawn_on_the_holm_adjusted_p_values():
    c = compare_to_baselines(PER_RUN, RUNS).set_index(["task", "scheduler"])
    assert c["verdict"].to_dict() == {
        ("acc", "close"): "equivalent", ("acc", "good"): "better", ("acc", "otherdata"): "inconclusive",
        ("acc", "otherseed"): "inconclusive", ("mse", "lower"): "inconclusive",
        ("nock", "nochecksum"): "inconclusive",
    }  # fmt: skip
    lower = c.loc[("mse", "lower")]
    assert (
        lower["p_difference"] < 0.05 < lower["p_difference_holm"]
    )  # better on its own, not within the family
    alone = compare_to_baselines(PER_RUN[PER_RUN["task"] == "mse"], RUNS).iloc[0]
    assert alone["verdict"] == "better" and alone["p_difference_holm"] == alone["p_difference"]


def test_a_three_way_tie_is_named_and_compared_against_each_tied_baseline():
    tie = [0.125, 0.25, 0.375]
    per_run = frame(
        rows("t", "cosine", False, [0.3, 0.5, 0.7], finals=tie, mode="min", metric="mse"),
        rows("t", "fixed", False, [0.5, 0.3, 0.7], finals=[0.375, 0.125, 0.25], mode="min", metric="mse"),
        rows("t", "step", False, [0.7, 0.5, 0.3], finals=[0.25, 0.375, 0.125], mode="min", metric="mse"),
        rows("t", "worse", False, [0.9, 0.9, 0.8], finals=[0.5, 0.5, 0.5], mode="min", metric="mse"),
        rows("t", "heuristic", True, [0.31, 0.52, 0.68], mode="min", metric="mse"),
    )  # fmt: skip
    c = compare_to_baselines(per_run, margins(t=(0.1, True)))
    assert list(c["baseline"]) == ["cosine", "fixed", "step"] and c["tie"].all()
    assert set(c["scheduler"]) == {"heuristic"}
    adaptive = [0.31, 0.52, 0.68]
    for r in c.itertuples(index=False):  # each comparison against its own baseline's per-seed test values
        base = per_run[per_run["scheduler"] == r.baseline]["test"].tolist()
        assert r.paired and r.p_difference == pytest.approx(paired_p(adaptive, base), rel=1e-9)
        assert r.margin == pytest.approx(0.1 * 0.25)
    assert len(set(c["p_difference"].round(12))) == 3
    summary, comparisons = aggregate(per_run, margins(t=(0.1, True)))
    s = summary.set_index("scheduler")
    assert s.loc[["cosine", "fixed", "step"], "verdict"].tolist() == ["best baseline (tie)"] * 3
    assert s.loc["worse", "verdict"] == "baseline"
    assert set(s.loc[["cosine", "worse"], "baseline"]) == {"cosine, fixed, step"}
    assert (
        s.loc["heuristic", "baseline"] == "cosine"
    )  # the summary row carries the first; all are in comparisons
    pd.testing.assert_frame_equal(comparisons, c)


def test_untested_comparisons_and_a_task_without_a_usable_baseline():
    per_run = frame(
        rows("acc", "fixed", False, BASE), rows("acc", "single", True, [0.9]),
        rows("acc", "nan", True, [0.9, NAN, 0.85]),
        rows("none", "fixed", False, [NAN, NAN]), rows("none", "heuristic", True, [0.5, 0.6]),
    )  # fmt: skip
    c = compare_to_baselines(per_run, RUNS).set_index(["task", "scheduler"])
    assert c["verdict"].to_dict() == {("acc", "nan"): "untested", ("acc", "single"): "untested",
                                      ("none", "heuristic"): "untested"}  # fmt: skip
    assert c.loc[("acc", "single"), "verdict_note"].startswith("fewer than 2 seeds (1 vs 3)")
    assert c.loc[("acc", "nan"), "verdict_note"].startswith("1 seed(s) with a non-finite value")
    assert math.isnan(c.loc[("acc", "nan"), "mean"])  # a diverged seed is not dropped from the mean either
    none = c.loc[("none", "heuristic")]
    assert (
        none["baseline"] == "" and none["verdict_note"] == "no baseline with a finite mean final val metric"
    )
    assert not none["paired"] and not none["tie"]  # nothing was compared, so nothing was paired
    assert math.isnan(c.loc[("acc", "single"), "p_difference_holm"])  # not a member of the Holm family


def test_aggregate_summary_columns_roles_and_intervals_in_range():
    summary, comparisons = aggregate(PER_RUN, RUNS)
    assert list(summary.columns) == SUMMARY_COLUMNS and list(comparisons.columns) == COMPARISON_COLUMNS
    s = summary.set_index(["task", "scheduler"])
    assert (
        s.loc[("acc", "fixed"), "verdict"] == "best baseline"
        and s.loc[("acc", "cosine"), "verdict"] == "baseline"
    )
    assert s.loc[("acc", "good"), "verdict"] == "better" and s.loc[("acc", "good"), "paired"]
    assert (
        s.loc[("acc", "good"), "p_difference_holm"]
        == comparisons.set_index("scheduler").loc["good", "p_difference_holm"]
    )
    assert out_of_range(summary, comparisons) == []
    # a planted interval outside its range is caught, in the summary and in the comparisons
    planted = summary.copy()
    planted.loc[0, "test_ci_high"] = 1.2  # accuracy above 1
    planted.loc[1, "diverged_rate_low"] = -0.1
    bad = comparisons.copy()
    bad.loc[0, "difference_ci_low"] = -1.5  # a difference of accuracies below -1
    found = out_of_range(planted, bad)
    assert len(found) == 3
    assert any("test_ci_high = 1.2 outside [0.0, 1.0]" in f for f in found)
    assert any("diverged_rate_low = -0.1" in f for f in found)
    assert any("difference bound -1.5 outside [-1.0, 1.0]" in f for f in found)
    # an MSE has no upper bound, but no negative values; epochs to threshold start at 1
    mse = summary[summary["metric"] == "mse"].index[0]
    planted = summary.copy()
    planted.loc[mse, "test_ci_high"] = 50.0
    assert out_of_range(planted, comparisons) == []
    planted.loc[mse, "test_ci_low"] = -0.01
    planted.loc[mse, "epochs_to_threshold_ci_low"] = 0.5
    assert len(out_of_range(planted, comparisons)) == 2
