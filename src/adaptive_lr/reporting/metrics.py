"""Comparison metrics computed from the frames of `collect.RunData`: pure functions, no I/O.

A report metric is one declared row (`MetricRow`: name, per-run function, aggregation, header, format,
direction), so adding a metric touches `METRIC_ROWS` alone: `per_run_metrics` evaluates every row's per-run
function on each result run, `aggregate` applies every row's aggregation per task x scheduler, and the report's
table prints every row. Aggregations (each keeps inside the quantity's range):
- "mean":    mean over seeds with a percentile bootstrap interval (`stats.bootstrap_mean_ci`);
- "reached": for times to the task's threshold, "reached k/n" with a Wilson interval of the share (solved or not,
             as on the XOR sets), then the mean and bootstrap interval over the seeds that reached it (a miss is
             never counted as the budget);
- "spread":  the sample standard deviation over seeds (ddof=1);
- "rate":    a count of runs with a Wilson interval of the rate (`stats.wilson_ci`).

Per run (result runs only: FINISHED, not phase=tune or sweep, not superseded), on the run's base metric:
- final val / best val: the validation metric at the last epoch / best over epochs (choices are made on these);
- test: the final `test_<metric>`, the metric every verdict is drawn on;
- epochs / wall-clock to threshold: first epoch (its `epoch_time_s`) whose validation metric reaches the task's
  declared threshold (>= for "max", <= for "min"); NaN when never reached;
- generalization gap: final `train_eval_<metric>` (a fixed train subset of the validation set's size, evaluated
  in eval mode like validation) minus final val metric; NaN for runs that did not log it;
- seed spread of the test metric; diverged: a non-finite epoch metric or training step, or the run's tag.

Verdicts (`compare_to_baselines`): per task the best baseline is the non-adaptive scheduler with the best mean
final *validation* metric (exact ties are all best baselines, named as a tie); every adaptive scheduler is
compared with it on the *test* metric (`stats.compare`, paired by seed when both ran the same seeds on the same
data checksum), within the task's declared equivalence margin (absolute, or relative to the best baseline's mean
final validation metric), and Holm's correction runs across every comparison of the report.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from adaptive_lr.errors import UserError
from adaptive_lr.reporting.collect import RunData
from adaptive_lr.reporting.stats import (
    ALPHA,
    CONFIDENCE,
    UNTESTED,
    bootstrap_mean_ci,
    compare,
    holm,
    verdict,
    wilson_ci,
)

MODES = ("max", "min")
BEST_BASELINE, BASELINE = "best baseline", "baseline"  # verdict column of non-adaptive rows
METRIC_RANGES = {"acc": (0.0, 1.0), "mse": (0.0, math.inf), "mae": (0.0, math.inf), "loss": (0.0, math.inf)}
UNBOUNDED = (-math.inf, math.inf)


class MetricModeError(UserError, ValueError):
    """A run's `metric_mode` tag is not "max" or "min"; the message names the run and the value."""


# -- per-run values ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunView:
    """What a row's per-run function sees: the run's row of `RunData.runs` and its epoch curves by name."""

    run: object  # a namedtuple of RunData.runs
    curves: dict[str, pd.Series]

    def curve(self, name: str) -> pd.Series:
        return self.curves.get(name, pd.Series(dtype=float)).sort_index()

    @property
    def val(self) -> pd.Series:
        return self.curve(f"val_{self.run.metric}")


def final_value(curve: pd.Series) -> float:
    """Value at the last epoch of an epoch-indexed curve, NaN for an empty curve."""
    return float(curve.sort_index().iloc[-1]) if len(curve) else math.nan


def best_value(curve: pd.Series, mode: str) -> float:
    finite = curve[np.isfinite(curve)]
    if finite.empty:
        return math.nan
    return float(finite.max() if mode == "max" else finite.min())


