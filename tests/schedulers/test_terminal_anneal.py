"""`TerminalAnneal`: WSD's warmup and cooldown around a feedback controller. Against the open-loop `WSD` (a
constant inner policy), against a plain reference of the 1-sqrt and linear cooldowns from the controller's LR,
the floor at the budget's end, and save/resume across the switch."""

from __future__ import annotations

import json
import math

import pytest
from omegaconf import OmegaConf

from adaptive_lr.schedulers import (
    WSD,
    Fixed,
    Observation,
    PlateauFeedback,
    PolicyConfigError,
    TerminalAnneal,
)

BASE_LRS = [0.1, 0.03]


def values(n: int) -> list[float]:
    """A loss that falls fast (the controller raises), stalls (it cuts), then falls by 0.6% a tick for good: a new
    best every second tick, which neither cuts (patience 2) nor raises (2 improving decisions in a row)."""
    fast = [8.0 - t for t in range(7)]
    return (fast + [2.0] * 9 + [2.0 * 0.994**k for k in range(1, n)])[:n]


def controller() -> PlateauFeedback:
    return PlateauFeedback(monitor="val_loss", smoothing=0.0, patience=2, cooldown=1, raise_patience=2,
                           up_factor=2.0, min_factor=1 / 16)


def drive(policy, ticks: int, base_lrs=BASE_LRS) -> list[list[float]]:
    """Every group's LR at ticks 0..ticks, the policy observing `values`."""
    seen = values(ticks)
    rows = [policy.reset(list(base_lrs))]
    rows += [policy.observe(Observation(step=t, epoch=t, metrics={"val_loss": seen[t - 1]}))
             for t in range(1, ticks + 1)]
    return rows


def cooldown_reference(anchor: float, t: int, total: int, fraction: float, shape: str, floor: float) -> float:
    """The cooldown of the rule, written out: from `anchor` at `s` to `floor` at `total`, held after."""
    s = (1 - fraction) * total
    if t >= total:
        return floor
    p = (t - s) / (total - s)
    return floor + (anchor - floor) * (1 - (p if shape == "linear" else math.sqrt(p)))


WSD_CASES = [dict(warmup_fraction=w, fraction=c, shape=shape)
             for w, c in [(0.0, 0.2), (0.05, 0.2), (0.1, 0.9), (0.0, 1.0)] for shape in ("1-sqrt", "linear")]


@pytest.mark.parametrize("kwargs", WSD_CASES, ids=lambda kw: f"w{kw['warmup_fraction']}-c{kw['fraction']}-"
                                                            f"{kw['shape']}")
def test_with_a_constant_inner_policy_it_is_the_open_loop_wsd_tick_for_tick(kwargs):
    total, floor = 117, 1e-4
    ours = drive(TerminalAnneal(Fixed(), total=total, floor=floor, **kwargs), ticks=140)
    wsd = WSD(total_steps=total, warmup_fraction=kwargs["warmup_fraction"], cooldown_fraction=kwargs["fraction"],
              shape=kwargs["shape"], eta_min=floor)

    assert ours == drive(wsd, ticks=140)  # exactly: the ablation feedback_wsd vs wsd differs in the stable phase only


@pytest.mark.parametrize("shape", ["1-sqrt", "linear"])
@pytest.mark.parametrize("total, fraction", [(150, 0.3), (117, 0.2)])  # the switch at tick 105, at 93.6
def test_the_anneal_starts_from_the_controllers_lr_and_matches_a_plain_reference(total, fraction, shape):
    floor, ticks = 1e-5, total + 10
    inner = controller()
    ours = drive(TerminalAnneal(inner, total=total, fraction=fraction, shape=shape, floor=floor), ticks)
    alone = drive(controller(), ticks)  # the controller steering the whole run by itself

    first = math.ceil((1 - fraction) * total)  # the first annealed tick
    assert ours[:first] == alone[:first]  # 1) before the switch: the controller's LRs, untouched
    anchor = alone[first - 1]
    assert anchor == [lr * 0.5 for lr in BASE_LRS]  # raised twice by the fast fall, cut thrice by the stall
    assert inner.tick == first - 1  # 2) the controller is not asked after the switch
    for i, base in enumerate(anchor):  # 3) the cooldown from the controller's LR, over 100+ ticks in all
        reference = [cooldown_reference(base, t, total, fraction, shape, floor) for t in range(first, ticks + 1)]
        assert [row[i] for row in ours[first:]] == pytest.approx(reference, rel=1e-12, abs=0)
    assert ticks + 1 > 100


@pytest.mark.parametrize("total, fraction, floor", [(20, 0.2, 0.0), (37, 0.3, 1e-6), (5, 1.0, 0.0), (1, 0.5, 0.0)])
def test_the_floor_is_reached_exactly_at_the_end_of_the_budget_and_held(total, fraction, floor):
    for shape in ("1-sqrt", "linear"):
        rows = drive(TerminalAnneal(controller(), total=total, fraction=fraction, shape=shape, floor=floor),
                     ticks=total + 3)
        assert all(lr > floor for row in rows[:total] for lr in row)  # every trained tick still learns
        assert rows[total:] == [[floor, floor]] * 4


