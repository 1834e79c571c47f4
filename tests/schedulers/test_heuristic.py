"""The heuristic controller on fixed metric sequences: exact LR sequences, tick 0 included, written by hand.

Unless a test says otherwise the controller raises x2 on a >10% improvement, halves on any rise or after 2
no-progress ticks (<=1%), waits 1 tick after a cut, and is bounded to [1e-3, 100]; factors of 2 keep the
arithmetic exact.
"""

from __future__ import annotations

import math

import pytest

from adaptive_lr.schedulers import ACTIONS, Heuristic, Observation, PolicyConfigError, Warmup

NAN, INF = math.nan, math.inf


def make(**overrides) -> Heuristic:
    kwargs = dict(
        raise_threshold=0.1,
        up_factor=2.0,
        down_factor=0.5,
        rise_tolerance=0.0,
        plateau_threshold=0.01,
        patience=2,
        cooldown=1,
        min_lr=1e-3,
        max_lr=100.0,
    )
    return Heuristic(**{**kwargs, **overrides})


def run(policy, values, base_lrs=(1.0, 0.25), monitor="val_loss"):
    """LR of group 0 at every tick (tick 0 first), the actions, and the group-1 LRs."""
    lrs = [policy.reset(list(base_lrs))]
    actions = []
    for t, v in enumerate(values, start=1):
        lrs.append(policy.observe(Observation(step=t, epoch=t, metrics={monitor: v, "other": 123.0})))
        actions.append(policy.last_decision.action)
    return [row[0] for row in lrs], actions, [row[1] for row in lrs]


def test_raise_cut_on_rise_cooldown_and_cut_on_plateau():
    lrs, actions, group1 = run(make(), [8, 4, 2, 3, 3, 3, 3, 3, 3, 3])
    assert lrs == [1, 1, 2, 4, 2, 2, 2, 1, 1, 1, 0.5]
    assert actions == [
        "hold",  # 8: first value
        "raise",  # 4: -50%
        "raise",  # 2: -50%
        "cut_rise",  # 3: +50%
        "cooldown",  # 3
        "hold",  # 3: no progress 1/2
        "cut_plateau",  # 3: no progress 2/2
        "cooldown",
        "hold",
        "cut_plateau",
    ]
    assert group1 == [lr / 4 for lr in lrs]  # every group gets the same factor


def test_slow_real_improvement_holds_and_resets_the_plateau_count():
    # 5% drops sit between plateau_threshold (1%) and raise_threshold (10%): hold, and no plateau builds up
    values = [100, 100, 95, 95, 90.25]
    lrs, actions, _ = run(make(), values)
    assert actions == ["hold", "hold", "hold", "hold", "hold"]
    assert lrs == [1] * 6
    assert [make_and_count(values[: i + 1]) for i in range(len(values))] == [0, 1, 0, 1, 0]


def make_and_count(values):
    policy = make()
    run(policy, values)
    return policy.bad_count


def test_rise_within_tolerance_is_a_plateau_tick():
    lrs, actions, _ = run(make(rise_tolerance=0.05), [10, 10.4, 10.8, 10.8])
    assert actions == ["hold", "hold", "cut_plateau", "cooldown"]
    assert lrs == [1, 1, 1, 0.5, 0.5]


def test_lr_is_clamped_to_bounds_at_reset_and_after_every_decision():
    values = [1, 0.5, 0.25, 0.125, 0.0625]
    lrs, actions, group1 = run(make(max_lr=4.0, cooldown=0), values, base_lrs=(1.0, 3.0))
    assert actions == ["hold", "raise", "raise", "raise", "raise"]
    assert lrs == [1, 1, 2, 4, 4, 4]
    assert group1 == [3, 3, 4, 4, 4, 4]  # the explicit max holds for every group
    with pytest.raises(PolicyConfigError, match=r"starting LR 8 is outside its bounds \[0.001, 4\]"):
        run(make(max_lr=4.0), values, base_lrs=(1.0, 8.0))  # a start outside explicit bounds: never clamped silently

    lrs, actions, _ = run(make(min_lr=0.25, cooldown=0), [1, 2, 4, 8, 16])
    assert actions == ["hold", "cut_rise", "cut_rise", "cut_rise", "cut_rise"]
    assert lrs == [1, 1, 0.5, 0.25, 0.25, 0.25]