def first_epoch_reaching(curve: pd.Series, target: float, mode: str) -> float:
    """First epoch whose value is >= target ("max") or <= target ("min"); inf when none (NaN never reaches)."""
    curve = curve.sort_index()
    hits = curve >= target if mode == "max" else curve <= target
    return float(curve.index[hits.to_numpy()][0]) if hits.any() else math.inf


def time_to_target(view: RunView, target: float, clock: str) -> float:
    """Epochs (clock "epochs") or `epoch_time_s` seconds (clock "wall") until the val metric first reaches
    `target`; inf when it never does, NaN when the seconds were not logged."""
    epoch = first_epoch_reaching(view.val, target, view.run.mode)
    if clock == "epochs" or not math.isfinite(epoch):
        return epoch
    return float(view.curve("epoch_time_s").get(epoch, math.nan))


def _finite_or_nan(x: float) -> float:
    return x if math.isfinite(x) else math.nan


def _diverged(view: RunView) -> float:
    nonfinite = any(not np.isfinite(c.to_numpy(dtype=float)).all() for c in view.curves.values())
    steps = view.curve("nonfinite_steps")
    return float(nonfinite or bool((steps > 0).any()) or bool(view.run.diverged_tag))


# -- declared rows -------------------------------------------------------------------------------------------
def _metric_range(metric: str) -> tuple[float, float]:
    return METRIC_RANGES.get(metric, UNBOUNDED)


def _difference_range(metric: str) -> tuple[float, float]:
    low, high = _metric_range(metric)
    return low - high, high - low


@dataclass(frozen=True)
class MetricRow:
    """One report metric: `name` is its column stem in summary.csv, `per_run` its value for one run,
    `aggregation` one of "mean", "reached", "spread", "rate" (module docstring), `header` and `fmt` how the
    report prints it, `direction` "metric" (the task's mode), "max", "min" or None, and `bounds` the range of
    the quantity for a metric name (every printed interval stays inside it)."""

    name: str
    per_run: Callable[[RunView], float]
    aggregation: str
    header: str
    fmt: str = ".4g"
    direction: str | None = "metric"
    bounds: Callable[[str], tuple[float, float]] = _metric_range
    source: str = ""  # for "spread": the row whose per-run values it spreads


def _epochs_to_threshold(v: RunView) -> float:
    return _finite_or_nan(first_epoch_reaching(v.val, v.run.threshold, v.run.mode))


def _wall_to_threshold(v: RunView) -> float:
    epoch = first_epoch_reaching(v.val, v.run.threshold, v.run.mode)
    return float(v.curve("epoch_time_s").get(epoch, math.nan)) if math.isfinite(epoch) else math.nan


def _gap(v: RunView) -> float:
    return final_value(v.curve(f"train_eval_{v.run.metric}")) - final_value(v.val)


METRIC_ROWS: tuple[MetricRow, ...] = (
    MetricRow("test", lambda v: float(v.run.test_metric), "mean", "test (verdict metric) [95% CI]"),
    MetricRow("final", lambda v: final_value(v.val), "mean", "final val [95% CI]"),
    MetricRow("best", lambda v: best_value(v.val, v.run.mode), "mean", "best val [95% CI]"),
    MetricRow("test_spread", lambda v: float(v.run.test_metric), "spread", "seed spread of test (std)",
              direction=None, source="test"),
    MetricRow("epochs_to_threshold", _epochs_to_threshold, "reached",
              "epochs to threshold: reached, mean [95% CI]", fmt=".3g", direction="min",
              bounds=lambda metric: (1.0, math.inf)),
    MetricRow("wall_to_threshold", _wall_to_threshold, "reached", "wall-clock to threshold, s: mean [95% CI]",
              fmt=".3g", direction="min", bounds=lambda metric: (0.0, math.inf)),
    MetricRow("gap", _gap, "mean", "gen. gap (train subset - val) [95% CI]", fmt="+.3g", direction=None,
              bounds=_difference_range),
    MetricRow("diverged", _diverged, "rate", "diverged [95% Wilson]", direction="min",
              bounds=lambda metric: (0.0, 1.0)),
)  # fmt: skip


