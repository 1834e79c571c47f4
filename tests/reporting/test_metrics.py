import math

import pandas as pd
import pytest

from adaptive_lr.reporting import (
    action_name,
    best_schedulers,
    best_value,
    compare_adaptive,
    epochs_to_threshold,
    final_value,
    stability,
)


def curve(values):
    return pd.Series(values, index=range(1, len(values) + 1), dtype=float)


def test_epochs_to_threshold_is_mode_aware_inclusive_and_counts_never_reached_as_budget():
    assert epochs_to_threshold(curve([0.5, 0.9, 0.95]), 0.9, "max", 30) == (2, True)
    assert epochs_to_threshold(curve([0.5, 0.2, 0.1]), 0.1, "min", 30) == (3, True)
    assert epochs_to_threshold(curve([0.5, 0.6]), 0.9, "max", 30) == (30, False)
    assert epochs_to_threshold(curve([math.nan, math.nan]), 0.1, "min", 4) == (4, False)
    assert epochs_to_threshold(curve([]), 0.1, "min", 4) == (4, False)


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


def test_best_scheduler_and_adaptive_comparison_are_mode_aware():
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
    assert not cmp.loc["loss_task", "beats"]
    assert pd.isna(cmp.loc["nan_task", "baseline"]) and not cmp.loc["nan_task", "beats"]


def test_ties_do_not_count_as_beating():
    frame = summary([("t", "a", False, "max", 0.5, 3), ("t", "b", True, "max", 0.5, 3)])
    assert not compare_adaptive(frame)["beats"].iloc[0]


def test_run_rows_label_warm_started_controllers_and_read_the_task_baseline():
    from types import SimpleNamespace

    from adaptive_lr.reporting.collect import _run_row

    def fake(tags, metrics):
        return SimpleNamespace(info=SimpleNamespace(run_id="r", run_name="n", status="FINISHED"),
                               data=SimpleNamespace(tags=tags, metrics=metrics))

    tags = {"task": "electricity", "scheduler": "rl_bandit", "metric": "mse", "metric_mode": "min"}
    cold = _run_row(fake(tags, {"test_mse": 0.2, "test_naive_mse": 0.5}))
    assert cold["scheduler"] == "rl_bandit" and cold["warm_start"] == ""
    assert (cold["test_metric"], cold["test_baseline"]) == (0.2, 0.5)
    warm = _run_row(fake({**tags, "warm_start": "/runs/a/policy_learned.pt"}, {"test_mse": 0.2}))
    assert warm["scheduler"] == "rl_bandit +warm" and warm["warm_start"] == "/runs/a/policy_learned.pt"
    assert math.isnan(warm["test_baseline"])  # the task logged no baseline
