"""Performance profiles across tasks (Dolan & Moré 2002, as scored by the AlgoPerf benchmark): pure functions.

1) Time to target of scheduler s on task p, t(p, s): the mean over seeds of the wall-clock seconds to the
   task's threshold (`wall_to_threshold_mean` of the summary; a seed that never reached the threshold counts
   with its budget time, see `metrics`). It is inf when no seed reached the threshold, when the time is
   unknown (no `epoch_time_s` logged) or when s did not run on p.
2) Ratio r(p, s) = t(p, s) / min over s' of t(p, s'), so the fastest scheduler on a task has ratio 1. When no
   scheduler reached the target on a task, every ratio on that task is inf (the task counts as failed by all).
3) Profile rho_s(tau) = fraction of tasks with r(p, s) <= tau, for tau in [1, tau_max]: a step function rising
   at each finite ratio.
4) Score = area under rho_s over [1, tau_max] divided by (tau_max - 1), computed exactly from the steps: each
   task contributes max(0, (tau_max - r) / (tau_max - 1)) / n_tasks. 1 means fastest on every task; 0 means
   never within tau_max times the fastest.

With one task the profile is still defined (every rho is 0 or 1 and the score reduces to the clipped ratio),
but it is weak evidence; the report says so.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

TAU_MAX = 4.0


class ProfileConfigError(ValueError):
    """tau_max is not a finite number > 1; the message names the value."""


def _check_tau_max(tau_max: float) -> None:
    if not (isinstance(tau_max, (int, float)) and math.isfinite(tau_max) and tau_max > 1):
        raise ProfileConfigError(f"tau_max must be a finite number > 1, got {tau_max!r}")


def time_to_target(summary: pd.DataFrame) -> pd.DataFrame:
    """Tasks x schedulers (sorted) of time to target in seconds: inf where no seed reached it or no run
    exists."""
    reached = summary["reached"].to_numpy() > 0
    seconds = summary["wall_to_threshold_mean"].to_numpy(dtype=float)
    times = summary.assign(time=np.where(reached & np.isfinite(seconds), seconds, math.inf))
    wide = times.pivot(index="task", columns="scheduler", values="time")
    return wide.sort_index().sort_index(axis=1).fillna(math.inf).rename_axis(columns=None)


def performance_ratios(times: pd.DataFrame) -> pd.DataFrame:
    """Ratio of each time to the task's fastest time (same shape as `times`); see rule 2 of the module."""
    best = times.min(axis=1)
    ratios = times.copy()
    for task, fastest in best.items():
        row = times.loc[task]
        if not math.isfinite(fastest):
            ratios.loc[task] = math.inf
        elif fastest > 0:
            ratios.loc[task] = row / fastest
        else:  # a zero time (cannot happen with wall-clock, guard only): only the equally fast count as 1
            ratios.loc[task] = np.where(row == fastest, 1.0, math.inf)
    return ratios


def profile(ratios: pd.DataFrame, taus: np.ndarray | list[float]) -> pd.DataFrame:
    """rho_s(tau) for each tau (rows, index = tau) and scheduler (columns)."""
    values = ratios.to_numpy(dtype=float)
    taus = np.asarray(taus, dtype=float)
    rho = (values[None, :, :] <= taus[:, None, None]).mean(axis=1)
    return pd.DataFrame(rho, index=pd.Index(taus, name="tau"), columns=ratios.columns)


def profile_scores(ratios: pd.DataFrame, tau_max: float = TAU_MAX) -> pd.Series:
    """Normalised area under each scheduler's profile over [1, tau_max] (rule 4), exact, by scheduler."""
    _check_tau_max(tau_max)
    values = ratios.to_numpy(dtype=float)
    share = np.clip((tau_max - values) / (tau_max - 1), 0.0, 1.0)  # inf ratio -> -inf -> 0
    return pd.Series(share.mean(axis=0), index=ratios.columns, name="score")


def step_points(ratios: pd.Series, tau_max: float = TAU_MAX) -> tuple[list[float], list[float]]:
    """(taus, rho) breakpoints of one scheduler's step profile on [1, tau_max], for a `where="post"` step
    plot."""
    _check_tau_max(tau_max)
    values = ratios.to_numpy(dtype=float)
    taus = sorted({1.0, tau_max, *(r for r in values if 1.0 <= r <= tau_max)})
    return taus, [float((values <= tau).mean()) for tau in taus]
