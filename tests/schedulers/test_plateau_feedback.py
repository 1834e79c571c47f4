"""`PlateauFeedback` on fixed metric sequences: the exact LR of every tick (step 0 included), its actions, and a
save/resume at every tick that continues identically."""

from __future__ import annotations

import json
import math
import random

import pytest

from adaptive_lr.schedulers import ACTIONS, Heuristic, Observation, PlateauFeedback, PolicyConfigError

NAN = math.nan


def controller(**kwargs) -> PlateauFeedback:
    """Raw values (no smoothing), a decision per tick, a 1% relative threshold; LRs are powers of two of 1.0."""
    args = dict(monitor="val_loss", smoothing=0.0, decide_every=1, threshold=0.01, factor=0.5, patience=2,
                cooldown=0, up_factor=2.0, raise_patience=0, min_factor=1 / 8, max_factor=4.0)
    return PlateauFeedback(**{**args, **kwargs})


def drive(policy, values, base_lrs=(1.0,), key="val_loss"):
    """Group 0's LR at tick 0..len(values), and the action of ticks 1.. (None: no decision that tick)."""
    lrs, actions = [policy.reset(list(base_lrs))[0]], []
    for t, v in enumerate(values, start=1):
        lrs.append(policy.observe(Observation(step=t, epoch=t, metrics={key: v}))[0])
        actions.append(None if policy.last_decision is None else policy.last_decision.action)
    return lrs, actions


def test_the_style_sequence_cuts_after_patience_decisions_at_no_new_best_down_to_min_factor():
    lrs, actions = drive(controller(cooldown=1), [8, 4, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3])

    assert lrs == [1, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125, 0.125, 0.125, 0.125]
    assert actions == ["hold", "hold", "hold", "hold", "cut_plateau", "cooldown", "hold", "cut_plateau", "cooldown",
                       "hold", "cut_plateau", "cooldown", "hold", "cut_plateau"]  # the last one at min_factor
    assert all(name in ACTIONS for name in actions)


def test_a_slow_steady_gain_below_the_threshold_per_tick_is_not_cut():
    # 0.4% better every tick, the threshold 1%: no single tick clears it, but every third tick clears it against
    # the best so far, within patience 3; a previous-value rule (Heuristic) sees a plateau and cuts
    values = [100 * 0.996**t for t in range(60)]

    lrs, actions = drive(controller(patience=3), values)

    assert lrs == [1.0] * 61 and set(actions) == {"hold"}
    heuristic = Heuristic(raise_threshold=0.05, plateau_threshold=0.01, patience=3, cooldown=0, max_lr=1.0)
    assert "cut_plateau" in drive(heuristic, values)[1]


def test_smoothing_keeps_a_noisy_slow_gain_from_being_cut():
    # the same slow gain under +-10% noise per tick, judged every 10 ticks as plateau_feedback.yaml does: the raw
    # value at a decision is one noisy draw, the EMA (0.9, a window of 10) is not (over seeds 0-29: never cut
    # with the EMA, cut without it for 29 of 30)
    rng = random.Random(0)
    values = [100 * 0.996**t * (1 + rng.uniform(-0.1, 0.1)) for t in range(200)]

    assert drive(controller(smoothing=0.9, decide_every=10), values)[0] == [1.0] * 201
    assert "cut_plateau" in drive(controller(smoothing=0.0, decide_every=10), values)[1]


def test_progress_is_judged_against_the_best_so_far_not_the_previous_value():
    # 2 is the best; 3 is a rise; 2.5 is better than 3 but not than 2: a second bad decision, so a cut
    lrs, actions = drive(controller(), [8, 4, 2, 3, 2.5, 1.9, 1.97])

    assert lrs == [1, 1, 1, 1, 1, 0.5, 0.5, 0.5]
    assert actions == ["hold", "hold", "hold", "hold", "cut_plateau", "hold", "hold"]
    policy = controller()
    drive(policy, [8, 4, 2, 3, 2.5, 1.9, 1.97])
    assert policy.best == 1.9 and policy.bad_count == 1  # 1.97 is not 1% below 1.9


