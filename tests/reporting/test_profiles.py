"""AlgoPerf-faithful performance profiles: median over seeds with inf for a miss, ratios, rho, scores by hand and
the bootstrap interval over seeds."""

import math

import numpy as np
import pandas as pd
import pytest

from adaptive_lr.reporting import (
    ProfileConfigError,
    median_times,
    performance_ratios,
    profile,
    profile_scores,
    score_intervals,
)
from adaptive_lr.reporting.profiles import step_points

INF = math.inf


def per_run(cells):
    """A per-run frame from {(task, scheduler): [time of each seed]} (inf = the run missed the target)."""
    rows = [{"task": task, "scheduler": scheduler, "seed": seed, "epochs_to_target": t}
            for (task, scheduler), times in cells.items() for seed, t in enumerate(times)]  # fmt: skip
    return pd.DataFrame(rows)


# a: cosine reaches the target on seed 0 only: the median run misses -> inf (never its budget time);
#    heuristic misses on seed 2 only: the median run reaches it in 2 epochs
# b: heuristic did not run -> inf
# c: nobody reaches the target -> every ratio inf
# d: two seeds: the median of (2, inf) is inf, of (2, 4) is 3
CELLS = {
    ("a", "fixed"): [3, 4, 5], ("a", "cosine"): [2, INF, INF], ("a", "heuristic"): [2, 2, INF],
    ("b", "fixed"): [10, 10, 10], ("b", "cosine"): [5, 6, 7],
    ("c", "fixed"): [INF] * 3, ("c", "cosine"): [INF] * 3, ("c", "heuristic"): [INF] * 3,
    ("d", "fixed"): [2, INF], ("d", "cosine"): [2, 4], ("d", "heuristic"): [1, 1],
}  # fmt: skip
GRID = per_run(CELLS)


def test_median_time_is_inf_when_the_median_seed_misses_and_finite_when_it_reaches():
    times = median_times(GRID, "epochs_to_target")
    assert list(times.index) == ["a", "b", "c", "d"] and list(times.columns) == [
        "cosine",
        "fixed",
        "heuristic",
    ]
    assert times.loc["a"].tolist() == [INF, 4.0, 2.0]  # cosine missed on the median seed, heuristic reached
    assert times.loc["b"].tolist() == [6.0, 10.0, INF]  # heuristic did not run on b
    assert times.loc["c"].tolist() == [INF, INF, INF]
    assert times.loc["d"].tolist() == [3.0, INF, 1.0]  # even seeds: either middle run missing -> inf


def test_ratios_profile_and_scores_by_hand():
    ratios = performance_ratios(median_times(GRID, "epochs_to_target"))
    assert ratios.loc["a"].tolist() == [INF, 2.0, 1.0]
    assert ratios.loc["b"].tolist() == pytest.approx([1.0, 10 / 6, INF])
    assert ratios.loc["c"].tolist() == [INF, INF, INF]
    assert ratios.loc["d"].tolist() == [3.0, INF, 1.0]

    rho = profile(ratios, [1.0, 10 / 6, 2.0, 3.0, 4.0])
    assert rho["cosine"].tolist() == pytest.approx([1 / 4, 1 / 4, 1 / 4, 2 / 4, 2 / 4])
    assert rho["fixed"].tolist() == pytest.approx([0, 1 / 4, 2 / 4, 2 / 4, 2 / 4])
    assert rho["heuristic"].tolist() == pytest.approx([2 / 4, 2 / 4, 2 / 4, 2 / 4, 2 / 4])

    # score = mean over tasks of clip((tau_max - r) / (tau_max - 1), 0, 1); inf -> 0
    scores = profile_scores(ratios, tau_max=4.0)
    assert scores["cosine"] == pytest.approx((0 + 1 + 0 + (4 - 3) / 3) / 4)
    assert scores["fixed"] == pytest.approx(((4 - 2) / 3 + (4 - 10 / 6) / 3 + 0 + 0) / 4)
    assert scores["heuristic"] == pytest.approx((1 + 0 + 0 + 1) / 4)
    assert profile_scores(ratios, tau_max=2.0)["fixed"] == pytest.approx((0 + (2 - 10 / 6) / 1) / 4)


