"""Reads logged runs from an MLflow tracking store (or a report's per-run bundle), computes comparison metrics,
writes reports.

Never retrains. `collect` loads runs, `bundle` writes and reads a report's per-run bundle, `metrics` the declared
per-run and per-scheduler metric rows and the verdicts, `stats` the intervals and tests (statsmodels, scipy),
`profiles` the AlgoPerf performance profiles, `plots` the PNGs and `report` writes the report folder.

Importing this package is cheap: mlflow, scipy, statsmodels and matplotlib are imported only when runs are
loaded, tests run or plots drawn.
"""

from adaptive_lr.reporting.bundle import BundleError, read_bundle, write_bundle
from adaptive_lr.reporting.collect import ACTIONS, NoRunsError, RunData, action_name, load_runs
from adaptive_lr.reporting.metrics import (
    METRIC_ROWS,
    SUMMARY_COLUMNS,
    MetricModeError,
    MetricRow,
    aggregate,
    best_baselines,
    compare_to_baselines,
    out_of_range,
    per_run_metrics,
)
from adaptive_lr.reporting.profiles import (
    TAU_MAX,
    ProfileConfigError,
    median_times,
    performance_ratios,
    profile,
    profile_scores,
    score_intervals,
)
from adaptive_lr.reporting.report import write_report, write_report_from_bundle
from adaptive_lr.reporting.stats import (
    ALPHA,
    CONFIDENCE,
    StatsConfigError,
    bootstrap_mean_ci,
    compare,
    holm,
    verdict,
    wilson_ci,
)

__all__ = [
    "ACTIONS", "ALPHA", "CONFIDENCE", "METRIC_ROWS", "SUMMARY_COLUMNS", "TAU_MAX", "BundleError", "MetricModeError",
    "MetricRow", "NoRunsError", "ProfileConfigError", "RunData", "StatsConfigError", "action_name", "aggregate",
    "best_baselines", "bootstrap_mean_ci", "compare", "compare_to_baselines", "holm", "load_runs", "median_times",
    "out_of_range", "per_run_metrics", "performance_ratios", "profile", "profile_scores", "read_bundle",
    "score_intervals", "verdict", "wilson_ci", "write_bundle", "write_report", "write_report_from_bundle",
]  # fmt: skip
