"""The across-task aggregate (reporting/across.py): the probability of improvement as rliable defines it, its
stratified bootstrap interval, tracks, orientation of minimised metrics, and when the section appears."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from adaptive_lr.reporting.across import (
    across_table,
    poi_interval,
    probability_of_improvement,
    task_poi,
    track_of,
)


def rliable_poi(xs: list[np.ndarray], ys: list[np.ndarray]) -> float:
    """rliable.metrics.probability_of_improvement, as written there: per task Mann-Whitney U (alternative
    'greater') over n_x * n_y, 0.5 for identical arrays, averaged over tasks."""
    values = []
    for x, y in zip(xs, ys, strict=True):
        if np.array_equal(x, y):
            values.append(0.5)
        else:
            values.append(stats.mannwhitneyu(x, y, alternative="greater").statistic / (len(x) * len(y)))
    return float(np.mean(values))


def test_the_statistic_is_rliables_on_data_with_ties_and_unequal_run_counts():
    rng = np.random.default_rng(0)
    for _ in range(20):
        xs = [rng.integers(0, 5, size=rng.integers(2, 8)).astype(float) for _ in range(3)]
        ys = [rng.integers(0, 5, size=rng.integers(2, 8)).astype(float) for _ in range(3)]
        samples = [s for pair in zip(xs, ys, strict=True) for s in pair]
        assert float(probability_of_improvement(*samples)) == pytest.approx(rliable_poi(xs, ys), abs=1e-12)
    x = np.array([1.0, 2.0, 3.0])
    assert task_poi(x, x) == 0.5 and task_poi(x + 10, x) == 1.0 and task_poi(x, x + 10) == 0.0


def test_the_statistic_is_vectorised_over_the_bootstrap_batch_axis():
    rng = np.random.default_rng(1)
    batch = [rng.normal(size=(4, 5)), rng.normal(size=(4, 3)), rng.normal(size=(4, 6)), rng.normal(size=(4, 6))]
    together = probability_of_improvement(*batch, axis=-1)
    one_by_one = [float(probability_of_improvement(*[b[i] for b in batch])) for i in range(4)]
    assert np.allclose(together, one_by_one)


def test_the_interval_is_deterministic_covers_the_point_and_is_degenerate_only_when_the_data_are():
    rng = np.random.default_rng(2)
    pairs = [(rng.normal(0.3, 1, 10), rng.normal(0, 1, 10)), (rng.normal(0.3, 1, 5), rng.normal(0, 1, 5))]
    point, low, high = poi_interval(pairs, reps=500)
    assert low < point < high and (point, low, high) == poi_interval(pairs, reps=500)
    assert poi_interval([(np.array([2.0, 3.0]), np.array([0.0, 1.0]))], reps=200) == (1.0, 1.0, 1.0)


def per_run_rows(task: str, scheduler: str, values: list[float], mode: str = "max") -> list[dict]:
    return [{"task": task, "scheduler": scheduler, "seed": i, "mode": mode, "test": v} for i, v in enumerate(values)]


def test_tracks_orientation_ties_and_non_finite_results():
    assert [track_of(t) for t in ("mnist (study-mnist)", "mnist (study-mnist-untuned)", "mnist")] == [
        "tuned", "untuned", "all"]
    rows = (per_run_rows("a (s-a)", "ctl", [0.9, 0.91, 0.92]) + per_run_rows("a (s-a)", "cosine", [0.8, 0.81, 0.82])
            + per_run_rows("e (s-e)", "ctl", [0.1, 0.11]) + per_run_rows("e (s-e)", "cosine", [0.2, 0.21])
            + per_run_rows("e (s-e)", "wsd", [0.2, 0.21])
            + per_run_rows("a (s-a-untuned)", "ctl", [0.5, float("nan")])
            + per_run_rows("a (s-a-untuned)", "cosine", [0.6, 0.7]))
    for row in rows:
        if row["task"].startswith("e "):
            row["mode"] = "min"  # an MSE: lower is better, so ctl (0.10) beats cosine (0.20)
    comparisons = pd.DataFrame([{"task": "a (s-a)", "scheduler": "ctl", "baseline": "cosine"},
                                {"task": "e (s-e)", "scheduler": "ctl", "baseline": "cosine, wsd"},  # a tie
                                {"task": "a (s-a-untuned)", "scheduler": "ctl", "baseline": "cosine"}])
    table = across_table(pd.DataFrame(rows), comparisons, reps=200)
    tuned = table[table["track"] == "tuned"].iloc[0]
    assert (tuned["n_tasks"], tuned["poi"], tuned["baseline_by_task"]) == (2, 1.0, "a: cosine; e: cosine")
    assert tuned["runs_per_task"] == "2 vs 2, 3 vs 3"
    assert table[table["track"] == "untuned"].empty  # its only task has a non-finite result
