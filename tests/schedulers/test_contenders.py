"""The study's contenders against their references: `Plateau` vs torch's ReduceLROnPlateau LR for LR, `OneCycle`
vs OneCycleLR, `LinearDecay` vs LinearLR / LambdaLR and `WSD` vs a plain reference, two param groups each."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from torch.optim import lr_scheduler as tl

from adaptive_lr.schedulers import (
    WSD,
    LinearDecay,
    LRPolicy,
    Observation,
    OneCycle,
    Plateau,
    PolicyConfigError,
    PolicyLR,
)

BASE_LRS = [0.1, 0.03]


def optimizer() -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))]
    return torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, BASE_LRS, strict=True)], momentum=0.9)


def group_lrs(opt: torch.optim.Optimizer) -> list[float]:
    return [g["lr"] for g in opt.param_groups]


def torch_lrs(make_scheduler, ticks: int) -> torch.Tensor:
    opt = optimizer()
    sched = make_scheduler(opt)
    rows = [group_lrs(opt)]
    for _ in range(ticks):
        opt.step()
        sched.step()
        rows.append(group_lrs(opt))
    return torch.tensor(rows, dtype=torch.float64)


def policy_lrs(policy: LRPolicy, ticks: int) -> torch.Tensor:
    rows = [policy.reset(BASE_LRS)]
    rows += [policy.observe(Observation(step=t, epoch=t)) for t in range(1, ticks + 1)]
    return torch.tensor(rows, dtype=torch.float64)


def assert_close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    assert ours.shape == theirs.shape and ours.shape[0] > 100
    assert torch.allclose(ours, theirs, rtol=1e-9, atol=1e-15), (ours - theirs).abs().max()


# -- plateau: ReduceLROnPlateau, LR for LR ------------------------------------------------------------------------
def walk(seed: int, n: int = 60, start: float = 5.0, drift: float = -0.03, noise: float = 0.05) -> list[float]:
    """A noisy multiplicative walk (a loss with drift < 0, an accuracy with drift > 0)."""
    rng = random.Random(seed)
    values, v = [], start
    for _ in range(n):
        v *= math.exp(drift + noise * rng.gauss(0.0, 1.0))
        values.append(v)
    return values


PLATEAU_CASES = {
    # name: (Plateau/ReduceLROnPlateau keyword arguments, metric sequence)
    "min_rel_falling_then_flat": ({"patience": 2}, [8, 4, 2, 3, 3, 3, 3, 2.5, 2.4, 2.4] + [2.4] * 30 + walk(1)),
    "min_rel_noisy_loss": ({"patience": 3, "factor": 0.5}, walk(2, n=120)),
    "max_rel_accuracy": ({"mode": "max", "patience": 2, "factor": 0.5},
                         [min(0.99, a) for a in walk(3, n=100, start=0.1, drift=0.02)]),
    "min_abs": ({"threshold_mode": "abs", "threshold": 0.05, "patience": 1, "factor": 0.7}, walk(4, n=100)),
    "max_abs": ({"mode": "max", "threshold_mode": "abs", "threshold": 0.02, "patience": 2},
                walk(5, n=100, start=0.2, drift=0.01)),
    "cooldown": ({"patience": 1, "cooldown": 3, "factor": 0.5}, walk(6, n=100, drift=0.0)),
    "per_group_min_lr": ({"patience": 0, "factor": 0.5, "min_lr": [0.01, 1e-3]}, walk(7, n=100, drift=0.01)),
    "eps_skips_small_cuts": ({"patience": 0, "factor": 0.5, "eps": 2e-3}, walk(8, n=100, drift=0.01)),
    "scalar_min_lr_and_big_threshold": ({"patience": 2, "threshold": 0.1, "min_lr": 2e-3}, walk(9, n=100)),
    "nonfinite_values": ({"patience": 1, "factor": 0.5},
                         [3.0, 2.0, math.nan, 1.9, math.inf, 1.5, math.nan, math.nan] + walk(10, n=100, drift=0.0)),
    "negative_values_rel": ({"patience": 2, "factor": 0.5}, [-v for v in walk(11, n=100, drift=0.02)]),
    "max_negative_values_rel": ({"mode": "max", "patience": 1}, [-v for v in walk(12, n=100)]),
}


@pytest.mark.parametrize("name", PLATEAU_CASES)
def test_plateau_equals_reduce_lr_on_plateau_lr_for_lr(name):
    kwargs, values = PLATEAU_CASES[name]
    opt = optimizer()
    theirs = tl.ReduceLROnPlateau(opt, **kwargs)
    ours = Plateau(monitor="val_loss", **kwargs)
    assert ours.reset(BASE_LRS) == group_lrs(opt)
    cuts = 0
    for t, value in enumerate(values, start=1):
        opt.step()
        theirs.step(value)
        lrs = ours.observe(Observation(step=t, epoch=t, metrics={"val_loss": value}))
        assert lrs == group_lrs(opt), f"tick {t}, value {value}"
        assert (ours.num_bad, ours.cooldown_left) == (theirs.num_bad_epochs, theirs.cooldown_counter)
        assert ours.best == theirs.best or (math.isnan(ours.best) and math.isnan(theirs.best))
        cuts += ours.last_decision.action == "cut_plateau"
    assert cuts >= 2, "the sequence never exercised a cut"


def test_plateau_through_policy_lr_equals_reduce_lr_on_plateau():
    kwargs, values = PLATEAU_CASES["per_group_min_lr"]
    opt, ref = optimizer(), optimizer()
    sched, theirs = PolicyLR(opt, Plateau(**kwargs)), tl.ReduceLROnPlateau(ref, **kwargs)
    for value in values:
        opt.step(), ref.step()
        sched.step(value)
        theirs.step(value)
        assert group_lrs(opt) == group_lrs(ref) == sched.get_last_lr()


def test_plateau_records_its_decisions():
    policy = Plateau(patience=1, cooldown=1, factor=0.5)
    policy.reset(BASE_LRS)
    actions = [policy.observe(Observation(t, t, {"val_loss": v})) and policy.last_decision.action
               for t, v in enumerate([3, 3, 3, 3, 3, 2], start=1)]
    assert actions == ["hold", "hold", "cut_plateau", "cooldown", "hold", "hold"]
    assert policy.lrs == [0.05, 0.015]


def test_plateau_per_group_min_lr_must_match_the_groups():
    with pytest.raises(PolicyConfigError, match="min_lr has 3 values but the optimizer has 2 param groups"):
        Plateau(min_lr=[0.0, 0.0, 0.0]).reset(BASE_LRS)


# -- onecycle, linear, wsd ------------------------------------------------------------------------------------------
ONECYCLE_CASES = [
    {},
    {"anneal_strategy": "linear"},
    {"three_phase": True},
    {"three_phase": True, "anneal_strategy": "linear", "pct_start": 0.25},
    {"pct_start": 0.1, "div_factor": 10.0, "final_div_factor": 100.0},
]


@pytest.mark.parametrize("kwargs", ONECYCLE_CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()) or "default")
def test_onecycle_matches_one_cycle_lr(kwargs):
    total = 120

    def theirs(opt):
        return tl.OneCycleLR(opt, max_lr=BASE_LRS, total_steps=total, cycle_momentum=False, **kwargs)

    ours = policy_lrs(OneCycle(total_steps=total, **kwargs), ticks=total + 10)
    assert_close(ours[:total], torch_lrs(theirs, ticks=total - 1))
    assert (ours[total:] == ours[total - 1]).all()  # past the budget: held at the floor
    assert torch.allclose(ours[-1], torch.tensor(BASE_LRS, dtype=torch.float64) / 25e4 * (
        25.0 / kwargs.get("div_factor", 25.0)) * (1e4 / kwargs.get("final_div_factor", 1e4)))


def test_linear_decay_matches_linear_lr_to_zero_and_stays_there():
    theirs = torch_lrs(lambda opt: tl.LinearLR(opt, start_factor=1.0, end_factor=0.0, total_iters=100), ticks=130)
    ours = policy_lrs(LinearDecay(total_steps=100), ticks=130)
    assert_close(ours, theirs)
    assert torch.equal(ours[100:], torch.zeros_like(ours[100:]))


def test_linear_decay_to_a_floor_matches_lambda_lr():
    floor, total = 1e-3, 110

    def theirs(opt):
        return tl.LambdaLR(opt, [lambda t, b=b: (floor + (b - floor) * (1 - min(t, total) / total)) / b for b in BASE_LRS])

    assert_close(policy_lrs(LinearDecay(total, eta_min=floor), ticks=130), torch_lrs(theirs, ticks=130))


def wsd_reference(base: float, t: int, total: int, warmup_fraction: float, cooldown_fraction: float, shape: str,
                  eta_min: float, start_factor: float) -> float:
    """The rule as plainly as it can be written: which part of the budget is `t` in, then that part's formula."""
    warmup_end = warmup_fraction * total
    cooldown_start = total - cooldown_fraction * total
    if t < warmup_end:
        return base * (start_factor + (1 - start_factor) * t / warmup_end)
    if t < cooldown_start:
        return base
    if t >= total:
        return eta_min
    done = (t - cooldown_start) / (total - cooldown_start)
    left = 1 - done if shape == "linear" else 1 - math.sqrt(done)
    return eta_min + (base - eta_min) * left