def summary_columns(rows: tuple[MetricRow, ...] = METRIC_ROWS) -> list[str]:
    """The columns one aggregation writes for each row, in the rows' order."""
    suffixes = {"mean": ("_mean", "_ci_low", "_ci_high"),
                "reached": ("_reached", "_reached_low", "_reached_high", "_mean", "_ci_low", "_ci_high"),
                "spread": ("",), "rate": ("_count", "_rate_low", "_rate_high")}  # fmt: skip
    return [row.name + s for row in rows for s in suffixes[row.aggregation]]


IDENTITY_COLUMNS = ["task", "scheduler", "adaptive", "metric", "mode", "n_seeds"]
VERDICT_COLUMNS = [
    "baseline", "difference", "difference_ci_low", "difference_ci_high", "paired", "margin", "p_difference",
    "p_equivalence", "p_difference_holm", "p_equivalence_holm", "verdict", "verdict_note",
]  # fmt: skip
PROFILE_COLUMNS = ["epochs_to_target", "wall_to_target", "perf_ratio_epochs", "perf_ratio_wall"]
SWEEP_COLUMNS = ["sweep_best_lr", "good_region_decades", "sweep_diverged"]  # from a tuning/sweep phase, if any
SUMMARY_COLUMNS = IDENTITY_COLUMNS + summary_columns() + VERDICT_COLUMNS + PROFILE_COLUMNS + SWEEP_COLUMNS
PER_RUN_ID_COLUMNS = ["task", "scheduler", "seed", "adaptive", "metric", "mode", "data_checksum", "run_id"]
COMPARISON_COLUMNS = [
    "task", "scheduler", "baseline", "tie", "metric", "mode", "n_seeds", "baseline_n_seeds", "mean",
    "baseline_mean", *VERDICT_COLUMNS[1:],
]  # fmt: skip


def _views(data: RunData) -> list[RunView]:
    by_run = {
        run_id: {name: g.set_index("epoch")["value"] for name, g in group.groupby("name")}
        for run_id, group in data.epochs.groupby("run_id")
    }
    views = []
    for run in data.finished.itertuples(index=False):
        if run.mode not in MODES:
            raise MetricModeError(f"run {run.run_id}: metric_mode must be one of {list(MODES)}, got {run.mode!r}")
        views.append(RunView(run, by_run.get(run.run_id, {})))
    return views


def per_run_metrics(data: RunData, rows: tuple[MetricRow, ...] = METRIC_ROWS) -> pd.DataFrame:
    """One row per result run: identity, every declared row's value, and the run's epochs and wall-clock to its
    task's profile target (`profile_targets`; inf = missed). Ordered like `data.runs`."""
    views = _views(data)
    records = [{
        "task": v.run.task, "scheduler": v.run.scheduler, "seed": v.run.seed, "adaptive": v.run.adaptive,
        "metric": v.run.metric, "mode": v.run.mode, "data_checksum": v.run.data_checksum, "run_id": v.run.run_id,
        **{row.name: row.per_run(v) for row in rows if not row.source},
    } for v in views]  # fmt: skip
    per_run = pd.DataFrame(records, columns=PER_RUN_ID_COLUMNS + [r.name for r in rows if not r.source])
    targets = profile_targets(per_run)
    for clock in ("epochs", "wall"):
        per_run[f"{clock}_to_target"] = [
            time_to_target(v, targets.get(v.run.task, math.nan), clock) for v in views
        ]
    return per_run


def profile_targets(per_run: pd.DataFrame) -> dict[str, float]:
    """Per task, the profile target: the best baseline's median final val metric (ties: the best median)."""
    targets = {}
    for task, group in per_run.groupby("task", sort=True):
        mode = group["mode"].iloc[0]
        names = best_baselines(group).get(task, [])
        medians = [float(group.loc[group["scheduler"] == n, "final"].median()) for n in names]
        finite = [m for m in medians if math.isfinite(m)]
        if finite:
            targets[task] = max(finite) if mode == "max" else min(finite)
    return targets


