"""Small-sample statistics over seeds: Student-t confidence intervals, Welch's t-test and the verdict rule.

A grid runs a handful of seeds per task x scheduler, so every interval and test here is the small-sample one:
- `mean_ci`: mean with a two-sided Student-t interval, mean ± t(1 - alpha/2, n-1) * s / sqrt(n) with the
  sample std s (ddof=1). With one seed there is no spread estimate: the interval is NaN (never a zero-width
  one). A non-finite value (a diverged seed) makes mean and interval NaN rather than silently dropping the
  seed.
- `welch_test`: two-sided Welch's t-test (`scipy.stats.ttest_ind(equal_var=False)`): no equal-variance
  assumption, so a deterministic baseline (zero spread) can still be compared with a noisy scheduler. The
  p-value is NaN, with the reason, when either side has fewer than 2 seeds, a non-finite value, or both sides
  have zero variance (the t statistic is then 0/0 or ±inf and says nothing about seed noise).
- `verdict`: "beat" = better mean in the metric's direction AND p < alpha; "worse" = worse mean AND p < alpha;
  "no significant difference" otherwise; "untested" when there is no p-value.

scipy is imported inside the functions: importing the reporting package stays cheap.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

CONFIDENCE = 0.95
ALPHA = 0.05

BEAT, WORSE, NO_DIFFERENCE, UNTESTED = "beat", "worse", "no significant difference", "untested"
VERDICTS = (BEAT, NO_DIFFERENCE, WORSE, UNTESTED)


class StatsConfigError(ValueError):
    """A confidence level or significance level outside (0, 1); the message names the value."""


def _check_level(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0.0 < value < 1.0):
        raise StatsConfigError(f"{name} must be in (0, 1), got {value!r}")


def mean_ci(
    values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """(mean, low, high) of the Student-t interval with n-1 dof; NaN bounds for n < 2 or a non-finite
    value."""
    _check_level("confidence", confidence)
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size < 2 or not np.isfinite(x).all():
        return mean, math.nan, math.nan
    from scipy.stats import t

    half = float(t.ppf(0.5 + confidence / 2, x.size - 1)) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return mean, mean - half, mean + half


def welch_test(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> tuple[float, str]:
    """(two-sided p-value of Welch's t-test of a vs b, "") or (NaN, the reason no test was possible)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size < 2 or y.size < 2:
        return math.nan, f"fewer than 2 seeds ({x.size} vs {y.size})"
    bad = int((~np.isfinite(x)).sum() + (~np.isfinite(y)).sum())
    if bad:
        return math.nan, f"{bad} seed(s) with a non-finite final value"
    if x.std(ddof=1) == 0 and y.std(ddof=1) == 0:
        return math.nan, "zero variance on both sides"
    from scipy.stats import ttest_ind

    with warnings.catch_warnings():
        # scipy warns of "catastrophic cancellation" when one side's seeds are identical (a deterministic
        # baseline); its variance is then exactly 0, which Welch's test handles, so the warning is noise here
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(ttest_ind(x, y, equal_var=False).pvalue), ""


def verdict(mean: float, baseline_mean: float, p_value: float, mode: str, alpha: float = ALPHA) -> str:
    """One of VERDICTS for a scheduler (mean) against the baseline (baseline_mean); see the module
    docstring."""
    _check_level("alpha", alpha)
    if not math.isfinite(p_value):
        return UNTESTED
    if p_value >= alpha or mean == baseline_mean:
        return NO_DIFFERENCE
    better = mean > baseline_mean if mode == "max" else mean < baseline_mean
    return BEAT if better else WORSE
