"""Every statistic of `reporting.stats` against an independent computation: the t distribution by hand (scipy.stats.t
cdf/ppf with the right degrees of freedom, Welch-Satterthwaite for Welch), worked textbook examples (Student's sleep
data as R's t.test reports it), exact enumeration for the bootstrap, the Wilson formula."""

import math

import numpy as np
import pytest
from scipy import stats as sp

from adaptive_lr.errors import UserError
from adaptive_lr.reporting import StatsConfigError, bootstrap_mean_ci, compare, holm, verdict, wilson_ci

Z = sp.norm.ppf(0.975)


def paired_by_hand(a, b, margin, confidence=0.95):
    """(difference, ci, p of no difference, TOST p) from the per-seed differences and t with n - 1 dof."""
    d = np.subtract(a, b)
    n, mean = len(d), d.mean()
    se = d.std(ddof=1) / math.sqrt(n)
    return mean, *_t_stats(mean, se, n - 1, margin, confidence)


def welch_by_hand(a, b, margin, confidence=0.95):
    """The same for two independent samples: Welch's standard error and Welch-Satterthwaite dof."""
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    se = math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    mean = np.mean(a) - np.mean(b)
    return mean, *_t_stats(mean, se, dof, margin, confidence)


def _t_stats(mean, se, dof, margin, confidence):
    half = sp.t.ppf(1 - (1 - confidence) / 2, dof) * se
    p_diff = 2 * sp.t.sf(abs(mean) / se, dof)
    p_lower = sp.t.sf((mean + margin) / se, dof)  # H0: difference <= -margin
    p_upper = sp.t.cdf((mean - margin) / se, dof)  # H0: difference >= +margin
    return (mean - half, mean + half), p_diff, max(p_lower, p_upper)


def check(c, expected, paired):
    difference, (low, high), p_diff, p_eq = expected
    assert c.paired is paired and c.note == ""
    assert c.difference == pytest.approx(difference, rel=1e-12, abs=1e-15)
    assert (c.ci_low, c.ci_high) == pytest.approx((low, high), rel=1e-9)
    assert c.p_difference == pytest.approx(p_diff, rel=1e-9)
    assert c.p_equivalence == pytest.approx(p_eq, rel=1e-9)


# Student's sleep data (R `sleep`): extra hours of sleep under two drugs, the same 10 patients
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_textbook_sleep_data_paired_and_welch_as_r_reports_them():
    # R: t.test(extra ~ group, data = sleep, paired = TRUE): t = -4.0621, df = 9, p-value = 0.002833,
    #    95 percent confidence interval -2.4598858 -0.7001142, mean difference -1.58
    c = compare(SLEEP_1, SLEEP_2, margin=math.nan, paired=True)
    assert c.difference == pytest.approx(-1.58)
    assert (c.ci_low, c.ci_high) == pytest.approx((-2.4598858, -0.7001142), abs=1e-7)
    assert c.p_difference == pytest.approx(0.002833, abs=1e-6)
    # R: t.test(extra ~ group, data = sleep) (Welch): t = -1.8608, df = 17.776, p-value = 0.07939,
    #    95 percent confidence interval -3.3654832 0.2054832
    c = compare(SLEEP_1, SLEEP_2, margin=math.nan, paired=False)
    assert (c.ci_low, c.ci_high) == pytest.approx((-3.3654832, 0.2054832), abs=1e-7)
    assert c.p_difference == pytest.approx(0.07939, abs=1e-5)
    va, vb = np.var(SLEEP_1, ddof=1) / 10, np.var(SLEEP_2, ddof=1) / 10
    assert (va + vb) ** 2 / (va**2 / 9 + vb**2 / 9) == pytest.approx(17.776, abs=1e-3)  # the dof used below


# One set of baseline seeds with a large seed-to-seed spread; "close" follows it seed by seed within +-0.001,
# "loose" within a few thousandths in both directions.
BASE = [0.80, 0.85, 0.90]
CLOSE = [0.801, 0.849, 0.901]
LOOSE = [0.804, 0.847, 0.906]