def best_baselines(per_run: pd.DataFrame) -> dict[str, list[str]]:
    """Per task, the non-adaptive scheduler(s) with the best mean final val metric (mode-aware): one name, or
    every name of an exact tie (sorted); an empty list when no baseline has a finite mean."""
    best: dict[str, list[str]] = {}
    for task, group in per_run.groupby("task", sort=True):
        base = group[~group["adaptive"].astype(bool)]
        means = base.groupby("scheduler", sort=True)["final"].agg(lambda x: float(x.mean(skipna=False)))
        means = means[np.isfinite(means.to_numpy(dtype=float))]
        if means.empty:
            best[task] = []
            continue
        top = means.max() if group["mode"].iloc[0] == "max" else means.min()
        best[task] = sorted(means.index[means == top])
    return best


# -- aggregation ---------------------------------------------------------------------------------------------
def _aggregate_row(row: MetricRow, values: pd.Series, group: pd.DataFrame, confidence: float) -> dict:
    x = values.to_numpy(dtype=float)
    if row.aggregation == "mean":
        mean, low, high = bootstrap_mean_ci(x, confidence)
        return {f"{row.name}_mean": mean, f"{row.name}_ci_low": low, f"{row.name}_ci_high": high}
    if row.aggregation == "reached":
        hit = x[np.isfinite(x)]
        mean, low, high = bootstrap_mean_ci(hit, confidence) if hit.size else (math.nan,) * 3
        share_low, share_high = wilson_ci(int(hit.size), x.size, confidence)  # solved or not: a success count
        return {f"{row.name}_reached": int(hit.size), f"{row.name}_reached_low": share_low,
                f"{row.name}_reached_high": share_high, f"{row.name}_mean": mean, f"{row.name}_ci_low": low,
                f"{row.name}_ci_high": high}  # fmt: skip
    if row.aggregation == "spread":
        return {row.name: float(np.std(x, ddof=1)) if x.size > 1 else math.nan}
    if row.aggregation == "rate":
        count = int(np.nansum(x))
        low, high = wilson_ci(count, x.size, confidence)
        return {f"{row.name}_count": count, f"{row.name}_rate_low": low, f"{row.name}_rate_high": high}
    raise ValueError(f"metric row {row.name!r}: unknown aggregation {row.aggregation!r}")


def describe(per_run: pd.DataFrame, rows: tuple[MetricRow, ...] = METRIC_ROWS,
             confidence: float = CONFIDENCE) -> pd.DataFrame:
    """IDENTITY_COLUMNS plus every row's aggregation, one row per task x scheduler, sorted."""
    records = []
    for (task, scheduler), group in per_run.groupby(["task", "scheduler"], sort=True):
        record = {"task": task, "scheduler": scheduler, "adaptive": bool(group["adaptive"].iloc[0]),
                  "metric": group["metric"].iloc[0], "mode": group["mode"].iloc[0], "n_seeds": len(group)}
        for row in rows:
            record.update(_aggregate_row(row, group[row.source or row.name], group, confidence))
        records.append(record)
    frame = pd.DataFrame(records, columns=IDENTITY_COLUMNS + summary_columns(rows))
    return frame.astype({"adaptive": bool})


def _margin(runs: pd.DataFrame, task: str, baseline_final: float) -> tuple[float, str]:
    """The task's declared equivalence margin in metric units, and how it was set (for the report)."""
    tagged = runs.loc[(runs["task"] == task) & np.isfinite(runs["equivalence_margin"].astype(float))]
    if tagged.empty:
        return math.nan, "no margin declared"
    margin = float(tagged["equivalence_margin"].iloc[0])
    if bool(tagged["margin_relative"].iloc[0]):
        scaled = margin * abs(baseline_final)
        return scaled, f"margin {margin:g} x |best baseline's mean final val| = {scaled:.4g}"
    return margin, f"margin {margin:g} (absolute)"