def test_decisions_are_the_controllers_then_anneal():
    policy = TerminalAnneal(controller(), total=10, fraction=0.3)
    policy.reset(BASE_LRS)
    actions = []
    for t, v in enumerate(values(12), start=1):
        policy.observe(Observation(step=t, epoch=t, metrics={"val_loss": v}))
        actions.append(policy.last_decision.action)

    assert actions == ["hold", "hold", "raise", "hold", "raise", "hold"] + ["anneal"] * 6
    assert policy.last_decision.lr_before == policy.last_decision.lr_after == 0.0  # held at the floor


def test_the_wrapper_answers_for_its_controller_and_its_warmup_scales_it():
    inner = controller()
    policy = TerminalAnneal(inner, total=20, warmup_fraction=0.1, start_factor=0.5)

    assert (policy.monitor, policy.mode, policy.needs_metrics, policy.needs_probe) == ("val_loss", "min", True,
                                                                                        False)
    assert not TerminalAnneal(Fixed(), total=20).needs_metrics
    assert drive(policy, ticks=2) == [[lr * f for lr in BASE_LRS] for f in (0.5, 0.75, 1.0)]
    assert inner.lrs == BASE_LRS  # the controller's own LRs are not scaled


def test_resume_at_every_tick_across_the_switch_continues_identically():
    def make():
        return TerminalAnneal(controller(), total=30, fraction=0.3, warmup_fraction=0.1, shape="1-sqrt", floor=1e-5)

    def run(policy, ticks):
        out = []
        for t in ticks:
            lrs = policy.observe(Observation(step=t, epoch=t, metrics={"val_loss": seen[t - 1]}))
            out.append((lrs, policy.last_decision.action))
        return out

    seen = values(34)
    reference = make()
    reference.reset(BASE_LRS)
    expected = run(reference, range(1, 35))
    assert {a for _, a in expected} >= {"raise", "cut_plateau", "anneal"}
    for k in range(35):
        first = make()
        first.reset(BASE_LRS)
        run(first, range(1, k + 1))
        resumed = make()  # never reset: the state alone must be enough
        resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
        assert resumed.lrs == first.lrs and resumed.tick == k
        assert run(resumed, range(k + 1, 35)) == expected[k:], f"resumed at {k}"


BAD = [
    (lambda: TerminalAnneal("plateau_feedback", total=10), "policy"),
    (lambda: TerminalAnneal(Fixed(), total=0), "total"),
    (lambda: TerminalAnneal(Fixed(), total=10.5), "total"),
    (lambda: TerminalAnneal(Fixed(), total=10, fraction=0.0), "fraction"),
    (lambda: TerminalAnneal(Fixed(), total=10, fraction=0.5, warmup_fraction=0.6), "fraction"),
    (lambda: TerminalAnneal(Fixed(), total=10, shape="cosine"), "shape"),
    (lambda: TerminalAnneal(Fixed(), total=10, floor=-1.0), "floor"),
    (lambda: TerminalAnneal(Fixed(), total=10, warmup_fraction=1.0), "warmup_fraction"),
]


@pytest.mark.parametrize("build, name", BAD, ids=[f"{i}-{name}" for i, (_, name) in enumerate(BAD)])
def test_bad_argument_is_named(build, name):
    with pytest.raises(PolicyConfigError, match=rf"^{name} must"):
        build()


def load(name: str, max_epochs: int = 30):
    """configs/scheduler/<name>.yaml as a run composes it (its `_base_` block included)."""
    from adaptive_lr.config import compose

    return compose([f"scheduler={name}", f"trainer.max_epochs={max_epochs}"]).scheduler


def test_feedback_wsd_config_is_wsd_with_the_stable_phase_under_plateau_feedback():
    import hydra

    cfg, wsd_cfg = load("feedback_wsd"), load("wsd")
    policy = hydra.utils.instantiate(cfg.policy)
    assert cfg.name == "feedback_wsd" and cfg.adaptive is True and cfg.interval == wsd_cfg.interval == "epoch"
    assert type(policy) is TerminalAnneal and type(policy.policy) is PlateauFeedback
    assert policy.monitor == "val_loss" and policy.schedule.total_steps == 30
    # the same warmup and cooldown as wsd.yaml: with a constant inner policy, the same LRs
    anneal_args = {k: v for k, v in OmegaConf.to_container(cfg.policy, resolve=True).items() if k not in ("_target_", "policy")}
    open_loop = hydra.utils.instantiate(wsd_cfg.policy)
    assert drive(TerminalAnneal(Fixed(), **anneal_args), ticks=33) == drive(open_loop, ticks=33)


def test_plateau_feedback_config_smooths_the_step_loss_and_decides_at_a_step_interval():
    import hydra

    cfg = load("plateau_feedback")
    policy = hydra.utils.instantiate(cfg.policy)
    assert cfg.name == "plateau_feedback" and cfg.adaptive is True and cfg.interval == "step"
    assert type(policy) is PlateauFeedback and policy.monitor == "train_loss_step"
    assert policy.window <= policy.decide_every and policy.min_factor <= 1 <= policy.max_factor
