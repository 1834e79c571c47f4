"""Across tasks: how often does each adaptive method beat the best fixed schedule?

The verdicts judge one task at a time. This section answers the project's question across them, with the aggregate
Agarwal et al. (2021, "Deep RL at the edge of the statistical precipice"; the rliable library) recommend for few
runs on several tasks: the **probability of improvement** P(X > Y) = mean over tasks of P(x > y) for a run x of
method X and a run y of method Y on that task (ties count one half: the Mann-Whitney U statistic over `n_x * n_y`),
here X = an adaptive method and Y = the task's best baseline (the fixed schedule the verdicts chose on validation),
on the **test** metric, oriented so that higher is better (a loss or MSE is negated; the statistic only compares
runs within a task, so accuracies and MSEs mix safely). Its 95% interval is the stratified bootstrap rliable uses
for it (the runs of X and of Y resampled independently within each task; percentile; `REPS` replications, seed 0),
computed by `scipy.stats.bootstrap` over the 2 x tasks samples: rliable 1.2 itself pins arch < 8, and arch 7 does not
import with pandas 3, so the project does not depend on it (tests check the statistic against rliable's definition).

Tasks are grouped by **track** (in a merged study report, a task labelled with an `-untuned` part is on the untuned
track, any other on the tuned one; a single-experiment report is one group); a method is aggregated over the tasks
of a group where both it and the task's best baseline have finite results of 2+ seeds, each with all its seeds (the
bootstrap resamples each task's runs apart, so tasks may have different seed counts). With one task only, the row is
that task's P(x > y). A descriptive summary: the intervals are not corrected for the number of methods, and it
decides nothing; the verdicts above are the tests.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from adaptive_lr.reporting.bar import family_and_part
from adaptive_lr.reporting.fmt import md_interval, md_row

if TYPE_CHECKING:
    from adaptive_lr.reporting.report import ReportContext

REPS = 2000  # bootstrap replications (rliable's default is 50000; 2000 keeps the 2.5% and 97.5% quantiles to ~0.01)
CONFIDENCE = 0.95
COLUMNS = ["track", "scheduler", "baseline_by_task", "n_tasks", "runs_per_task", "poi", "poi_low", "poi_high"]


def task_poi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(x > y) + P(x = y) / 2 over all pairs of the last axes' runs (batched over leading axes): the Mann-Whitney U
    of `x` against `y` over `n_x * n_y`, as rliable computes it per task."""
    x, y = x[..., :, None], y[..., None, :]
    return (x > y).mean(axis=(-2, -1)) + 0.5 * (x == y).mean(axis=(-2, -1))