def test_a_scheduler_that_reaches_on_one_seed_of_three_is_not_scored_at_its_budget():
    # the Fashion-MNIST case: fixed reached the target in 1 of 3 seeds and used to score a finite ratio
    one_of_three = per_run({("t", "fixed"): [3, INF, INF], ("t", "heuristic"): [4, 4, 5]})
    ratios = performance_ratios(median_times(one_of_three, "epochs_to_target"))
    assert ratios.loc["t"].tolist() == [INF, 1.0]
    assert profile_scores(ratios).tolist() == [0.0, 1.0]
    two_of_three = per_run({("t", "fixed"): [3, 3, INF], ("t", "heuristic"): [4, 4, 5]})
    ratios = performance_ratios(median_times(two_of_three, "epochs_to_target"))
    assert ratios.loc["t"].tolist() == [1.0, 4 / 3]
    assert profile_scores(ratios).tolist() == pytest.approx([1.0, (4 - 4 / 3) / 3])


def test_score_is_the_normalised_area_under_the_step_profile():
    ratios = performance_ratios(median_times(GRID, "epochs_to_target"))
    taus = np.linspace(1.0, 4.0, 300_001)
    rho = profile(ratios, taus)
    area = ((rho.iloc[:-1].to_numpy() + rho.iloc[1:].to_numpy()) / 2 * np.diff(taus)[:, None]).sum(axis=0) / 3
    assert area == pytest.approx(profile_scores(ratios, 4.0).to_numpy(), abs=1e-4)


def test_a_task_where_the_fastest_time_is_zero():
    ratios = performance_ratios(
        median_times(per_run({("z", "x"): [0, 0], ("z", "y"): [1, 1]}), "epochs_to_target")
    )
    assert ratios.loc["z"].tolist() == [1.0, INF]


def test_score_intervals_are_deterministic_and_bracket_the_score():
    table = score_intervals(GRID, "epochs_to_target", resamples=500)
    assert list(table.columns) == ["scheduler", "score", "score_low", "score_high"]
    assert list(table["scheduler"]) == ["cosine", "fixed", "heuristic"]
    ratios = performance_ratios(median_times(GRID, "epochs_to_target"))
    assert table["score"].tolist() == pytest.approx(profile_scores(ratios).tolist(), rel=1e-12)
    assert (table["score_low"] <= table["score"]).all() and (table["score"] <= table["score_high"]).all()
    assert (table["score_low"] < table["score_high"]).any()  # seeds differ: not every interval is a point
    assert (0 <= table["score_low"]).all() and (table["score_high"] <= 1).all()
    pd.testing.assert_frame_equal(table, score_intervals(GRID, "epochs_to_target", resamples=500))
    # identical seeds in every cell: every resample is the point estimate
    flat = per_run(
        {("t", "x"): [2, 2, 2], ("t", "y"): [3, 3, 3], ("u", "x"): [5, 5, 5], ("u", "y"): [4, 4, 4]}
    )
    table = score_intervals(flat, "epochs_to_target", resamples=200)
    assert table["score_low"].tolist() == table["score"].tolist() == table["score_high"].tolist()
    assert table["score"].tolist() == pytest.approx([(1 + (4 - 5 / 4) / 3) / 2, ((4 - 1.5) / 3 + 1) / 2])


def test_score_intervals_treat_an_unknown_time_like_the_point_estimate_does():
    # a run without epoch_time_s has a NaN wall time: the median of its cell is then unknown and counts as a
    # miss (median_times); the bootstrap must read it the same way, not let it erase the whole task
    grid = per_run({("t", "x"): [2, math.nan, math.nan], ("t", "y"): [3, 3, 3], ("u", "x"): [2, 2, 2],
                    ("u", "y"): [4, 4, 4]})  # fmt: skip
    assert median_times(grid, "epochs_to_target").loc["t"].tolist() == [INF, 3.0]
    table = score_intervals(grid, "epochs_to_target", resamples=300).set_index("scheduler")
    assert table.loc["y", "score"] == pytest.approx((1 + (4 - 2) / 3) / 2)  # t: ratio 1; u: 4 / 2
    assert table.loc["y", "score_low"] <= table.loc["y", "score"] <= table.loc["y", "score_high"]
    assert table.notna().all().all()


def test_step_points_rise_at_each_ratio_within_tau_max():
    ratios = pd.Series([2.0, 1.0, 5.0, INF])
    assert step_points(ratios, 4.0) == ([1.0, 2.0, 4.0], [0.25, 0.5, 0.5])


@pytest.mark.parametrize("bad", [1.0, 0.5, INF, "4"])
def test_tau_max_must_exceed_one(bad):
    ratios = performance_ratios(median_times(GRID, "epochs_to_target"))
    message = f"tau_max must be a finite number > 1, got {bad!r}"
    with pytest.raises(ProfileConfigError, match=message):
        profile_scores(ratios, tau_max=bad)
    with pytest.raises(ProfileConfigError, match=message):
        score_intervals(GRID, "epochs_to_target", tau_max=bad)
