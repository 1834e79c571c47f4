"""Comparison metrics computed from the frames of `collect.RunData`: pure functions, no I/O.

Per run (FINISHED runs only), on the validation curve of the run's base metric (`val_<metric>`):
- final:  value at the last logged epoch.
- best:   max (mode "max") or min (mode "min") over epochs, ignoring non-finite values.
- epochs_to_threshold: first epoch whose value is >= threshold (max) or <= threshold (min); a run that never
  reaches it counts as `max_epochs` (DeepOBS convention) and `reached` is False.
- gap:    final train metric minus final val metric (for "max" metrics positive means overfitting, for "min"
  metrics negative does).
- stability: sample std (ddof=1) of the epoch-to-epoch changes of val_loss; lower is smoother; NaN with fewer
  than three epochs or a non-finite val_loss.
- test:   the final `test_<metric>`.
- diverged: any epoch-indexed metric of the run is non-finite (NaN or inf).

Per task x scheduler (`aggregate`): mean and sample std over seeds. Means do not skip NaN, so a seed whose
final value is NaN makes the mean NaN rather than silently dropping the seed.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from adaptive_lr.reporting.collect import RunData

MODES = ("max", "min")

SUMMARY_COLUMNS = [
    "task", "scheduler", "adaptive", "metric", "mode", "final_mean", "final_std", "best_mean",
    "epochs_to_threshold_mean", "reached", "generalization_gap", "stability", "test_mean",
    "test_baseline_mean", "n_seeds", "n_diverged",
]  # fmt: skip


PER_RUN_COLUMNS = [
    "task", "scheduler", "seed", "adaptive", "metric", "mode", "final", "best", "epochs_to_threshold",
    "reached", "gap", "stability", "test", "test_baseline", "diverged", "run_id",
]  # fmt: skip


class MetricModeError(ValueError):
    """A run's `metric_mode` tag is not "max" or "min"; the message names the run and the value."""


def final_value(curve: pd.Series) -> float:
    """Value at the last epoch of an epoch-indexed curve, NaN for an empty curve."""
    return float(curve.sort_index().iloc[-1]) if len(curve) else math.nan


def best_value(curve: pd.Series, mode: str) -> float:
    finite = curve[np.isfinite(curve)]
    if finite.empty:
        return math.nan
    return float(finite.max() if mode == "max" else finite.min())


def epochs_to_threshold(curve: pd.Series, threshold: float, mode: str, max_epochs: int) -> tuple[int, bool]:
    """(first epoch reaching the threshold, True) or (max_epochs, False). NaN values never reach it."""
    curve = curve.sort_index()
    hits = curve >= threshold if mode == "max" else curve <= threshold
    return (int(curve.index[hits.to_numpy()][0]), True) if hits.any() else (int(max_epochs), False)


def stability(val_loss: pd.Series) -> float:
    changes = np.diff(val_loss.sort_index().to_numpy(dtype=float))
    if len(changes) < 2 or not np.isfinite(changes).all():
        return math.nan
    return float(np.std(changes, ddof=1))


def per_run_metrics(data: RunData) -> pd.DataFrame:
    """One row per FINISHED run (PER_RUN_COLUMNS), ordered like `data.runs`."""
    by_run = {
        run_id: {name: g.set_index("epoch")["value"] for name, g in group.groupby("name")}
        for run_id, group in data.epochs.groupby("run_id")
    }
    empty = pd.Series(dtype=float)
    rows = []
    for run in data.finished.itertuples(index=False):
        if run.mode not in MODES:
            raise MetricModeError(
                f"run {run.run_id}: metric_mode must be one of {list(MODES)}, got {run.mode!r}"
            )
        curves = by_run.get(run.run_id, {})
        val = curves.get(f"val_{run.metric}", empty)
        train = curves.get(f"train_{run.metric}", empty)
        max_epochs = run.max_epochs if not pd.isna(run.max_epochs) else (val.index.max() if len(val) else 0)
        epochs, reached = epochs_to_threshold(val, run.threshold, run.mode, max_epochs)
        rows.append({
            "task": run.task, "scheduler": run.scheduler, "seed": run.seed, "adaptive": run.adaptive,
            "metric": run.metric, "mode": run.mode,
            "final": final_value(val), "best": best_value(val, run.mode),
            "epochs_to_threshold": epochs, "reached": reached,
            "gap": final_value(train) - final_value(val),
            "stability": stability(curves.get("val_loss", empty)),
            "test": run.test_metric,
            "test_baseline": run.test_baseline,
            "diverged": any(not np.isfinite(c.to_numpy()).all() for c in curves.values()),
            "run_id": run.run_id,
        })  # fmt: skip
    return pd.DataFrame(rows, columns=PER_RUN_COLUMNS)