def probability_of_improvement(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    """The mean over tasks of `task_poi`, for samples `(x_1, y_1, x_2, y_2, ...)` (task t's runs of X and of Y, each
    along `axis`): the statistic `scipy.stats.bootstrap` resamples (vectorized over its batch axis)."""
    moved = [np.moveaxis(np.asarray(s, dtype=float), axis, -1) for s in samples]
    return np.mean([task_poi(moved[i], moved[i + 1]) for i in range(0, len(moved), 2)], axis=0)


def poi_interval(pairs: list[tuple[np.ndarray, np.ndarray]], reps: int = REPS) -> tuple[float, float, float]:
    """(P(X > Y), low, high): the point estimate and the stratified-bootstrap percentile interval."""
    from scipy import stats

    samples = [s for pair in pairs for s in pair]
    point = float(probability_of_improvement(*samples))
    if any(len(s) < 2 for s in samples):  # scipy resamples only samples of 2+ runs (`across_table` keeps those)
        return point, math.nan, math.nan
    result = stats.bootstrap(samples, probability_of_improvement, n_resamples=reps, confidence_level=CONFIDENCE,
                             method="percentile", vectorized=True, paired=False, random_state=0)
    return point, float(result.confidence_interval.low), float(result.confidence_interval.high)


def track_of(task: str) -> str:
    """`mnist (study-mnist-untuned)` -> "untuned"; `mnist (study-mnist)` -> "tuned"; `mnist` -> "all"."""
    _, part = family_and_part(task)
    return "all" if not part else "untuned" if part.endswith("-untuned") else "tuned"


def _oriented(per_run: pd.DataFrame, task: str, scheduler: str) -> pd.Series:
    """The test metric of each seed's result run, higher is better, by seed."""
    rows = per_run[(per_run["task"] == task) & (per_run["scheduler"] == scheduler)].sort_values("seed")
    sign = -1.0 if (rows["mode"] == "min").any() else 1.0
    return pd.Series(sign * rows["test"].to_numpy(dtype=float), index=rows["seed"].to_numpy())


def across_table(per_run: pd.DataFrame, comparisons: pd.DataFrame, reps: int = REPS) -> pd.DataFrame:
    """COLUMNS, one row per track x adaptive method with a judged comparison on at least one task (module
    docstring); methods with a non-finite test value on a task leave that task out."""
    rows = []
    judged = comparisons[comparisons["baseline"].astype(str) != ""]
    for (track, scheduler), group in judged.assign(track=judged["task"].map(track_of)).groupby(["track", "scheduler"]):
        pairs = []
        for r in group.drop_duplicates("task").itertuples(index=False):
            baseline = str(r.baseline).split(", ")[0]  # a tie: the first named (all tied have equal validation means)
            x, y = _oriented(per_run, r.task, scheduler), _oriented(per_run, r.task, baseline)
            if min(len(x), len(y)) >= 2 and np.isfinite(x).all() and np.isfinite(y).all():
                pairs.append((r.task, baseline, x, y))
        if not pairs:
            continue
        point, low, high = poi_interval([(x.to_numpy(), y.to_numpy()) for _, _, x, y in pairs], reps)
        counts = sorted({f"{len(x)} vs {len(y)}" for _, _, x, y in pairs})
        rows.append({"track": track, "scheduler": scheduler,
                     "baseline_by_task": "; ".join(f"{family_and_part(t)[0]}: {b}" for t, b, _, _ in pairs),
                     "n_tasks": len(pairs), "runs_per_task": ", ".join(counts), "poi": point, "poi_low": low,
                     "poi_high": high})
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.sort_values(["track", "poi", "scheduler"], ascending=[True, False, True], kind="stable",
                             ignore_index=True)


def _reading(low: float, high: float) -> str:
    return "beats it more often" if low > 0.5 else "loses more often" if high < 0.5 else "no tendency shown"


def across_section(ctx: ReportContext) -> list[str]:
    """`## Across tasks` (module docstring); nothing when no track has an adaptive method judged on 2+ tasks."""
    table = ctx.across
    if table.empty or table["n_tasks"].max() < 2:
        return []
    lines = [
        "## Across tasks: probability of beating the best fixed schedule", "",
        "Per track, each adaptive method against each task's best baseline (chosen on validation) on the test "
        "metric: P(X > Y), the chance that a run of the method beats a run of the baseline on the same task (ties "
        "one half), averaged over the tasks where both ran; 0.5 is a coin flip (Agarwal et al. 2021, rliable). 95% "
        f"interval: stratified bootstrap, each task's runs of each side resampled apart ({REPS} replications, "
        "percentile, seed 0; scipy.stats.bootstrap). Descriptive: not corrected for the number of methods, and not a "
        "verdict (the verdicts above are the tests).", "",
    ]  # fmt: skip
    for track, rows in table.groupby("track", sort=True):
        beating = rows[rows["poi_low"] > 0.5]["scheduler"].tolist()
        losing = rows[rows["poi_high"] < 0.5]["scheduler"].tolist()
        lines += [f"### {track} track" if track != "all" else "### all tasks", "",
                  f"Beats its best baseline more often than not (interval above 0.5): "
                  f"{', '.join(beating) or 'none'}; loses more often (interval below 0.5): {', '.join(losing) or 'none'}"
                  f"; {len(rows) - len(beating) - len(losing)} of {len(rows)} show no tendency.", "",
                  "| method | tasks | runs per task | P(method > best baseline) [95% CI] | reading | best baseline per "
                  "task |", "| --- | ---: | --- | ---: | --- | --- |"]
        for r in rows.itertuples(index=False):
            lines += md_row([r.scheduler, r.n_tasks, r.runs_per_task, md_interval(r.poi, r.poi_low, r.poi_high),
                           _reading(r.poi_low, r.poi_high), r.baseline_by_task])
        lines.append("")
    return lines