def test_threshold_mode_rel_scales_with_the_best_and_abs_does_not():
    values = [1000, 995, 990]  # 0.5% steps: below a 1% relative threshold, above an absolute 1.0
    assert drive(controller(threshold=0.01, threshold_mode="rel"), values)[0] == [1, 1, 1, 0.5]
    assert drive(controller(threshold=1.0, threshold_mode="abs"), values)[0] == [1, 1, 1, 1]


def test_mode_max_watches_a_rising_metric():
    lrs, _ = drive(controller(monitor="val_acc", mode="max"), [0.5, 0.7, 0.9, 0.9, 0.905, 0.95], key="val_acc")

    assert lrs == [1, 1, 1, 1, 1, 0.5, 0.5]  # 0.905 is within 1% of 0.9; 0.95 then improves
    assert controller().improves(-0.95, -0.9) and not controller().improves(-0.905, -0.9)


def test_the_lr_is_raised_only_after_raise_patience_improving_decisions_in_a_row_up_to_max_factor():
    values = [8, 7, 6, 5, 4, 3, 2.9, 2.0, 1.5, 1.0, 0.9, 0.8, 0.7]
    lrs, actions = drive(controller(raise_patience=3, patience=5), values)

    assert lrs == [1, 1, 1, 1, 2, 2, 2, 4, 4, 4, 4, 4, 4, 4]
    assert [t for t, a in enumerate(actions, start=1) if a == "raise"] == [4, 7, 10, 13]  # 10, 13: at max_factor


def test_isolated_improvements_between_plateaus_never_raise():
    lrs, actions = drive(controller(raise_patience=2, patience=5), [8, 8, 4, 4, 2, 2, 1, 1, 0.5, 0.5])

    assert lrs == [1.0] * 11 and "raise" not in actions


def test_cooldown_waits_and_a_new_best_during_it_still_counts():
    # patience 1, cooldown 2: a cut, two decisions of waiting, then judged again
    lrs, actions = drive(controller(patience=1, cooldown=2), [5, 5, 5, 5, 5, 5, 5])
    assert lrs == [1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]
    assert actions == ["hold", "cut_plateau", "cooldown", "cooldown", "cut_plateau", "cooldown", "cooldown"]

    # 1 arrives during the cooldown and becomes the best, so 4 afterwards is no improvement
    lrs, actions = drive(controller(patience=1, cooldown=2), [5, 5, 1, 4, 4])
    assert lrs == [1, 1, 0.5, 0.5, 0.5, 0.25]
    assert actions == ["hold", "cut_plateau", "cooldown", "cooldown", "cut_plateau"]


def test_a_non_finite_value_cuts_at_once_and_leaves_the_signal_finite():
    policy = controller(smoothing=0.5, decide_every=3, cooldown=1)
    lrs, actions = drive(policy, [2, 2, 2, NAN, 2, 2, math.inf, 2, 2])

    assert lrs == [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]
    assert actions == [None, None, "hold", "cut_nonfinite", None, "cooldown", "cut_nonfinite", None, "cooldown"]
    assert policy.n_values == 7 and policy.ema == pytest.approx(2 * (1 - 0.5**7))


def test_the_ema_is_bias_corrected_and_decisions_come_every_decide_every_ticks():
    values = [4, 2, 2, 1, 3, 3, 3, 3, 3, 3]
    policy = controller(smoothing=0.5, decide_every=3)
    lrs, actions = drive(policy, values)

    ema, signals = 0.0, []
    for n, v in enumerate(values, start=1):  # the plain reference: Adam's bias-corrected average
        ema = 0.5 * ema + 0.5 * v
        signals.append(ema / (1 - 0.5**n))
    assert actions == [None, None, "hold", None, None, "hold", None, None, "cut_plateau", None]
    # decisions at ticks 3, 6, 9: signals 2.2857 (best), 2.5397 (bad), 2.9335 (bad: cut)
    assert lrs == [1] * 9 + [0.5, 0.5]
    policy = controller(smoothing=0.5, decide_every=3)
    drive(policy, values[:9])
    assert policy.last_decision.value == signals[8] and policy.last_decision.extra["best"] == signals[2]


def test_constant_values_smooth_to_exactly_themselves():
    lrs, actions = drive(controller(smoothing=0.5, decide_every=3), [1.0] * 10)

    assert lrs == [1] * 9 + [0.5, 0.5]
    assert actions == [None, None, "hold", None, None, "hold", None, None, "cut_plateau", None]