def aggregate(per_run: pd.DataFrame) -> pd.DataFrame:
    """One row per task x scheduler (SUMMARY_COLUMNS), sorted by task then scheduler."""

    def mean(s: pd.Series) -> float:
        return float(s.mean(skipna=False))

    def std(s: pd.Series) -> float:
        return float(s.std(ddof=1, skipna=False)) if len(s) > 1 else math.nan

    grouped = per_run.groupby(["task", "scheduler"], sort=True)
    summary = grouped.agg(
        adaptive=("adaptive", "first"),
        metric=("metric", "first"),
        mode=("mode", "first"),
        final_mean=("final", mean),
        final_std=("final", std),
        best_mean=("best", mean),
        epochs_to_threshold_mean=("epochs_to_threshold", mean),
        reached=("reached", "sum"),
        generalization_gap=("gap", mean),
        stability=("stability", mean),
        test_mean=("test", mean),
        test_baseline_mean=("test_baseline", mean),
        n_seeds=("run_id", "size"),
        n_diverged=("diverged", "sum"),
    ).reset_index()
    return summary[SUMMARY_COLUMNS]


def is_better(a: float, b: float, mode: str) -> bool:
    """Strictly better in the metric's direction; NaN is never better."""
    return bool(a > b) if mode == "max" else bool(a < b)


def best_schedulers(summary: pd.DataFrame) -> dict[str, str | None]:
    """Per task, the scheduler with the best final_mean (mode-aware); ties go to the first name; None when no
    scheduler has a finite mean."""
    best: dict[str, str | None] = {}
    for task, rows in summary.groupby("task", sort=True):
        winner = None
        for row in rows.itertuples(index=False):
            if math.isfinite(row.final_mean) and (
                winner is None or is_better(row.final_mean, winner[1], row.mode)
            ):
                winner = (row.scheduler, row.final_mean)
        best[task] = winner[0] if winner else None
    return best


def compare_adaptive(summary: pd.DataFrame) -> pd.DataFrame:
    """Per task x adaptive scheduler: its final_mean against the best baseline (adaptive=False) by final_mean.

    Columns: task, scheduler, final_mean, n_seeds, baseline, baseline_mean, baseline_n_seeds, difference
    (adaptive minus baseline), beats (strictly better in the metric's direction). A difference of means only,
    no significance test. baseline is missing (NA) when the task has no baseline with a finite mean.
    """
    rows = []
    for task, group in summary.groupby("task", sort=True):
        baselines = group[~group["adaptive"]]
        best = best_schedulers(baselines).get(task)
        base = baselines[baselines["scheduler"] == best].iloc[0] if best else None
        for row in group[group["adaptive"]].itertuples(index=False):
            base_mean = base["final_mean"] if base is not None else math.nan
            rows.append({
                "task": task, "scheduler": row.scheduler,
                "final_mean": row.final_mean, "n_seeds": row.n_seeds,
                "baseline": best, "baseline_mean": base_mean,
                "baseline_n_seeds": int(base["n_seeds"]) if base is not None else 0,
                "difference": row.final_mean - base_mean,
                "beats": is_better(row.final_mean, base_mean, row.mode),
            })  # fmt: skip
    columns = ["task", "scheduler", "final_mean", "n_seeds", "baseline", "baseline_mean", "baseline_n_seeds",
               "difference", "beats"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)
