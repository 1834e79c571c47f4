"""`Hypergradient` in plain PyTorch loops: against slow textbook SGD-HD / Adam-HD loops, exact numbers, resume."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from adaptive_lr.schedulers import ACTIONS, Observation, PolicyConfigError, PolicyLR
from adaptive_lr.schedulers.hypergradient import Hypergradient

DIM = 5
BASE_LR = 0.05


def quadratic() -> tuple[torch.Tensor, torch.Tensor]:
    """f(theta) = 0.5 theta' A theta - b' theta, A symmetric positive definite (eigenvalues in [0.5, 4.5])."""
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(DIM, DIM, generator=g, dtype=torch.float64))
    a = q @ torch.diag(torch.linspace(0.5, 4.5, DIM, dtype=torch.float64)) @ q.T
    return a, torch.randn(DIM, generator=g, dtype=torch.float64)


def grad_of(theta: torch.Tensor) -> torch.Tensor:
    a, b = quadratic()
    return a @ theta - b


def loss_of(theta: torch.Tensor) -> torch.Tensor:
    a, b = quadratic()
    return 0.5 * theta @ a @ theta - b @ theta


def theta0() -> torch.Tensor:
    return torch.linspace(-1.0, 1.0, DIM, dtype=torch.float64)


def drive(opt_factory, policy: Hypergradient, n: int, lr: float = BASE_LR) -> tuple[list[float], torch.Tensor, list]:
    """The policy through PolicyLR: backward, sched.step() (the pre-step decision), optimizer.step()."""
    theta = torch.nn.Parameter(theta0())
    opt = opt_factory([theta])
    for group in opt.param_groups:
        group["lr"] = lr
    sched = PolicyLR(opt, policy)
    lrs, decisions = [], []
    for _ in range(n):
        opt.zero_grad()
        loss_of(theta).backward()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])  # the LR this update uses
        decisions.append(policy.last_decision)
        opt.step()
    return lrs, theta.detach(), decisions


# -- the slow, obvious references (Baydin et al. 2018, Algorithm 1 and its Adam variant) -------------------------------
def reference_sgd_hd(
    beta: float, n: int, multiplicative: bool = False, lr: float = BASE_LR
) -> tuple[list[float], torch.Tensor]:
    theta, prev_grad = theta0(), torch.zeros(DIM, dtype=torch.float64)
    lrs = []
    for _ in range(n):
        g = grad_of(theta)
        if multiplicative:
            norms = g.norm() * prev_grad.norm()
            cos = float(g @ prev_grad / norms) if norms > 0 else 0.0
            lr = lr * (1 + beta * cos)
        else:
            lr = lr + beta * float(g @ prev_grad)  # lr - beta * dloss/dlr, dloss/dlr = -g . prev_grad
        lrs.append(lr)
        theta = theta - lr * g
        prev_grad = g
    return lrs, theta


def reference_adam_hd(beta: float, n: int, b1=0.9, b2=0.999, eps=1e-8) -> tuple[list[float], torch.Tensor]:
    theta, lr = theta0(), BASE_LR
    m, v, u = (torch.zeros(DIM, dtype=torch.float64) for _ in range(3))
    lrs = []
    for t in range(1, n + 1):
        g = grad_of(theta)
        lr = lr + beta * float(g @ u)
        lrs.append(lr)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        u = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps)
        theta = theta - lr * u
    return lrs, theta


def sgd(params):
    return torch.optim.SGD(params, lr=BASE_LR)


def adam(params):
    return torch.optim.Adam(params, lr=BASE_LR)


def test_additive_sgd_matches_textbook_sgd_hd_over_100_steps():
    lrs, theta, decisions = drive(sgd, Hypergradient(variant="additive", beta=0.002), 100)
    ref_lrs, ref_theta = reference_sgd_hd(beta=0.002, n=100)
    assert lrs[0] == BASE_LR  # u_0 = 0: the first update keeps the LR
    assert max(lrs) > 1.5 * BASE_LR  # the LR really moved (up while gradients agree)
    assert lrs == pytest.approx(ref_lrs, rel=1e-9)
    assert torch.allclose(theta, ref_theta, rtol=1e-9, atol=1e-12)
    assert [d.action for d in decisions] == ["hypergradient"] * 100
    assert ACTIONS["hypergradient"] == 9


def test_multiplicative_sgd_matches_the_normalised_textbook_rule():
    # started near the stability edge (2 / 4.5): the LR first grows, then overshoots and is cut back
    lrs, _, decisions = drive(sgd, Hypergradient(variant="multiplicative", beta=0.02), 100, lr=0.35)
    ref_lrs, _ = reference_sgd_hd(beta=0.02, n=100, multiplicative=True, lr=0.35)
    # the measured direction (anchor - theta) / lr rounds differently from the exact gradient: 1e-9 relative
    # errors that the edge-of-stability dynamics grow to ~3e-9 over 100 steps
    assert lrs == pytest.approx(ref_lrs, rel=1e-7)
    assert max(lrs) > 0.5 and min(lrs[10:]) < 0.33
    assert decisions[0].extra == {"hypergrad": 0.0, "cos": 0.0}
    cos = [d.extra["cos"] for d in decisions[1:]]
    assert all(-1 <= c <= 1 for c in cos) and min(cos) < 0 < max(cos)  # both directions happened
    for d in decisions:
        assert d.factor == pytest.approx(1 + 0.02 * d.extra["cos"], rel=1e-12)


def test_additive_adam_matches_textbook_adam_hd():
    lrs, theta, _ = drive(adam, Hypergradient(variant="additive", beta=1e-4), 100)
    ref_lrs, ref_theta = reference_adam_hd(beta=1e-4, n=100)
    assert abs(lrs[-1] - BASE_LR) > 1e-3  # the LR moved
    assert lrs == pytest.approx(ref_lrs, rel=1e-7)
    assert torch.allclose(theta, ref_theta, rtol=1e-7, atol=1e-10)


def test_exact_first_numbers_on_a_one_parameter_problem():
    # f = 0.5 * w^2, SGD lr 0.1: g0 = 2, w1 = 1.8; g1 = 1.8, u = (2 - 1.8) / 0.1 = 2, g.u = 3.6
    w = torch.nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    opt = torch.optim.SGD([w], lr=0.1)
    policy = Hypergradient(variant="additive", beta=0.01)
    sched = PolicyLR(opt, policy)
    seen = []
    for _ in range(3):
        opt.zero_grad()
        (0.5 * w * w).sum().backward()
        sched.step()
        seen += [opt.param_groups[0]["lr"], policy.last_decision.extra["hypergrad"]]
        opt.step()
    # step 0: u = 0; step 1: lr = 0.1 + 0.01 * 3.6 = 0.136, w2 = 1.8 - 0.136 * 1.8 = 1.5552;
    # step 2: u = (1.8 - 1.5552) / 0.136 = 1.8, g.u = 1.5552 * 1.8 = 2.79936, lr = 0.136 + 0.0279936
    assert seen == pytest.approx([0.1, 0.0, 0.136, 3.6, 0.1639936, 2.79936], rel=1e-12)


def test_lr_is_clamped_and_groups_move_independently():
    a = torch.nn.Parameter(torch.tensor([3.0, -1.0], dtype=torch.float64))
    b = torch.nn.Parameter(torch.tensor([0.5], dtype=torch.float64))
    opt = torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}])
    policy = Hypergradient(variant="additive", beta=10.0, max_lr=0.3)
    sched = PolicyLR(opt, policy)
    history = []
    for _ in range(4):
        opt.zero_grad()
        ((a * a).sum() + 0.01 * (b * b).sum()).backward()
        sched.step()
        history.append([g["lr"] for g in opt.param_groups])
        opt.step()
    assert history[0] == [0.1, 0.01]
    # group 0: g1 = 2 a1 = [4.8, -1.6], u = g0 = [6, -2]: g.u = 32, 0.1 + 10 * 32 is clamped at max_lr
    assert history[1][0] == 0.3
    # group 1 sees only its own hypergradient: g1 = 0.02 b1 = 0.02 * 0.4999, u = g0 = 0.02 * 0.5
    assert history[1][1] == pytest.approx(0.01 + 10.0 * (0.02 * 0.5 * (1 - 0.01 * 0.02)) * (0.02 * 0.5), rel=1e-12)


def test_non_finite_gradient_holds_the_lr():
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = torch.optim.SGD([w], lr=0.1)
    policy = Hypergradient(variant="multiplicative", beta=0.1)
    sched = PolicyLR(opt, policy)
    for grad in ([1.0], [1.0], [math.nan]):
        w.grad = torch.tensor(grad)
        sched.step()
        opt.step()
    assert policy.last_decision.action == "hold"
    assert policy.lrs == [pytest.approx(0.11)]  # the second decision raised by 1 + 0.1 * cos = 1.1, then held


@pytest.mark.parametrize("make_opt", [sgd, adam], ids=["sgd", "adam"])
def test_resume_at_step_k_continues_identically(make_opt):
    n, k = 40, 17
    make_policy = lambda: Hypergradient(variant="multiplicative", beta=0.1)  # noqa: E731
    full_lrs, full_theta, _ = drive(make_opt, make_policy(), n)

    theta = torch.nn.Parameter(theta0())
    opt = make_opt([theta])
    sched = PolicyLR(opt, make_policy())
    for _ in range(k):
        opt.zero_grad()
        loss_of(theta).backward()
        sched.step()
        opt.step()
    # the optimizer's state_dict holds its live moment tensors: deep-copied, like a checkpoint on disk
    saved = {"theta": theta.detach().clone(), "opt": copy.deepcopy(opt.state_dict()), "sched": sched.state_dict()}
    assert saved["sched"]["policy"]["anchor"][0][0].data_ptr() != theta.data_ptr()  # a copy, not the live tensor
    for _ in range(3):  # training on must not change what was saved
        opt.zero_grad()
        loss_of(theta).backward()
        sched.step()
        opt.step()

    resumed_theta = torch.nn.Parameter(saved["theta"].clone())
    resumed_opt = make_opt([resumed_theta])
    resumed_policy = make_policy()
    resumed = PolicyLR(resumed_opt, resumed_policy)
    resumed_opt.load_state_dict(saved["opt"])
    resumed.load_state_dict(saved["sched"])
    lrs = [resumed_opt.param_groups[0]["lr"]]
    for _ in range(n - k):
        resumed_opt.zero_grad()
        loss_of(resumed_theta).backward()
        resumed.step()
        lrs.append(resumed_opt.param_groups[0]["lr"])
        resumed_opt.step()
    assert lrs[0] == full_lrs[k - 1]
    assert lrs[1:] == full_lrs[k:]  # exact: the restored anchor gives the same next direction
    assert torch.equal(resumed_theta.detach(), full_theta)
    assert len(set(full_lrs[k:])) > 5


def test_observe_before_bind_is_refused():
    policy = Hypergradient()
    policy.reset([0.1])
    with pytest.raises(RuntimeError, match="before bind"):
        policy.observe(Observation(step=1, epoch=0))


def test_a_restored_anchor_for_other_parameters_is_refused():
    policy = Hypergradient()
    PolicyLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=0.1), policy)
    state = policy.state_dict()
    other = PolicyLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(4))], lr=0.1), Hypergradient())
    with pytest.raises(PolicyConfigError, match=r"anchor has parameter shapes \[\[\(3,\)\]\], the optimizer \[\[\(4,"):
        other.load_state_dict({"policy": state, "last_epoch": 0, "base_lrs": [0.1]})


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"variant": "exponential"}, "variant"),
        ({"beta": 0.0}, "beta"),
        ({"variant": "multiplicative", "beta": 1.0}, "beta"),
        ({"variant": "additive", "beta": -1e-3}, "beta"),
        ({"min_lr": 0.0}, "min_lr"),
        ({"min_lr": 0.1, "max_lr": 0.01}, "max_lr"),
    ],
)
def test_bad_arguments_are_named(kwargs, name):
    with pytest.raises(PolicyConfigError, match=rf"^{name} must") as info:
        Hypergradient(**kwargs)
    assert repr(kwargs[name]) in str(info.value)


def test_composed_config_builds_a_step_interval_hypergradient():
    from adaptive_lr.config import compose
    from adaptive_lr.runner import build

    cfg = compose(["scheduler=hypergradient", "task=xor_clean", "data.n_samples=80"])
    parts = build(cfg)
    assert isinstance(parts["policy"], Hypergradient)
    assert parts["policy"].variant == cfg.scheduler.policy.variant and parts["policy"].decides_before_step
    assert cfg.scheduler.interval == "step" and cfg.scheduler.frequency == 20  # every 20th update (overhead)


def test_the_flat_work_buffers_are_reused_across_decisions_and_are_not_state():
    policy = Hypergradient()
    drive(torch.optim.SGD, policy, 2)
    buffers = {key: buf.data_ptr() for key, buf in policy._scratch.items()}
    assert buffers  # d and g of group 0
    drive_more = PolicyLR(torch.optim.SGD([torch.nn.Parameter(theta0())], lr=BASE_LR), policy)  # same shapes
    theta = drive_more.optimizer.param_groups[0]["params"][0]
    for _ in range(3):
        drive_more.optimizer.zero_grad()
        loss_of(theta).backward()
        drive_more.step()
    assert {key: buf.data_ptr() for key, buf in policy._scratch.items()} == buffers
    assert "_scratch" not in str(policy.state_dict())