WSD_CASES = [
    dict(warmup_fraction=0.0, cooldown_fraction=0.2, shape="linear", eta_min=0.0, start_factor=0.1),
    dict(warmup_fraction=0.1, cooldown_fraction=0.2, shape="1-sqrt", eta_min=0.0, start_factor=0.1),
    dict(warmup_fraction=0.05, cooldown_fraction=0.35, shape="linear", eta_min=1e-3, start_factor=0.01),
    dict(warmup_fraction=0.3, cooldown_fraction=0.7, shape="1-sqrt", eta_min=1e-4, start_factor=0.5),
    dict(warmup_fraction=0.0, cooldown_fraction=1.0, shape="1-sqrt", eta_min=0.0, start_factor=1.0),
]


@pytest.mark.parametrize("kwargs", WSD_CASES, ids=lambda kw: f"w{kw['warmup_fraction']}-c{kw['cooldown_fraction']}-"
                                                         f"{kw['shape']}")
def test_wsd_matches_a_plain_reference(kwargs):
    total, ticks = 117, 140
    expected = torch.tensor([[wsd_reference(b, t, total, **kwargs) for b in BASE_LRS] for t in range(ticks + 1)],
                            dtype=torch.float64)
    ours = policy_lrs(WSD(total_steps=total, **kwargs), ticks=ticks)
    assert_close(ours, expected)
    assert (ours[:, 0] == BASE_LRS[0]).any() or kwargs["cooldown_fraction"] + kwargs["warmup_fraction"] == 1.0