def test_no_decision_before_the_ema_has_taken_in_its_window():
    # smoothing 0.75: a window of 4 values, so the first decision (the first best) is at tick 4
    lrs, actions = drive(controller(smoothing=0.75), [1.0] * 6)

    assert actions == [None, None, None, "hold", "hold", "cut_plateau"]
    assert lrs == [1, 1, 1, 1, 1, 1, 0.5]


def test_bounds_are_multiples_of_the_starting_lr_which_is_never_clamped():
    base_lrs = (50.0, 1e-7)  # far outside any absolute bound another controller would impose
    down, _ = drive(controller(patience=1), [1.0] * 6, base_lrs)
    up, _ = drive(controller(raise_patience=1), [2.0**-t for t in range(6)], base_lrs)

    assert down == [50.0, 50.0, 25.0, 12.5, 6.25, 6.25, 6.25]  # min_factor 1/8
    assert up == [50.0, 50.0, 100.0, 200.0, 200.0, 200.0, 200.0]  # max_factor 4
    policy = controller(patience=1)
    drive(policy, [1.0] * 3, base_lrs)
    assert policy.lrs == [25.0 / 2, 1e-7 / 4]  # every group scaled alike


VALUES = [8, 4, 2, 3, 3, 3, 3, NAN, 2.5, 2.4, 2.4, 2.4, 1.0, 0.5, 0.4, 0.3, 0.2, 0.6, 0.6, 0.6, 0.6, 0.6, 0.3]


@pytest.mark.parametrize("kwargs", [dict(cooldown=1, raise_patience=2),
                                    dict(smoothing=0.7, decide_every=2, patience=1, raise_patience=2,
                                         threshold_mode="abs", threshold=0.05)])
def test_resume_at_every_tick_continues_identically(kwargs):
    def run(policy, ticks):
        out = []
        for t in ticks:
            lrs = policy.observe(Observation(step=t, epoch=t, metrics={"val_loss": VALUES[t - 1]}))
            decision = policy.last_decision
            out.append((lrs, None if decision is None else (decision.action, decision.value, decision.extra)))
        return out

    reference = controller(**kwargs)
    reference.reset([0.1, 0.03])
    expected = run(reference, range(1, len(VALUES) + 1))
    assert {a for _, d in expected if d for a in d[:1]} >= {"raise", "cut_plateau", "cut_nonfinite", "hold"}

    for k in range(len(VALUES) + 1):
        first = controller(**kwargs)
        first.reset([0.1, 0.03])
        run(first, range(1, k + 1))
        resumed = controller(**kwargs)  # never reset: the state alone must be enough
        resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
        assert resumed.lrs == first.lrs and resumed.tick == k
        assert str(run(resumed, range(k + 1, len(VALUES) + 1))) == str(expected[k:]), f"resumed at {k}"


BAD = [
    (dict(monitor=""), "monitor"),
    (dict(mode="down"), "mode"),
    (dict(smoothing=1.0), "smoothing"),
    (dict(smoothing=-0.1), "smoothing"),
    (dict(decide_every=0), "decide_every"),
    (dict(threshold=-1e-3), "threshold"),
    (dict(threshold_mode="relative"), "threshold_mode"),
    (dict(factor=1.0), "factor"),
    (dict(patience=0), "patience"),
    (dict(cooldown=-1), "cooldown"),
    (dict(up_factor=1.0), "up_factor"),
    (dict(raise_patience=-1), "raise_patience"),
    (dict(min_factor=0.0), "min_factor"),
    (dict(min_factor=2.0), "min_factor"),  # would clamp the starting LR up
    (dict(max_factor=0.5), "max_factor"),  # would clamp the starting LR down
]


@pytest.mark.parametrize("kwargs, name", BAD, ids=[f"{i}-{name}" for i, (_, name) in enumerate(BAD)])
def test_bad_argument_is_named(kwargs, name):
    with pytest.raises(PolicyConfigError, match=rf"^{name} must"):
        PlateauFeedback(**kwargs)


def test_a_missing_metric_names_the_available_ones():
    policy = controller()
    policy.reset([0.1])
    with pytest.raises(KeyError, match="val_loss.*train_loss_step"):
        policy.observe(Observation(step=1, epoch=0, metrics={"train_loss_step": 1.0}))
