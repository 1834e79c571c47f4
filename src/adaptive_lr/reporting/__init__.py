"""Reads logged runs from an MLflow tracking store, computes comparison metrics, writes reports.

Never retrains.

Importing this package is cheap: mlflow and matplotlib are imported only when runs are loaded or plots drawn.
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
)
from adaptive_lr.reporting.report import write_report

__all__ = [
    "ACTIONS",
    "SUMMARY_COLUMNS",
    "MetricModeError",
    "NoRunsError",
    "RunData",
    "action_name",
    "aggregate",
    "best_schedulers",
    "best_value",
    "compare_adaptive",
    "epochs_to_threshold",
    "final_value",
    "load_runs",
    "per_run_metrics",
    "stability",
    "write_report",
]
