"""Reads logged runs from an MLflow tracking store, computes comparison metrics, writes reports.

Never retrains. `collect` loads runs, `metrics` computes per-run and per-scheduler numbers, `stats` the
confidence intervals, Welch tests and verdicts, `profiles` the performance profiles across tasks, `plots` the
PNGs and `report` writes the report folder.

Importing this package is cheap: mlflow, scipy and matplotlib are imported only when runs are loaded, tests
run or plots drawn.
"""

from adaptive_lr.reporting.collect import ACTIONS, NoRunsError, RunData, action_name, load_runs
from adaptive_lr.reporting.metrics import (
    SUMMARY_COLUMNS,
    MetricModeError,
    aggregate,
    best_schedulers,
    best_value,
    compare_adaptive,
    epochs_to_threshold,
    final_value,
    per_run_metrics,
    stability,
    wall_clock_to_threshold,
)
from adaptive_lr.reporting.profiles import (
    TAU_MAX,
    ProfileConfigError,
    performance_ratios,
    profile,
    profile_scores,
    time_to_target,
)
from adaptive_lr.reporting.report import write_report
from adaptive_lr.reporting.stats import ALPHA, CONFIDENCE, StatsConfigError, mean_ci, verdict, welch_test

__all__ = [
    "ACTIONS",
    "ALPHA",
    "CONFIDENCE",
    "SUMMARY_COLUMNS",
    "TAU_MAX",
    "MetricModeError",
    "NoRunsError",
    "ProfileConfigError",
    "RunData",
    "StatsConfigError",
    "action_name",
    "aggregate",
    "best_schedulers",
    "best_value",
    "compare_adaptive",
    "epochs_to_threshold",
    "final_value",
    "load_runs",
    "mean_ci",
    "per_run_metrics",
    "performance_ratios",
    "profile",
    "profile_scores",
    "stability",
    "time_to_target",
    "verdict",
    "wall_clock_to_threshold",
    "welch_test",
    "write_report",
]
