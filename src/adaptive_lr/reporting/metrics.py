"""Comparison metrics computed from the frames of `collect.RunData`: pure functions, no I/O.

Per run (result runs only: FINISHED and not phase=tune), on the validation curve of the run's base metric
(`val_<metric>`):
- final:  value at the last logged epoch.
- best:   max (mode "max") or min (mode "min") over epochs, ignoring non-finite values.
- epochs_to_threshold: first epoch whose value is >= threshold (max) or <= threshold (min); a run that never
  reaches it counts as `max_epochs` (DeepOBS convention) and `reached` is False.
- wall_to_threshold: `epoch_time_s` (wall-clock seconds since training start, controller overhead included) at
  that first epoch. A run that never reaches it counts with its *budget time*: its last `epoch_time_s` scaled
  to the whole budget, last time * max_epochs / last epoch. For a run that used its whole budget this is its
  total training time; a run stopped early (diverged) is not rewarded for stopping: it counts with the time
  the budget would have taken at its own pace, like `epochs_to_threshold` counts max_epochs. NaN without
  `epoch_time_s`.
- time_s: the run's total training wall-clock (its last `epoch_time_s`).
- gap:    final train metric minus final val metric (for "max" metrics positive means overfitting, for "min"
  metrics negative does).
- stability: sample std (ddof=1) of the epoch-to-epoch changes of val_loss; lower is smoother; NaN with fewer
  than three epochs or a non-finite val_loss.
- test:   the final `test_<metric>`.
- diverged: any epoch-indexed metric of the run is non-finite (NaN or inf), any `nonfinite_steps` is > 0, or
  the run's `diverged` tag is true.

Per task x scheduler (`aggregate`): mean, sample std and 95% Student-t interval over seeds (`stats.mean_ci`),
then each adaptive scheduler against the best baseline (`compare_adaptive`: Welch's t-test, verdict) and its
time-to-target ratio (`profiles`). Means do not skip NaN, so a seed whose final value is NaN makes the mean
NaN rather than silently dropping the seed.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from adaptive_lr.reporting.collect import RunData
from adaptive_lr.reporting.profiles import performance_ratios, time_to_target
from adaptive_lr.reporting.stats import ALPHA, BEAT, mean_ci, verdict, welch_test

MODES = ("max", "min")
BEST_BASELINE, BASELINE = "best baseline", "baseline"  # verdict column of non-adaptive rows

SUMMARY_COLUMNS = [
    "task", "scheduler", "adaptive", "metric", "mode",
    "final_mean", "final_std", "final_ci_low", "final_ci_high", "best_mean",
    "test_mean", "test_ci_low", "test_ci_high", "test_baseline_mean",
    "epochs_to_threshold_mean", "epochs_to_threshold_ci_low", "epochs_to_threshold_ci_high", "reached",
    "wall_to_threshold_mean", "wall_to_threshold_ci_low", "wall_to_threshold_ci_high",
    "generalization_gap", "stability",
    "baseline", "p_value", "verdict", "verdict_note", "perf_ratio",
    "n_seeds", "n_diverged",  # last, as before these columns grew: counts of result runs
]  # fmt: skip

PER_RUN_COLUMNS = [
    "task", "scheduler", "seed", "adaptive", "metric", "mode", "final", "best", "epochs_to_threshold",
    "wall_to_threshold", "reached", "time_s", "gap", "stability", "test", "test_baseline", "diverged",
    "run_id",
]  # fmt: skip

COMPARISON_COLUMNS = ("baseline", "p_value", "verdict", "verdict_note", "perf_ratio")  # added by `aggregate`

COMPARE_COLUMNS = [
    "task", "scheduler", "mode", "final_mean", "n_seeds", "baseline", "baseline_mean", "baseline_n_seeds",
    "difference", "better", "p_value", "note", "verdict", "beats",
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


def wall_clock_to_threshold(
    curve: pd.Series, times: pd.Series, threshold: float, mode: str, max_epochs: int
) -> tuple[float, bool]:
    """(epoch_time_s at the first epoch reaching the threshold, True) or (budget time, False); see the module.

    NaN seconds when `times` is empty or lacks the epoch that reached the threshold."""
    epoch, reached = epochs_to_threshold(curve, threshold, mode, max_epochs)
    times = times.sort_index()
    if times.empty:
        return math.nan, reached
    if reached:
        return float(times.get(epoch, math.nan)), True
    last_epoch = int(times.index[-1])
    if last_epoch <= 0:
        return math.nan, False
    return float(times.iloc[-1]) * max(int(max_epochs), last_epoch) / last_epoch, False


def stability(val_loss: pd.Series) -> float:
    changes = np.diff(val_loss.sort_index().to_numpy(dtype=float))
    if len(changes) < 2 or not np.isfinite(changes).all():
        return math.nan
    return float(np.std(changes, ddof=1))


def per_run_metrics(data: RunData) -> pd.DataFrame:
    """One row per result run (PER_RUN_COLUMNS), ordered like `data.runs`."""
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
        times = curves.get("epoch_time_s", empty)
        max_epochs = run.max_epochs if not pd.isna(run.max_epochs) else (val.index.max() if len(val) else 0)
        epochs, reached = epochs_to_threshold(val, run.threshold, run.mode, max_epochs)
        seconds, _ = wall_clock_to_threshold(val, times, run.threshold, run.mode, max_epochs)
        nonfinite_steps = curves.get("nonfinite_steps", empty)
        rows.append({
            "task": run.task, "scheduler": run.scheduler, "seed": run.seed, "adaptive": run.adaptive,
            "metric": run.metric, "mode": run.mode,
            "final": final_value(val), "best": best_value(val, run.mode),
            "epochs_to_threshold": epochs, "wall_to_threshold": seconds, "reached": reached,
            "time_s": final_value(times),
            "gap": final_value(train) - final_value(val),
            "stability": stability(curves.get("val_loss", empty)),
            "test": run.test_metric,
            "test_baseline": run.test_baseline,
            "diverged": bool(
                any(not np.isfinite(c.to_numpy()).all() for c in curves.values())
                or (nonfinite_steps > 0).any()
                or run.diverged_tag
            ),
            "run_id": run.run_id,
        })  # fmt: skip
    return pd.DataFrame(rows, columns=PER_RUN_COLUMNS)


def _mean(values: pd.Series) -> float:
    return float(values.mean(skipna=False)) if len(values) else math.nan


def _std(values: pd.Series) -> float:
    return float(values.std(ddof=1, skipna=False)) if len(values) > 1 else math.nan


def aggregate(per_run: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """One row per task x scheduler (SUMMARY_COLUMNS), sorted by task then scheduler.

    Adaptive rows carry the best baseline's name, the Welch p-value of their per-seed final values against it
    and the verdict (`stats.verdict` at `alpha`, reason in verdict_note when untested); non-adaptive rows
    carry verdict "best baseline" or "baseline" and a NaN p-value."""
    rows = []
    for (task, scheduler), group in per_run.groupby(["task", "scheduler"], sort=True):
        final, test, epochs, seconds = (mean_ci(group[c]) for c in ("final", "test", "epochs_to_threshold",
                                                                    "wall_to_threshold"))  # fmt: skip
        rows.append({
            "task": task, "scheduler": scheduler, "adaptive": bool(group["adaptive"].iloc[0]),
            "metric": group["metric"].iloc[0], "mode": group["mode"].iloc[0], "n_seeds": len(group),
            "final_mean": _mean(group["final"]), "final_std": _std(group["final"]),
            "final_ci_low": final[1], "final_ci_high": final[2], "best_mean": _mean(group["best"]),
            "test_mean": _mean(group["test"]), "test_ci_low": test[1], "test_ci_high": test[2],
            "test_baseline_mean": _mean(group["test_baseline"]),
            "epochs_to_threshold_mean": _mean(group["epochs_to_threshold"]),
            "epochs_to_threshold_ci_low": epochs[1], "epochs_to_threshold_ci_high": epochs[2],
            "reached": int(group["reached"].sum()),
            "wall_to_threshold_mean": _mean(group["wall_to_threshold"]),
            "wall_to_threshold_ci_low": seconds[1], "wall_to_threshold_ci_high": seconds[2],
            "generalization_gap": _mean(group["gap"]), "stability": _mean(group["stability"]),
            "n_diverged": int(group["diverged"].sum()),
        })  # fmt: skip
    summary = pd.DataFrame(rows, columns=[c for c in SUMMARY_COLUMNS if c not in COMPARISON_COLUMNS])
    summary = summary.astype({"adaptive": bool})  # also when empty: a boolean mask, never a column selector

    # 1) each adaptive scheduler against its task's best baseline: p-value and verdict
    comparisons = compare_adaptive(summary, per_run, alpha).set_index(["task", "scheduler"])
    best = best_schedulers(summary[~summary["adaptive"]])
    baseline, p_value, result, note = [], [], [], []
    for row in summary.itertuples(index=False):
        if row.adaptive:
            c = comparisons.loc[(row.task, row.scheduler)]
            baseline.append(c["baseline"])
            p_value.append(c["p_value"])
            result.append(c["verdict"])
            note.append(c["note"])
        else:
            baseline.append(best.get(row.task))
            p_value.append(math.nan)
            result.append(BEST_BASELINE if best.get(row.task) == row.scheduler else BASELINE)
            note.append("")
    summary = summary.assign(baseline=baseline, p_value=p_value, verdict=result, verdict_note=note)

    # 2) time-to-target ratio to the task's fastest scheduler (the performance profile's input)
    ratios = performance_ratios(time_to_target(summary))
    summary["perf_ratio"] = [ratios.loc[r.task, r.scheduler] for r in summary.itertuples(index=False)]
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


def compare_adaptive(
    summary: pd.DataFrame, per_run: pd.DataFrame | None = None, alpha: float = ALPHA
) -> pd.DataFrame:
    """Per task x adaptive scheduler: its final_mean against the best baseline (adaptive=False) by final_mean.

    Columns (COMPARE_COLUMNS): task, scheduler, mode, final_mean, n_seeds, baseline (NA when the task has no
    baseline with a finite mean), baseline_mean, baseline_n_seeds, difference (adaptive minus baseline),
    better (strictly better mean in the metric's direction), p_value (Welch's t-test on the per-seed final
    values of `per_run`; NaN without `per_run`), note (why p_value is NaN), verdict (`stats.verdict`) and
    beats (verdict == "beat": better mean AND p < alpha).
    """
    rows = []
    for task, group in summary.groupby("task", sort=True):
        baselines = group[~group["adaptive"]]
        best = best_schedulers(baselines).get(task)
        base = baselines[baselines["scheduler"] == best].iloc[0] if best else None
        for row in group[group["adaptive"]].itertuples(index=False):
            base_mean = base["final_mean"] if base is not None else math.nan
            if base is None:
                p, note = math.nan, "no baseline with a finite mean"
            elif per_run is None:
                p, note = math.nan, "no per-seed values"
            else:
                in_task = per_run[per_run["task"] == task]
                p, note = welch_test(
                    in_task.loc[in_task["scheduler"] == row.scheduler, "final"],
                    in_task.loc[in_task["scheduler"] == best, "final"],
                )
            outcome = verdict(row.final_mean, base_mean, p, row.mode, alpha)
            rows.append({
                "task": task, "scheduler": row.scheduler, "mode": row.mode,
                "final_mean": row.final_mean, "n_seeds": row.n_seeds,
                "baseline": best, "baseline_mean": base_mean,
                "baseline_n_seeds": int(base["n_seeds"]) if base is not None else 0,
                "difference": row.final_mean - base_mean,
                "better": is_better(row.final_mean, base_mean, row.mode),
                "p_value": p, "note": note, "verdict": outcome, "beats": outcome == BEAT,
            })  # fmt: skip
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)
