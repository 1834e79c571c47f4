import math

import pandas as pd
import pytest
from scipy import stats as sp

from adaptive_lr.reporting import (
    action_name,
    aggregate,
    best_schedulers,
    best_value,
    compare_adaptive,
    epochs_to_threshold,
    final_value,
    stability,
    wall_clock_to_threshold,
)
from adaptive_lr.reporting.metrics import PER_RUN_COLUMNS


def curve(values):
    return pd.Series(values, index=range(1, len(values) + 1), dtype=float)


def test_epochs_to_threshold_is_mode_aware_inclusive_and_counts_never_reached_as_budget():
    assert epochs_to_threshold(curve([0.5, 0.9, 0.95]), 0.9, "max", 30) == (2, True)
    assert epochs_to_threshold(curve([0.5, 0.2, 0.1]), 0.1, "min", 30) == (3, True)
    assert epochs_to_threshold(curve([0.5, 0.6]), 0.9, "max", 30) == (30, False)
    assert epochs_to_threshold(curve([math.nan, math.nan]), 0.1, "min", 4) == (4, False)
    assert epochs_to_threshold(curve([]), 0.1, "min", 4) == (4, False)


def test_wall_clock_to_threshold_reads_epoch_time_at_the_first_hit_and_budget_time_otherwise():
    times = curve([1.5, 3.0, 4.5, 6.0])
    assert wall_clock_to_threshold(curve([0.5, 0.9, 0.95, 0.97]), times, 0.9, "max", 4) == (3.0, True)
    assert wall_clock_to_threshold(curve([0.5, 0.2, 0.1, 0.05]), times, 0.1, "min", 4) == (4.5, True)
    # never reached, whole budget used: the run's total time
    assert wall_clock_to_threshold(curve([0.5, 0.6, 0.7, 0.8]), times, 0.9, "max", 4) == (6.0, False)
    # stopped after 2 of 10 epochs (diverged): its pace over the whole budget, 3.0 s * 10 / 2, not 3.0 s
    assert wall_clock_to_threshold(curve([0.5, math.nan]), curve([1.5, 3.0]), 0.9, "max", 10) == (15.0, False)
    seconds, reached = wall_clock_to_threshold(curve([0.5, 0.95]), curve([]), 0.9, "max", 4)
    assert math.isnan(seconds) and reached  # no epoch_time_s logged


def test_final_best_and_stability_tolerate_non_finite_values():
    assert final_value(curve([0.3, math.nan])) != final_value(curve([0.3, math.nan]))  # NaN stays NaN
    assert math.isnan(final_value(curve([])))
    assert best_value(curve([0.3, math.nan, 0.1]), "min") == 0.1
    assert best_value(curve([0.3, math.inf, 0.5]), "max") == 0.5
    assert math.isnan(best_value(curve([math.nan]), "max"))
    assert stability(curve([1.0, 0.5, 0.25, 0.125])) == pytest.approx(0.19094065395649332)
    assert math.isnan(stability(curve([1.0, 0.5])))  # one change: no spread
    assert math.isnan(stability(curve([1.0, math.nan, 0.5])))


def test_unknown_controller_action_codes_are_named_not_fatal():
    assert [action_name(c) for c in (0, 1, 2, 3, 4, 5)] == [
        "hold", "raise", "cut_rise", "cut_plateau", "cut_nonfinite", "cooldown",
    ]  # fmt: skip
    assert action_name(99) == "unknown(99)"
    assert action_name(math.nan) == "unknown(nan)"


def summary(rows):
    columns = ["task", "scheduler", "adaptive", "mode", "final_mean", "n_seeds"]
    return pd.DataFrame(rows, columns=columns)


def test_best_scheduler_and_adaptive_comparison_without_per_seed_values_are_mode_aware():
    frame = summary([
        ("loss_task", "cosine", False, "min", 0.20, 3),
        ("loss_task", "fixed", False, "min", 0.30, 3),
        ("loss_task", "heuristic", True, "min", 0.25, 3),  # worse than cosine: did not beat
        ("nan_task", "fixed", False, "max", math.nan, 3),
        ("nan_task", "heuristic", True, "max", 0.9, 2),
    ])  # fmt: skip
    assert best_schedulers(frame) == {"loss_task": "cosine", "nan_task": "heuristic"}
    cmp = compare_adaptive(frame).set_index("task")
    assert cmp.loc["loss_task", "baseline"] == "cosine"
    assert cmp.loc["loss_task", "difference"] == pytest.approx(0.05)
    assert not cmp.loc["loss_task", "better"] and not cmp.loc["loss_task", "beats"]
    assert (
        cmp.loc["loss_task", "verdict"] == "untested" and cmp.loc["loss_task", "note"] == "no per-seed values"
    )
    assert pd.isna(cmp.loc["nan_task", "baseline"]) and not cmp.loc["nan_task", "beats"]
    assert cmp.loc["nan_task", "note"] == "no baseline with a finite mean"


