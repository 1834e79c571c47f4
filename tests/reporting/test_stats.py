import math

import pytest
from scipy import stats as sp

from adaptive_lr.reporting import StatsConfigError, mean_ci, verdict, welch_test

T_975_2 = 4.302652729749462  # scipy.stats.t.ppf(0.975, 2), checked below


def test_mean_ci_is_the_student_t_interval_with_n_minus_1_dof():
    assert sp.t.ppf(0.975, 2) == pytest.approx(T_975_2, rel=1e-9)
    mean, low, high = mean_ci([0.96, 0.97, 0.98])
    half = T_975_2 * 0.01 / math.sqrt(3)  # sample std of (0.96, 0.97, 0.98) is 0.01
    assert (mean, low, high) == pytest.approx((0.97, 0.97 - half, 0.97 + half), rel=1e-12)
    assert (low, high) == pytest.approx((0.9451588, 0.9948412), rel=1e-6)
    # 90% interval of 4 values: t.ppf(0.95, 3) * s / 2
    mean, low, high = mean_ci([1.0, 2.0, 3.0, 4.0], confidence=0.9)
    half = sp.t.ppf(0.95, 3) * math.sqrt(5 / 3) / 2
    assert (mean, low, high) == pytest.approx((2.5, 2.5 - half, 2.5 + half), rel=1e-12)


def test_mean_ci_without_a_spread_estimate_is_nan_not_zero_width():
    mean, low, high = mean_ci([0.4])
    assert mean == 0.4 and math.isnan(low) and math.isnan(high)  # n=1: no interval
    assert mean_ci([2.0, 2.0, 2.0]) == (
        2.0,
        2.0,
        2.0,
    )  # zero spread over 3 seeds is a real zero-width interval
    mean, low, high = mean_ci([0.5, math.nan, 0.4])  # a diverged seed is not dropped
    assert math.isnan(mean) and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(v) for v in mean_ci([]))


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy, on the identical [0.94] * 3
def test_welch_p_value_equals_scipy_and_untestable_cases_name_the_reason():
    a, b = [0.81, 0.83, 0.86], [0.80, 0.82, 0.84]
    p, note = welch_test(a, b)
    assert p == sp.ttest_ind(a, b, equal_var=False).pvalue and note == ""
    assert p == pytest.approx(0.5141, abs=1e-4)
    # one deterministic side (zero variance) is still testable: Welch does not pool variances
    p, _ = welch_test([0.96, 0.97, 0.98], [0.94, 0.94, 0.94])
    assert p == pytest.approx(sp.ttest_ind([0.96, 0.97, 0.98], [0.94] * 3, equal_var=False).pvalue, rel=1e-12)
    assert p == pytest.approx(0.0350987, rel=1e-5)
    for args, reason in [
        (([0.5], [0.4, 0.6]), "fewer than 2 seeds (1 vs 2)"),
        (([0.5, math.nan, 0.4], [0.4, 0.6]), "1 seed(s) with a non-finite final value"),
        (([0.5, 0.5], [0.4, 0.4]), "zero variance on both sides"),
    ]:  # fmt: skip
        p, note = welch_test(*args)
        assert math.isnan(p) and note == reason


def test_verdict_needs_a_better_mean_and_p_below_alpha():
    assert verdict(0.97, 0.94, 0.03, "max") == "beat"
    assert verdict(0.97, 0.94, 0.06, "max") == "no significant difference"
    assert verdict(0.97, 0.94, 0.03, "max", alpha=0.01) == "no significant difference"
    assert verdict(0.61, 0.82, 0.001, "max") == "worse"
    assert verdict(0.05, 0.09, 0.01, "min") == "beat"  # lower is better
    assert verdict(0.12, 0.09, 0.01, "min") == "worse"
    assert verdict(0.97, 0.94, math.nan, "max") == "untested"


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5, -0.1])
def test_levels_outside_0_1_are_rejected_naming_the_value(bad):
    with pytest.raises(StatsConfigError, match=f"confidence must be in \\(0, 1\\), got {bad}"):
        mean_ci([1.0, 2.0], confidence=bad)
    with pytest.raises(StatsConfigError, match=f"alpha must be in \\(0, 1\\), got {bad}"):
        verdict(1.0, 0.0, 0.01, "max", alpha=bad)