def test_bounds_are_relative_to_each_groups_starting_lr_by_default():
    """Unset bounds: [start x 1e-4, start x 100] per group, so a start of 50 or 1e-7 is kept and moves the same."""
    lrs, actions, group1 = run(make(cooldown=0, up_factor=10.0, min_lr=None, max_lr=None),
                               [1, 0.5, 0.25, 0.125, 0.0625], base_lrs=(50.0, 1e-7))
    assert actions == ["hold", "raise", "raise", "raise", "raise"]
    assert lrs == pytest.approx([50, 50, 500, 5000, 5000, 5000])  # capped at 100 x 50
    assert group1 == pytest.approx([1e-7, 1e-7, 1e-6, 1e-5, 1e-5, 1e-5])  # capped at 100 x 1e-7
    assert make(min_lr=None, max_lr=None).bounds == "[start x 0.0001, start x 100]"
    assert make(min_lr=1e-6, max_lr=None).bounds == "[1e-06, start x 100]"


def test_mode_max_treats_higher_as_better():
    lrs, actions, _ = run(make(mode="max", monitor="val_acc"), [0.5, 0.6, 0.7, 0.6, 0.6], monitor="val_acc")
    assert actions == ["hold", "raise", "raise", "cut_rise", "cooldown"]
    assert lrs == [1, 1, 2, 4, 2, 2]


def test_non_finite_values_cut_and_are_not_remembered():
    lrs, actions, _ = run(make(), [4, NAN, 2, 1, INF, -INF, 1])
    assert actions == [
        "hold",
        "cut_nonfinite",  # NaN: cut, cooldown starts, prev stays 4
        "cooldown",  # 2 vs 4 would be a raise, but we wait
        "raise",  # 1 vs 2
        "cut_nonfinite",
        "cut_nonfinite",  # a NaN during cooldown still cuts
        "cooldown",  # 1 vs 1 (the last finite value)
    ]
    assert lrs == [1, 1, 0.5, 0.5, 1, 0.5, 0.25, 0.25]


def test_non_finite_first_value_cuts_and_next_finite_value_is_the_first():
    lrs, actions, _ = run(make(cooldown=0), [NAN, 8, 4])
    assert actions == ["cut_nonfinite", "hold", "raise"]
    assert lrs == [1, 0.5, 0.5, 1]


def test_decision_records_raw_value_lrs_and_counters():
    policy = make(mode="max", monitor="acc")
    run(policy, [0.5, 0.75], monitor="acc")
    d = policy.last_decision
    assert (d.tick, d.action, d.lr_before, d.lr_after, d.value) == (2, "raise", 1.0, 2.0, 0.75)
    assert d.factor == 2.0
    assert d.extra["rel_change"] == pytest.approx(0.5)
    assert d.extra["bad_count"] == 0 and d.extra["cooldown_left"] == 0


def test_default_arguments_raise_gently_and_halve():
    policy = Heuristic()  # val_loss, min, +10% on >5% drops, x0.5 on any rise
    lrs, actions, _ = run(policy, [1.0, 0.9, 0.95], base_lrs=(0.1, 0.1))
    assert actions == ["hold", "raise", "cut_rise"]
    assert lrs == pytest.approx([0.1, 0.1, 0.11, 0.055])


def test_missing_monitor_names_what_is_there():
    policy = make()
    policy.reset([0.1])
    with pytest.raises(KeyError, match="val_loss"):
        policy.observe(Observation(step=1, epoch=0, metrics={"train_loss": 1.0}))


def test_every_action_has_a_unique_code():
    assert len(set(ACTIONS.values())) == len(ACTIONS)
    _, actions, _ = run(make(), [8, 4, 5, 5, 5, 5, 5, NAN])
    emitted = {"hold", "raise", "cut_rise", "cooldown", "cut_plateau", "cut_nonfinite"}
    assert set(actions) == emitted and emitted <= set(ACTIONS)


def test_warmup_forwards_the_controller():
    policy = Warmup(make(cooldown=0), warmup=2, start_factor=0.5)
    assert policy.monitor == "val_loss" and policy.mode == "min" and policy.needs_metrics
    lrs, actions, _ = run(policy, [8, 4, 5])
    assert actions == ["hold", "raise", "cut_rise"]
    # inner: 1, 1, 2, 1; warmup factor: 0.5, 0.75, 1, 1
    assert lrs == [0.5, 0.75, 2, 1]
    d = policy.last_decision
    assert (d.lr_before, d.lr_after) == (2.0, 1.0)  # the inner, unscaled LRs