# -- resume and configuration ---------------------------------------------------------------------------------------
RESUMABLE = {
    "plateau": lambda: Plateau(patience=1, cooldown=2, factor=0.5, min_lr=[0.01, 1e-3]),
    "onecycle": lambda: OneCycle(total_steps=100, three_phase=True),
    "linear": lambda: LinearDecay(total_steps=100, eta_min=1e-4),
    "wsd": lambda: WSD(total_steps=100, warmup_fraction=0.1, shape="1-sqrt"),
}


@pytest.mark.parametrize("name", RESUMABLE)
def test_state_dict_round_trip_at_any_tick_continues_identically(name):
    values = walk(13, n=110, drift=0.0)

    def run(policy, ticks):
        return [policy.observe(Observation(t, t, {"val_loss": values[t - 1]})) for t in ticks]

    reference = RESUMABLE[name]()
    reference.reset(BASE_LRS)
    expected = run(reference, range(1, 111))
    assert len({tuple(lrs) for lrs in expected}) > 5

    for k in range(0, 111, 3):
        first = RESUMABLE[name]()
        first.reset(BASE_LRS)
        run(first, range(1, k + 1))
        resumed = RESUMABLE[name]()  # never reset: the state alone must be enough
        resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
        assert resumed.lrs == first.lrs and resumed.tick == k
        assert run(resumed, range(k + 1, 111)) == expected[k:], f"resumed at {k}"


BAD = [
    (lambda: Plateau(factor=1.0), "factor"),
    (lambda: Plateau(patience=-1), "patience"),
    (lambda: Plateau(threshold=-1e-4), "threshold"),
    (lambda: Plateau(threshold_mode="relative"), "threshold_mode"),
    (lambda: Plateau(mode="up"), "mode"),
    (lambda: Plateau(min_lr=[0.0, -1.0]), "min_lr"),
    (lambda: Plateau(eps=-1.0), "eps"),
    (lambda: OneCycle(total_steps=0), "total_steps"),
    (lambda: OneCycle(100, anneal_strategy="cosine"), "anneal_strategy"),
    (lambda: OneCycle(100, pct_start=1.5), "pct_start"),
    (lambda: OneCycle(10, pct_start=0.1), "pct_start"),  # a warmup phase of zero length: torch divides by zero
    (lambda: LinearDecay(total_steps=2.5), "total_steps"),
    (lambda: WSD(100, cooldown_fraction=0.0), "cooldown_fraction"),
    (lambda: WSD(100, warmup_fraction=0.5, cooldown_fraction=0.6), "cooldown_fraction"),
    (lambda: WSD(100, shape="cosine"), "shape"),
]


@pytest.mark.parametrize("build, name", BAD, ids=[f"{i}-{name}" for i, (_, name) in enumerate(BAD)])
def test_bad_argument_is_named(build, name):
    with pytest.raises(PolicyConfigError, match=rf"^{name} must|\({name}="):
        build()


@pytest.mark.parametrize("name, cls", [("plateau", Plateau), ("onecycle", OneCycle), ("wsd", WSD),
                                       ("linear", LinearDecay)])
def test_composed_config_builds_a_run_with_the_contender(name, cls):
    from adaptive_lr.config import compose
    from adaptive_lr.runner import build

    cfg = compose([f"scheduler={name}", "task=xor_clean", "data.n_samples=80", "trainer.max_epochs=7"])
    policy = build(cfg)["policy"]
    assert type(policy) is cls and cfg.scheduler.name == name and cfg.scheduler.interval == "epoch"
    assert cfg.scheduler.adaptive is (cls is Plateau)  # the reference controller reacts to feedback
    assert policy.monitor == "val_loss" if cls is Plateau else policy.total_steps == 7
