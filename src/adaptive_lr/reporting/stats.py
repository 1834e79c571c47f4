"""Small-sample statistics over seeds, from maintained libraries (statsmodels, scipy.stats), never hand-rolled.

A grid runs a handful of seeds per task x scheduler. What a report may say about them:
- `compare`: an adaptive scheduler (a) against a baseline (b) on one task: the difference of means a - b with
  its two-sided interval, the p-value of "no difference" and the p-value of the two one-sided tests (TOST) of
  equivalence within +-margin. Paired by seed (statsmodels `DescrStatsW` of the per-seed differences,
  `ttost_paired`) when the two sides ran the same seeds on the same data (`paired`); Welch otherwise
  (`CompareMeans(...).tconfint_diff/ttest_ind(usevar="unequal")`, `ttost_ind(usevar="unequal")`). Untested, with
  the reason, when a side has fewer than 2 seeds, a non-finite value, or no seed-to-seed spread at all (a t
  statistic is then 0/0 or +-inf and says nothing about seed noise).
- `holm`: Holm's step-down adjustment of a family of p-values (statsmodels `multipletests(method="holm")`);
  NaN p-values stay NaN and do not count in the family.
- `verdict`: four outcomes from the Holm-adjusted p-values at level alpha: **better** / **worse** (the
  difference test rejects "no difference"; direction from the metric's mode), else **equivalent** (TOST
  rejects "outside +-margin"; never without a declared margin), else **inconclusive**; **untested** when no
  test was possible.
- `bootstrap_mean_ci`: percentile bootstrap interval of a mean (scipy.stats.bootstrap, fixed seed): it never
  leaves the range of the data, so an accuracy interval stays inside [0, 1] where a Student-t one need not.
- `wilson_ci`: Wilson score interval of a success count (statsmodels `proportion_confint`), for solved-or-not
  outcomes (reached the threshold, diverged).

scipy and statsmodels are imported inside the functions: importing the reporting package stays cheap.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from adaptive_lr.errors import UserError

CONFIDENCE = 0.95
ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0  # every bootstrap interval is a pure function of its data

BETTER, WORSE, EQUIVALENT, INCONCLUSIVE, UNTESTED = "better", "worse", "equivalent", "inconclusive", "untested"
VERDICTS = (BETTER, EQUIVALENT, INCONCLUSIVE, WORSE, UNTESTED)


class StatsConfigError(UserError, ValueError):
    """A confidence level or significance level outside (0, 1), or a negative margin; the message names it."""


def _check_level(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0.0 < value < 1.0):
        raise StatsConfigError(f"{name} must be in (0, 1), got {value!r}")


def _array(values: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=float)


@dataclass(frozen=True)
class Comparison:
    """a - b on one task; NaN statistics with `note` saying why when no test was possible."""

    difference: float
    ci_low: float
    ci_high: float
    p_difference: float  # two-sided test of "no difference"
    p_equivalence: float  # TOST: the larger of the two one-sided p-values against -margin and +margin
    margin: float
    paired: bool
    n_a: int
    n_b: int
    note: str = ""



def compare(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    margin: float,
    paired: bool,
    confidence: float = CONFIDENCE,
) -> Comparison:
    """a - b with its interval, the difference test and the TOST within +-margin (module docstring).

    `paired` needs a[i] and b[i] to come from the same seed (same data order and initialisation)."""
    _check_level("confidence", confidence)
    if not (isinstance(margin, (int, float)) and (math.isnan(margin) or 0 <= margin < math.inf)):
        raise StatsConfigError(f"margin must be a finite number >= 0 (or NaN: none declared), got {margin!r}")
    x, y = _array(a), _array(b)
    if paired and x.size != y.size:
        raise ValueError(f"a paired comparison needs as many values on each side, got {x.size} and {y.size}")
    difference = float(x.mean() - y.mean()) if x.size and y.size else math.nan
    untested = Comparison(difference, math.nan, math.nan, math.nan, math.nan, margin, paired, x.size, y.size)
    if x.size < 2 or y.size < 2:
        return _why(untested, f"fewer than 2 seeds ({x.size} vs {y.size})")
    bad = int((~np.isfinite(x)).sum() + (~np.isfinite(y)).sum())
    if bad:
        return _why(untested, f"{bad} seed(s) with a non-finite value")
    spread = np.std(x - y, ddof=1) if paired else max(np.std(x, ddof=1), np.std(y, ddof=1))
    if spread == 0:
        return _why(untested, f"no seed-to-seed spread (the difference is {difference:+.4g} on every seed)")

    from scipy.stats import ttest_rel
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttost_ind, ttost_paired

    alpha = 1 - confidence
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # one side with zero variance is fine for Welch
        if paired:
            low, high = DescrStatsW(x - y).tconfint_mean(alpha=alpha)
            p_diff = float(ttest_rel(x, y).pvalue)
            p_eq = float(ttost_paired(x, y, -margin, margin)[0]) if math.isfinite(margin) else math.nan
        else:
            means = CompareMeans(DescrStatsW(x), DescrStatsW(y))
            low, high = means.tconfint_diff(alpha=alpha, usevar="unequal")
            p_diff = float(means.ttest_ind(usevar="unequal")[1])
            p_eq = float(ttost_ind(x, y, -margin, margin, usevar="unequal")[0]) if math.isfinite(margin) else math.nan
    return Comparison(difference, float(low), float(high), p_diff, p_eq, margin, paired, x.size, y.size)


def _why(comparison: Comparison, note: str) -> Comparison:
    from dataclasses import replace

    return replace(comparison, note=note)


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values over the finite entries (NaN stays NaN and is not a member of the family)."""
    p = _array(p_values)
    adjusted = np.full(p.shape, math.nan)
    finite = np.isfinite(p)
    if finite.any():
        from statsmodels.stats.multitest import multipletests

        adjusted[finite] = multipletests(p[finite], method="holm")[1]
    return adjusted


def verdict(difference: float, p_difference: float, p_equivalence: float, mode: str, alpha: float = ALPHA) -> str:
    """One of VERDICTS from (Holm-adjusted) p-values; see the module docstring. Without a margin (NaN
    p_equivalence) a comparison can still be better or worse, never equivalent."""
    _check_level("alpha", alpha)
    if not math.isfinite(p_difference):
        return UNTESTED
    if p_difference < alpha and difference != 0:
        better = difference > 0 if mode == "max" else difference < 0
        return BETTER if better else WORSE
    return EQUIVALENT if p_equivalence < alpha else INCONCLUSIVE


def bootstrap_mean_ci(
    values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap interval of the mean (scipy.stats.bootstrap, seeded).

    NaN bounds with fewer than 2 values or a non-finite value (the mean is NaN then too: a diverged seed is never
    dropped silently); a zero-width interval when every value is the same (no resample can differ)."""
    _check_level("confidence", confidence)
    x = _array(values)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size < 2 or not np.isfinite(x).all():
        return mean, math.nan, math.nan
    if np.all(x == x[0]):
        return mean, mean, mean
    from scipy.stats import bootstrap

    result = bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=BOOTSTRAP_RESAMPLES,
                       method="percentile", random_state=np.random.default_rng(BOOTSTRAP_SEED))
    interval = result.confidence_interval
    return mean, float(interval.low), float(interval.high)


def wilson_ci(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of successes / n; NaN bounds when n = 0."""
    _check_level("confidence", confidence)
    if n <= 0:
        return math.nan, math.nan
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(int(successes), int(n), alpha=1 - confidence, method="wilson")
    return min(max(round(float(low), 12), 0.0), 1.0), min(max(round(float(high), 12), 0.0), 1.0)  # no 1e-17 ends
