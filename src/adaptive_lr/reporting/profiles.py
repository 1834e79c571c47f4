"""Performance profiles across tasks, scored as AlgoPerf scores them (Dolan & More 2002; Dahl et al. 2023): pure
functions.

1) Target per task: the best baseline's median final validation metric (`metrics.profile_targets`), so the
   profile asks "how fast does each scheduler get where the best fixed schedule ends up".
2) Time of one run: epochs (or wall-clock seconds) until its validation metric first reaches the target, inf
   when it never does (`metrics.time_to_target`). A miss is a miss: never counted as the budget.
3) Time of scheduler s on task p, t(p, s): the median over seeds of the run times, so it is inf when the
   median run misses (with an even number of seeds, when either middle run misses); inf when s did not run on p.
4) Ratio r(p, s) = t(p, s) / min over s' of t(p, s'); every ratio on a task is inf when no scheduler reached it.
5) Profile rho_s(tau) = fraction of tasks with r(p, s) <= tau, tau in [1, tau_max]; score = the area under
   rho_s over [1, tau_max] / (tau_max - 1), computed exactly from the steps: 1 = fastest on every task, 0 =
   never within tau_max times the fastest.
6) `score_intervals`: a percentile bootstrap over seeds (each task x scheduler cell resampled with replacement,
   fixed seed), recomputing 3)-5) per resample.

With one task the profile is still defined but weak evidence; the report says so.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from adaptive_lr.errors import UserError

TAU_MAX = 4.0


class ProfileConfigError(UserError, ValueError):
    """tau_max is not a finite number > 1; the message names the value."""


def _check_tau_max(tau_max: float) -> None:
    if not (isinstance(tau_max, (int, float)) and math.isfinite(tau_max) and tau_max > 1):
        raise ProfileConfigError(f"tau_max must be a finite number > 1, got {tau_max!r}")


def median_times(per_run: pd.DataFrame, column: str) -> pd.DataFrame:
    """Tasks x schedulers (sorted) of the median over seeds of `column` (run times, inf = missed); rule 3."""
    times = per_run.groupby(["task", "scheduler"], sort=True)[column].agg(
        lambda t: float(np.median(t.to_numpy(dtype=float))) if len(t) else math.inf
    )
    wide = times.unstack("scheduler") if len(times) else pd.DataFrame()
    return wide.sort_index().sort_index(axis=1).fillna(math.inf).rename_axis(index="task", columns=None)


def performance_ratios(times: pd.DataFrame) -> pd.DataFrame:
    """Ratio of each time to the task's fastest time (same shape as `times`); rule 4 of the module."""
    return pd.DataFrame(_ratio_matrix(times.to_numpy(dtype=float)), index=times.index, columns=times.columns)


def _ratio_matrix(times: np.ndarray) -> np.ndarray:
    """Rule 4 on a [tasks, schedulers] array of times."""
    fastest = times.min(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(np.isfinite(fastest) & (fastest > 0), times / fastest, math.inf)
    return np.where(np.isfinite(fastest) & (fastest == 0), np.where(times == 0, 1.0, math.inf), ratios)


def _scores(ratios: np.ndarray, tau_max: float) -> np.ndarray:
    return np.clip((tau_max - ratios) / (tau_max - 1), 0.0, 1.0).mean(axis=0)  # inf ratio -> 0


def score_intervals(
    per_run: pd.DataFrame,
    column: str,
    tau_max: float = TAU_MAX,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per scheduler: score and its percentile bootstrap interval over seeds (rule 6); columns scheduler, score,
    score_low, score_high, sorted by scheduler."""
    _check_tau_max(tau_max)
    times = median_times(per_run, column)
    tasks, schedulers = list(times.index), list(times.columns)
    rng = np.random.default_rng(seed)
    draws = np.full((resamples, len(tasks), len(schedulers)), math.inf)
    for (task, scheduler), group in per_run.groupby(["task", "scheduler"], sort=True):
        values = group[column].to_numpy(dtype=float)
        picks = values[rng.integers(0, len(values), size=(resamples, len(values)))]
        medians = np.median(picks, axis=1)
        # an unknown (NaN) median counts as a miss, as in `median_times`: never a NaN fastest time for the task
        draws[:, tasks.index(task), schedulers.index(scheduler)] = np.where(np.isnan(medians), math.inf, medians)
    boot = np.stack([_scores(_ratio_matrix(d), tau_max) for d in draws]) if len(tasks) else np.empty((0, 0))
    tail = (1 - confidence) / 2 * 100
    low, high = (np.percentile(boot, q, axis=0) if len(boot) else [] for q in (tail, 100 - tail))
    point = _scores(_ratio_matrix(times.to_numpy(dtype=float)), tau_max) if len(tasks) else []
    return pd.DataFrame({"scheduler": schedulers, "score": point, "score_low": low, "score_high": high})


def profile(ratios: pd.DataFrame, taus: np.ndarray | list[float]) -> pd.DataFrame:
    """rho_s(tau) for each tau (rows, index = tau) and scheduler (columns)."""
    values = ratios.to_numpy(dtype=float)
    taus = np.asarray(taus, dtype=float)
    rho = (values[None, :, :] <= taus[:, None, None]).mean(axis=1)
    return pd.DataFrame(rho, index=pd.Index(taus, name="tau"), columns=ratios.columns)


def profile_scores(ratios: pd.DataFrame, tau_max: float = TAU_MAX) -> pd.Series:
    """Normalised area under each scheduler's profile over [1, tau_max] (rule 5), exact, by scheduler."""
    _check_tau_max(tau_max)
    return pd.Series(_scores(ratios.to_numpy(dtype=float), tau_max), index=ratios.columns, name="score")


def step_points(ratios: pd.Series, tau_max: float = TAU_MAX) -> tuple[list[float], list[float]]:
    """(taus, rho) breakpoints of one scheduler's step profile on [1, tau_max], for a `where="post"` step
    plot."""
    _check_tau_max(tau_max)
    values = ratios.to_numpy(dtype=float)
    taus = sorted({1.0, tau_max, *(r for r in values if 1.0 <= r <= tau_max)})
    return taus, [float((values <= tau).mean()) for tau in taus]
