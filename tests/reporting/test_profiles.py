import math

import numpy as np
import pandas as pd
import pytest

from adaptive_lr.reporting import (
    ProfileConfigError,
    performance_ratios,
    profile,
    profile_scores,
    time_to_target,
)
from adaptive_lr.reporting.profiles import step_points

INF = math.inf


def summary(rows):
    return pd.DataFrame(rows, columns=["task", "scheduler", "wall_to_threshold_mean", "reached"])


# Three tasks, three schedulers (seconds to target, seeds that reached it):
#   a: fixed 10 (3), cosine 20 (2), heuristic 15 (1)       -> ratios 1, 2, 1.5
#   b: fixed 50 (1), cosine 10 (3), heuristic missing      -> ratios 5, 1, inf (did not run)
#   c: fixed 30 (0), cosine 40 (0), heuristic 35 (0)       -> nobody reached: inf for all
GRID = summary([
    ("a", "cosine", 20.0, 2), ("a", "fixed", 10.0, 3), ("a", "heuristic", 15.0, 1),
    ("b", "cosine", 10.0, 3), ("b", "fixed", 50.0, 1),
    ("c", "cosine", 40.0, 0), ("c", "fixed", 30.0, 0), ("c", "heuristic", 35.0, 0),
])  # fmt: skip


def test_time_to_target_is_inf_when_no_seed_reached_or_the_scheduler_did_not_run():
    times = time_to_target(GRID)
    assert list(times.index) == ["a", "b", "c"] and list(times.columns) == ["cosine", "fixed", "heuristic"]
    assert times.loc["a"].tolist() == [20.0, 10.0, 15.0]
    assert times.loc["b"].tolist() == [10.0, 50.0, INF]
    assert times.loc["c"].tolist() == [INF, INF, INF]
    nan_time = time_to_target(summary([("a", "x", math.nan, 2), ("a", "y", 3.0, 1)]))
    assert nan_time.loc["a"].tolist() == [INF, 3.0]  # no epoch_time_s logged: counts as not reached


def test_ratios_profile_and_scores_by_hand():
    ratios = performance_ratios(time_to_target(GRID))
    assert ratios.loc["a"].tolist() == [2.0, 1.0, 1.5]
    assert ratios.loc["b"].tolist() == [1.0, 5.0, INF]
    assert ratios.loc["c"].tolist() == [INF, INF, INF]

    rho = profile(ratios, [1.0, 1.5, 2.0, 4.0, 5.0])
    assert rho["cosine"].tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3])
    assert rho["fixed"].tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 1 / 3, 2 / 3])
    assert rho["heuristic"].tolist() == pytest.approx([0, 1 / 3, 1 / 3, 1 / 3, 1 / 3])

    # score = mean over tasks of max(0, (tau_max - r) / (tau_max - 1))
    scores = profile_scores(ratios, tau_max=4.0)
    assert scores["cosine"] == pytest.approx((2 / 3 + 1 + 0) / 3)  # a: (4-2)/3, b: 1, c: 0
    assert scores["fixed"] == pytest.approx((1 + 0 + 0) / 3)  # b: ratio 5 > tau_max counts 0
    assert scores["heuristic"] == pytest.approx((2.5 / 3) / 3)
    assert profile_scores(ratios, tau_max=6.0)["fixed"] == pytest.approx((1 + 1 / 5) / 3)  # b: (6-5)/5


def test_score_is_the_normalised_area_under_the_step_profile():
    ratios = performance_ratios(time_to_target(GRID))
    taus = np.linspace(1.0, 4.0, 300_001)
    rho = profile(ratios, taus)
    area = ((rho.iloc[:-1].to_numpy() + rho.iloc[1:].to_numpy()) / 2 * np.diff(taus)[:, None]).sum(axis=0) / 3
    assert area == pytest.approx(profile_scores(ratios, 4.0).to_numpy(), abs=1e-4)


def test_best_on_every_task_scores_one_and_a_single_task_is_still_defined():
    one = performance_ratios(time_to_target(summary([("only", "x", 2.0, 1), ("only", "y", 3.0, 3)])))
    assert one.loc["only"].tolist() == [1.0, 1.5]
    assert profile_scores(one).tolist() == pytest.approx([1.0, (4 - 1.5) / 3])


def test_step_points_rise_at_each_ratio_within_tau_max():
    ratios = pd.Series([2.0, 1.0, 5.0, INF])
    assert step_points(ratios, 4.0) == ([1.0, 2.0, 4.0], [0.25, 0.5, 0.5])


@pytest.mark.parametrize("bad", [1.0, 0.5, INF, "4"])
def test_tau_max_must_exceed_one(bad):
    ratios = performance_ratios(time_to_target(GRID))
    with pytest.raises(ProfileConfigError, match=f"tau_max must be a finite number > 1, got {bad!r}"):
        profile_scores(ratios, tau_max=bad)