def test_paired_tost_equivalent_and_not_by_hand():
    expected = paired_by_hand(CLOSE, BASE, 0.005)
    check(compare(CLOSE, BASE, 0.005, paired=True), expected, paired=True)
    assert expected[3] < 0.05  # equivalent within +-0.005: the per-seed differences are +-0.001
    expected = paired_by_hand(LOOSE, BASE, 0.005)
    check(compare(LOOSE, BASE, 0.005, paired=True), expected, paired=True)
    assert expected[3] > 0.05  # the same margin, differences 0.004, -0.003, 0.006: not shown equivalent
    # seed order matters when paired (and only then)
    shuffled = compare(CLOSE[::-1], BASE, 0.005, paired=True)
    check(shuffled, paired_by_hand(CLOSE[::-1], BASE, 0.005), paired=True)
    assert shuffled.p_equivalence > 0.05


def test_welch_tost_equivalent_and_not_by_hand_with_welch_satterthwaite_dof():
    # unpaired, the baseline's seed spread swamps the same data: not equivalent within 0.005 ...
    expected = welch_by_hand(CLOSE, BASE, 0.005)
    check(compare(CLOSE, BASE, 0.005, paired=False), expected, paired=False)
    assert expected[3] > 0.05
    # ... while two tight samples of different sizes and spreads are (dof is not n - 2 here)
    a, b = [0.500, 0.502, 0.501, 0.499], [0.5005, 0.4995, 0.501]
    expected = welch_by_hand(a, b, 0.01)
    check(compare(a, b, 0.01, paired=False), expected, paired=False)
    assert expected[3] < 0.05
    pooled_dof_p = 2 * sp.t.sf(abs(expected[0]) / math.sqrt(np.var(a, ddof=1) / 4 + np.var(b, ddof=1) / 3), 5)
    assert compare(a, b, 0.01, paired=False).p_difference != pytest.approx(pooled_dof_p, rel=1e-6)


def test_paired_and_unpaired_difference_intervals_by_hand():
    # the same numbers: pairing removes the shared seed effect, so the paired interval is far narrower
    paired, welch = compare(CLOSE, BASE, math.nan, True), compare(CLOSE, BASE, math.nan, False)
    d = np.subtract(CLOSE, BASE)  # [0.001, -0.001, 0.001]: mean 1/3000, sd 0.0011547
    half = sp.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert (paired.ci_low, paired.ci_high) == pytest.approx((d.mean() - half, d.mean() + half), rel=1e-9)
    assert paired.ci_high - paired.ci_low == pytest.approx(
        2 * 4.302652729749462 * 0.0011547005 / math.sqrt(3)
    )
    se = math.sqrt(np.var(CLOSE, ddof=1) / 3 + np.var(BASE, ddof=1) / 3)
    dof = se**4 / ((np.var(CLOSE, ddof=1) / 3) ** 2 / 2 + (np.var(BASE, ddof=1) / 3) ** 2 / 2)
    half = sp.t.ppf(0.975, dof) * se
    assert (welch.ci_low, welch.ci_high) == pytest.approx((d.mean() - half, d.mean() + half), rel=1e-9)
    assert welch.ci_high - welch.ci_low > 20 * (paired.ci_high - paired.ci_low)
    # a shift of 0.01 on every seed: paired, a clear difference; unpaired, lost in the seed spread
    shifted = [0.811, 0.859, 0.911]
    p_paired, p_welch = (compare(shifted, BASE, math.nan, paired).p_difference for paired in (True, False))
    assert p_paired == pytest.approx(paired_by_hand(shifted, BASE, 0.0)[2], rel=1e-9) and p_paired < 0.01
    assert p_welch == pytest.approx(welch_by_hand(shifted, BASE, 0.0)[2], rel=1e-9) and p_welch > 0.5
    # a 90% interval uses the 0.95 quantile
    c90 = compare(CLOSE, BASE, math.nan, True, confidence=0.9)
    half = sp.t.ppf(0.95, 2) * d.std(ddof=1) / math.sqrt(3)
    assert (c90.ci_low, c90.ci_high) == pytest.approx((d.mean() - half, d.mean() + half), rel=1e-9)


