"""Whole-run rewards (`meta.rewards`): a run's validation curve against its reference run's, by hand."""

from __future__ import annotations

import math

import pytest

from adaptive_lr.meta.rewards import AreaUnderCurve, FinalValue, RunReturn
from adaptive_lr.schedulers import PolicyConfigError


def test_scores_of_a_validation_curve():
    assert FinalValue()([0.5, 0.7, 0.6]) == 0.6
    assert AreaUnderCurve()([0.5, 0.7, 0.6]) == pytest.approx(0.6)
    assert math.isnan(FinalValue()([0.5, math.nan])) and math.isnan(AreaUnderCurve()([]))


def test_the_return_is_the_relative_improvement_over_the_reference_scaled_and_clipped():
    final = RunReturn(FinalValue(), scale=0.05)
    assert final([0.5, 0.84], [0.6, 0.8], "max") == pytest.approx(1.0)  # +5%: the full return
    assert final([0.5, 0.82], [0.6, 0.8], "max") == pytest.approx(0.5)
    assert final([0.5, 0.76], [0.6, 0.8], "max") == pytest.approx(-1.0)
    assert final([0.9, 0.5], [0.6, 0.8], "max") == -1.0  # clipped
    assert final([2.0, 0.95], [2.0, 1.0], "min") == pytest.approx(1.0)  # a loss 5% lower is better
    assert final([1.0, 1.02], [1.0, 1.0], "min") == pytest.approx(-0.4)
    auc = RunReturn(AreaUnderCurve(), scale=0.1)
    # same final value, reached earlier: the area rewards it, the final value does not
    assert auc([0.8, 0.8], [0.6, 0.8], "max") == 1.0  # (0.8 - 0.7) / 0.7 = +14%, clipped
    assert final([0.8, 0.8], [0.6, 0.8], "max") == 0.0
    assert RunReturn(AreaUnderCurve(), scale=1.0)([0.8, 0.8], [0.6, 0.8], "max") == pytest.approx(0.1 / 0.7)


def test_a_diverged_run_earns_minus_one_and_beating_a_diverged_reference_plus_one():
    final = RunReturn(FinalValue(), scale=0.05, clip=1.0)
    assert final([0.5, math.nan], [0.6, 0.8], "max") == -1.0
    assert final([0.5, 0.6], [0.6, math.inf], "max") == 1.0
    assert final([math.nan], [math.nan], "min") == -1.0


def test_bad_settings_are_named():
    with pytest.raises(PolicyConfigError, match="^scale must"):
        RunReturn(FinalValue(), scale=0.0)
    with pytest.raises(PolicyConfigError, match="^score must"):
        RunReturn(score="final")
    with pytest.raises(PolicyConfigError, match="^mode must"):
        RunReturn(FinalValue())([1.0], [1.0], "up")
    assert "final validation value" in RunReturn(FinalValue()).describe()
