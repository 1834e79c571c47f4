"""Open-loop baselines vs `torch.optim.lr_scheduler` over 100 ticks, tick 0 included, two param groups."""

from __future__ import annotations

import pytest
import torch
from torch.optim import lr_scheduler as tl

from adaptive_lr.schedulers import Cosine, Fixed, LRPolicy, Observation, StepDecay, Warmup

BASE_LRS = [0.1, 0.03]
TICKS = 100


def _optimizer() -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))]
    return torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, BASE_LRS, strict=True)], momentum=0.9)


def torch_lrs(make_scheduler, ticks: int = TICKS) -> torch.Tensor:
    opt = _optimizer()
    sched = make_scheduler(opt)
    rows = [[g["lr"] for g in opt.param_groups]]
    for _ in range(ticks):
        opt.step()
        sched.step()
        rows.append([g["lr"] for g in opt.param_groups])
    return torch.tensor(rows, dtype=torch.float64)


def policy_lrs(policy: LRPolicy, ticks: int = TICKS) -> torch.Tensor:
    rows = [policy.reset(BASE_LRS)]
    for t in range(1, ticks + 1):
        rows.append(policy.observe(Observation(step=t, epoch=t)))
    return torch.tensor(rows, dtype=torch.float64)


def assert_same(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    assert ours.shape == theirs.shape == (TICKS + 1, len(BASE_LRS))
    assert torch.allclose(ours, theirs, rtol=1e-9, atol=1e-15), (ours - theirs).abs().max()


def test_fixed_matches_constant_lambda_lr():
    assert_same(policy_lrs(Fixed()), torch_lrs(lambda opt: tl.LambdaLR(opt, lambda _: 1.0)))


def test_fixed_absolute_lr_overrides_every_group():
    lrs = policy_lrs(Fixed(lr=0.05))
    assert torch.equal(lrs, torch.full((TICKS + 1, len(BASE_LRS)), 0.05, dtype=torch.float64))


def test_step_decay_matches_step_lr():
    theirs = torch_lrs(lambda opt: tl.StepLR(opt, step_size=10, gamma=0.1))
    assert_same(policy_lrs(StepDecay(step_size=10, gamma=0.1)), theirs)


def test_cosine_matches_cosine_annealing_lr():
    assert_same(
        policy_lrs(Cosine(t_max=100, eta_min=1e-6)),
        torch_lrs(lambda opt: tl.CosineAnnealingLR(opt, T_max=100, eta_min=1e-6)),
    )


def test_cosine_holds_eta_min_after_t_max_where_torch_climbs_back():
    ours = policy_lrs(Cosine(t_max=40, eta_min=1e-6), ticks=TICKS)
    assert torch.equal(ours[40:], torch.full_like(ours[40:], 1e-6))
    theirs = torch_lrs(lambda opt: tl.CosineAnnealingLR(opt, T_max=40, eta_min=1e-6), ticks=TICKS)
    assert torch.allclose(ours[:41], theirs[:41], rtol=1e-9, atol=1e-15)
    assert (theirs[60] > 1e-3).all()  # torch is periodic: half way back up at 1.5 * T_max


def test_warmup_fixed_matches_linear_lr():
    assert_same(
        policy_lrs(Warmup(Fixed(), warmup=5, start_factor=0.1)),
        torch_lrs(lambda opt: tl.LinearLR(opt, start_factor=0.1, end_factor=1.0, total_iters=5)),
    )


def test_warmup_step_decay_matches_chained_linear_and_step_lr():
    def chained(opt):
        return tl.ChainedScheduler([tl.LinearLR(opt, 0.25, 1.0, total_iters=15), tl.StepLR(opt, 10, 0.5)])

    assert_same(policy_lrs(Warmup(StepDecay(10, 0.5), warmup=15, start_factor=0.25)), torch_lrs(chained))


def test_warmup_cosine_matches_chained_linear_and_cosine_when_eta_min_is_zero():
    # torch's recursive cosine is multiplicative (so chains exactly) only for eta_min = 0
    def chained(opt):
        warmup = tl.LinearLR(opt, 0.1, 1.0, total_iters=10)
        return tl.ChainedScheduler([warmup, tl.CosineAnnealingLR(opt, T_max=100, eta_min=0.0)])

    assert_same(policy_lrs(Warmup(Cosine(100, eta_min=0.0), warmup=10)), torch_lrs(chained))


def test_warmup_forwards_the_inner_policy_interface():
    assert Warmup(Fixed(), 3).needs_metrics is False
    assert Warmup(Fixed(), 3).monitor is None


@pytest.mark.parametrize("policy", [Fixed(), StepDecay(), Cosine(10), Warmup(Cosine(10), 3)])
def test_open_loop_policies_make_no_decisions(policy):
    policy.reset(BASE_LRS)
    policy.observe(Observation(step=1, epoch=0))
    assert policy.last_decision is None and not policy.needs_metrics