def test_without_a_margin_there_is_no_tost_and_a_zero_margin_is_never_equivalent():
    c = compare(CLOSE, BASE, math.nan, paired=True)
    assert math.isnan(c.p_equivalence) and math.isnan(c.margin) and not math.isnan(c.p_difference)
    assert compare(CLOSE, BASE, 0.0, paired=True).p_equivalence >= 0.5  # +-0: one side is at least 1/2


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")
def test_untestable_comparisons_name_the_reason_and_keep_the_difference():
    cases = [
        (([0.5], [0.4, 0.6], False), "fewer than 2 seeds (1 vs 2)", 0.0),
        (([0.5, math.nan, 0.4], [0.4, 0.6, 0.5], False), "1 seed(s) with a non-finite value", math.nan),
        (
            ([0.5, 0.5], [0.4, 0.4], False),
            "no seed-to-seed spread (the difference is +0.1 on every seed)",
            0.1,
        ),
        (
            ([0.5, 0.6], [0.4, 0.5], True),
            "no seed-to-seed spread (the difference is +0.1 on every seed)",
            0.1,
        ),
    ]
    for (a, b, paired), note, difference in cases:
        c = compare(a, b, 0.05, paired)
        assert c.note == note
        assert c.difference == pytest.approx(difference, nan_ok=True)
        assert all(math.isnan(v) for v in (c.ci_low, c.ci_high, c.p_difference, c.p_equivalence))
        assert verdict(c.difference, c.p_difference, c.p_equivalence, "max") == "untested"
    # one side without spread is still a Welch test (variances are not pooled)
    c = compare([0.96, 0.97, 0.98], [0.94, 0.94, 0.94], math.nan, False)
    assert c.note == "" and c.p_difference == pytest.approx(0.0350987, rel=1e-5)  # t = 5.196, dof 2
    with pytest.raises(ValueError, match="as many values on each side, got 2 and 3"):
        compare([0.1, 0.2], [0.1, 0.2, 0.3], 0.05, paired=True)


def test_holm_on_a_known_list_with_nan_left_out_of_the_family():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], rel=1e-12)
    adjusted = holm([0.01, math.nan, 0.04, 0.03, math.nan, 0.005])
    assert math.isnan(adjusted[1]) and math.isnan(adjusted[4])
    assert adjusted[[0, 2, 3, 5]] == pytest.approx(
        [0.03, 0.06, 0.06, 0.02], rel=1e-12
    )  # a family of 4, not 6
    assert holm([0.3, 0.6]) == pytest.approx([0.6, 0.6])  # capped by monotonicity
    assert holm([0.7, 0.8]) == pytest.approx([1.0, 1.0])  # and at 1
    assert holm([0.02]) == pytest.approx([0.02])
    assert all(math.isnan(v) for v in holm([math.nan, math.nan])) and len(holm([])) == 0


# (difference, p_difference, p_equivalence, mode) -> outcome at alpha 0.05
VERDICTS = [
    (+0.03, 0.01, 0.90, "max", "better"),
    (-0.03, 0.01, 0.90, "max", "worse"),
    (-0.03, 0.01, 0.90, "min", "better"),  # lower is better
    (+0.03, 0.01, 0.90, "min", "worse"),
    (+0.03, 0.01, 0.01, "max", "better"),  # a significant difference wins over equivalence
    (+0.001, 0.40, 0.01, "max", "equivalent"),
    (-0.001, 0.40, 0.01, "min", "equivalent"),
    (+0.001, 0.40, 0.20, "max", "inconclusive"),
    (+0.001, 0.40, math.nan, "max", "inconclusive"),  # no margin declared: never equivalent
    (+0.001, 0.40, math.nan, "min", "inconclusive"),
    (+0.03, 0.01, math.nan, "max", "better"),  # ... but still better or worse
    (-0.03, 0.01, math.nan, "min", "better"),
    (+0.03, 0.05, 0.90, "max", "inconclusive"),  # p must be below alpha
    (0.0, 0.0, 0.90, "max", "inconclusive"),  # no difference is never better or worse
    (+0.03, math.nan, math.nan, "max", "untested"),
    (+0.03, math.nan, 0.01, "min", "untested"),
]


@pytest.mark.parametrize(("difference", "p_diff", "p_eq", "mode", "outcome"), VERDICTS)
def test_verdict_outcomes(difference, p_diff, p_eq, mode, outcome):
    assert verdict(difference, p_diff, p_eq, mode) == outcome


def test_verdict_level_is_alpha():
    assert verdict(0.03, 0.03, 0.9, "max") == "better"
    assert verdict(0.03, 0.03, 0.9, "max", alpha=0.01) == "inconclusive"
    assert verdict(0.0, 0.5, 0.03, "max", alpha=0.01) == "inconclusive"


