"""Sensitivity to the initial learning rate, from the runs of a grid's tuning or sweep phase: pure functions.

Every method of a sweep ran over the same log grid of initial LRs (learning-rate-free optimizers: of their
multiplier), on validation only. Per task:
1) `sweep_points`: per method and initial LR, the mean final validation metric over the sweep seeds and how many
   of those runs diverged (the runner's `diverged` tag); a diverged run's value does not count.
2) `good_regions`: the best value over all methods and LRs; a point is *good* when it did not diverge and its
   value is within the task's equivalence margin of that best (absolute, or relative to |best|); a method's good
   region is its good points, its *width in decades* is the number of good points times the grid's spacing in
   decades (each point stands for its half-step either side), with its best LR and diverged count.
The x axis of a sensitivity plot is the LR relative to the centre of the method's sweep (their geometric mean), so
Adam's LRs and a learning-rate-free multiplier share one axis.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from adaptive_lr.reporting.collect import FINISHED, SWEEP, TUNE

POINT_COLUMNS = ["task", "scheduler", "metric", "mode", "lr", "factor", "value", "n_runs", "n_diverged"]
REGION_COLUMNS = ["task", "scheduler", "best_lr", "best_value", "good_points", "n_points", "width_decades",
                  "n_diverged", "margin"]  # fmt: skip


def sweep_points(runs: pd.DataFrame) -> pd.DataFrame:
    """POINT_COLUMNS, one row per task x method x initial LR of the FINISHED tuning/sweep runs (rule 1)."""
    sweep = runs[runs["phase"].isin([TUNE, SWEEP]) & (runs["status"] == FINISHED) & np.isfinite(runs["lr"])]
    rows = []
    for (task, scheduler, lr), group in sweep.groupby(["task", "scheduler", "lr"], sort=True):
        ok = group[~group["diverged_tag"] & np.isfinite(group["final_val"])]
        rows.append({"task": task, "scheduler": scheduler, "metric": group["metric"].iloc[0],
                     "mode": group["mode"].iloc[0], "lr": float(lr),
                     "value": float(ok["final_val"].mean()) if len(ok) else math.nan,
                     "n_runs": len(group), "n_diverged": len(group) - len(ok)})  # fmt: skip
    points = pd.DataFrame(rows, columns=[c for c in POINT_COLUMNS if c != "factor"])
    centre = points.groupby(["task", "scheduler"])["lr"].transform(lambda x: float(np.exp(np.log(x).mean())))
    points.insert(POINT_COLUMNS.index("factor"), "factor", points["lr"] / centre)
    return points[POINT_COLUMNS]


def _spacing(lrs: np.ndarray) -> float:
    steps = np.diff(np.log10(np.sort(lrs)))
    return float(np.median(steps)) if len(steps) else math.nan


def good_regions(points: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """REGION_COLUMNS per task x method (rule 2); the margin comes from the task's runs' tags."""
    rows = []
    for task, group in points.groupby("task", sort=True):
        mode = group["mode"].iloc[0]
        values = group["value"].to_numpy(dtype=float)
        if not np.isfinite(values).any():
            continue
        best = float(np.nanmax(values) if mode == "max" else np.nanmin(values))
        tags = runs[(runs["task"] == task) & np.isfinite(runs["equivalence_margin"])]
        margin = float(tags["equivalence_margin"].iloc[0]) if len(tags) else 0.0
        if len(tags) and bool(tags["margin_relative"].iloc[0]):
            margin *= abs(best)
        for scheduler, mine in group.groupby("scheduler", sort=True):
            v = mine["value"].to_numpy(dtype=float)
            good = np.isfinite(v) & ((v >= best - margin) if mode == "max" else (v <= best + margin))
            finite = np.isfinite(v)
            at = int(np.nanargmax(v) if mode == "max" else np.nanargmin(v)) if finite.any() else None
            rows.append({"task": task, "scheduler": scheduler,
                         "best_lr": float(mine["lr"].iloc[at]) if at is not None else math.nan,
                         "best_value": float(v[at]) if at is not None else math.nan,
                         "good_points": int(good.sum()), "n_points": len(mine),
                         "width_decades": int(good.sum()) * _spacing(mine["lr"].to_numpy(dtype=float)),
                         "n_diverged": int(mine["n_diverged"].sum()), "margin": margin})  # fmt: skip
    return pd.DataFrame(rows, columns=REGION_COLUMNS)
