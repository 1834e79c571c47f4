"""`LineSearch` in plain PyTorch loops: exact candidates and choices on hand-checked numbers, ties, resume."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from adaptive_lr.schedulers import ACTIONS, Observation, PolicyConfigError, PolicyLR
from adaptive_lr.schedulers.line_search import LineSearch


def setup_1d(lr: float = 0.1, **kwargs):
    """SGD on f(w) = (w - 3)^2 from w = 0; the probe is f itself, and records where it was evaluated."""
    w = torch.nn.Parameter(torch.tensor([0.0], dtype=torch.float64))
    opt = torch.optim.SGD([w], lr=lr)
    probed: list[float] = []

    def probe() -> float:
        probed.append(float(w.detach()))
        return float((w.detach() - 3) ** 2)

    policy = LineSearch(**kwargs)
    return w, opt, PolicyLR(opt, policy, probe=probe), policy, probed


def sgd_step(w, opt) -> None:
    opt.zero_grad()
    ((w - 3) ** 2).sum().backward()
    opt.step()


def test_exact_candidates_choices_and_lrs_decision_by_decision():
    w, opt, sched, policy, probed = setup_1d()
    seen = []
    for _ in range(3):
        sgd_step(w, opt)
        sched.step()
        d = policy.last_decision
        seen.append((d.action, d.extra["best_factor"], float(w), opt.param_groups[0]["lr"]))
    # 1) w: 0 -> 0.6 (grad -6, lr 0.1); candidates 0.3, 0.6, 1.2 -> 1.2 is best: w = 1.2, lr 0.2
    # 2) w: 1.2 -> 1.92 (grad -3.6, lr 0.2); candidates 1.56, 1.92, 2.64 -> factor 2: w = 2.64, lr 0.4
    # 3) w: 2.64 -> 2.928 (grad -0.72, lr 0.4); candidates 2.784, 2.928, 3.216 -> factor 1: lr stays 0.4
    assert probed == pytest.approx([0.3, 0.6, 1.2, 1.56, 1.92, 2.64, 2.784, 2.928, 3.216], abs=1e-12)
    assert [s[0] for s in seen] == ["line_search"] * 3
    assert [s[1] for s in seen] == [2.0, 2.0, 1.0]
    assert [s[2] for s in seen] == pytest.approx([1.2, 2.64, 2.928], abs=1e-12)
    assert [s[3] for s in seen] == pytest.approx([0.2, 0.4, 0.4], rel=1e-12)
    assert policy.last_decision.extra["probe_loss"] == pytest.approx(0.072**2, rel=1e-9)
    assert policy.last_decision.extra["probe_forwards_total"] == 9.0 == policy.probe_forwards
    assert ACTIONS["line_search"] == 10


def test_factor_one_keeps_the_parameters_bit_for_bit():
    w = torch.nn.Parameter(torch.tensor([2.64], dtype=torch.float64))
    opt = torch.optim.SGD([w], lr=0.4)
    sched = PolicyLR(opt, LineSearch(), probe=lambda: float((w - 3) ** 2))  # the anchor: 2.64
    sgd_step(w, opt)  # to 2.928: decision 3 of the test above
    before = w.detach().clone()
    sched.step()
    assert sched.policy.last_decision.extra["best_factor"] == 1.0
    assert torch.equal(w.detach(), before)


def test_ties_go_to_the_factor_closest_to_one_and_non_finite_losses_lose():
    w = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([w], lr=0.1)
    losses = iter([5.0, 5.0, 5.0, 7.0, math.nan, math.inf, math.nan, math.nan, math.nan])
    policy = LineSearch(factors=[0.5, 1.0, 2.0], max_lr=10.0)
    sched = PolicyLR(opt, policy, probe=lambda: next(losses))
    factors = []
    for _ in range(3):
        w.grad = torch.ones(2)
        opt.step()
        sched.step()
        factors.append(policy.last_decision.extra["best_factor"])
    # 1) a flat probe keeps the LR; 2) nan and inf lose to 7 (factor 0.5); 3) all non-finite: the factor 1
    assert factors == [1.0, 0.5, 1.0]
    assert opt.param_groups[0]["lr"] == 0.05
    assert policy.last_decision.extra["probe_loss"] == math.inf


def test_lr_is_clamped_but_the_parameters_take_the_whole_factor():
    w, opt, sched, policy, _ = setup_1d(lr=0.1, max_lr=0.15)
    sgd_step(w, opt)
    sched.step()
    assert float(w) == pytest.approx(1.2, abs=1e-12) and opt.param_groups[0]["lr"] == 0.15
    assert policy.last_decision.factor == pytest.approx(1.5)


def test_resume_between_decisions_continues_identically():
    n_steps, save_after = 24, 11  # a decision after every second SGD step; saved after step 11, between two

    def run(state=None, stop_after=None):
        w, opt, sched, _, _ = setup_1d(lr=0.02, factors=[0.5, 1.0, 1.5])
        first = 0
        if state is not None:
            w.data.copy_(state["w"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            first = state["steps"]
        lrs = []
        for t in range(first, n_steps):
            sgd_step(w, opt)
            if t % 2 == 1:
                sched.step()
                lrs.append(opt.param_groups[0]["lr"])
            if t + 1 == stop_after:
                return {"w": w.detach().clone(), "opt": copy.deepcopy(opt.state_dict()),
                        "sched": sched.state_dict(), "steps": t + 1, "lrs": lrs}
        return lrs, w, sched

    full, full_w, full_sched = run()
    assert len(set(full)) > 3
    state = run(stop_after=save_after)
    # the anchor (the parameters at decision 5) is not where the saved parameters are (one SGD step later)
    assert not torch.equal(state["sched"]["policy"]["anchor"][0][0], state["w"])
    resumed, resumed_w, resumed_sched = run(state)
    assert state["lrs"] + resumed == full
    assert torch.equal(resumed_w, full_w)
    assert resumed_sched.policy.probe_forwards == full_sched.policy.probe_forwards == 3 * n_steps // 2


def test_a_probe_is_required():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="LineSearch needs a probe"):
        PolicyLR(opt, LineSearch())
    policy = LineSearch()
    policy.reset([0.1])
    with pytest.raises(PolicyConfigError, match="needs a probe"):
        policy.bind(opt)


def test_observe_before_bind_is_refused():
    policy = LineSearch()
    policy.reset([0.1])
    with pytest.raises(RuntimeError, match="before bind"):
        policy.observe(Observation(step=1, epoch=1))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"factors": []}, "factors"),
        ({"factors": [0.5, 0.0]}, "factors"),
        ({"factors": [1.0, math.nan]}, "factors"),
        ({"factors": "0.5,2"}, "factors"),
        ({"min_lr": -1.0}, "min_lr"),
        ({"min_lr": 0.1, "max_lr": 0.1}, "max_lr"),
    ],
)
def test_bad_arguments_are_named(kwargs, name):
    with pytest.raises(PolicyConfigError, match=rf"^{name} must") as info:
        LineSearch(**kwargs)
    assert repr(kwargs[name]) in str(info.value)


def test_composed_config_builds_a_line_search_and_rescaled_sgd():
    from adaptive_lr.config import compose
    from adaptive_lr.optim import RescaledSGD
    from adaptive_lr.runner import build

    cfg = compose(["scheduler=line_search", "task=xor_clean", "data.n_samples=80"])
    policy = build(cfg)["policy"]
    assert isinstance(policy, LineSearch) and policy.factors == (0.5, 1.0, 2.0) and policy.needs_probe

    parts = build(compose(["scheduler=line_search", "optimizer=rescaled_sgd", "task=xor_clean", "data.n_samples=80"]))
    optimizer = parts["module"].configure_optimizers()
    assert isinstance(optimizer, RescaledSGD) and optimizer.defaults["lr"] == 0.05  # the task's lr
    assert optimizer.defaults["min_scale"] == 0.1

    adagrad = build(compose(["optimizer=adagrad", "task=xor_clean", "data.n_samples=80"]))["module"]
    assert isinstance(adagrad.configure_optimizers(), torch.optim.Adagrad)