def test_bootstrap_interval_stays_inside_0_1_where_the_t_interval_does_not():
    values = [1.0, 1.0, 0.5]
    mean, low, high = bootstrap_mean_ci(values)
    half = sp.t.ppf(0.975, 2) * np.std(values, ddof=1) / math.sqrt(3)
    assert mean + half > 1.0 and mean - half < 0.5  # Student-t: [0.116, 1.55]
    # Exact: a resample's mean is 1 - k/6 with k ~ Binomial(3, 1/3) copies of 0.5: P(k=3) = 1/27 = 3.7% > 2.5%
    # puts the 2.5% quantile at 0.5, P(k=0) = 8/27 = 29.6% > 2.5% the 97.5% quantile at 1.0.
    assert sp.binom.pmf(3, 3, 1 / 3) > 0.025 and sp.binom.pmf(0, 3, 1 / 3) > 0.025
    assert mean == pytest.approx(5 / 6) and (low, high) == pytest.approx((0.5, 1.0), abs=1e-9)
    assert bootstrap_mean_ci(values) == (mean, low, high)  # seeded: a pure function of the data


def test_bootstrap_interval_of_a_continuous_sample_is_close_to_the_normal_theory_interval():
    rng = np.random.default_rng(1)
    x = rng.normal(10.0, 2.0, size=200)
    mean, low, high = bootstrap_mean_ci(x)
    half = Z * x.std(ddof=1) / math.sqrt(len(x))  # large n: percentile bootstrap ~ mean +- z s / sqrt(n)
    assert mean == pytest.approx(x.mean())
    assert (low, high) == pytest.approx((mean - half, mean + half), abs=0.06)
    _, low90, high90 = bootstrap_mean_ci(x, confidence=0.9)
    assert low < low90 < mean < high90 < high


def test_bootstrap_degenerate_cases():
    assert bootstrap_mean_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)  # no resample can differ
    mean, low, high = bootstrap_mean_ci([0.4])
    assert mean == 0.4 and math.isnan(low) and math.isnan(high)
    assert all(
        math.isnan(v) for v in bootstrap_mean_ci([0.5, math.nan, 0.4])
    )  # a diverged seed is not dropped
    assert all(math.isnan(v) for v in bootstrap_mean_ci([]))


def test_wilson_interval_by_formula():
    assert wilson_ci(0, 3) == pytest.approx((0.0, Z**2 / (3 + Z**2)), abs=1e-12)  # 0.5615
    assert wilson_ci(3, 3) == pytest.approx((3 / (3 + Z**2), 1.0), abs=1e-12)
    k, n = 1, 3
    p = k / n
    centre, half = p + Z**2 / (2 * n), Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    assert wilson_ci(k, n) == pytest.approx(
        ((centre - half) / (1 + Z**2 / n), (centre + half) / (1 + Z**2 / n))
    )
    assert wilson_ci(0, 3)[0] == 0.0 and wilson_ci(3, 3)[1] == 1.0  # exact ends, no 1e-17
    assert all(math.isnan(v) for v in wilson_ci(0, 0))


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5, -0.1])
def test_levels_outside_0_1_are_rejected_naming_the_value(bad):
    with pytest.raises(StatsConfigError, match=f"confidence must be in \\(0, 1\\), got {bad}"):
        bootstrap_mean_ci([1.0, 2.0], confidence=bad)
    with pytest.raises(StatsConfigError, match=f"confidence must be in \\(0, 1\\), got {bad}"):
        compare([1.0, 2.0], [1.0, 3.0], 0.1, False, confidence=bad)
    with pytest.raises(StatsConfigError, match=f"confidence must be in \\(0, 1\\), got {bad}"):
        wilson_ci(1, 2, confidence=bad)
    with pytest.raises(StatsConfigError, match=f"alpha must be in \\(0, 1\\), got {bad}"):
        verdict(1.0, 0.01, 0.01, "max", alpha=bad)


@pytest.mark.parametrize("bad", [-0.1, math.inf, "0.1"])
def test_a_margin_must_be_a_finite_number_at_least_zero(bad):
    with pytest.raises(StatsConfigError, match="margin must be a finite number >= 0") as err:
        compare([1.0, 2.0], [1.0, 3.0], bad, False)
    assert isinstance(err.value, UserError)