def test_ties_do_not_count_as_beating():
    frame = summary([("t", "a", False, "max", 0.5, 3), ("t", "b", True, "max", 0.5, 3)])
    assert not compare_adaptive(frame)["better"].iloc[0] and not compare_adaptive(frame)["beats"].iloc[0]


def per_run(rows):
    """Per-run frame from (task, scheduler, adaptive, mode, finals, wall seconds, reached) per task x
    scheduler."""
    records = []
    for task, scheduler, adaptive, mode, finals, seconds, reached in rows:
        for seed, (final, sec, hit) in enumerate(zip(finals, seconds, reached, strict=True)):
            records.append({
                "task": task, "scheduler": scheduler, "seed": seed, "adaptive": adaptive, "metric": "m",
                "mode": mode, "final": final, "best": final, "epochs_to_threshold": 2,
                "wall_to_threshold": sec,
                "reached": hit, "time_s": sec, "gap": 0.0, "stability": 0.1, "test": final,
                "test_baseline": math.nan, "diverged": not math.isfinite(final),
                "run_id": f"{task}-{scheduler}-{seed}",
            })  # fmt: skip
    return pd.DataFrame(records, columns=PER_RUN_COLUMNS)


RUNS = per_run([
    # loss task (min): cosine is the best baseline; "good" beats it, "same" does not differ, "bad" is worse,
    # "single" has one seed, "nan" diverged on one seed
    ("loss", "cosine", False, "min", [0.20, 0.21, 0.22], [10.0, 12.0, 14.0], [True] * 3),
    ("loss", "fixed", False, "min", [0.30, 0.31, 0.29], [20.0, 20.0, 20.0], [True, True, False]),
    ("loss", "good", True, "min", [0.10, 0.11, 0.12], [6.0, 6.0, 6.0], [True] * 3),
    ("loss", "same", True, "min", [0.19, 0.23, 0.21], [9.0, 12.0, 15.0], [True] * 3),
    ("loss", "bad", True, "min", [0.40, 0.42, 0.41], [50.0, 50.0, 50.0], [False] * 3),
    ("loss", "single", True, "min", [0.10], [5.0], [True]),
    ("loss", "nan", True, "min", [0.10, math.nan, 0.12], [6.0, 7.0, 6.0], [True, False, True]),
    # baselines only (max)
    ("acc", "fixed", False, "max", [0.9, 0.8], [3.0, 4.0], [True, True]),
])  # fmt: skip


def test_aggregate_tests_every_adaptive_scheduler_against_the_best_baseline():
    table = aggregate(RUNS).set_index(["task", "scheduler"])
    loss = table.loc["loss"]
    assert set(loss["baseline"]) == {"cosine"}
    cosine = [0.20, 0.21, 0.22]
    for name, finals in [
        ("good", [0.10, 0.11, 0.12]),
        ("same", [0.19, 0.23, 0.21]),
        ("bad", [0.40, 0.42, 0.41]),
    ]:
        assert loss.loc[name, "p_value"] == sp.ttest_ind(finals, cosine, equal_var=False).pvalue
    assert loss["verdict"].to_dict() == {
        "bad": "worse", "cosine": "best baseline", "fixed": "baseline", "good": "beat", "nan": "untested",
        "same": "no significant difference", "single": "untested",
    }  # fmt: skip
    assert loss.loc["single", "verdict_note"] == "fewer than 2 seeds (1 vs 3)"
    assert loss.loc["nan", "verdict_note"] == "1 seed(s) with a non-finite final value"
    assert math.isnan(loss.loc["single", "final_ci_low"]) and loss.loc["single", "final_mean"] == 0.1
    half = sp.t.ppf(0.975, 2) * 0.01 / math.sqrt(3)
    assert (loss.loc["cosine", "final_ci_low"], loss.loc["cosine", "final_ci_high"]) == pytest.approx(
        (0.21 - half, 0.21 + half), rel=1e-12
    )
    assert (
        loss.loc["cosine", "wall_to_threshold_mean"],
        loss.loc["cosine", "wall_to_threshold_ci_high"],
    ) == (pytest.approx((12.0, 12.0 + sp.t.ppf(0.975, 2) * 2.0 / math.sqrt(3)), rel=1e-12))
    # performance ratio to the fastest (single: 5 s); "bad" never reached the threshold: inf
    assert loss["perf_ratio"].to_dict() == pytest.approx({
        "bad": math.inf, "cosine": 12 / 5, "fixed": 20 / 5, "good": 6 / 5, "nan": 19 / 3 / 5,
        "same": 12 / 5, "single": 1.0,
    })  # fmt: skip
    assert table.loc[("acc", "fixed"), "verdict"] == "best baseline" and math.isnan(
        table.loc[("acc", "fixed"), "p_value"]
    )
    assert int(loss.loc["nan", "n_diverged"]) == 1
    assert list(aggregate(RUNS.iloc[:0]).columns) == list(table.reset_index().columns)  # no runs: empty table