def _paired(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Both sides ran the same seeds on the same data (checksum per seed): the seed fixes data order and init."""
    if len(a) != len(b) or set(a["seed"]) != set(b["seed"]) or a["seed"].duplicated().any():
        return False
    left, right = a.set_index("seed")["data_checksum"], b.set_index("seed")["data_checksum"]
    right = right.loc[left.index]
    return bool(((left == right) & (left != "")).all())


def compare_to_baselines(per_run: pd.DataFrame, runs: pd.DataFrame, alpha: float = ALPHA,
                         confidence: float = CONFIDENCE) -> pd.DataFrame:
    """COMPARISON_COLUMNS: every adaptive scheduler against each best baseline of its task, on the test metric,
    with Holm's correction across all rows (module docstring)."""
    records = []
    best = best_baselines(per_run)
    for task, group in per_run.groupby("task", sort=True):
        mode, metric = group["mode"].iloc[0], group["metric"].iloc[0]
        names = best.get(task, [])
        for scheduler, mine in group[group["adaptive"].astype(bool)].groupby("scheduler", sort=True):
            if not names:
                records.append({"task": task, "scheduler": scheduler, "baseline": "", "tie": False, "metric": metric,
                                "mode": mode, "n_seeds": len(mine), "paired": False, "verdict": UNTESTED,
                                "verdict_note": "no baseline with a finite mean final val metric"})  # fmt: skip
            for name in names:
                base = group[group["scheduler"] == name]
                margin, how = _margin(runs, task, float(base["final"].mean()))
                paired = _paired(mine, base)
                if paired:
                    base = base.set_index("seed").loc[mine["seed"]].reset_index()
                c = compare(mine["test"], base["test"], margin, paired, confidence)
                low, high = _clip(c.ci_low, c.ci_high, _difference_range(metric))
                records.append({
                    "task": task, "scheduler": scheduler, "baseline": name, "tie": len(names) > 1,
                    "metric": metric, "mode": mode, "n_seeds": c.n_a, "baseline_n_seeds": c.n_b,
                    # skipna=False: a diverged seed makes the mean NaN, as in the summary (never dropped)
                    "mean": float(mine["test"].mean(skipna=False)),
                    "baseline_mean": float(base["test"].mean(skipna=False)),
                    "difference": c.difference, "difference_ci_low": low, "difference_ci_high": high,
                    "paired": paired, "margin": margin, "p_difference": c.p_difference,
                    "p_equivalence": c.p_equivalence, "verdict_note": "; ".join(n for n in (c.note, how) if n),
                })  # fmt: skip
    frame = pd.DataFrame(records, columns=COMPARISON_COLUMNS)
    frame = frame.astype({"tie": bool, "paired": bool, "n_seeds": "Int64", "baseline_n_seeds": "Int64"})
    frame["p_difference_holm"] = holm(frame["p_difference"].astype(float))
    frame["p_equivalence_holm"] = holm(frame["p_equivalence"].astype(float))
    frame["verdict"] = [
        r.verdict if r.verdict == UNTESTED and not r.baseline
        else verdict(r.difference, r.p_difference_holm, r.p_equivalence_holm, r.mode, alpha)
        for r in frame.itertuples(index=False)
    ]
    return frame[COMPARISON_COLUMNS]


def _clip(low: float, high: float, bounds: tuple[float, float]) -> tuple[float, float]:
    """An interval cut to the feasible range of its quantity (a t-interval of a bounded difference can leave it)."""
    return (max(low, bounds[0]) if math.isfinite(low) else low, min(high, bounds[1]) if math.isfinite(high) else high)


def aggregate(per_run: pd.DataFrame, runs: pd.DataFrame, alpha: float = ALPHA,
              confidence: float = CONFIDENCE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, comparisons): SUMMARY_COLUMNS per task x scheduler, and `compare_to_baselines`; the sweep
    columns come from the runs' tuning/sweep phase (`sensitivity.good_regions`), NaN without one.

    A summary row of an adaptive scheduler carries its comparison (with a tie, the comparison against the first
    tied baseline by name, the others in comparisons.csv); a baseline row says "best baseline" (or "best baseline
    (tie)") or "baseline"."""
    from adaptive_lr.reporting.profiles import median_times, performance_ratios

    summary = describe(per_run, confidence=confidence)
    comparisons = compare_to_baselines(per_run, runs, alpha, confidence)
    first = comparisons.drop_duplicates(["task", "scheduler"]).set_index(["task", "scheduler"])
    best = best_baselines(per_run)
    verdicts = []
    for r in summary.itertuples(index=False):
        if r.adaptive and (r.task, r.scheduler) in first.index:
            c = first.loc[(r.task, r.scheduler)]
            verdicts.append({k: c[k] for k in VERDICT_COLUMNS})
        else:
            names = best.get(r.task, [])
            role = (BEST_BASELINE + (" (tie)" if len(names) > 1 else "")) if r.scheduler in names else BASELINE
            verdicts.append({"baseline": ", ".join(names), "verdict": role, "verdict_note": "", "paired": False})
    summary = pd.concat([summary, pd.DataFrame(verdicts, columns=VERDICT_COLUMNS)], axis=1)
    for clock in ("epochs", "wall"):
        times = median_times(per_run, f"{clock}_to_target")
        ratios = performance_ratios(times)
        summary[f"{clock}_to_target"] = [times.loc[r.task, r.scheduler] for r in summary.itertuples(index=False)]
        summary[f"perf_ratio_{clock}"] = [ratios.loc[r.task, r.scheduler] for r in summary.itertuples(index=False)]
    from adaptive_lr.reporting.sensitivity import good_regions, sweep_points

    regions = good_regions(sweep_points(runs), runs).rename(columns={
        "best_lr": "sweep_best_lr", "width_decades": "good_region_decades", "n_diverged": "sweep_diverged"})
    summary = summary.merge(regions[["task", "scheduler", *SWEEP_COLUMNS]], on=["task", "scheduler"], how="left")
    return summary[SUMMARY_COLUMNS].astype({"paired": bool}), comparisons


def out_of_range(summary: pd.DataFrame, comparisons: pd.DataFrame,
                 rows: tuple[MetricRow, ...] = METRIC_ROWS) -> list[str]:
    """Every interval in the summary or comparisons outside its quantity's range (empty = all inside)."""
    bad = []
    for r in summary.itertuples(index=False):
        for row in rows:
            low_col, high_col = {"mean": ("_ci_low", "_ci_high"), "reached": ("_ci_low", "_ci_high"),
                                 "rate": ("_rate_low", "_rate_high")}.get(row.aggregation, (None, None))  # fmt: skip
            if low_col is None:
                continue
            lo, hi = row.bounds(r.metric)
            checks = [(row.name + low_col, (lo, hi)), (row.name + high_col, (lo, hi))]
            if row.aggregation == "reached":  # the Wilson interval of the share of seeds that reached it
                checks += [(row.name + "_reached_low", (0.0, 1.0)), (row.name + "_reached_high", (0.0, 1.0))]
            for col, (low, high) in checks:
                value = getattr(r, col)
                if math.isfinite(value) and not low - 1e-12 <= value <= high + 1e-12:
                    bad.append(f"{r.task}/{r.scheduler} {col} = {value} outside [{low}, {high}]")
    for c in comparisons.itertuples(index=False):
        lo, hi = _difference_range(c.metric)
        for value in (c.difference_ci_low, c.difference_ci_high):
            if math.isfinite(value) and not lo - 1e-12 <= value <= hi + 1e-12:
                bad.append(f"{c.task}/{c.scheduler} vs {c.baseline} difference bound {value} outside [{lo}, {hi}]")
    return bad