def test_summary_verdict_says_plainly_when_nothing_beat_or_nothing_adaptive_ran():
    from adaptive_lr.reporting.profiles import performance_ratios, time_to_target
    from adaptive_lr.reporting.report import _verdict_section

    def text(runs):
        table = aggregate(runs)
        return "\n".join(_verdict_section(table, performance_ratios(time_to_target(table)), 4.0, 0.05))

    only_baselines = text(RUNS[~RUNS["adaptive"]])
    assert (
        "**No adaptive scheduler ran in this experiment**, so nothing can beat a baseline." in only_baselines
    )
    assert (
        "- **acc** (val m, higher is better): best baseline **fixed** 0.85 [0.2147, 1.485] over 2 seed(s). "
        "No adaptive scheduler ran on this task." in only_baselines
    )
    assert "One task only" not in only_baselines
    no_winner = text(RUNS[RUNS["scheduler"] != "good"])
    assert "**No adaptive scheduler beat the best baseline on any task** (2 task(s))." in no_winner
    assert "  - No adaptive scheduler beat the best baseline on this task." in no_winner
    winner = text(RUNS)
    assert "**Adaptive schedulers beat the best baseline on 1 of 2 task(s)**: loss (good)." in winner
    assert "  - good: **beat** (0.11 [0.08516, 0.1348], difference -0.1, p = " in winner
    assert (
        "  - single: **untested** (fewer than 2 seeds (1 vs 3)): 0.1 [nan, nan], difference -0.11; 1 vs 3 "
        "seeds." in winner
    )
    assert "One task only: weak evidence." in text(RUNS[RUNS["task"] == "loss"])


def test_run_rows_label_warm_started_controllers_and_read_the_task_baseline():
    from types import SimpleNamespace

    from adaptive_lr.reporting.collect import _run_row

    def fake(tags, metrics):
        return SimpleNamespace(
            info=SimpleNamespace(run_id="r", run_name="n", status="FINISHED", start_time=1_700_000_000_000),
            data=SimpleNamespace(tags=tags, metrics=metrics),
        )

    tags = {"task": "electricity", "scheduler": "rl_bandit", "metric": "mse", "metric_mode": "min"}
    cold = _run_row(fake(tags, {"test_mse": 0.2, "test_naive_mse": 0.5}))
    assert cold["scheduler"] == "rl_bandit" and cold["warm_start"] == ""
    assert (cold["test_metric"], cold["test_baseline"]) == (0.2, 0.5)
    warm = _run_row(fake({**tags, "warm_start": "/runs/a/policy_learned.pt"}, {"test_mse": 0.2}))
    assert warm["scheduler"] == "rl_bandit +warm" and warm["warm_start"] == "/runs/a/policy_learned.pt"
    assert math.isnan(warm["test_baseline"])  # the task logged no baseline


def test_task_table_shows_the_naive_test_baseline_beside_the_test_metric_when_logged():
    from adaptive_lr.reporting.report import _table

    runs = RUNS[RUNS["task"] == "acc"].assign(test_baseline=[0.5, 0.7])
    header, _, row = _table(aggregate(runs))
    assert header.startswith("| scheduler | final val mean [95% CI] | best val | test mean [95% CI] | "
                             "test naive baseline | epochs to threshold [95% CI] |")  # fmt: skip
    assert row.startswith("| fixed | 0.85 [0.2147, 1.485] | 0.85 | 0.85 [0.2147, 1.485] | 0.6 | 2 [2, 2] | ")
    header, _, _ = _table(aggregate(RUNS[RUNS["task"] == "acc"]))
    assert "test naive baseline" not in header
